// The daemon: Fastify over one data directory. startServer() is the programmatic entry point
// (tests, embedding); serve() is what `nexus serve` runs: config, first-run init, signals.
import type { Gateway } from '../network/gateway/gateway.ts';
import type { AcmeSettings } from '../network/acme/manager.ts';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Fastify, { type FastifyBaseLogger, type FastifyError } from 'fastify';
import { initDataDir, isInitialised, openDataDir, type OpenPlatform } from '../core/platform.ts';
import { lockDataDir, type DataDirLock } from '../core/daemon-lock.ts';
import type { Store } from '../core/store/index.ts';
import { KeyPool, keyPreparer, provisioner } from '../imvu/provision.ts';
import { ConfigError, DEFAULTS, exposureWarning, resolveConfig, xfrOptions, type ConfigOptions, type NexusConfig } from './config.ts';
import { formatStatus } from './status-view.ts';
import { createMetrics } from './metrics.ts';
import { openApiDocument } from './openapi.ts';
import { HttpError, ROUTES, type ApiContext } from './routes.ts';
import { MAX_BODY_BYTES } from './schemas.ts';
import { NoiseCounter, TokenBuckets, sourcePrefix, type BucketOptions } from './limits.ts';
import { formatZodError } from '../core/policy/commands.ts';
import { startDnsService, type DnsService, type DnsServiceOptions } from '../domains/dns-service.ts';
import { registerDnsMetrics } from './dns-metrics.ts';
import type { MailService, MailServiceOptions } from '../mail/smtp/service.ts';
import { PeriodCloser } from '../core/handshake/closer.ts';
import { ACCEPT_SIGNATURE, ReadAuthError, ReadVerifier, type Reader } from './read-auth.ts';
import { challengeResolver, type ChallengeLookup, type ChallengeResolverOptions } from '../imvu/domain-proof.ts';
import { ensurePlatformZone } from '../domains/registry/declare.ts';
import { CosignatureCollector, type WitnessEndpoint } from '../core/witness/collector.ts';
import type { Listener } from './status-view.ts';
import type { ImapServerOptions } from '../mail/imap/server.ts';
import type { ImapService } from '../mail/imap/service.ts';
import { daemonStatus, type DaemonInfo } from './status.ts';
import { servedCheckpoint } from './checkpoint.ts';
import type { DaemonStatus } from './status-view.ts';
import type { MailQueue, MailOutOptions } from '../mail/queue/index.ts';
import type { ComputeService } from '../compute/service.ts';
import { EarlyListener } from './early.ts';

/** Starts the compute service if this host can run it; otherwise says why in one line. */
async function startCompute(platform: OpenPlatform, opts: ServerOptions['compute'], log: FastifyBaseLogger): Promise<ComputeService | undefined> {
  if (!opts) return undefined;
  const { fabricAvailable, instanceTag, RuncDriver } = await import('../compute/fabric/runc.ts');
  const can = await fabricAvailable();
  if (!can.ok) {
    log.warn(`compute fabric off: ${can.why}; everything else runs`);
    return undefined;
  }
  // Addresses are host-wide, names are not: an overlap with another platform's range would let one
  // platform's gateway reach the other's workloads (src/compute/fabric/range-claim.ts).
  const { claimComputeRange } = await import('../compute/fabric/range-claim.ts');
  const { DEFAULT_COMPUTE_RANGE } = await import('../compute/fabric/addresses.ts');
  const claim = await claimComputeRange({ tag: instanceTag(platform.dataDir), range: opts.range ?? DEFAULT_COMPUTE_RANGE, dataDir: resolve(platform.dataDir) });
  if (!claim.ok) {
    log.warn(`compute fabric off: ${claim.why}; everything else runs`);
    return undefined;
  }
  const { ComputeService } = await import('../compute/service.ts');
  const driver = new RuncDriver({
    dataDir: platform.dataDir,
    ...(opts?.range ? { range: opts.range } : {}),
    ...(opts?.offeredPorts ? { offeredPorts: opts.offeredPorts } : {}),
    ...(opts?.storageUnitBytes ? { storageUnitBytes: opts.storageUnitBytes } : {}),
  });
  const svc = new ComputeService(platform, driver, { ...opts.service, log, onClose: claim.release });
  try {
    await svc.start();
  } catch (err) {
    claim.release();
    throw err;
  }
  return svc;
}

export interface ServerOptions {
  dataDir: string;
  host?: string;
  /** Default 7600; 0 asks the OS for a free port. */
  port?: number;
  logLevel?: string;
  /** false: no logs at all (tests). Default true: pino JSON lines on stdout. */
  logger?: boolean;
  /** Where the log lines go instead of stdout (e.g. a pino-pretty stream on a terminal). */
  logStream?: NodeJS.WritableStream;
  /** Serve the API over HTTPS with this certificate (chain) and private key, PEM. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /**
   * The authoritative DNS server with metering into the ledger (src/domains/dns-service.ts).
   * Off unless given (`serve()` passes the configured address and port); port 0 picks a free one.
   */
  dns?: false | Omit<DnsServiceOptions, 'platform'>;
  /**
   * The MX and submission listeners (src/mail/smtp/service.ts), metered by the `mail` service
   * identity; failed logins and relay attempts join the anonymous-noise summary. Off unless given.
   */
  mail?: false | Omit<MailServiceOptions, 'platform' | 'noise'>;
  /**
   * The HTTPS gateway (HAProxy, src/network/gateway): started after the API listens when haproxy is
   * installed; one log line says why it is off otherwise. Off unless given (`serve()` passes it).
   */
  gateway?: false | { address: string; port: number; httpPort: number; meterIntervalMs?: number; checkIntervalMs?: number; haproxyBin?: string; range?: string; region?: string; acme?: AcmeSettings };
  /** Submissions admitted per source address and per identity (the platform and services are exempt from the latter). */
  limits?: { perSource?: BucketOptions; perIdentity?: BucketOptions };
  /** How often refused anonymous attempts are summarised into one ledger entry (default 60 s). */
  noiseIntervalMs?: number;
  /** How often the daemon looks for an ended period to close (src/core/handshake/closer.ts). Default 1 minute. */
  closeCheckMs?: number;
  /**
   * How domain proofs are looked up: the project's recursive resolver from these root hints, or a
   * look-up function. Off unless given (`serve()` passes the configured root hints): `POST
   * /v1/imvus/:id/domains/verify` then answers 503 and records nothing.
   */
  challenge?: false | ChallengeResolverOptions | ChallengeLookup;
  /**
   * How often the projections are compared with what the platform's own writes made them (src/core/policy/integrity.ts);
   * a difference is rebuilt from the ledger and recorded as an integrity alarm. Default 60000; 0 turns it off.
   */
  integrityIntervalMs?: number;
  /** A signed ledger.snapshot after every this many entries (default 100000; 0: never). */
  snapshotEvery?: number;
  /** Key sets kept made for imvu.create (default 4, filled after the first creation; a larger pool fills at start). */
  keyPool?: number;
  /**
   * Witnesses sent every new checkpoint (coalesced: one request in flight per witness, for the
   * newest); their cosignatures are kept under DATA/cosignatures and served with the checkpoint.
   */
  witnesses?: { endpoints: WitnessEndpoint[]; timeoutMs?: number; minIntervalMs?: number; backoffMs?: number };
  /**
   * The API's socket, already bound (src/api/early.ts): `serve()` binds it before the data
   * directory is opened, so that /health says "verifying" while the start-up check runs; the
   * requests that arrive meanwhile wait and are handed to the API once it is done.
   */
  early?: EarlyListener;
  /** The exit process (src/imvu/exit/service.ts): days before an unconfirmed exit ends, how often its clock is checked. */
  exit?: { confirmDays?: number; clockIntervalMs?: number };
  /**
   * Platforms whose domain transfer codes this one takes (`nexus domain transfer-in`, gate 3): each
   * is recorded once as a platform-signed `platform.peer` entry at start.
   */
  peers?: { origin: string; publicKey: string }[];
  /**
   * The outbound mail queue (src/mail/queue): DATA/mail-queue, DKIM-signed at enqueue, delivered
   * locally or to the MX hosts the resolver finds from these root hints, on `relayPort` (25). Off
   * unless given (`serve()` passes the configured root hints and relay port).
   */
  mailOut?: false | MailOutOptions;
  /** How often the timed steps of DKIM rotations are taken when due (src/mail/signing/rotate.ts). Default 5 min. */
  dkimRotationCheckMs?: number;
  /**
   * IMAP over the IMVUs' Maildirs (src/mail/imap/service.ts): `port` with STARTTLS, `tlsPort`
   * implicit TLS (the API's certificate, else the mail one), logged in with the app passwords;
   * refusals (`mail.refusals`) and storage (`mail.storage_mb_hours`) recorded by the `mail` service.
   * Off unless given.
   */
  imap?:
    | false
    | {
        host?: string;
        port?: number;
        tlsPort?: number;
        authenticate?: ImapServerOptions['authenticate'];
        plaintextAuth?: boolean;
        refusalIntervalMs?: number;
        sampleMs?: number;
        meterIntervalMs?: number;
      };
  /**
   * The compute fabric (src/compute): runs when runc and usable cgroups exist (otherwise one log
   * line says why, and everything else runs). Off unless given: `serve()` (what `nexus serve`
   * runs) always gives it, with the configured range; embedding and tests opt in.
   */
  compute?: false | { range?: string; offeredPorts?: number[]; meterIntervalMs?: number; /** Bytes per storage_gb (tests: 1 MiB). */ storageUnitBytes?: number; service?: Omit<import('../compute/service.ts').ComputeServiceOptions, 'log'> };
}

/** Defaults: generous for people and scripts, far below what fills a disk. */
export const LIMIT_DEFAULTS = {
  perSource: { rate: 200, burst: 1000 },
  perIdentity: { rate: 50, burst: 500 },
  noiseIntervalMs: 60_000,
} as const;

export interface RunningServer {
  url: string;
  port: number;
  dataDir: string;
  log: FastifyBaseLogger;
  /** The DNS service, when it runs: `dns.server.address` / `dns.server.port`. */
  dns?: DnsService;
  /** The mail service, when it runs. */
  mail?: MailService;
  /** Appends `period.close` once a period has ended and its grace has passed. */
  closer: PeriodCloser;
  /** The committed state, to read (embedding, tests): every change goes through the chokepoint. */
  store: Store;
  /** The witness cosignature collector, when witnesses are configured. */
  witnesses?: CosignatureCollector;
  /** The outbound mail queue, when it runs: submission hands accepted messages to `enqueue()`. */
  mailQueue?: MailQueue;
  /** IMAP (src/mail/imap/service.ts), when started. */
  imap?: ImapService;
  /** The compute service, when the fabric runs on this host. */
  compute?: ComputeService;
  /** The gateway, when it runs. */
  gateway?: Gateway;
  /** What GET /v1/status answers a peer on this machine. */
  status(): Promise<DaemonStatus>;
  /** Signs a ledger.snapshot of the state now (as the --snapshot-every timer does). */
  recordSnapshot(): ReturnType<OpenPlatform['integrity']['recordSnapshot']>;
  /** Stops accepting, lets requests in flight finish (their commands commit), then closes the store. Idempotent. */
  close(): Promise<void>;
}

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();

/** Client errors Fastify raises before a handler runs, in the API's words. */
function clientError(err: FastifyError, contentType: string | undefined): { status: number; message: string } | undefined {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, message: `request body is larger than ${MAX_BODY_BYTES} bytes` };
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { status: 400, message: 'body is not valid JSON' };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { status: 400, message: 'body is empty; expected a JSON signed command' };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { status: 400, message: `unsupported Content-Type ${JSON.stringify(contentType?.slice(0, 100) ?? '')}: send application/json` };
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return { status: 400, message: 'Content-Length does not match the body' };
  }
  if (err instanceof SyntaxError) return { status: 400, message: `body is not valid JSON: ${oneLine(err.message)}` };
  if (err instanceof HttpError) return { status: err.statusCode, message: oneLine(err.message) };
  if (err instanceof ReadAuthError) return { status: err.statusCode, message: oneLine(err.message) };
  const status = err.statusCode ?? 500;
  if (status >= 400 && status < 500) return { status, message: oneLine(err.message) };
  return undefined;
}

/** A peer on this machine (127.0.0.0/8 or ::1, also as an IPv4-mapped IPv6 address). */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  const perIdentity = new TokenBuckets(opts.limits?.perIdentity ?? LIMIT_DEFAULTS.perIdentity);
  const perSource = new TokenBuckets(opts.limits?.perSource ?? LIMIT_DEFAULTS.perSource);
  // imvu.create keys come from a pool refilled in the background after each creation (not at start:
  // a daemon that creates nothing spends nothing), never from inside the write transaction.
  const keyPool = new KeyPool(opts.keyPool ?? DEFAULTS.keyPool);
  // A pool larger than the default was asked for to absorb a burst: it fills from the start (on the key thread).
  if ((opts.keyPool ?? DEFAULTS.keyPool) > DEFAULTS.keyPool) keyPool.refill();
  const opened: OpenPlatform = await openDataDir(opts.dataDir, {
    provision: provisioner(opts.dataDir),
    prepare: keyPreparer(keyPool),
    parallelVerify: true,
    admit: (actor) => (actor.role === 'platform' || actor.role === 'service' ? undefined : perIdentity.take(actor.id)),
  });
  const platform: OpenPlatform = {
    ...opened,
    async close() {
      keyPool.close();
      await opened.close();
    },
  };
  const noise = new NoiseCounter();
  // Resolved once the API serves (below): background work that guards nothing served (the first
  // re-sign and period-close passes, the DNS warm-up) waits for it instead of competing with the
  // start-up for the CPU (docs/ARCHITECTURE.md, "Start-up").
  let markServing!: () => void;
  const serving = new Promise<void>((resolve) => (markServing = resolve));
  const app = Fastify({
    logger: opts.logger === false ? false : { level: opts.logLevel ?? 'info', ...(opts.logStream ? { stream: opts.logStream } : {}) },
    ...(opts.early ? { serverFactory: (handler: Parameters<EarlyListener['adopt']>[0]) => opts.early!.adopt(handler) } : opts.tls ? { https: { cert: opts.tls.cert, key: opts.tls.key } } : {}),
    bodyLimit: MAX_BODY_BYTES,
    // Reject __proto__ / constructor.prototype keys in JSON bodies instead of parsing them.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
  });
  // Commands are JSON; a text/plain body is refused like any other media type.
  app.removeContentTypeParser('text/plain');
  // Archives to import are streamed to disk, never buffered (PUT /v1/imports/:sha256 bounds the size).
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
  // openDataDir has already compared the data directory with its checkpoint file (it throws
  // LostHistoryError, exit code 5, when acknowledged entries are missing) and the projections with
  // the ledger: say what it found before serving anything.
  const start = platform.integrity.startup;
  if (start.alarm)
    app.log.error({ alarm: start.alarm, reasons: start.reasons }, 'integrity alarm at start: projections differed from the ledger and were rebuilt from it');
  else if (start.replayed) app.log.info({ replayMs: start.replayMs, reasons: start.reasons }, 'projections checked against a replay of the ledger');
  if (!start.scanned) app.log.info('database file unchanged since the daemon closed it (close seal): start-up scan skipped, every row is checked on a worker thread while serving');
  else if (start.sealRefused) app.log.info({ why: start.sealRefused }, 'every projection row scanned at start');
  const metrics = createMetrics(() => platform.store.ledgerSize());
  let witnesses: CosignatureCollector | undefined;
  if (opts.witnesses && opts.witnesses.endpoints.length > 0) {
    const ledger = platform.chokepoint.ledger;
    try {
      witnesses = new CosignatureCollector({
        dataDir: opts.dataDir,
        witnesses: opts.witnesses.endpoints,
        consistencyProof: (oldSize, newSize) => ledger.consistencyProof(oldSize, newSize),
        ...(opts.witnesses.timeoutMs !== undefined ? { timeoutMs: opts.witnesses.timeoutMs } : {}),
        ...(opts.witnesses.minIntervalMs !== undefined ? { minIntervalMs: opts.witnesses.minIntervalMs } : {}),
        ...(opts.witnesses.backoffMs !== undefined ? { backoffMs: opts.witnesses.backoffMs } : {}),
        log: app.log,
        registry: metrics.registry,
      });
    } catch (err) {
      await app.close().catch(() => undefined);
      await platform.close();
      throw err;
    }
    const collector = witnesses;
    ledger.onCheckpoint((cp) => collector.notify(cp));
    const latest = await platform.store.latestCheckpoint();
    if (latest) collector.notifyNote(latest.note);
  }
  // An import made whole whose mail and data volume were not all restored when the daemon stopped
  // is finished now, before mail is accepted and before the compute fabric may start its workload
  // (src/imvu/import/service.ts).
  if (existsSync(join(platform.dataDir, 'imports'))) {
    const resumed = await (await import('../imvu/import/service.ts')).resumeRestores(platform);
    if (resumed.length) app.log.warn({ imvus: resumed }, 'finished the restore of imported IMVUs that a stop had interrupted');
  }
  // The compute fabric starts beside DNS and mail: its start is a dozen short-lived processes
  // (runc, ip, iptables) to wait for, time in which the zone list is read.
  const computeStarting = startCompute(platform, opts.compute, app.log).catch((err: unknown) => {
    app.log.error({ err: (err as Error).message }, 'compute fabric did not start; everything else runs');
    return undefined;
  });
  // A start that fails before the fabric is taken over below stops it again.
  const dropCompute = () => computeStarting.then((c) => c?.close()).catch(() => undefined);
  let dns: DnsService | undefined;
  if (!opts.dns) {
    // The platform's own zone and its DNSSEC key exist from the first start (the DNS service
    // declares it with its name servers when it runs).
    try {
      await ensurePlatformZone(platform);
    } catch (err) {
      await dropCompute();
      await app.close().catch(() => undefined);
      await platform.close();
      throw err;
    }
  }
  if (opts.dns) {
    try {
      dns = await startDnsService({
        ...opts.dns,
        platform,
        startAfter: serving,
        onError: (err) => app.log.warn({ err }, 'dns error'),
        onMeterError: (err, r) => app.log.error({ err: err.message, imvu: r.imvu, metrics: Object.fromEntries([...r.metrics].map(([k, v]) => [k, v.toString()])) }, 'usage report not recorded'),
      });
    } catch (err) {
      await dropCompute();
      await app.close().catch(() => undefined);
      await platform.close();
      throw err;
    }
    registerDnsMetrics(metrics.registry, dns);
  }
  // Loaded only when mail runs (the CLI keeps heavy imports lazy).
  // Mail the queue stores locally is mail in for the receiving IMVU, counted by the mail service's meter.
  const countIn: { meter?: MailService['meter'] } = {};
  const mailQueue = opts.mailOut
    ? (await import('../mail/queue/index.ts')).startMailOut(platform, {
        onLocalDelivered: (imvu, bytes) => {
          countIn.meter?.count(imvu, 'mail.messages', 1);
          countIn.meter?.count(imvu, 'mail.bytes_in', bytes);
        },
        ...opts.mailOut,
      })
    : undefined;
  let mail: MailService | undefined;
  if (opts.mail) {
    try {
      const { startMailService } = await import('../mail/smtp/service.ts');
      // Accepted submissions go to the durable queue (signed there); 250 waits until it is on disk.
      const queue = mailQueue;
      const enqueue = queue
        ? async (m: { imvu: string; identity: string; mailFrom: string; rcptTo: string[]; raw: NodeJS.ReadableStream }) => {
            const chunks: Buffer[] = [];
            for await (const c of m.raw) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
            await queue.enqueue({ imvu: m.imvu, identity: m.identity, mailFrom: m.mailFrom, rcptTo: m.rcptTo, raw: Buffer.concat(chunks) });
          }
        : undefined;
      mail = await startMailService({ ...opts.mail, platform, noise, ...(enqueue ? { enqueue } : {}), onError: (err) => app.log.warn({ err }, 'mail error') });
      countIn.meter = mail.meter;
    } catch (err) {
      await dropCompute();
      await dns?.close().catch(() => undefined);
      await app.close().catch(() => undefined);
      await platform.close();
      throw err;
    }
  }
  // DKIM rotations a creator asked for (`dkim.rotate`) advance on their own: the new selector signs
  // a record TTL after it was published, the old one goes after its retention (gate 17 times both).
  const dkimRotations = (await import('../mail/signing/rotate.ts')).startDkimScheduler(platform, {
    ...(opts.dkimRotationCheckMs !== undefined ? { intervalMs: opts.dkimRotationCheckMs } : {}),
    onStep: (step) => app.log.info({ step }, 'DKIM rotation step'),
    onError: (err) => app.log.warn({ err }, 'DKIM rotation step failed'),
  });
  // Ended periods are sealed by the platform itself, at start and then every minute.
  const closer = new PeriodCloser({
    store: platform.store,
    submit: (body) => platform.chokepoint.submit(platform.chokepoint.platformCommand('period.close', body)),
    ...(opts.closeCheckMs !== undefined ? { checkMs: opts.closeCheckMs } : {}),
    onError: (err) => app.log.error({ err: (err as Error)?.message ?? String(err) }, 'period close failed'),
  }).start(serving);
  const reads = new ReadVerifier(async (id) => {
    const row = await platform.store.get<{ name: string; role: string; public_key: string }>('SELECT name, role, public_key FROM identities WHERE id = ?', [id]);
    // The current key signs reads (after a rotation, the new one); a revoked identity reads nothing.
    if (row && (await platform.store.get("SELECT 1 AS x FROM retired_keys WHERE public_key = ? AND why = 'revoked'", [row.public_key]))) return undefined;
    return row ? { name: row.name, role: row.role, publicKey: row.public_key } : undefined;
  });
  platform.integrity.onAlarm((alarm) => {
    app.log.error({ alarm }, 'integrity alarm: projections changed behind the platform were rebuilt from the ledger');
    // Compiled zones and cached answers may hold what was served from the edited rows.
    dns?.server.view.invalidate();
  });
  platform.integrity.start(opts.integrityIntervalMs ?? DEFAULTS.integrityIntervalMs, (err) => app.log.error({ err }, 'integrity check failed'));
  platform.integrity.snapshotEveryEntries(opts.snapshotEvery ?? DEFAULTS.snapshotEvery, (err) => app.log.error({ err }, 'ledger snapshot failed'));
  // Exits: archives built in the background, then the exit's clock (src/imvu/exit/service.ts).
  const { ExitService } = await import('../imvu/exit/service.ts');
  const { mailPart, computePart } = await import('../imvu/exit/parts.ts');
  const exits = new ExitService({
    platform,
    // Mailboxes are read from the Maildirs on disk; the data volume is exported whether or not the fabric runs.
    parts: { mail: mailPart(platform), compute: computePart(platform) },
    checkpointNote: async (size) => (await servedCheckpoint({ platform, ...(witnesses ? { witnesses } : {}) }, size))?.note,
    ...(opts.exit?.confirmDays !== undefined ? { confirmDays: opts.exit.confirmDays } : {}),
    ...(opts.exit?.clockIntervalMs !== undefined ? { clockIntervalMs: opts.exit.clockIntervalMs } : {}),
    log: app.log,
  });
  platform.chokepoint.ledger.onCheckpoint(() => exits.poke());
  exits.start();
  for (const peer of opts.peers ?? []) {
    if (await platform.store.get('SELECT 1 AS x FROM peers WHERE origin = ? AND public_key = ?', [peer.origin, peer.publicKey])) continue;
    const r = await platform.chokepoint.submit(platform.chokepoint.platformCommand('platform.peer', peer));
    if (!r.allowed) app.log.warn({ peer, gates: r.gates.filter((g) => g.status === 'deny') }, 'peer platform not recorded');
  }
  const compute: ComputeService | undefined = await computeStarting;
  // The kernel's accounting of each workload, reported by the `compute` service identity (gate 6),
  // and the stop/start a snapshot rollback needs around the swap of the data volume.
  let computeMeter: import('../compute/metering/index.ts').ComputeMeter | undefined;
  let workloads: import('../compute/snapshots/index.ts').WorkloadControl | undefined;
  if (compute) {
    const svc = compute;
    const { CGROUP_ROOT } = await import('../compute/fabric/runc.ts');
    const { startComputeMeter } = await import('../compute/metering/index.ts');
    const cgroupPath = svc.driver.cgroupPath?.bind(svc.driver);
    computeMeter = await startComputeMeter({
      platform,
      cgroupPathOf: (imvu) => (cgroupPath ? `${CGROUP_ROOT}/cpuacct${cgroupPath(imvu)}` : undefined),
      imvus: async () => (await platform.store.all<{ imvu: string }>("SELECT w.imvu AS imvu FROM workloads w CROSS JOIN imvus i ON i.id = w.imvu WHERE i.status <> 'exited'")).map((r) => r.imvu),
      ...(opts.compute && opts.compute.meterIntervalMs !== undefined ? { intervalMs: opts.compute.meterIntervalMs } : {}),
      onError: (err) => app.log.warn({ err: err.message }, 'compute usage report not recorded'),
    });
    const stopped = new Set<string>();
    workloads = {
      stop: async (imvu) => {
        if ((await svc.driver.status(imvu)).state !== 'running') return;
        stopped.add(imvu);
        await svc.driver.stop(imvu);
      },
      start: async (imvu) => {
        if (stopped.delete(imvu)) await svc.driver.start(imvu);
      },
    };
  }
  let openapi: unknown;
  const ctx: ApiContext = {
    platform,
    metrics,
    noise,
    openapi: () => (openapi ??= openApiDocument(ROUTES, { version: VERSION })),
    ...(dns ? { dns: { address: dns.server.address, port: dns.server.port, xfr: dns.xfr, loading: () => !!dns.server.view.loading }, dnsServes: (size: number) => dns.server.view.caughtUp(size) } : {}),
    ...(opts.challenge ? { challenge: typeof opts.challenge === 'function' ? opts.challenge : challengeResolver(opts.challenge) } : {}),
    ...(witnesses ? { witnesses } : {}),
    ...(compute ? { compute } : {}),
    ...(workloads ? { workloads } : {}),
    ...(mail?.mx ? { mailServing: true } : {}),
  };

  // While closing, answer in-flight requests with `Connection: close` so that keep-alive clients
  // do not hold the shutdown open until their idle timeout.
  let stopping = false;
  app.addHook('onSend', async (_req, reply, payload) => {
    if (stopping) reply.header('connection', 'close');
    return payload;
  });
  app.addHook('onResponse', async (req, reply) => {
    metrics.request(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
  });
  // Per-source admission before the body is even parsed: a flood costs a map lookup, not a signature check.
  app.addHook('onRequest', async (req, reply) => {
    if (req.method === 'GET' || req.method === 'HEAD') return;
    const wait = perSource.take(req.ip);
    if (wait !== undefined) {
      ctx.metrics.unauthenticated(sourcePrefix(req.ip), 'rate-limited');
      return reply
        .code(429)
        .header('retry-after', String(Math.ceil(wait / 1000)))
        .send({ error: `too many submissions from ${req.ip}; retry in ${Math.ceil(wait / 1000)} s; nothing was recorded` });
    }
  });
  app.setErrorHandler(async (err: FastifyError, req, reply) => {
    const known = clientError(err, req.headers['content-type']);
    if (known) {
      if (err instanceof HttpError) reply.headers(err.headers);
      req.log.info({ status: known.status, reason: known.message }, 'request refused');
      if (known.status === 401 && req.method === 'GET') reply.header('accept-signature', ACCEPT_SIGNATURE);
      return reply.code(known.status).send({ error: known.message });
    }
    req.log.error({ err }, 'internal error');
    const error = req.method === 'GET' ? 'internal error (see the daemon log)' : 'internal error: nothing was recorded; the same signed command may be resubmitted';
    return reply.code(500).send({ error });
  });
  app.setNotFoundHandler(async (req, reply) => reply.code(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}` }));

  for (const route of ROUTES) {
    app.route({
      method: route.method,
      url: route.path,
      handler: async (req, reply) => {
        const params = route.params.safeParse(req.params ?? {});
        if (!params.success) throw new HttpError(400, `invalid path: ${formatZodError(params.error)}`);
        const query = route.query.safeParse(req.query ?? {});
        if (!query.success) throw new HttpError(400, `invalid query: ${formatZodError(query.error)}`);
        let reader: Reader | undefined;
        if (route.access === 'signed' || (route.access === 'metrics' && (ReadVerifier.isSigned(req) || !isLoopback(req.socket.remoteAddress)))) {
          const verify = reads.verify({ method: req.method, url: req.url, scheme: req.protocol, headers: req.headers });
          reader = await verify.catch((err: unknown) => {
            if (err instanceof ReadAuthError) metrics.readRefused(err.statusCode === 429 ? 'busy' : 'unauthenticated');
            throw err;
          });
          if (route.access === 'metrics' && reader.role !== 'admin' && reader.role !== 'platform') {
            metrics.readRefused('forbidden');
            throw new HttpError(403, `metrics are served to loopback peers and to admins; ${reader.name} is a ${reader.role}`);
          }
        }
        const out = await route.handle(ctx, { params: params.data, query: query.data, body: req.body, source: req.ip, host: req.hostname, ...(reader ? { reader } : {}) });
        if (out.log) req.log[out.log.level](out.log.fields, out.log.msg);
        reply.code(out.status ?? 200);
        if (out.headers) reply.headers(out.headers);
        if (out.contentType) reply.type(out.contentType);
        return out.body;
      },
    });
  }

  try {
    // A socket bound early only starts handing requests to the API now, once everything it
    // serves from has been checked (openDataDir) and started.
    if (opts.early) await app.ready();
    else await app.listen({ host: opts.host ?? DEFAULTS.host, port: opts.port ?? DEFAULTS.port });
  } catch (err) {
    await app.close().catch(() => undefined);
    await closer.close();
    await exits.close();
    await dkimRotations.close();
    await mailQueue?.close();
    await dns?.close().catch(() => undefined);
    await mail?.close().catch(() => undefined);
    await witnesses?.close();
    await platform.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : (opts.port ?? DEFAULTS.port);
  const host = opts.host ?? DEFAULTS.host;
  const scheme = opts.tls ? 'https' : 'http';
  const url = `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const listeners: Listener[] = [{ service: 'api', protocol: scheme, address: host, port }];
  if (dns) for (const protocol of ['udp', 'tcp'] as const) listeners.push({ service: 'dns', protocol, address: dns.server.address, port: dns.server.port });
  if (mail)
    for (const [service, l] of [['smtp', mail.mx], ['submission', mail.submission], ['smtps', mail.smtps]] as const)
      if (l) listeners.push({ service, protocol: 'tcp', address: l.address, port: l.port });
  let imap: ImapService | null = null;
  if (opts.imap) {
    const { startImapService } = await import('../mail/imap/service.ts');
    const imapHost = opts.imap.host ?? host;
    try {
      imap = await startImapService({
        platform,
        host: imapHost,
        port: opts.imap.port ?? null,
        tlsPort: opts.imap.tlsPort ?? null,
        ...(opts.tls ? { tls: { cert: opts.tls.cert, key: opts.tls.key } } : opts.mail && opts.mail.tls ? { tls: opts.mail.tls } : {}),
        ...(opts.mail ? { hostname: opts.mail.hostname } : {}),
        ...(opts.imap.authenticate ? { authenticate: opts.imap.authenticate } : {}),
        ...(opts.imap.plaintextAuth ? { plaintextAuth: true } : {}),
        ...(opts.imap.refusalIntervalMs !== undefined ? { refusalIntervalMs: opts.imap.refusalIntervalMs } : {}),
        ...(opts.imap.sampleMs !== undefined ? { sampleMs: opts.imap.sampleMs } : {}),
        ...(opts.imap.meterIntervalMs !== undefined ? { meterIntervalMs: opts.imap.meterIntervalMs } : {}),
        noise,
        log: (msg, fields) => app.log.warn(fields ?? {}, msg),
      });
    } catch (err) {
      await app.close().catch(() => undefined);
      await closer.close();
      await dns?.close().catch(() => undefined);
      await witnesses?.close();
      await platform.close();
      throw err;
    }
    if (imap.server.port !== null) listeners.push({ service: 'imap', protocol: 'imap', address: imapHost, port: imap.server.port });
    if (imap.server.tlsPort !== null) listeners.push({ service: 'imap', protocol: 'imaps', address: imapHost, port: imap.server.tlsPort });
  }
  ctx.daemon = { version: VERSION, pid: process.pid, dataDir: opts.dataDir, startedAt: new Date().toISOString(), listeners, tls: !!opts.tls } satisfies DaemonInfo;
  // At most one entry per interval for all the anonymous noise, whatever its volume.
  const summarise = async () => {
    const s = noise.drain();
    if (!s) return;
    try {
      const r = await platform.chokepoint.submit(platform.chokepoint.platformCommand('noise.summary', { from: s.from, to: s.to, counts: s.counts.map((c) => ({ ...c })) }));
      app.log.info({ index: r.index, sources: s.counts.length, attempts: s.counts.reduce((n, c) => n + c.count, 0) }, 'refused anonymous attempts summarised');
    } catch (err) {
      app.log.error({ err }, 'noise summary not recorded');
    }
  };
  const noiseTimer = setInterval(() => void summarise(), opts.noiseIntervalMs ?? LIMIT_DEFAULTS.noiseIntervalMs);
  noiseTimer.unref();
  let gateway: Gateway | undefined;
  if (opts.gateway) gateway = await startGateway(platform, opts.gateway, app.log, dns ? { address: dns.server.address, port: dns.server.port } : undefined);
  if (gateway) {
    listeners.push({ service: 'gateway', protocol: 'https', address: opts.gateway ? opts.gateway.address : host, port: opts.gateway ? opts.gateway.port : 0 });
    ctx.gateway = gateway;
  }
  // Everything is started: the requests that waited on an early-bound socket are answered now.
  opts.early?.open();
  markServing();
  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    dataDir: opts.dataDir,
    log: app.log,
    store: platform.store,
    ...(dns ? { dns } : {}),
    ...(mail ? { mail } : {}),
    ...(witnesses ? { witnesses } : {}),
    ...(mailQueue ? { mailQueue } : {}),
    ...(imap ? { imap } : {}),
    ...(compute ? { compute } : {}),
    ...(gateway ? { gateway } : {}),
    closer,
    status: () => daemonStatus(ctx, true),
    recordSnapshot: () => platform.integrity.recordSnapshot(),
    close: () =>
      (closing ??= (async () => {
        stopping = true;
        try {
          await closer.close();
          await exits.close();
          await dkimRotations.close();
          // Deliveries under way finish and their state is saved; what is queued waits on disk.
          await mailQueue?.close();
          await imap?.close();
          // The gateway stops with the daemon; its last byte counts are reported first.
          await gateway?.stop().catch((err: unknown) => app.log.error({ err }, 'gateway stop failed'));
          // DNS first: its sockets close, then the counts left are flushed into the ledger.
          if (dns) {
            const last = await dns.close();
            if (last.reported.length) app.log.info({ reports: last.reported.length }, 'final usage reports recorded');
          }
          if (mail) await mail.close();
          await app.close();
          // Fastify closes a socket it did not bind only if it listened on it.
          if (opts.early) {
            opts.early.closeIdle();
            await opts.early.close();
          }
          clearInterval(noiseTimer);
          await summarise();
        } finally {
          await witnesses?.close().catch(() => undefined);
          await computeMeter?.close().catch(() => undefined);
          // Workloads keep running: the next start adopts them (runc state).
          await compute?.close().catch(() => undefined);
          await platform.close();
        }
      })()),
  };
}

export interface ServeOptions extends ConfigOptions {
  /** Initialise the data directory if it is not one yet (default true). */
  init?: boolean;
  /** Install SIGTERM/SIGINT handlers that shut down gracefully and exit (default true). */
  signals?: boolean;
  /** IMAP with STARTTLS (env NEXUS_IMAP_PORT) and implicit TLS (env NEXUS_IMAPS_PORT); off unless given. */
  imapPort?: number;
  imapsPort?: number;
  /** The MX (env NEXUS_SMTP_PORT), submission with STARTTLS (NEXUS_SUBMISSION_PORT) and with implicit TLS (NEXUS_SMTPS_PORT); off unless one is given. */
  smtpPort?: number;
  submissionPort?: number;
  smtpsPort?: number;
  /** false (`--no-mail`, env NEXUS_MAIL=false): no mail listeners on the default ports of root. */
  mail?: boolean;
  /**
   * The data directory's lock and the API's socket, taken by `nexus serve` before it loads this
   * module (loading the whole daemon takes seconds on a busy machine): /health answers from then on.
   */
  prebound?: { lock: DataDirLock; early: EarlyListener };
}

/** The well-known mail ports a daemon run as root serves when none is given. */
export const ROOT_MAIL_PORTS = { smtp: 25, submission: 587, smtps: 465, imap: 143, imaps: 993 } as const;

function rootMailDefaults(opts: ServeOptions, env: NodeJS.ProcessEnv, root: boolean): boolean {
  return root && opts.mail !== false && env.NEXUS_MAIL !== 'false';
}

const isRoot = (): boolean => process.getuid?.() === 0;

function portOf(v: number | string | undefined, name: string): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = typeof v === 'number' ? v : /^\d{1,5}$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError(`${name}: not a port: ${v}`);
  return n;
}

/**
 * The SMTP ports of `serve()`: flags, else the environment; with none given, root serves the MX on
 * 25 and submission on 587 and 465 (unless `--no-mail`), anyone else no MX and no submission.
 */
export function smtpPorts(opts: ServeOptions, env: NodeJS.ProcessEnv = process.env, root = isRoot()): { smtpPort: number | null; submissionPort: number | null; smtpsPort: number | null } | null {
  const smtpPort = portOf(opts.smtpPort ?? env.NEXUS_SMTP_PORT, 'NEXUS_SMTP_PORT') ?? null;
  const submissionPort = portOf(opts.submissionPort ?? env.NEXUS_SUBMISSION_PORT, 'NEXUS_SUBMISSION_PORT') ?? null;
  const smtpsPort = portOf(opts.smtpsPort ?? env.NEXUS_SMTPS_PORT, 'NEXUS_SMTPS_PORT') ?? null;
  if (smtpPort === null && submissionPort === null && smtpsPort === null) {
    if (!rootMailDefaults(opts, env, root)) return null;
    return { smtpPort: ROOT_MAIL_PORTS.smtp, submissionPort: ROOT_MAIL_PORTS.submission, smtpsPort: ROOT_MAIL_PORTS.smtps };
  }
  return { smtpPort, submissionPort, smtpsPort };
}

/** The IMAP ports of `serve()`: flags, else the environment; with none given, root serves 143 and 993 (unless `--no-mail`), anyone else no IMAP. */
export function imapPorts(opts: ServeOptions, env: NodeJS.ProcessEnv = process.env, root = isRoot()): { port?: number; tlsPort?: number } | null {
  const parse = portOf;
  const port = parse(opts.imapPort ?? env.NEXUS_IMAP_PORT, 'NEXUS_IMAP_PORT');
  const tlsPort = parse(opts.imapsPort ?? env.NEXUS_IMAPS_PORT, 'NEXUS_IMAPS_PORT');
  if (port === undefined && tlsPort === undefined) return rootMailDefaults(opts, env, root) ? { port: ROOT_MAIL_PORTS.imap, tlsPort: ROOT_MAIL_PORTS.imaps } : null;
  return { ...(port !== undefined ? { port } : {}), ...(tlsPort !== undefined ? { tlsPort } : {}) };
}

/** What `nexus serve` runs. Throws ConfigError (one line) on bad configuration. */
export async function serve(opts: ServeOptions = {}): Promise<RunningServer> {
  const cfg = resolveConfig(opts);
  // Plain HTTP where other hosts can reach it: refused unless the operator insists (then warned).
  const exposed = exposureWarning(cfg);
  if (exposed && !cfg.insecureHttp)
    throw new ConfigError(`refusing to start: ${exposed}. Give a certificate (--tls-cert FILE --tls-key FILE), bind 127.0.0.1, or accept the risk with --insecure-http`);
  if (!isInitialised(cfg.dataDir) && opts.init === false) throw new Error(`${cfg.dataDir} is not a nexus data directory (run \`nexus init --data ${cfg.dataDir}\`)`);
  // One daemon per data directory, first-run initialisation included; released by close() or by
  // the kernel when the process dies.
  const lock = opts.prebound?.lock ?? lockDataDir(cfg.dataDir);
  // On a terminal: readable log lines and a banner; otherwise JSON lines (journald, files, pipes).
  const terminal = cfg.logFormat === 'pretty' || (cfg.logFormat === 'auto' && process.stdout.isTTY === true);
  let server: RunningServer;
  let initialised = false;
  // The API's socket first: /health says "verifying" while the data directory is checked, however
  // long that takes (src/api/early.ts).
  let early: EarlyListener;
  try {
    early = opts.prebound?.early ?? (await EarlyListener.listen({ host: cfg.host, port: cfg.port, ...(cfg.tls ? { tls: { cert: cfg.tls.cert, key: cfg.tls.key } } : {}) }));
  } catch (err) {
    lock.release();
    throw err;
  }
  try {
    if (!isInitialised(cfg.dataDir)) {
      await (await initDataDir(cfg.dataDir, { suffix: cfg.suffix, plan: cfg.plan })).close();
      initialised = true;
    }
    server = await startDaemonServer(cfg, terminal, imapPorts(opts), smtpPorts(opts), early);
  } catch (err) {
    await early.fail((err as Error).message?.split('\n')[0] ?? String(err)).catch(() => undefined);
    lock.release();
    throw err;
  }
  lock.advertise(server.url);
  const closeServer = server.close;
  server.close = () => closeServer().finally(() => lock.release());
  // The TSIG key by name only: the secret is never logged.
  const dns = server.dns ? { address: server.dns.server.address, port: server.dns.server.port, udp: server.dns.server.udp, meterIntervalMs: cfg.meterIntervalMs, xfr: server.dns.xfr } : null;
  const witnesses = cfg.witnesses.map((w) => w.url);
  server.log.info({ url: server.url, dns, witnesses, dataDir: cfg.dataDir, initialised, configFile: cfg.configFile ?? null, pid: process.pid, tls: !!cfg.tls }, 'nexus daemon listening');
  if (exposed) {
    server.log.warn({ host: cfg.host, port: server.port }, `--insecure-http: ${exposed}`);
    process.stderr.write(`nexus: WARNING: ${exposed} (--insecure-http)\n`);
  }
  if (terminal) {
    const lines = formatStatus(await server.status(), server.url, [['stop', `Ctrl-C, or \`nexus stop --data ${cfg.dataDir}\``]]);
    process.stdout.write(`\nnexus daemon\n${lines.map((l) => `  ${l}`).join('\n')}\n\n`);
  }
  if (opts.signals !== false) {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        server.log.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      server.log.info({ signal }, 'shutting down: no new requests; commands in flight will commit');
      server.close().then(
        () => {
          server.log.info('store closed; bye');
          process.exit(0);
        },
        (err: unknown) => {
          server.log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  }
  return server;
}

/** Starts the gateway, or says in one line why it is off; never stops the daemon from starting. */
async function startGateway(
  platform: OpenPlatform,
  g: NonNullable<Exclude<ServerOptions['gateway'], false>>,
  log: FastifyBaseLogger,
  dns: { address: string; port: number } | undefined,
): Promise<Gateway | undefined> {
  const { Gateway: GatewayClass } = await import('../network/gateway/gateway.ts');
  const { findHaproxy } = await import('../network/gateway/haproxy.ts');
  const { gatewayIdentity } = await import('../network/metering/counters.ts');
  if (!findHaproxy(g.haproxyBin)) {
    log.warn('gateway off: haproxy is not installed (apt-get install haproxy)');
    return undefined;
  }
  const host = g.address.includes(':') ? `[${g.address}]` : g.address;
  let gw: Gateway | undefined;
  try {
    const id = await gatewayIdentity(platform);
    // As root, HAProxy binds 443/80 and then runs as nobody.
    const root = process.getuid?.() === 0;
    gw = new GatewayClass({
      platform,
      httpsBind: `${host}:${g.port}`,
      httpBind: `${host}:${g.httpPort}`,
      ...(g.haproxyBin ? { haproxyBin: g.haproxyBin } : {}),
      ...(g.range ? { range: g.range } : {}),
      ...(g.region ? { region: g.region } : {}),
      ...(g.checkIntervalMs ? { checkIntervalMs: g.checkIntervalMs } : {}),
      ...(root ? { user: 'nobody', group: 'nogroup' } : {}),
      // DNS-01 challenges are answered by this daemon's DNS server: wait until it serves them.
      ...(g.acme ? { acme: { ...g.acme, ...(dns && !g.acme.dns ? { dns: { address: dns.address === '0.0.0.0' ? '127.0.0.1' : dns.address === '::' ? '::1' : dns.address, port: dns.port } } : {}) } } : {}),
      meter: { key: id.key, ...(g.meterIntervalMs ? { intervalMs: g.meterIntervalMs } : {}) },
      log: (line) => log.warn(line),
    });
    await gw.start();
    log.info({ https: `${host}:${g.port}`, http: `${host}:${g.httpPort}`, pid: gw.haproxyPid, certificates: g.acme ? g.acme.directory : 'local CA' }, 'gateway (haproxy) running');
    return gw;
  } catch (err) {
    await gw?.stop().catch(() => undefined);
    log.warn(`gateway off: ${(err as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

async function startDaemonServer(
  cfg: NexusConfig,
  terminal: boolean,
  imap: { port?: number; tlsPort?: number } | null,
  smtp: { smtpPort: number | null; submissionPort: number | null; smtpsPort: number | null } | null,
  early: EarlyListener,
): Promise<RunningServer> {
  // Zone transfers only when configured (an allow-list, a TSIG key or secondaries to notify).
  const xfr = xfrOptions(cfg);
  // pino-pretty, as a stream in this thread (no worker), loaded only for a terminal.
  const logStream = terminal ? (await import('pino-pretty')).default({ sync: true, colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname' }) : undefined;
  return startServer({
    dataDir: cfg.dataDir,
    early,
    ...(logStream ? { logStream } : {}),
    ...(cfg.tls ? { tls: { cert: cfg.tls.cert, key: cfg.tls.key } } : {}),
    host: cfg.host,
    port: cfg.port,
    logLevel: cfg.logLevel,
    integrityIntervalMs: cfg.integrityIntervalMs,
    snapshotEvery: cfg.snapshotEvery,
    keyPool: cfg.keyPool,
    compute: { range: cfg.computeRange, meterIntervalMs: cfg.meterIntervalMs },
    ...(cfg.witnesses.length ? { witnesses: { endpoints: cfg.witnesses.map((w) => ({ ...w })), timeoutMs: cfg.witnessTimeoutMs } } : {}),
    gateway: cfg.gateway
      ? {
          address: cfg.gatewayAddress,
          port: cfg.gatewayPort,
          httpPort: cfg.gatewayHttpPort,
          meterIntervalMs: cfg.meterIntervalMs,
          range: cfg.computeRange,
          ...(cfg.gatewayRegion ? { region: cfg.gatewayRegion } : {}),
          ...(cfg.acme
            ? { acme: { directory: cfg.acme.directory, ...(cfg.acme.caCert ? { caCert: cfg.acme.caCert } : {}), renewBeforeMs: cfg.acme.renewBeforeDays * 86_400_000, challenge: cfg.acme.challenge } }
            : {}),
        }
      : false,
    dns: cfg.dns
      ? { address: cfg.dnsAddress, port: cfg.dnsPort, dnssecDenial: cfg.dnssecDenial, meterIntervalMs: cfg.meterIntervalMs, nameservers: cfg.nameservers, ...(xfr ? { xfr } : {}) }
      : false,
    // Servers learned from referrals are asked on the first hint's port (53 unless a test hierarchy says otherwise).
    challenge: { rootHints: cfg.rootHints.map((h) => ({ name: h.address, ...h })), upstreamPort: cfg.rootHints[0]!.port },
    // MX look-ups from the same root hints; remote MTAs on the relay port (25 unless a test says otherwise).
    mailOut: { rootHints: cfg.rootHints.map((h) => ({ name: h.address, ...h })), upstreamPort: cfg.rootHints[0]!.port, relayPort: cfg.mailRelayPort, hostname: `mail.${cfg.suffix}` },
    ...(imap ? { imap: { ...imap, meterIntervalMs: cfg.meterIntervalMs } } : {}),
    // The MX and submission (inbound SPF/DKIM/DMARC looked up from the same root hints).
    ...(smtp
      ? {
          mail: {
            hostname: `mail.${cfg.suffix}`,
            address: cfg.host,
            ...smtp,
            ...(cfg.tls ? { tls: { cert: cfg.tls.cert, key: cfg.tls.key } } : {}),
            resolver: { rootHints: cfg.rootHints.map((h) => ({ name: h.address, ...h })), upstreamPort: cfg.rootHints[0]!.port },
            meterIntervalMs: cfg.meterIntervalMs,
          },
        }
      : {}),
  });
}
