// What every command needs: the global options, NEXUS_HOME, the daemon client and the witness,
// the choice of signing key, and printing (human lines or --json).
import type { Command as Commander } from 'commander';
import { signCommand } from '../core/identity/envelope.ts';
import { isIdentityId } from '../core/identity/keys.ts';
import type { CommandType, Json, LedgerEntry, SignedCommand } from '../core/types.ts';
import { ApiError, Client, DEFAULT_URL, type Receipt } from './client.ts';
import { notFound, usage } from './errors.ts';
import { Home, defaultHome, type LocalIdentity } from './home.ts';
import { Witness, type Contact, type PlatformInfo, type SeenCheckpoint } from './witness.ts';
import { saveReceipt, verifyReceipt } from './receipts.ts';

/** What commands printed with --json, held until the command has succeeded (program.ts prints it). */
let jsonOutput: unknown[] = [];

/** The JSON a command produced so far, and forget it. */
export function takeJsonOutput(): unknown[] {
  const out = jsonOutput;
  jsonOutput = [];
  return out;
}

export interface GlobalOptions {
  server?: string;
  as?: string;
  json?: boolean;
  /** PEM certificate authorities to trust for an https daemon (env NEXUS_CA). */
  ca?: string;
}

export interface Submitted<R extends Receipt = Receipt> {
  receipt: R;
  signed: SignedCommand;
  signer: LocalIdentity;
  /** The signed checkpoint the entry was proved to be included in (the receipt's). */
  checkpoint: SeenCheckpoint;
  /** Where the receipt is kept (NEXUS_HOME/receipts/<platform id>/<index>.json). */
  receiptFile: string;
}

export class Ctx {
  readonly home: Home;
  readonly json: boolean;
  private client_: Client | undefined;
  private witness_: Witness | undefined;
  private contact_: Contact | undefined;
  private reader_: LocalIdentity | undefined;

  constructor(
    readonly opts: GlobalOptions,
    readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    this.home = new Home(defaultHome(env));
    this.json = !!opts.json;
  }

  static of(cmd: Commander): Ctx {
    return new Ctx(cmd.optsWithGlobals<GlobalOptions>());
  }

  get url(): string {
    return this.opts.server ?? this.env.NEXUS_URL ?? DEFAULT_URL;
  }

  get client(): Client {
    const caFile = this.opts.ca ?? (this.env.NEXUS_CA || undefined);
    this.client_ ??= new Client(this.url, undefined, caFile !== undefined ? { caFile } : {});
    return this.client_;
  }

  get witness(): Witness {
    this.witness_ ??= new Witness(this.home, this.client);
    return this.witness_;
  }

  /** Contacts the daemon through the witness (pinned key, checkpoint consistency). Once per process. */
  async connect(): Promise<Contact> {
    this.contact_ ??= await this.witness.contact();
    return this.contact_;
  }

  /**
   * Who may sign this process's reads, in the order they are tried: --as (or NEXUS_AS) alone if
   * given; otherwise the local identities among `preferred` first, then every other local identity
   * in the order they were created. Each one tried tells the daemon that its key is held here: with
   * several local identities, --as keeps the others out of it.
   */
  readers(preferred: (string | undefined)[] = []): LocalIdentity[] {
    const chosen = this.opts.as ?? this.env.NEXUS_AS;
    if (chosen) return [this.home.signer(chosen)];
    const names: string[] = [];
    for (const p of preferred) {
      const n = p ? this.home.localName(p) : undefined;
      if (n && !names.includes(n)) names.push(n);
    }
    for (const n of Object.keys(this.home.identities())) if (!names.includes(n)) names.push(n);
    const out: LocalIdentity[] = [];
    for (const n of names) {
      try {
        out.push(this.home.signer(n));
      } catch {
        // a name whose key file is missing or unreadable cannot sign; the others still can
      }
    }
    return out;
  }

  /**
   * GET through the witness, as a signed read (RFC 9421). `as` fixes the signer; otherwise the
   * reader that worked last, then readers(preferred), each tried until one is not refused (401/403).
   * Without any local identity the read goes unsigned (public data only).
   */
  async get<T>(path: string, query: Record<string, string | number | undefined> = {}, opts: { as?: LocalIdentity; preferred?: (string | undefined)[] } = {}): Promise<T> {
    return this.signedRead((as) => this.client.get<T>(path, query, as), opts);
  }

  /** Like get(), for a text answer (e.g. a zone file). */
  async getText(path: string, opts: { as?: LocalIdentity; preferred?: (string | undefined)[] } = {}): Promise<string> {
    return this.signedRead((as) => this.client.getText(path, as), opts);
  }

  private async signedRead<T>(read: (as?: LocalIdentity) => Promise<T>, opts: { as?: LocalIdentity; preferred?: (string | undefined)[] }): Promise<T> {
    await this.connect();
    if (opts.as) return read(opts.as);
    const candidates = this.readers(opts.preferred);
    if (this.reader_ && !opts.preferred?.length) candidates.sort((a, b) => Number(b.name === this.reader_?.name) - Number(a.name === this.reader_?.name));
    if (!candidates.length) return read();
    for (let i = 0; ; i++) {
      const reader = candidates[i]!;
      try {
        const out = await read(reader);
        this.reader_ = reader;
        return out;
      } catch (err) {
        const refused = err instanceof ApiError && (err.status === 401 || err.status === 403);
        if (!refused || i === candidates.length - 1) throw err;
      }
    }
  }

  /**
   * One ledger entry in full, read by the first reader it is not withheld from (see readers());
   * returns that reader too, so that it can confirm the entry's inclusion.
   */
  async entry(index: number, preferred: (string | undefined)[] = []): Promise<{ entry: LedgerEntry; reader?: LocalIdentity }> {
    await this.connect();
    const candidates = this.readers(preferred);
    if (!candidates.length) return { entry: await this.witness.entry(index) };
    let last: unknown;
    for (const reader of candidates) {
      try {
        const res = await this.client.get<{ entries?: LedgerEntry[] }>('/v1/ledger/entries', { from: index, to: index + 1 }, reader);
        const e = (res.entries ?? []).find((x) => x && x.index === index);
        if (e?.command) return { entry: e, reader };
      } catch (err) {
        if (!(err instanceof ApiError && (err.status === 401 || err.status === 403))) throw err;
        last = err;
      }
    }
    if (last) throw last;
    throw usage(`ledger entry ${index} is withheld from ${candidates.map((c) => c.name).join(', ')}: it concerns an IMVU none of them created or is a member of`);
  }

  /** The identity that signs reads which must all come from one reader (e.g. the pages of the ledger). */
  async reader(): Promise<LocalIdentity | undefined> {
    if (this.reader_) return this.reader_;
    const candidates = this.readers();
    if (candidates.length <= 1) return candidates[0];
    // The first that the daemon knows: a signed read of the first ledger entry tells.
    await this.get('/v1/ledger/entries', { from: 0, to: 1 });
    return this.reader_;
  }

  /**
   * The signing identity: --as (or NEXUS_AS) if given; otherwise the first of `preferred` (ids or
   * names, e.g. an IMVU's owner) whose key is held here; otherwise the only local identity.
   */
  signer(preferred: (string | undefined)[] = [], what = 'this command'): LocalIdentity {
    const chosen = this.opts.as ?? this.env.NEXUS_AS;
    if (chosen) return this.home.signer(chosen);
    for (const p of preferred) if (p && this.home.localName(p)) return this.home.signer(p);
    const names = Object.keys(this.home.identities());
    if (names.length === 1) return this.home.signer(names[0]!);
    if (names.length === 0) throw usage(`${what} must be signed, and ${this.home.dir} holds no identity; create one with \`nexus identity create NAME --role creator\``);
    throw usage(`choose the identity that signs ${what} with --as (local identities: ${names.join(', ')})`);
  }

  /** Like signer(), but looks up the preferred identity (e.g. a zone's owner) only when the choice is open. */
  async signerLazy(preferred: () => Promise<string | undefined>, what: string): Promise<LocalIdentity> {
    if (this.opts.as ?? this.env.NEXUS_AS) return this.signer([], what);
    if (Object.keys(this.home.identities()).length === 1) return this.signer([], what);
    return this.signer([await preferred()], what);
  }

  /** An identity id from a local name, an id, or a name the daemon knows. */
  async identityId(nameOrId: string): Promise<string> {
    if (isIdentityId(nameOrId)) return nameOrId;
    const all = this.home.identities();
    if (Object.hasOwn(all, nameOrId) && all[nameOrId]) return all[nameOrId];
    const rec = await this.get<{ id?: string }>(`/v1/identities/${encodeURIComponent(nameOrId)}`).catch((err: unknown) => {
      if ((err as { status?: number }).status === 404) throw notFound(`unknown identity '${nameOrId}' (neither a local name nor known to the daemon)`);
      throw err;
    });
    if (!rec.id) throw notFound(`unknown identity '${nameOrId}'`);
    return rec.id;
  }

  /**
   * Signs and submits one command, then proves the receipt: the entry at the returned index is this
   * command, and it is included in the platform's signed checkpoint (which extends the saved one).
   */
  async submit<R extends Receipt = Receipt>(
    method: 'POST' | 'PUT' | 'DELETE',
    path: string,
    type: CommandType,
    body: { [k: string]: Json },
    signer: LocalIdentity,
  ): Promise<Submitted<R>> {
    const { platform } = await this.connect();
    const signed = signCommand(signer.key, type, body, { origin: platform.origin, actor: signer.id });
    let receipt: R;
    try {
      receipt = await this.client.submit<R>(method, path, signed);
    } catch (err) {
      // A refusal that was recorded (it names its entry) carries a receipt too: kept like any other.
      if (err instanceof ApiError && typeof err.body.index === 'number') await this.keepReceipt(platform, signed, err.body);
      throw err;
    }
    const kept = await this.keepReceipt(platform, signed, receipt);
    return { receipt, signed, signer, ...kept };
  }

  /**
   * Verifies the receipt in a command's answer (src/cli/receipts.ts), keeps it under NEXUS_HOME,
   * then checks its checkpoint against the saved one (consistency) and saves it if newer.
   */
  private async keepReceipt(platform: PlatformInfo, signed: SignedCommand, body: unknown): Promise<{ checkpoint: SeenCheckpoint; receiptFile: string }> {
    const v = verifyReceipt(platform, this.client.url, signed, body);
    // Kept before anything else can fail: it is the evidence if the log later loses the entry.
    const receiptFile = saveReceipt(this.home, v.receipt);
    await this.witness.observe(platform, v.checkpoint.note, { latest: false, what: `the checkpoint in the receipt for ledger entry ${v.receipt.index}` });
    return { checkpoint: v.checkpoint, receiptFile };
  }

  /**
   * Prints the human lines, or with --json holds `data`: program.ts prints it once the command has
   * succeeded, so that a failure prints nothing on stdout but its error object.
   */
  print(data: unknown, human: () => string[] | string): void {
    if (this.json) {
      jsonOutput.push(data);
      return;
    }
    const lines = human();
    const text = Array.isArray(lines) ? lines.join('\n') : lines;
    if (text.length) process.stdout.write(text.endsWith('\n') ? text : text + '\n');
  }
}

/** "recorded as ledger entry 12, included in the signed checkpoint of tree size 13". */
export function receiptLine(s: Submitted): string {
  return `Recorded as ledger entry ${s.receipt.index}, signed by ${s.signer.name}; inclusion in the platform's signed checkpoint (tree size ${s.checkpoint.size}) verified; receipt kept`;
}
