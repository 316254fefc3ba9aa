// What every command needs: the global options, NEXUS_HOME, the daemon client and the witness,
// the choice of signing key, and printing (human lines or --json).
import type { Command as Commander } from 'commander';
import { signCommand } from '../core/identity/envelope.ts';
import { isIdentityId } from '../core/identity/keys.ts';
import type { CommandType, Json, SignedCommand } from '../core/types.ts';
import { Client, DEFAULT_URL, type Receipt } from './client.ts';
import { usage } from './errors.ts';
import { Home, defaultHome, type LocalIdentity } from './home.ts';
import { Witness, type Contact, type SeenCheckpoint } from './witness.ts';

export interface GlobalOptions {
  server?: string;
  as?: string;
  json?: boolean;
}

export interface Submitted<R extends Receipt = Receipt> {
  receipt: R;
  signed: SignedCommand;
  signer: LocalIdentity;
  /** The signed checkpoint the entry was proved to be included in. */
  checkpoint: SeenCheckpoint;
}

export class Ctx {
  readonly home: Home;
  readonly json: boolean;
  private client_: Client | undefined;
  private witness_: Witness | undefined;
  private contact_: Contact | undefined;

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
    this.client_ ??= new Client(this.url);
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

  /** GET through the witness. */
  async get<T>(path: string, query: Record<string, string | number | undefined> = {}): Promise<T> {
    await this.connect();
    return this.client.get<T>(path, query);
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
      if ((err as { status?: number }).status === 404) throw usage(`unknown identity '${nameOrId}' (neither a local name nor known to the daemon)`);
      throw err;
    });
    if (!rec.id) throw usage(`unknown identity '${nameOrId}'`);
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
    const signed = signCommand(signer.key, type, body, { origin: platform.origin });
    const receipt = await this.client.submit<R>(method, path, signed);
    const checkpoint = await this.witness.confirmEntry(receipt.index, signed.sig);
    return { receipt, signed, signer, checkpoint };
  }

  /** Prints `data` as JSON with --json, otherwise the human lines. */
  print(data: unknown, human: () => string[] | string): void {
    if (this.json) {
      process.stdout.write(JSON.stringify(data, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
      return;
    }
    const lines = human();
    const text = Array.isArray(lines) ? lines.join('\n') : lines;
    if (text.length) process.stdout.write(text.endsWith('\n') ? text : text + '\n');
  }
}

/** "recorded as ledger entry 12, included in the signed checkpoint of tree size 13". */
export function receiptLine(s: Submitted): string {
  return `Recorded as ledger entry ${s.receipt.index}, signed by ${s.signer.name}; inclusion in the platform's signed checkpoint (tree size ${s.checkpoint.size}) verified`;
}
