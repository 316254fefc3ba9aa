// IMAP as the daemon runs it: the server over the IMVUs' Maildirs, logged in with the app passwords
// (the same scrypt hashes as submission), STARTTLS on the plain port and implicit TLS on the IMAPS
// port with the mail certificate, and three things reported into the ledger by the `mail` service
// identity:
// - refusals (gate 16 for mail): every mailbox name a logged-in account tried outside its own tree,
//   counted per address, command and reason and recorded once per interval as one `mail.refusals`
//   entry per IMVU (its creator reads it with `nexus audit log --imvu`); failed logins are anonymous
//   and join the noise summary;
// - storage (gate 6): the bytes of mail each IMVU holds, sampled and integrated over time into
//   whole `mail.storage_mb_hours`, reported by the mail meter;
// - the quota: the envelope's storage (GB), which GETQUOTA reports and APPEND / COPY are held to.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { sourcePrefix } from '../../api/limits.ts';
import { signCommand } from '../../core/identity/envelope.ts';
import type { OpenPlatform } from '../../core/platform.ts';
import { ensureMeter, ensureServiceIdentity, type ServiceIdentity } from '../../core/service-identity.ts';
import { UsageMeter } from '../../domains/metering.ts';
import { verifyAppPassword } from '../auth/app-password.ts';
import { ensureMailTls } from '../smtp/tls.ts';
import { MAIL_SERVICE } from '../smtp/service.ts';
import { sampleMailStorage } from '../storage.ts';
import { startImapServer, type ImapServer, type ImapServerOptions, type RefusalEvent } from './server.ts';

export const STORAGE_METRIC = 'mail.storage_mb_hours';
/** One MB-hour (2^20 bytes for an hour, as the envelope's GB is 2^30 bytes), in byte-milliseconds. */
const MB_HOUR = (1n << 20n) * 3_600_000n;
const GB = 1n << 30n;

export interface ImapServiceOptions {
  platform: OpenPlatform;
  host: string;
  /** null: no plain listener. 0: a free port. */
  port: number | null;
  /** null: no IMAPS listener. */
  tlsPort: number | null;
  /** The certificate; else the mail service's (generated once under DATA/keys/tls). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  hostname?: string;
  /** Replaces the app-password check (tests). */
  authenticate?: ImapServerOptions['authenticate'];
  /** Allow LOGIN without TLS (loopback tests only). */
  plaintextAuth?: boolean;
  /** How often refusals are recorded (default 60 s). */
  refusalIntervalMs?: number;
  /** How often storage is sampled (default 60 s) and reported (the meter interval, default 60 s). */
  sampleMs?: number;
  meterIntervalMs?: number;
  /** Anonymous refusals (failed logins), summarised by the daemon. */
  noise?: { add(source: string, reason: string): void };
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  server?: Partial<Pick<ImapServerOptions, 'limits' | 'preAuthMs' | 'autologoutMs' | 'commandMs' | 'idlePollMs' | 'maxConnections'>>;
  now?: () => number;
}

export interface ImapService {
  server: ImapServer;
  identity: ServiceIdentity;
  meter: UsageMeter;
  /** Records the refusals counted so far (one entry per IMVU); returns the entries' indices. */
  recordRefusals(): Promise<number[]>;
  /** Samples every IMVU's mail storage now and counts the whole MB-hours since the last sample. */
  sampleStorage(): Promise<void>;
  close(): Promise<void>;
}

interface Stored {
  at: number;
  bytes: bigint;
  /** byte-milliseconds below one reported unit. */
  rest: bigint;
}

export async function startImapService(o: ImapServiceOptions): Promise<ImapService> {
  const { platform } = o;
  const db = platform.store;
  const now = o.now ?? Date.now;
  const identity = await ensureServiceIdentity(platform, MAIL_SERVICE);
  await ensureMeter(platform, identity, [STORAGE_METRIC]);
  const meter = new UsageMeter({
    service: MAIL_SERVICE,
    key: identity.key,
    origin: platform.config.origin,
    submit: (signed) => platform.chokepoint.submit(signed),
    now,
    ...(o.meterIntervalMs !== undefined ? { intervalMs: o.meterIntervalMs } : {}),
    ...(o.log ? { onError: (err: Error) => o.log!(`mail storage report: ${err.message}`) } : {}),
  }).start();

  // Refusals, per IMVU: `${address} ${command} ${reason}` -> count, since `from`.
  const refusals = new Map<string, Map<string, number>>();
  let from = new Date(now()).toISOString();
  const onRefusal = (e: RefusalEvent): void => {
    o.log?.('IMAP mailbox name outside the account refused', { refusal: e });
    let m = refusals.get(e.imvu);
    if (!m) refusals.set(e.imvu, (m = new Map()));
    const key = `${e.address} ${e.command} ${e.pattern ? 'pattern-outside-account' : 'name-outside-account'}`;
    // Bounded: an account cycling through made-up commands cannot grow this past 300 rows per IMVU.
    if (m.size >= 300 && !m.has(key)) return;
    m.set(key, (m.get(key) ?? 0) + 1);
  };
  let recording: Promise<number[]> = Promise.resolve([]);
  const recordRefusals = (): Promise<number[]> =>
    (recording = recording.then(async () => {
      const to = new Date(Math.max(now(), Date.parse(from) + 1)).toISOString();
      const batch = [...refusals];
      refusals.clear();
      const start = from;
      from = to;
      const out: number[] = [];
      for (const [imvu, m] of batch) {
        const counts = [...m].map(([k, count]) => {
          const [address, command, reason] = k.split(' ') as [string, string, string];
          return { address, command, reason, count };
        });
        try {
          const r = await platform.chokepoint.submit(signCommand(identity.key, 'mail.refusals', { imvu, from: start, to, counts }, { origin: platform.config.origin }));
          out.push(r.index);
        } catch (err) {
          o.log?.(`IMAP refusals of ${imvu} not recorded: ${(err as Error).message}`);
        }
      }
      return out;
    }));

  // Storage: bytes held, integrated between samples (the first sight of an IMVU is a baseline).
  const stored = new Map<string, Stored>();
  const imvusWithMail = (): string[] => {
    try {
      return readdirSync(join(platform.dataDir, 'imvus')).filter((n) => /^IMVU-\d{3,9}$/.test(n));
    } catch {
      return [];
    }
  };
  let sampling: Promise<void> = Promise.resolve();
  const sampleStorage = (): Promise<void> =>
    (sampling = sampling.then(async () => {
      // The IMVUs with a mail folder first, and the status of those only: the cost follows the
      // IMVUs that hold mail, not every IMVU of the platform.
      const withMail = imvusWithMail();
      const active = new Set<string>();
      for (let i = 0; i < withMail.length; i += 500) {
        const part = withMail.slice(i, i + 500);
        for (const r of await db.all<{ id: string }>(`SELECT id FROM imvus WHERE status <> 'exited' AND id IN (${part.map(() => '?').join(',')})`, part)) active.add(r.id);
      }
      const t = now();
      for (const imvu of withMail) {
        if (!active.has(imvu)) {
          stored.delete(imvu);
          continue;
        }
        const bytes = sampleMailStorage(platform.dataDir, imvu);
        const prev = stored.get(imvu);
        if (!prev) {
          stored.set(imvu, { at: t, bytes, rest: 0n });
          // Opens the IMVU's interval here, so the first report covers the time its units accrue over.
          meter.count(imvu, STORAGE_METRIC, 0);
          continue;
        }
        const dt = BigInt(Math.max(0, t - prev.at));
        // Trapezoid between the two samples: mail arrives and goes at any time between them.
        const byteMs = prev.rest + ((prev.bytes + bytes) * dt) / 2n;
        const units = byteMs / MB_HOUR;
        if (units > 0n) meter.count(imvu, STORAGE_METRIC, Number(units));
        stored.set(imvu, { at: t, bytes, rest: byteMs % MB_HOUR });
      }
    }).catch((err: unknown) => o.log?.(`mail storage sample: ${(err as Error).message}`)));

  const quotaBytes = async (imvu: string): Promise<bigint | null> => {
    const row = await db.get<{ storage_gb: number }>('SELECT storage_gb FROM envelopes WHERE imvu = ?', [imvu]);
    return row ? BigInt(row.storage_gb) * GB : null;
  };

  const tls = await ensureMailTls(platform.dataDir, o.tls, o.hostname ?? 'localhost');
  let server: ImapServer;
  try {
    server = await startImapServer({
      dataDir: platform.dataDir,
      host: o.host,
      ...(o.port !== null ? { port: o.port } : {}),
      ...(o.tlsPort !== null ? { tlsPort: o.tlsPort } : {}),
      tls: { cert: tls.cert, key: tls.key },
      ...(o.plaintextAuth ? { plaintextAuth: true } : {}),
      ...o.server,
      authenticate:
        o.authenticate ??
        (async (user, pass) => {
          const login = await verifyAppPassword(db, user.toLowerCase(), pass);
          return login ? { imvu: login.imvu, address: login.address } : null;
        }),
      onRefusal,
      onLoginFailure: (remote) => o.noise?.add(sourcePrefix(remote), 'imap-login-failed'),
      quotaBytes,
    });
  } catch (err) {
    await meter.close();
    throw err;
  }
  const timers = [
    setInterval(() => void recordRefusals(), o.refusalIntervalMs ?? 60_000),
    setInterval(() => void sampleStorage(), o.sampleMs ?? 60_000),
  ];
  for (const t of timers) t.unref();
  void sampleStorage();
  let closing: Promise<void> | undefined;
  return {
    server,
    identity,
    meter,
    recordRefusals,
    sampleStorage,
    close: () =>
      (closing ??= (async () => {
        for (const t of timers) clearInterval(t);
        await server.close();
        await recordRefusals();
        await sampleStorage();
        await meter.close();
      })()),
  };
}
