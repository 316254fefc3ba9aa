// The gateway: nexus drives HAProxy (the data plane) from the ledger. It renders the base
// configuration (one backend per IMVU, pinned to its workload address, and spare backends for the
// IMVUs created next, so a new IMVU needs no reload), keeps hosts, routes and
// roles in map files changed over the runtime API without reloads (by IMVU: a change reads and
// rewrites the lines of the IMVUs the new entries name), and after every ledger change
// and on a timer reads the served maps back: a served table that differs from the ledger's (a map
// edited by hand over the socket) is reverted and raised as an `integrity.alarm` (gate 14).
// It also meters bytes per IMVU from HAProxy's per-backend counters (gate 6).
import { createSocket, type Socket } from 'node:dgram';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate, type KeyObject } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { OpenPlatform } from '../../core/platform.ts';
import type { SignedCommand } from '../../core/types.ts';
import { ensureLocalCa, ensureTokenKey, issueLocal, type LocalCa } from './certs.ts';
import { renderConfig, type HaproxyLayout, type SourceLimit } from './haproxy-config.ts';
import { HaproxySupervisor, findHaproxy } from './haproxy.ts';
import { MAP_PAYLOAD_BYTES, parseGetMap, parseInfo, parseMapCounts, parseServersState, parseShowMap, parseStat, payloads, runtimeCommand } from './runtime.ts';
import { assembleTable, lastImvuSeq, loadParts, mapDelta, mapText, touchedImvus, MAP_NAMES, type GatewayTable, type ImvuLimits, type ImvuPart, type MapDelta, type MapName, type TableImvu } from './table.ts';
import { decodeEntry } from '../../core/ledger/ledger.ts';
import { GatewayMeter } from '../metering/counters.ts';
import { AcmeManager, LOCAL_CA_DIRECTORY, ledgerCertificate, removeStaleChallenges, type AcmeSettings } from '../acme/manager.ts';
import { certificateFacts, type HttpChallenge } from '../acme/order.ts';
import { checkRegion } from './geo.ts';
import { rangeCapacity, workloadNet } from '../../compute/fabric/addresses.ts';
import { imvuIdOf } from '../../core/policy/naming.ts';

/** The projections the routing table is made of (table.ts loadParts). */
const TABLE_SOURCES = ['imvus', 'routes', 'envelopes', 'domains'] as const;

/** More new entries than this since the table was read: it is read whole again instead of by IMVU. */
const MAX_DELTA_ENTRIES = 20_000;
/** More IMVUs touched than this: the table is read whole again (and the maps replaced whole). */
const MAX_DELTA_IMVUS = 1_000;

export interface GatewayOptions {
  platform: OpenPlatform;
  /** Directory of the gateway's files (default <dataDir>/gateway). */
  dir?: string;
  /** HTTPS listener, address:port (443 as root in production). */
  httpsBind: string;
  /** Plain-HTTP listener redirecting to HTTPS (80 in production); none when absent. */
  httpBind?: string;
  /** The port clients reach HTTPS on, for redirects (default: the listener's). */
  httpsPort?: number;
  /** The compute range the workload addresses are taken from (default 10.96.0.0/11). */
  range?: string;
  haproxyBin?: string;
  /** How often the served table is compared with the ledger (default 30 s). */
  checkIntervalMs?: number;
  /**
   * Served certificates one check reads back at most (default CERTIFICATE_CHECK_BATCH): past that
   * many IMVUs, each check takes the next ones in turn, so a whole round takes several checks.
   */
  certificateCheckBatch?: number;
  /**
   * Served map lines (every map together) up to which each check reads the maps back whole (default
   * WHOLE_CHECK_LINES). Beyond, a check compares each map's line count and looks up the lines of
   * `lineCheckBatch` IMVUs, the next ones in turn, and reads the maps whole only when one differs.
   */
  wholeCheckLines?: number;
  /** IMVUs whose lines one check looks up beyond `wholeCheckLines` (default CERTIFICATE_CHECK_BATCH). */
  lineCheckBatch?: number;
  /** How often the ledger is polled for changes (default 500 ms). */
  pollMs?: number;
  /**
   * Backends rendered for IMVUs not created yet (default `spareBackendsFor`): each new IMVU that
   * finds one is served without a reload; when they run out, the next new IMVU reloads HAProxy
   * and renders as many again.
   */
  spareBackends?: number;
  /** How often refusals are summarised into one ledger entry (default 60 s). */
  refusalIntervalMs?: number;
  /**
   * This gateway node's region (`nexus serve --region`), e.g. eu-west: private and restricted
   * routes of IMVUs whose jurisdiction keeps data in other areas are refused here (geo.ts).
   */
  region?: string;
  /** Per-IMVU limits per envelope CPU core (default table.ts: IMVU_REQUESTS_PER_CORE_S, IMVU_CONNECTIONS_PER_CORE). */
  imvuLimits?: ImvuLimits;
  /** Requests one client address may start per window (default haproxy-config.ts SOURCE_LIMIT). */
  sourceLimit?: SourceLimit;
  user?: string;
  group?: string;
  /**
   * Certificates from this ACME CA (DNS-01 through our DNS, src/network/acme); none: the platform's
   * local CA issues them (everything works offline).
   */
  acme?: AcmeSettings;
  /** Signs and submits metering reports; none: no metering. */
  meter?: { key: KeyObject; intervalMs?: number };
  log?: (line: string) => void;
}

export interface ServedReport {
  at: string;
  /** True when every served map equals the ledger's table. */
  equal: boolean;
  /** Per map: lines served that the ledger lacks, and lines the ledger has that are not served. */
  differences: { map: MapName; extra: string[]; missing: string[] }[];
}

/** One IMVU's certificate: as HAProxy serves it and as the ledger recorded it. */
export interface ServedCertificate {
  imvu: string;
  names: string[];
  served: { serial: string; sha1: string; notAfter: string; issuer: string } | undefined;
  ledger: { serial: string; sha256: string; notAfter: string; issuer: string; directory: string; entry: number } | undefined;
  /** The certificate file HAProxy loads holds the ledger's certificate. */
  fileIsLedger: boolean;
  /** HAProxy serves the ledger's certificate. */
  equal: boolean;
}

/** `show ssl cert FILE` (HAProxy 2.6): serial (lower-case hex, no leading zeros), SHA-1, notAfter (ISO), issuer. */
export function parseShowSslCert(text: string): ServedCertificate['served'] {
  const field = (name: string) => new RegExp(`^${name}: (.*)$`, 'm').exec(text)?.[1]?.trim();
  const serial = field('Serial');
  const sha1 = field('SHA1 FingerPrint');
  const notAfter = field('notAfter');
  if (!serial || !sha1 || !notAfter) return undefined;
  const at = new Date(notAfter);
  return {
    serial: serial.toLowerCase().replace(/^0+(?=.)/, ''),
    sha1: sha1.toLowerCase(),
    notAfter: Number.isNaN(at.getTime()) ? notAfter : at.toISOString(),
    issuer: field('Issuer') ?? '',
  };
}

/**
 * Served certificates one periodic check reads back (one runtime API command each): every one on a
 * platform up to this size, in turn beyond it (a round of 100,000 IMVUs is 100 checks, 50 minutes
 * at the default interval) instead of 100,000 commands every 30 s.
 */
export const CERTIFICATE_CHECK_BATCH = 1000;

/**
 * Served map lines up to which each periodic check reads every map back whole (about 14,000 IMVUs
 * with the default routes; 143 ms at 10,000, bench/gateway/scale.ts). A whole read at 100,000 IMVUs is 600,000 lines and 28 MB over the
 * runtime API every 30 s, and HAProxy's answer to one `show map` has a size limit of ours
 * (runtime.ts) that the prefix map passes at about 140,000 IMVUs.
 */
export const WHOLE_CHECK_LINES = 100_000;

export interface GatewayAlarm {
  index: number;
  imvus: string[];
  detail: string;
}

export class Gateway {
  readonly layout: HaproxyLayout;
  readonly tokenKey: KeyObject;
  readonly tokenPublicPem: string;
  private readonly ca: LocalCa;
  private readonly sup: HaproxySupervisor;
  /** Every served IMVU's share of the table, in seq order; undefined until the first read. */
  private parts: Map<string, ImvuPart> | undefined;
  /** The whole table assembled from `parts` (dropped when a part changes, assembled again when asked for). */
  private assembled: GatewayTable | undefined;
  /** The ledger size the parts were read at: entries after it say which IMVUs to read again. */
  private appliedSize = 0;
  /** The integrity repairs counted when the table was last read whole (one since: rows read by IMVU may have been edited ones). */
  private appliedRepairs = 0;
  /** The map files lag the served maps (changed by IMVU over the runtime API): written at the next check, before any reload. */
  private filesDirty = false;
  private imvuSet = '';
  /** The backends of the configuration HAProxy runs (IMVU id -> workload address): the table's IMVUs when it was rendered, and the spares. */
  private backends = new Map<string, string>();
  /** Reloads of HAProxy by this gateway (a new IMVU without a spare backend, a renamed or moved one on the whole path). */
  reloads = 0;
  /** sourcesKey() when the table served was read. */
  private appliedKey: string | undefined;
  private timers: NodeJS.Timeout[] = [];
  /** Where the next periodic check's certificates start in the table's IMVUs. */
  private certCursor = 0;
  /** Where the next periodic check's backend servers start in the table's IMVUs. */
  private backendCursor = 0;
  /** Where the next check's line lookups start in the table's IMVUs (beyond `wholeCheckLines`). */
  private lineCursor = 0;
  private busy: Promise<unknown> = Promise.resolve();
  private logSock: Socket | undefined;
  readonly alarms: GatewayAlarm[] = [];
  lastServed: ServedReport | undefined;
  /** The certificates the last check read back (every IMVU's, or its turn's beyond `certificateCheckBatch`). */
  lastCertificates: ServedCertificate[] | undefined;
  readonly meter: GatewayMeter | undefined;
  /** The ACME certificates, when an ACME directory is configured. */
  readonly acme: AcmeManager | undefined;
  /** Refusals seen in HAProxy's log: `imvu route status reason` -> count, since the last drain. */
  readonly refusals = new Map<string, number>();
  /** Refusals counted from the log, and those recorded in the ledger (equal once all are summarised). */
  refusalsSeen = 0;
  refusalsRecorded = 0;
  /** Every line HAProxy sent to the log stream (refusals and errors only: served requests are not logged). */
  logLines = 0;
  logPort = 0;

  constructor(private readonly o: GatewayOptions) {
    if (o.region !== undefined) checkRegion(o.region);
    const dir = o.dir ?? join(o.platform.dataDir, 'gateway');
    mkdirSync(join(dir, 'maps'), { recursive: true, mode: 0o700 });
    mkdirSync(join(dir, 'certs'), { recursive: true, mode: 0o700 });
    const maps = Object.fromEntries(MAP_NAMES.map((m) => [m, join(dir, 'maps', `${m}.map`)])) as HaproxyLayout['maps'];
    const token = ensureTokenKey(join(dir, 'keys'));
    this.tokenKey = token.key;
    this.tokenPublicPem = token.publicPem;
    this.layout = {
      dir,
      adminSocket: join(dir, 'admin.sock'),
      masterSocket: join(dir, 'master.sock'),
      logSocket: '',
      crtList: join(dir, 'crt-list'),
      jwtKey: token.publicPem,
      maps,
      acmeMap: join(dir, 'maps', 'acme-http01.map'),
    };
    this.ca = ensureLocalCa(join(dir, 'ca'));
    const bin = findHaproxy(o.haproxyBin);
    if (!bin) throw new Error('haproxy is not installed');
    this.sup = new HaproxySupervisor({
      bin,
      config: join(dir, 'haproxy.cfg'),
      masterSocket: this.layout.masterSocket,
      adminSocket: this.layout.adminSocket,
      log: (l) => o.log?.(l),
      // A restarted HAProxy reads the files, which are the ledger's (once brought up to date): check anyway.
      onRestart: () => void this.serialize(() => this.afterRestart()),
    });
    if (o.acme)
      this.acme = new AcmeManager({
        ...o.acme,
        platform: o.platform,
        accountKeyFile: join(dir, 'keys', 'acme-account.key'),
        certFile: (imvu) => this.certFile(imvu),
        install: (imvu, pem) => this.serialize(() => this.installCert(imvu, pem)),
        http: {
          publish: (c) => this.serialize(() => this.acmeTokensSet(c, true)),
          remove: (c) => this.serialize(() => this.acmeTokensSet(c, false)),
          served: (c) => this.acmeTokensServed(c),
        },
        ...(o.log ? { log: o.log } : {}),
      });
    if (o.meter)
      this.meter = new GatewayMeter({
        platform: o.platform,
        key: o.meter.key,
        stateFile: join(dir, 'meter-state.json'),
        read: () => this.readCounters(),
        onError: (e) => o.log?.(`gateway metering: ${e.message}`),
        ...(o.meter.intervalMs ? { intervalMs: o.meter.intervalMs } : {}),
      });
  }

  get caCert(): string {
    return this.ca.cert;
  }

  get haproxyPid(): number | undefined {
    return this.sup.pid;
  }

  get restarts(): number {
    return this.sup.restarts;
  }

  /** The whole table the gateway serves (assembled from the IMVUs' parts when one changed). */
  private get table(): GatewayTable | undefined {
    if (!this.parts) return undefined;
    return (this.assembled ??= assembleTable(this.parts.values()));
  }

  async start(): Promise<void> {
    await this.listenLog();
    const size = this.o.platform.chokepoint.ledger.size;
    const repairs = this.o.platform.integrity.repairs;
    this.appliedKey = this.sourcesKey();
    const parts = await this.readParts();
    const table = assembleTable(parts.values());
    const backends = await this.writeFiles(table);
    await this.recordLocalCertificates(table.imvus);
    await this.sup.start();
    this.backends = backends;
    this.setParts(parts, table, size, repairs);
    this.imvuSet = imvuKey(table);
    await this.check();
    this.timers.push(setInterval(() => void this.serialize(() => this.poll()).catch((e: unknown) => this.o.log?.(`gateway sync: ${(e as Error).message}`)), this.o.pollMs ?? 500));
    this.timers.push(setInterval(() => void this.summariseRefusals().catch((e: unknown) => this.o.log?.(`gateway refusals: ${(e as Error).message}`)), this.o.refusalIntervalMs ?? 60_000));
    this.timers.push(setInterval(() => void this.serialize(() => this.check()).catch((e: unknown) => this.o.log?.(`gateway check: ${(e as Error).message}`)), this.o.checkIntervalMs ?? 30_000));
    if (this.acme) this.timers.push(setInterval(() => this.renewCertificates(), this.o.acme?.checkIntervalMs ?? 3_600_000));
    for (const t of this.timers) t.unref();
    await this.meter?.start();
    // A daemon killed mid-order left its DNS-01 records in the zone: no order of this process
    // published them, so they are removed before any new order starts (with or without a CA now).
    await removeStaleChallenges(this.o.platform, this.acme?.live, this.o.log).catch((e: unknown) => this.o.log?.(`acme: stale challenges: ${(e as Error).message}`));
    this.renewCertificates();
  }

  /** Orders and renews ACME certificates in the background (the timer, start, and every change of the table). */
  renewCertificates(): Promise<void> {
    if (!this.acme || !this.table) return Promise.resolve();
    return this.acme.ensure(this.table.imvus).catch((e: unknown) => this.o.log?.(`acme: ${(e as Error).message}`));
  }

  certFile(imvu: string): string {
    return join(this.layout.dir, 'certs', `${imvu}.pem`);
  }

  /**
   * Writes an IMVU's certificate (chain and key, one PEM) and hands it to the running HAProxy over
   * the runtime API (`set ssl cert` + `commit ssl cert`): served from the next handshake, no reload.
   */
  private async installCert(imvu: string, pem: string): Promise<void> {
    const file = this.certFile(imvu);
    if (!existsSync(file) || readFileSync(file, 'utf8') !== pem) {
      writeFileSync(`${file}.tmp`, pem, { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
    }
    // A transaction left open on this file (by hand over the socket) would otherwise be committed with ours.
    await this.cmd(`abort ssl cert ${file}`);
    const set = await this.cmd(`set ssl cert ${file}`, pem);
    // Not loaded yet (an IMVU newer than the running configuration): the next reload reads the file.
    if (/unknown|not found|does not exist/i.test(set) && !/Transaction/i.test(set)) return;
    if (!/Transaction (created|updated)/i.test(set)) throw new Error(`haproxy set ssl cert: ${set.trim()}`);
    const commit = await this.cmd(`commit ssl cert ${file}`);
    if (!/Success/i.test(commit)) throw new Error(`haproxy commit ssl cert: ${commit.trim()}`);
  }

  /**
   * Records in the ledger (`certificate.issued`, as the platform) each certificate of the local CA
   * that an IMVU's file holds and the ledger does not: issued just now by writeFiles (new IMVU, new
   * names), or before such issuances were recorded. Called before HAProxy loads the files, so a
   * certificate is in the ledger before it is served, whichever CA issued it.
   */
  private async recordLocalCertificates(imvus: readonly TableImvu[]): Promise<void> {
    const { platform } = this.o;
    const ca = new X509Certificate(readFileSync(this.ca.cert));
    for (const i of imvus) {
      const file = this.certFile(i.id);
      if (!existsSync(file)) continue;
      const pem = readFileSync(file, 'utf8');
      const leaf = new X509Certificate(pem);
      if (!leaf.checkIssued(ca)) continue;
      const facts = certificateFacts(pem);
      const row = await ledgerCertificate(platform, i.id);
      if (row?.sha256 === facts.sha256) continue;
      const body = { imvu: i.id, names: facts.names, serial: facts.serial, sha256: facts.sha256, notBefore: facts.notBefore, notAfter: facts.notAfter, issuer: facts.issuer, directory: LOCAL_CA_DIRECTORY };
      const r = await platform.chokepoint.submit(platform.chokepoint.platformCommand('certificate.issued', body));
      if (r.allowed) this.o.log?.(`gateway: ${i.id}: local CA certificate ${facts.serial} until ${facts.notAfter} recorded (entry ${r.index})`);
      else this.o.log?.(`gateway: ${i.id}: certificate.issued for the local CA certificate denied: ${r.gates.filter((g) => g.status === 'deny').map((g) => `gate ${g.gate}: ${g.reason}`).join('; ')}`);
    }
  }

  /**
   * Per IMVU (those of `only`, or every one): the certificate HAProxy serves, read back over the
   * runtime API (`show ssl cert`: serial, SHA-1 fingerprint, notAfter), next to the ledger's
   * `certificate.issued`. HAProxy 2.6 shows no SHA-256, so the served SHA-1 is compared with the
   * SHA-1 of the certificate file whose SHA-256 is the ledger's: `equal` only when serial, notAfter
   * and fingerprint all agree. One command and one ledger row per IMVU asked about: a creator's
   * view asks about its own IMVU only.
   */
  async servedCertificates(only?: readonly string[]): Promise<ServedCertificate[]> {
    const all = this.table?.imvus ?? [];
    const wanted = only && new Set(only);
    return this.certificatesOf(wanted ? all.filter((i) => wanted.has(i.id)) : all);
  }

  private async certificatesOf(imvus: readonly TableImvu[]): Promise<ServedCertificate[]> {
    const out: ServedCertificate[] = [];
    for (const i of imvus) {
      const file = this.certFile(i.id);
      const served = parseShowSslCert(await this.cmd(`show ssl cert ${file}`));
      const row = await ledgerCertificate(this.o.platform, i.id);
      // Read and parsed at every look (a check takes at most CERTIFICATE_CHECK_BATCH): a file rewritten in place is never taken for the one seen before.
      const onDisk = existsSync(file) ? new X509Certificate(readFileSync(file, 'utf8')) : undefined;
      const diskSha256 = onDisk?.fingerprint256.replace(/:/g, '').toLowerCase();
      const diskSha1 = onDisk?.fingerprint.replace(/:/g, '').toLowerCase();
      const fileIsLedger = row !== undefined && diskSha256 === row.sha256;
      const equal =
        served !== undefined && row !== undefined && fileIsLedger && served.serial === row.serial && served.sha1 === diskSha1 && Date.parse(served.notAfter) === Date.parse(row.not_after);
      out.push({
        imvu: i.id,
        names: i.hosts,
        served,
        ledger: row ? { serial: row.serial, sha256: row.sha256, notAfter: row.not_after, issuer: row.issuer, directory: row.directory, entry: row.entry } : undefined,
        fileIsLedger,
        equal,
      });
    }
    return out;
  }

  /**
   * The served certificates against the ledger (with the route table, after every change and on
   * the timer): one replaced by hand over the runtime API is put back from the ledger's file and
   * raised as an integrity alarm. A file that is not the ledger's certificate (an ACME order
   * between its record and its install) is the ACME manager's to fix, not reverted here. Each check
   * reads back at most `certificateCheckBatch` certificates, the next ones in turn (a round of every
   * IMVU takes N / batch checks), so a check costs the same at 100,000 IMVUs as at 1,000.
   */
  private async checkCertificates(): Promise<ServedCertificate[]> {
    const [turn, cursor] = turnOf(this.table?.imvus ?? [], this.o.certificateCheckBatch ?? CERTIFICATE_CHECK_BATCH, this.certCursor);
    this.certCursor = cursor;
    const report = await this.certificatesOf(turn);
    this.lastCertificates = report;
    const wrong = report.filter((c) => !c.equal && c.fileIsLedger && c.ledger);
    if (!wrong.length) return report;
    for (const c of wrong) await this.installCert(c.imvu, readFileSync(this.certFile(c.imvu), 'utf8'));
    const wrongIds = new Set(wrong.map((c) => c.imvu));
    const after = await this.certificatesOf(turn.filter((i) => wrongIds.has(i.id)));
    this.lastCertificates = report.map((c) => after.find((a) => a.imvu === c.imvu) ?? c);
    const still = wrong.filter((c) => !after.find((a) => a.imvu === c.imvu)?.equal).map((c) => c.imvu);
    const detail = `the gateway served certificate(s) that differ from the ledger's: ${wrong
      .map((c) => `${c.imvu} served serial ${c.served?.serial ?? '(none)'} until ${c.served?.notAfter ?? '?'}, ledger serial ${c.ledger!.serial} (entry ${c.ledger!.entry})`)
      .join('; ')}; reverted to the ledger's certificate${still.length ? ` (still differs for ${still.join(', ')})` : ''}`.slice(0, 1000);
    await this.submitAlarm(new Date().toISOString(), ['certificates'], wrong.map((c) => c.imvu), detail);
    return report;
  }

  /**
   * HTTP-01 challenges: adds or removes tokens in the `acme` map that the plain-HTTP frontend
   * answers from (haproxy-config.ts), over the runtime API and in the map file too (a reload or a
   * restarted HAProxy during the order still answers them).
   */
  private async acmeTokensSet(challenges: HttpChallenge[], add: boolean): Promise<void> {
    for (const c of challenges) {
      // Both are base64url (RFC 8555 8.1, 8.3), the thumbprint after a dot: nothing a map line could be confused by.
      if (!/^[A-Za-z0-9_-]{1,128}$/.test(c.token) || !/^[A-Za-z0-9_-]{1,128}\.[A-Za-z0-9_-]{1,128}$/.test(c.keyAuthorization)) throw new Error(`not an ACME HTTP-01 token: ${c.token.slice(0, 40)}`);
      if (add) this.acmeTokens.set(c.token, c.keyAuthorization);
      else this.acmeTokens.delete(c.token);
    }
    this.writeAcmeMap();
    for (const c of challenges) {
      const r = await this.cmd(add ? `set map ${this.layout.acmeMap} ${c.token} ${c.keyAuthorization}` : `del map ${this.layout.acmeMap} ${c.token}`);
      // `set map` on a key not there yet adds nothing: add it.
      if (add && /not found/i.test(r)) {
        const a = await this.cmd(`add map ${this.layout.acmeMap} ${c.token} ${c.keyAuthorization}`);
        if (a.trim()) throw new Error(`haproxy add map acme: ${a.trim()}`);
      } else if (r.trim() && !(!add && /not found/i.test(r))) throw new Error(`haproxy ${add ? 'set' : 'del'} map acme: ${r.trim()}`);
    }
    this.o.log?.(`acme: http-01 ${add ? 'answering' : 'no longer answering'} ${challenges.map((c) => `${c.host} (token ${c.token.slice(0, 8)}...)`).join(', ')}`);
  }

  /** Until HAProxy holds every token (read back over the runtime API). */
  private async acmeTokensServed(challenges: HttpChallenge[]): Promise<void> {
    const served = new Map(parseShowMap(await this.cmd(`show map ${this.layout.acmeMap}`)));
    for (const c of challenges) if (served.get(c.token) !== c.keyAuthorization) throw new Error(`haproxy does not answer the http-01 token of ${c.host}`);
  }

  private writeAcmeMap(): void {
    const file = this.layout.acmeMap;
    writeFileSync(`${file}.tmp`, [...this.acmeTokens].map(([k, v]) => `${k} ${v}\n`).join(''), { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  }

  /** HTTP-01 tokens being answered: token -> key authorization. */
  private readonly acmeTokens = new Map<string, string>();

  /** One operation on HAProxy at a time. */
  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.busy.then(fn, fn);
    this.busy = run.catch(() => undefined);
    return run;
  }

  private async poll(): Promise<void> {
    // Most entries (usage reports, consents, DNS records) change none of the projections the table
    // is made of: then nothing is read, and the entries so far need not be read at the next change.
    const size = this.o.platform.chokepoint.ledger.size;
    if (this.sourcesKey() === this.appliedKey) {
      if (this.parts) this.appliedSize = Math.max(this.appliedSize, size);
      return;
    }
    await this.apply(false);
  }

  private readParts(only?: readonly string[]): Promise<Map<string, ImvuPart>> {
    return loadParts(this.o.platform.store, this.o.range, this.o.region, this.o.imvuLimits, only);
  }

  /** After a whole read: `size` and the repair count it was read at. */
  private setParts(parts: Map<string, ImvuPart>, table: GatewayTable, size: number, repairs: number): void {
    this.parts = parts;
    this.assembled = table;
    this.appliedSize = size;
    this.appliedRepairs = repairs;
  }

  /** Moves with every commit that changes a projection the table is made of (table.ts loadTable). */
  private sourcesKey(): string {
    return this.o.platform.integrity.tablesKey(TABLE_SOURCES);
  }

  /** Brings HAProxy to the ledger's table now, read whole (the daemon calls it after a change; tests too). */
  sync(): Promise<ServedReport> {
    return this.serialize(async () => {
      await this.apply(true);
      return this.check();
    });
  }

  /**
   * Brings HAProxy to the ledger's table. By IMVU (`whole` false) when the entries since the last
   * read name the IMVUs they may have changed and none of those appeared, went or changed names:
   * only their rows are read and only their lines change over the runtime API, so a route change
   * costs that IMVU's routes, not the platform's. Otherwise (or `whole`) the table is read whole.
   */
  private async apply(whole: boolean): Promise<void> {
    // Both at once (no commit between them): the rows read after are at least as new as both.
    const size = this.o.platform.chokepoint.ledger.size;
    const key = this.sourcesKey();
    const repairs = this.o.platform.integrity.repairs;
    // After a repair the whole table is read again: rows read by IMVU before it may have been edited ones.
    if (!whole && this.parts && repairs === this.appliedRepairs && size > this.appliedSize && size - this.appliedSize <= MAX_DELTA_ENTRIES) {
      const store = this.o.platform.store;
      const entries: ReturnType<typeof decodeEntry>[] = [];
      for (let at = this.appliedSize; at < size; at += 1000) for (const data of await store.readEntries(at, Math.min(size, at + 1000))) entries.push(decodeEntry(data));
      const touched = await touchedImvus(entries, async (index) => (await store.get<{ id: string }>('SELECT id FROM imvus WHERE entry = ?', [index]))?.id);
      try {
        if (touched && touched.size <= MAX_DELTA_IMVUS && (await this.applyImvus([...touched]))) {
          this.appliedSize = size;
          this.appliedKey = key;
          return;
        }
      } catch (e) {
        // A reload that failed (a certificate file of another IMVU gone): the whole path checks every file.
        this.o.log?.(`gateway: applying by IMVU failed (${(e as Error).message}); reading the whole table`);
      }
    }
    const parts = await this.readParts();
    const table = assembleTable(parts.values());
    // A ledger entry that changes nothing served (most do not) pushes nothing: a hand edit of a
    // map is then found by the check and alarmed, not silently overwritten.
    if (this.table && tableKey(table) === tableKey(this.table)) {
      this.setParts(parts, this.table, size, repairs);
      this.appliedKey = key;
      return;
    }
    // The table changes: what was served until now must still be the ledger's old table.
    if (this.table) {
      const before = await this.served();
      if (!before.equal) await this.alarm(before, 'replaced by the ledger\'s new table');
    }
    // The configuration is written only for the reload that reads it: written without one, its
    // spares (after the highest sequence number, which an import moves) could differ from those
    // the running HAProxy has, and a restart would then serve backends the gateway does not know of.
    const reshaped = imvuKey(table) !== this.imvuSet;
    const backends = await this.writeFiles(table, undefined, reshaped);
    if (reshaped) {
      // New or gone IMVUs change the backends and certificates: the one case that reloads.
      await this.meter?.sample();
      await this.recordLocalCertificates(table.imvus);
      await this.reload(backends);
      this.imvuSet = imvuKey(table);
      // New names (an IMVU, a verified domain) need a certificate from the CA: ordered in the background.
      void this.renewCertificates();
    } else await this.pushMaps(table);
    this.setParts(parts, table, size, repairs);
    // Only once served: a push that failed is tried again at the next look.
    this.appliedKey = key;
  }

  /**
   * The IMVUs `ids` read again and their lines changed in place over the runtime API (`del map`,
   * `set map`, `add map`). Before its lines change, each IMVU's served lines are looked up key by
   * key (`get map`): one edited by hand is raised as an alarm before it is replaced, as the whole
   * path does for the whole table. When one of them appeared, went, or changed names, certificates
   * change (issued and recorded for those IMVUs only): over the runtime API when every new IMVU
   * has its backend in the running configuration (a spare), otherwise the files are written from
   * the parts held and HAProxy reloads; neither reads every IMVU's rows again.
   * False (nothing changed) if an IMVU's workload address moved, which only the whole path handles.
   */
  private async applyImvus(ids: readonly string[]): Promise<boolean> {
    const parts = this.parts!;
    const fresh = await this.readParts(ids);
    const changed: [string, ImvuPart | undefined, ImvuPart | undefined][] = [];
    let reshaped = false;
    for (const id of ids) {
      const before = parts.get(id);
      const after = fresh.get(id);
      if (!before && !after) continue;
      if (before && after && before.imvu.address !== after.imvu.address) return false;
      if (!before || !after || partKey(before.imvu) !== partKey(after.imvu)) reshaped = true;
      if (!before || !after || MAP_NAMES.some((m) => !sameLines(before.maps[m], after.maps[m]))) changed.push([id, before, after]);
    }
    if (!changed.length) return true;
    const none: [string, string][] = [];
    const edited: ServedReport['differences'] = [];
    for (const m of MAP_NAMES) {
      const lines = changed.flatMap(([, was, now]) => (sameLines(was?.maps[m] ?? none, now?.maps[m] ?? none) ? [] : (was?.maps[m] ?? none).filter(([k]) => cliSafe(k))));
      const { missing } = await this.compareLines(m, lines);
      if (missing.length) edited.push({ map: m, extra: [], missing });
    }
    if (edited.length) await this.alarm({ at: new Date().toISOString(), equal: false, differences: edited }, "replaced by the ledger's new lines");
    if (reshaped) {
      const next = new Map(parts);
      for (const [id, , after] of changed) {
        if (after) next.set(id, after);
        else next.delete(id);
      }
      // In seq order, as a whole read gives them (a new IMVU is usually the last: then nothing moves).
      const ordered = [...next.values()].every((p, i, all) => i === 0 || all[i - 1]!.imvu.seq < p.imvu.seq) ? next : new Map([...next].sort((a, b) => a[1].imvu.seq - b[1].imvu.seq));
      const table = assembleTable(ordered.values());
      const mine = new Set(changed.map(([id]) => id));
      // Every new IMVU's backend (its workload address) already in the running configuration: no reload.
      if (changed.every(([id, before, after]) => before || !after || this.backends.get(id) === after.imvu.address)) {
        await this.reshapeLive(changed, ordered, table, mine);
        return true;
      }
      const backends = await this.writeFiles(table, mine);
      await this.meter?.sample();
      await this.recordLocalCertificates(table.imvus.filter((i) => mine.has(i.id)));
      await this.reload(backends);
      this.imvuSet = imvuKey(table);
      this.parts = ordered;
      this.assembled = table;
      void this.renewCertificates();
      return true;
    }
    for (const [id, , after] of changed) parts.set(id, after!);
    this.assembled = undefined;
    this.filesDirty = true;
    await this.pushChanges(changed, () => {
      for (const [id, before] of changed) parts.set(id, before!);
      this.assembled = undefined;
    });
    return true;
  }

  /**
   * The changed IMVUs' lines, in place; `undo` (before rethrowing) when HAProxy refuses one: the
   * parts must be held as before, so that the whole path the caller falls back to sees a change
   * and pushes it.
   */
  private async pushChanges(changed: readonly [string, ImvuPart | undefined, ImvuPart | undefined][], undo: () => void): Promise<void> {
    const none: [string, string][] = [];
    try {
      for (const m of MAP_NAMES) {
        const delta: MapDelta = { del: [], set: [], add: [] };
        for (const [, before, after] of changed) {
          const d = mapDelta(before?.maps[m] ?? none, after?.maps[m] ?? none);
          delta.del.push(...d.del);
          delta.set.push(...d.set);
          delta.add.push(...d.add);
        }
        // A key the runtime API would split (a `;` in a route path): that map is replaced whole.
        if ([...delta.del, ...delta.set.map(([k]) => k), ...delta.add.map(([k]) => k)].some((k) => !cliSafe(k))) await this.pushMap(m, this.table!);
        else await this.pushDelta(m, delta);
      }
    } catch (e) {
      undo();
      throw e;
    }
  }

  /**
   * IMVUs that appeared, went or changed names, with every new one's backend in the running
   * configuration: certificates over the runtime API, then the lines, no reload. A new IMVU's
   * certificate is loaded and listed before any host of it is routed (`new ssl cert`, `set`,
   * `commit`, `add ssl crt-list`); a renamed one's is replaced in place; a gone one's lines go
   * first, then its certificate. The crt-list and the new certificates are written first, so an
   * HAProxy restarted meanwhile loads them; the map files follow at the next check (a restart from
   * lagging files is brought up to date, `afterRestart`); the configuration file is the running one
   * and is not rewritten.
   */
  private async reshapeLive(changed: readonly [string, ImvuPart | undefined, ImvuPart | undefined][], ordered: Map<string, ImvuPart>, table: GatewayTable, mine: ReadonlySet<string>): Promise<void> {
    // A spare's server moved before its IMVU came (by hand over the runtime API): alarmed, and the
    // caller's whole path reloads HAProxy from the ledger's files rather than route hosts to it.
    const fresh = changed.flatMap(([, before, after]) => (after && !before ? [after.imvu] : []));
    const moved = await this.movedBackends(fresh);
    if (moved.length) {
      await this.backendAlarm(moved, 'before its IMVU was routed to it; HAProxy reloaded from the ledger\'s files');
      throw new Error(`spare backend(s) moved: ${moved.map((m) => m.imvu).join(', ')}`);
    }
    await this.writeFiles(table, mine, false);
    await this.recordLocalCertificates(table.imvus.filter((i) => mine.has(i.id)));
    // A gone IMVU's bytes since the last sample, counted while it is still served (then it is not read).
    if (changed.some(([, , after]) => !after)) await this.meter?.sample();
    const held = { parts: this.parts, assembled: this.assembled };
    const undo = () => {
      this.parts = held.parts;
      this.assembled = held.assembled;
    };
    try {
      for (const [id, before, after] of changed) {
        if (!after) continue;
        const pem = readFileSync(this.certFile(id), 'utf8');
        if (!before) await this.loadCert(id, pem);
        else if (partKey(before.imvu) !== partKey(after.imvu)) await this.installCert(id, pem);
      }
    } catch (e) {
      undo();
      throw e;
    }
    this.parts = ordered;
    this.assembled = table;
    await this.pushChanges(changed, undo);
    for (const [id, , after] of changed) if (!after) await this.unloadCert(id);
    this.imvuSet = imvuKey(table);
    void this.renewCertificates();
  }

  /** A certificate HAProxy does not hold yet, loaded and added to the listener's crt-list (HAProxy then serves it by its names). */
  private async loadCert(imvu: string, pem: string): Promise<void> {
    const file = this.certFile(imvu);
    const crtList = this.layout.crtList;
    // Held already (a reload since it was written, or an IMVU back after its certificate was unloaded): replaced in place.
    const listed = (await this.cmd(`show ssl crt-list ${crtList}`)).split('\n').some((l) => l.split(' ')[0] === file);
    if (listed) return this.installCert(imvu, pem);
    const made = await this.cmd(`new ssl cert ${file}`);
    if (!/New empty certificate store|already exists/i.test(made)) throw new Error(`haproxy new ssl cert: ${made.trim()}`);
    await this.installCert(imvu, pem);
    const add = await this.cmd(`add ssl crt-list ${crtList} ${file}`);
    if (!/Success/i.test(add)) throw new Error(`haproxy add ssl crt-list: ${add.trim()}`);
  }

  /** A gone IMVU's certificate taken out of the crt-list and freed: no handshake is answered with it any more. */
  private async unloadCert(imvu: string): Promise<void> {
    const file = this.certFile(imvu);
    const del = await this.cmd(`del ssl crt-list ${this.layout.crtList} ${file}`);
    if (!/deleted|Success/i.test(del) && !/not found|doesn't exist|does not exist/i.test(del)) throw new Error(`haproxy del ssl crt-list: ${del.trim()}`);
    const free = await this.cmd(`del ssl cert ${file}`);
    if (!/deleted|Success/i.test(free) && !/not found|doesn't exist|does not exist/i.test(free)) throw new Error(`haproxy del ssl cert: ${free.trim()}`);
  }

  /**
   * The running backends against their pins: each IMVU's server address, and its port (the
   * configuration leaves it to the route: `+0`, shown as 0), read back over the runtime API for
   * the next `certificateCheckBatch` IMVUs in turn. A server moved over the runtime API (`set
   * server ... addr`) or by a configuration reloaded by hand sends that IMVU's traffic elsewhere:
   * its address is put back (`set server ... addr`) or, when its port was changed too or its backend
   * is not there (neither can be put back over the runtime API), HAProxy is reloaded from the
   * ledger's files; either way an `integrity.alarm`. An absolute port 0 set by hand shows as the
   * configured `+0` and is not told apart (its IMVU's requests fail: a denial, not a diversion).
   */
  private async checkBackends(table: GatewayTable): Promise<void> {
    const [turn, cursor] = turnOf(table.imvus, this.o.certificateCheckBatch ?? CERTIFICATE_CHECK_BATCH, this.backendCursor);
    this.backendCursor = cursor;
    const moved = await this.movedBackends(turn);
    if (!moved.length) return;
    let reload = false;
    for (const m of moved) {
      if (m.servers?.length !== 1 || m.servers[0]!.port !== 0) reload = true;
      else {
        const r = await this.cmd(`set server be_${m.imvu}/${m.servers[0]!.server} addr ${m.address}`);
        if (!/IP changed|no need to change/i.test(r)) reload = true;
      }
    }
    if (reload) {
      // A new worker's counters start at zero: what the old one counted is sampled first.
      await this.meter?.sample();
      await this.reload(await this.writeFiles(table));
    }
    const still = await this.movedBackends(turn.filter((i) => moved.some((m) => m.imvu === i.id)));
    await this.backendAlarm(moved, `put back${reload ? ' (HAProxy reloaded from the ledger\'s files)' : ''}${still.length ? `; still differs for ${still.map((m) => m.imvu).join(', ')}` : ''}`);
  }

  /** Those of `imvus` whose backend in the running HAProxy is not one server at the IMVU's workload address with the route's port. */
  private async movedBackends(imvus: readonly TableImvu[]): Promise<{ imvu: string; address: string; servers: { server: string; addr: string; port: number }[] | undefined }[]> {
    const out: { imvu: string; address: string; servers: { server: string; addr: string; port: number }[] | undefined }[] = [];
    for (let i = 0; i < imvus.length; ) {
      const batch = imvus.slice(i, i + 100);
      i += batch.length;
      const answers = (await this.cmd(batch.map((b) => `show servers state be_${b.id}`).join('; '))).split('\n\n');
      if (answers.length < batch.length) throw new Error(`haproxy show servers state: ${answers.length - 1} answers to ${batch.length} backends`);
      for (const [n, b] of batch.entries()) {
        const servers = parseServersState(answers[n]!);
        if (servers?.length === 1 && servers[0]!.addr === b.address && servers[0]!.port === 0) continue;
        out.push({ imvu: b.id, address: b.address, servers });
      }
    }
    return out;
  }

  private backendAlarm(moved: readonly { imvu: string; address: string; servers: { server: string; addr: string; port: number }[] | undefined }[], what: string): Promise<void> {
    const detail = `the gateway's backend(s) differ from their workload addresses: ${moved
      .map((m) => `${m.imvu} served by ${m.servers ? m.servers.map((s) => `${s.addr}:${s.port || '(route port)'}`).join(', ') || '(no server)' : '(no backend)'}, pinned to ${m.address}`)
      .join('; ')}; ${what}`.slice(0, 1000);
    return this.submitAlarm(new Date().toISOString(), ['backends'], moved.map((m) => m.imvu), detail);
  }

  /** HAProxy re-reads the files just written, whose configuration has these backends. */
  private async reload(backends: Map<string, string>): Promise<void> {
    await this.sup.reload();
    this.reloads++;
    this.backends = backends;
  }

  /** Deletions first (a host moved between two IMVUs is deleted, then added for the new one). */
  private async pushDelta(m: MapName, d: MapDelta): Promise<void> {
    const file = this.layout.maps[m];
    const ok = (r: string, what: string) => {
      if (r.trim()) throw new Error(`haproxy ${what} map ${m}: ${r.trim()}`);
    };
    for (const k of d.del) {
      const r = await this.cmd(`del map ${file} ${k}`);
      if (!/Key not found/i.test(r)) ok(r, 'del');
    }
    for (const [k, v] of d.set) {
      const r = await this.cmd(`set map ${file} ${k} ${v}`);
      if (/entry not found/i.test(r)) d.add.push([k, v]);
      else ok(r, 'set');
    }
    for (const payload of payloads(d.add)) added(await this.cmd(`add map ${file}`, payload), m);
  }

  /** The map files from the table (they lag after changes by IMVU; HAProxy reads them at a reload or restart). */
  private writeMapFiles(table: GatewayTable): void {
    for (const m of MAP_NAMES) atomicWrite(this.layout.maps[m], mapText(table.maps[m]));
    this.filesDirty = false;
  }

  /**
   * HAProxy restarted (by the supervisor) from the files: if they lagged the served maps, what it
   * serves now is the platform's own older table, not an edit: brought up to date without an
   * alarm, then checked.
   */
  private async afterRestart(): Promise<ServedReport> {
    if (this.filesDirty && this.table) {
      this.writeMapFiles(this.table);
      await this.pushMaps(this.table);
    }
    return this.check();
  }

  /**
   * ACME map, certificates, crt-list and (with `config`) map files and configuration from `table`.
   * Each IMVU's certificate file is checked (issued again if missing or for other names), or only
   * those of `certsOf` (the IMVUs a change by IMVU touched; the others were checked when they last
   * changed). Returns the backends of the configuration written (or, without `config`, those of
   * the running one).
   */
  private async writeFiles(table: GatewayTable, certsOf?: ReadonlySet<string>, config = true): Promise<Map<string, string>> {
    const L = this.layout;
    // What HAProxy is about to load (a certificate and a backend per IMVU) sets how long it may take.
    this.sup.readyTimeoutMs = 15_000 + 3 * table.imvus.length;
    // Without `config` (IMVUs changed over the runtime API) the map files follow at the next check,
    // as after a route change: written whole, they would cost every IMVU's lines per new IMVU.
    if (config) this.writeMapFiles(table);
    else this.filesDirty = true;
    this.writeAcmeMap();
    const certs = [join(L.dir, 'certs', 'default.pem')];
    if (!existsSync(certs[0]!)) await issueLocal(this.ca, ['gateway.invalid'], certs[0]!);
    const issue: TableImvu[] = [];
    for (const i of table.imvus) {
      const file = join(L.dir, 'certs', `${i.id}.pem`);
      const names = join(L.dir, 'certs', `${i.id}.names`);
      if ((!certsOf || certsOf.has(i.id)) && (!existsSync(file) || !existsSync(names) || readFileSync(names, 'utf8') !== i.hosts.join(' '))) issue.push(i);
      certs.push(file);
    }
    // One openssl pair per core at a time: a first start on a platform of 10,000 IMVUs issues 10,000.
    let next = 0;
    const worker = async () => {
      while (next < issue.length) {
        const i = issue[next++]!;
        await issueLocal(this.ca, i.hosts, join(L.dir, 'certs', `${i.id}.pem`));
        writeFileSync(join(L.dir, 'certs', `${i.id}.names`), i.hosts.join(' '));
      }
    };
    await Promise.all(Array.from({ length: Math.min(issue.length, availableParallelism()) }, worker));
    atomicWrite(L.crtList, certs.map((c) => `${c}\n`).join(''));
    if (!config) return this.backends;
    const httpsPort = this.o.httpsPort ?? Number(this.o.httpsBind.split(':').pop());
    // After every sequence number given so far: a suspended or exited IMVU keeps its own.
    const spares = this.sparesAfter(table, await lastImvuSeq(this.o.platform.store));
    atomicWrite(
      join(L.dir, 'haproxy.cfg'),
      renderConfig({
        layout: { ...L, logSocket: `127.0.0.1:${this.logPort}` },
        httpsBind: this.o.httpsBind,
        ...(this.o.httpBind ? { httpBind: this.o.httpBind } : {}),
        httpsPort,
        imvus: table.imvus,
        spares,
        ...(this.o.region ? { region: this.o.region } : {}),
        ...(this.o.sourceLimit ? { sourceLimit: this.o.sourceLimit } : {}),
        ...(this.o.user ? { user: this.o.user } : {}),
        ...(this.o.group ? { group: this.o.group } : {}),
      }),
    );
    return new Map([...table.imvus, ...spares].map((i) => [i.id, i.address]));
  }

  /**
   * Spare backends: the ids `imvu.create` gives next (after `given`, the highest sequence number of
   * any IMVU), each with the workload address of its sequence number, as far as the compute range holds.
   */
  private sparesAfter(table: GatewayTable, given: number): { id: string; address: string }[] {
    const last = table.imvus.reduce((m, i) => Math.max(m, i.seq), given);
    const count = this.o.spareBackends ?? spareBackendsFor(table.imvus.length);
    const upTo = Math.min(last + count, rangeCapacity(this.o.range));
    const taken = new Set(table.imvus.map((i) => i.id));
    const out: { id: string; address: string }[] = [];
    for (let seq = last + 1; seq <= upTo; seq++) if (!taken.has(imvuIdOf(seq))) out.push({ id: imvuIdOf(seq), address: workloadNet(seq, this.o.range).workloadAddress });
    return out;
  }

  /** Replaces each map's served contents atomically (prepare, add, commit: no half-applied table). */
  private async pushMaps(table: GatewayTable): Promise<void> {
    for (const m of MAP_NAMES) await this.pushMap(m, table);
  }

  private async pushMap(m: MapName, table: GatewayTable): Promise<void> {
    const file = this.layout.maps[m];
    const prep = await this.cmd(`prepare map ${file}`);
    const ver = /New version created: (\d+)/.exec(prep)?.[1];
    if (!ver) throw new Error(`haproxy prepare map ${m}: ${prep.trim()}`);
    const lines = table.maps[m];
    for (const payload of payloads(lines)) added(await this.cmd(`add map @${ver} ${file}`, payload), m);
    const c = await this.cmd(`commit map @${ver} ${file}`);
    if (c.trim()) throw new Error(`haproxy commit map ${m}: ${c.trim()}`);
    // What was committed is what was sent: a payload HAProxy dropped would otherwise empty the map.
    const served = parseMapCounts(await this.cmd('show map')).get(file);
    if (served !== lines.length) throw new Error(`haproxy map ${m}: ${served ?? 'no'} lines served after the commit, ${lines.length} sent`);
  }

  /**
   * HAProxy's own match for each key in map `m` (`get map`; undefined: none), many commands to a
   * connection (`;`-separated, each answer ending with a blank line): a lookup per connection cost
   * more than a whole read of the maps at 10,000 IMVUs. Keys must be cliSafe.
   */
  private async lookup(m: MapName, keys: readonly string[]): Promise<({ key: string; value: string } | undefined)[]> {
    const file = this.layout.maps[m];
    const out: ({ key: string; value: string } | undefined)[] = [];
    for (let i = 0; i < keys.length; ) {
      const batch: string[] = [];
      let size = 0;
      // The command line shares HAProxy's 16 KiB CLI buffer: well under it.
      while (i < keys.length && (batch.length === 0 || size + file.length + keys[i]!.length + 12 < MAP_PAYLOAD_BYTES)) {
        batch.push(`get map ${file} ${keys[i]}`);
        size += file.length + keys[i]!.length + 12;
        i++;
      }
      const answers = (await this.cmd(batch.join('; '))).split('\n\n');
      if (answers.length < batch.length) throw new Error(`haproxy get map ${m}: ${answers.length - 1} answers to ${batch.length} lookups`);
      for (let n = 0; n < batch.length; n++) out.push(parseGetMap(answers[n]!));
    }
    return out;
  }

  /** Map `m`'s lines as HAProxy serves them under their keys: those found, and how they differ from `lines`. */
  private async compareLines(m: MapName, lines: readonly [string, string][]): Promise<{ served: [string, string][]; extra: string[]; missing: string[] }> {
    const found = await this.lookup(m, lines.map(([k]) => k));
    const out = { served: [] as [string, string][], extra: [] as string[], missing: [] as string[] };
    for (const [i, [k, v]] of lines.entries()) {
      const got = found[i]?.key === k ? found[i]!.value : undefined;
      if (got !== undefined) out.served.push([k, got]);
      if (got === v) continue;
      out.missing.push(`${k} ${v}`);
      if (got !== undefined) out.extra.push(`${k} ${got}`);
    }
    return out;
  }

  /** Whether a map's line count as HAProxy serves it (one `show map` listing) differs from `lines`'. */
  private async countsMoved(lines: Record<MapName, number>): Promise<boolean> {
    const counts = parseMapCounts(await this.cmd('show map'));
    return MAP_NAMES.some((m) => counts.get(this.layout.maps[m]) !== lines[m]);
  }

  private cmd(command: string, payload?: string): Promise<string> {
    return runtimeCommand(this.layout.adminSocket, command, payload === undefined ? {} : { payload });
  }

  /** The served maps against the ledger's table (read back over the runtime API). */
  /** Every map as HAProxy serves it now, read back over the runtime API. */
  async servedMaps(): Promise<Record<MapName, [string, string][]>> {
    const out = {} as Record<MapName, [string, string][]>;
    for (const m of MAP_NAMES) out[m] = parseShowMap(await this.cmd(`show map ${this.layout.maps[m]}`));
    return out;
  }

  /**
   * One IMVU's lines as HAProxy serves them now, against the ledger's table: each key the table
   * gives the IMVU looked up (`get map`, HAProxy's own match), so the view costs that IMVU's lines,
   * not the platform's maps. A line added by hand under another key moves its map's line count
   * (one `show map` listing): then the maps are read whole, as they are for a key the runtime API
   * would split (a `;` in a path). What this misses, a line removed elsewhere and one added for this
   * IMVU in the same map, the periodic check finds, reverts and alarms (listed with its alarms).
   */
  async servedImvu(id: string): Promise<{ maps: Record<MapName, [string, string][]>; report: ServedReport }> {
    const part = this.parts?.get(id);
    const want = (m: MapName) => part?.maps[m] ?? [];
    // The table's line counts from the parts (assembling the whole table for them would cost the platform's lines).
    if (!this.parts || MAP_NAMES.some((m) => want(m).some(([k]) => !cliSafe(k))) || (await this.countsMoved(lineCounts(this.parts.values())))) {
      const maps = await this.servedMaps();
      return { maps, report: await this.served(maps) };
    }
    const at = new Date().toISOString();
    const maps = {} as Record<MapName, [string, string][]>;
    const differences: ServedReport['differences'] = [];
    for (const m of MAP_NAMES) {
      const { served, extra, missing } = await this.compareLines(m, want(m));
      maps[m] = served;
      if (extra.length || missing.length) differences.push({ map: m, extra, missing });
    }
    return { maps, report: { at, equal: differences.length === 0, differences } };
  }

  /** The served maps (read now, or as `servedMaps()` just read them) against the ledger's table. */
  async served(maps?: Record<MapName, [string, string][]>): Promise<ServedReport> {
    const table = this.table ?? assembleTable((await this.readParts()).values());
    const differences: ServedReport['differences'] = [];
    for (const m of MAP_NAMES) {
      const served = (maps?.[m] ?? parseShowMap(await this.cmd(`show map ${this.layout.maps[m]}`))).map(([k, v]) => `${k} ${v}`);
      const want = table.maps[m].map(([k, v]) => `${k} ${v}`);
      // The order of lines decides nothing (HAProxy 2.6 indexes map_str and map_beg as trees: an
      // exact key, the longest prefix), and lines changed by IMVU are appended: compare as sets,
      // and as many lines (a key served twice is one too many).
      const s = new Set(served);
      const w = new Set(want);
      if (served.length === want.length && s.size === w.size && want.every((l) => s.has(l))) continue;
      differences.push({ map: m, extra: served.filter((l) => !w.has(l)), missing: want.filter((l) => !s.has(l)) });
    }
    return { at: new Date().toISOString(), equal: differences.length === 0, differences };
  }

  /** Compares served with the ledger now (the timer does it too); reverts and alarms on a difference. */
  verify(): Promise<ServedReport> {
    return this.serialize(() => this.check());
  }

  private async check(): Promise<ServedReport> {
    // First the ledger's current table, so that a route change not yet applied is not taken for a
    // difference; read only if a commit changed its sources, so rows edited behind the platform's
    // back are never read into it (the integrity check repairs them).
    if (!this.table || this.sourcesKey() !== this.appliedKey) await this.apply(false);
    const table = this.table!;
    await this.checkCertificates();
    await this.checkBackends(table);
    const lines = MAP_NAMES.reduce((n, m) => n + table.maps[m].length, 0);
    const report = (lines > (this.o.wholeCheckLines ?? WHOLE_CHECK_LINES) && (await this.servedInTurn(table))) || (await this.served());
    if (this.filesDirty) this.writeMapFiles(table);
    this.lastServed = report;
    if (report.equal) return report;
    await this.pushMaps(table);
    const after = await this.served();
    this.lastServed = after;
    await this.alarm(report, `reverted to the ledger's table${after.equal ? '' : ' (still differs: see the gateway log)'}`);
    return report;
  }

  /**
   * The check of a large table, costing a batch of IMVUs instead of every served line: each map's
   * line count (`show map` lists them all with `entry_cnt`; a line added or removed by hand moves
   * one) and the lines of the next `lineCheckBatch` IMVUs looked up by key (a value changed by hand,
   * or a line removed and another added to keep the count, is found when its IMVU's turn comes:
   * within IMVUs / batch checks). Undefined when something differs: the caller then reads the maps
   * whole, reverts and alarms.
   */
  private async servedInTurn(table: GatewayTable): Promise<ServedReport | undefined> {
    if (await this.countsMoved(lineCounts(this.parts?.values() ?? []))) return undefined;
    const [turn, cursor] = turnOf(table.imvus, this.o.lineCheckBatch ?? CERTIFICATE_CHECK_BATCH, this.lineCursor);
    this.lineCursor = cursor;
    for (const m of MAP_NAMES) {
      const lines = turn.flatMap((i) => this.parts?.get(i.id)?.maps[m] ?? []);
      if (lines.some(([k]) => !cliSafe(k)) || (await this.compareLines(m, lines)).missing.length) return undefined;
    }
    return { at: new Date().toISOString(), equal: true, differences: [] };
  }

  /** An `integrity.alarm` for a served table that differed from the ledger's, notified to the creators. */
  private async alarm(report: ServedReport, outcome: string): Promise<void> {
    const imvus = new Set<string>();
    for (const d of report.differences)
      for (const l of [...d.extra, ...d.missing]) {
        const id = /(IMVU-\d+)/.exec(l)?.[1];
        if (id) imvus.add(id);
      }
    const detail = `the gateway served a route table that differed from the ledger (${report.differences
      .map((d) => `${d.map}: ${d.extra.length} served not in ledger, ${d.missing.length} in ledger not served`)
      .join('; ')}); ${outcome}`.slice(0, 1000);
    await this.submitAlarm(report.at, ['routes'], [...imvus], detail);
  }

  private async submitAlarm(detectedAt: string, tables: string[], imvus: string[], detail: string): Promise<void> {
    const body = {
      trigger: 'periodic',
      detectedAt,
      ledgerSize: this.o.platform.chokepoint.ledger.size,
      tables,
      imvus: [...new Set(imvus)].sort().slice(0, 1000),
      detail,
    };
    const receipt = await this.o.platform.chokepoint.submit(this.o.platform.chokepoint.platformCommand('integrity.alarm', body) as SignedCommand);
    this.alarms.push({ index: receipt.index, imvus: body.imvus, detail });
    this.o.log?.(`integrity alarm (entry ${receipt.index}): ${detail}`);
  }

  /** Per-IMVU backend counters from `show stat`, with the HAProxy process they belong to. */
  async readCounters(): Promise<{ process: string; counters: Map<string, { bytesIn: bigint; bytesOut: bigint; requests: bigint }> }> {
    const info = parseInfo(await this.cmd('show info'));
    const rows = parseStat(await this.cmd('show stat'));
    const counters = new Map<string, { bytesIn: bigint; bytesOut: bigint; requests: bigint }>();
    for (const r of rows) {
      // A spare backend has no IMVU yet: nothing routes to it, nothing of it is metered.
      if (r.svname !== 'BACKEND' || !r.pxname?.startsWith('be_') || (this.parts && !this.parts.has(r.pxname.slice(3)))) continue;
      counters.set(r.pxname.slice(3), { bytesIn: BigInt(r.bin || '0'), bytesOut: BigInt(r.bout || '0'), requests: BigInt(r.req_tot || '0') });
    }
    // A worker is one counting epoch: its pid and start time (a reload or restart starts from zero).
    return { process: `${info.Pid}@${info.Start_time_sec ?? Math.round(Date.now() / 1000 - Number(info.Uptime_sec ?? 0))}`, counters };
  }

  private listenLog(): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = createSocket('udp4');
      this.logSock = s;
      s.on('error', reject);
      s.on('message', (msg) => this.onLog(msg.toString('utf8', 0, Math.min(msg.length, 4096))));
      s.bind(0, '127.0.0.1', () => {
        this.logPort = s.address().port;
        resolve();
      });
    });
  }

  /**
   * Records the refusals counted since the last call, one `gateway.refusals` entry per IMVU (its
   * body's `imvu` puts it in that IMVU's index, so its creator reads it in `nexus audit log --imvu`,
   * and only its own counts). Returns the entries' ledger indexes (none when nothing was refused).
   */
  async summariseRefusals(): Promise<number[]> {
    if (this.refusals.size === 0) return [];
    const from = this.refusalsFrom;
    const to = new Date().toISOString();
    // At most 1000 keys per entry (the command's bound); the rest wait for the next interval.
    const byImvu = new Map<string, [string, number][]>();
    for (const [k, n] of this.refusals) {
      const imvu = k.split(' ')[0]!;
      const list = byImvu.get(imvu) ?? [];
      if (list.length < 1000) list.push([k, n]);
      byImvu.set(imvu, list);
    }
    this.refusalsFrom = to;
    const indexes: number[] = [];
    let failed: unknown;
    for (const [imvu, taken] of byImvu) {
      for (const [k] of taken) this.refusals.delete(k);
      const counts = taken.map(([k, count]) => {
        const [, route, status, reason] = k.split(' ');
        return { imvu, route: route!, status: Number(status), reason: reason!, count };
      });
      try {
        const r = await this.o.platform.chokepoint.submit(this.o.platform.chokepoint.platformCommand('gateway.refusals', { imvu, from, to, counts }));
        this.refusalsRecorded += counts.reduce((a, c) => a + c.count, 0);
        indexes.push(r.index);
      } catch (e) {
        // Not recorded: counted again with the next interval's.
        for (const [k, n] of taken) this.refusals.set(k, (this.refusals.get(k) ?? 0) + n);
        failed = e;
      }
    }
    if (failed) throw failed;
    return indexes;
  }

  private refusalsFrom = new Date().toISOString();

  private onLog(line: string): void {
    this.logLines++;
    const m = / gw (IMVU-\d{3,9}) (IMVU-\d{3,9}\.\d{1,4}) (\d{3}) ([a-z-]{1,32})\s*$/.exec(line);
    if (!m) return;
    const [, imvu, rid, status, why] = m;
    if (!['401', '403', '429', '451'].includes(status!)) return;
    const key = `${imvu} ${rid} ${status} ${why}`;
    if (this.refusals.size >= 10_000 && !this.refusals.has(key)) return;
    this.refusals.set(key, (this.refusals.get(key) ?? 0) + 1);
    this.refusalsSeen++;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.busy.catch(() => undefined);
    await this.summariseRefusals().catch((e: unknown) => this.o.log?.(`gateway refusals: ${(e as Error).message}`));
    await this.meter?.close().catch((e: unknown) => this.o.log?.(`gateway meter: ${(e as Error).message}`));
    await this.sup.stop();
    this.logSock?.close();
  }
}

function atomicWrite(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

/**
 * Spare backends rendered for a platform of `imvus` served IMVUs: an eighth of them, at least 64
 * and at most 4,096. Each costs HAProxy a backend at every reload (about 0.1 ms of its start), and
 * a reload comes once they are used up: at 10,000 IMVUs one reload (9-10 s) per 1,250 creations.
 */
export function spareBackendsFor(imvus: number): number {
  return Math.min(4096, Math.max(64, Math.ceil(imvus / 8)));
}

/** Lines per map of the table these parts make. */
function lineCounts(parts: Iterable<ImvuPart>): Record<MapName, number> {
  const out = Object.fromEntries(MAP_NAMES.map((m) => [m, 0])) as Record<MapName, number>;
  for (const p of parts) for (const m of MAP_NAMES) out[m] += p.maps[m].length;
  return out;
}

/** What of an IMVU the configuration and certificates are made of (a change reloads). */
function partKey(i: TableImvu): string {
  return `${i.id}@${i.address}=${i.hosts.join(',')}`;
}

function sameLines(a: readonly [string, string][], b: readonly [string, string][]): boolean {
  return a.length === b.length && a.every(([k, v], i) => b[i]![0] === k && b[i]![1] === v);
}

/** A map key the runtime API takes as one argument (`;` ends a command, blanks end an argument). */
function cliSafe(k: string): boolean {
  return !/[\s;#\\]/.test(k);
}

/** An `add map` answered: a blank line. Nothing at all is a payload HAProxy did not take. */
function added(r: string, m: MapName): void {
  if (r === '') throw new Error(`haproxy add map ${m}: no answer (the payload was not taken)`);
  if (r.trim()) throw new Error(`haproxy add map ${m}: ${r.trim()}`);
}

/** The next `batch` of `all` from `cursor` (wrapping round), and the cursor after it; all of them when they fit one batch. */
function turnOf<T>(all: readonly T[], batch: number, cursor: number): [T[], number] {
  const n = Math.max(1, batch);
  if (all.length <= n) return [[...all], 0];
  const from = cursor >= all.length ? 0 : cursor;
  const turn = all.slice(from, from + n);
  if (turn.length < n) turn.push(...all.slice(0, n - turn.length));
  return [turn, (from + n) % all.length];
}

function tableKey(t: GatewayTable): string {
  return `${imvuKey(t)}\n${JSON.stringify(t.maps)}`;
}

function imvuKey(t: GatewayTable): string {
  return t.imvus.map(partKey).join(';');
}
