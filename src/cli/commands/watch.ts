// `nexus audit watch`: the creator's monitor. Each round it
//   1. fetches the platform's signed checkpoint and checks that it extends the one saved in
//      NEXUS_HOME (witness.ts: a rewritten log is an alarm, exit 4);
//   2. fetches the new ledger entries as the creator's signed reader, checks them against that
//      checkpoint (the Merkle root recomputed from their bytes), and prints every new one that
//      concerns the creator's IMVUs: who, what, allowed or denied by which gate, refusals of
//      admins and strangers included;
//   3. projects the IMVUs' entries into a scratch store with the platform's projection code
//      (src/domains/watch/expected.ts) and compares each zone with what the DNS server the daemon
//      reports in /health serves (src/domains/watch/compare.ts: AXFR when allowed, else signed
//      answers). A difference is an alarm: printed RRset by RRset, kept as evidence under
//      NEXUS_HOME/evidence/, exit code 4.
// Which entries were already shown is kept in NEXUS_HOME/watch/<platform id>.json (the first
// round shows the IMVUs' whole history).
//   4. when the daemon runs the compute fabric: each IMVU's workload, the kernel's cgroup limits
//      (GET /v1/imvus/:id/compute) against what the envelope in the verified entries implies
//      (src/compute/watch.ts); a difference is an alarm like a zone's.
//   5. when the daemon runs the gateway: each IMVU's hosts, routes, roles and allow-lists as
//      HAProxy serves them (GET /v1/imvus/:id/gateway, read back over its runtime API) against the
//      table derived here from the verified entries by the gateway's own table code; a difference
//      is an alarm like a zone's.
import { Command } from 'commander';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { identityIdFromPublicKey } from '../../core/identity/keys.ts';
import type { LedgerEntry } from '../../core/types.ts';
// The projection code, the store and the DNS client load only when a watch runs (the CLI starts light).
import type { Difference, ZoneCheck } from '../../domains/watch/compare.ts';
import type { ExpectedState } from '../../domains/watch/expected.ts';
import type { ComputeReading } from '../../compute/watch.ts';
import { imvuId, int } from '../args.ts';
import { Ctx } from '../context.ts';
import { CliError, EXIT, verificationFailed } from '../errors.ts';
import { writeFileAtomic } from '../home.ts';
import type { SeenCheckpoint } from '../witness.ts';
import { fetchVerifiedLog, type VerifiedLog } from './audit.ts';
import { identityNames } from './imvu.ts';

interface WatchOptions {
  imvu?: string;
  once?: boolean;
  interval: number;
}

interface Cursor {
  /** Entries below this index were shown. */
  size: number;
  at: string;
}

/** One printed entry (a JSON line with --json). */
export interface WatchedEntry {
  kind: 'entry';
  index: number;
  at: string;
  actor: string;
  actorName: string | null;
  type: string;
  imvu: string | null;
  allowed: boolean;
  gate: number | null;
  reason: string | null;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function cursorPath(ctx: Ctx, platformId: string): string {
  return ctx.home.watchCursorPath(platformId);
}

function readCursor(ctx: Ctx, platformId: string): Cursor | undefined {
  const file = cursorPath(ctx, platformId);
  if (!existsSync(file)) return undefined;
  try {
    const c = JSON.parse(readFileSync(file, 'utf8')) as Cursor;
    return Number.isSafeInteger(c.size) && c.size >= 0 ? c : undefined;
  } catch {
    return undefined;
  }
}

/** The IMVU an entry is about (for the creator's filter), given the zones each IMVU has had. */
function imvuOf(e: LedgerEntry, creations: Map<number, string>, zones: Map<string, string>): string | undefined {
  const b = isObj(e.command?.command?.body) ? e.command.command.body : {};
  if (creations.has(e.index)) return creations.get(e.index);
  if (typeof b.imvu === 'string') return b.imvu;
  if (typeof b.zone === 'string') return zones.get(b.zone.toLowerCase());
  return undefined;
}

function sleep(ms: number, stop: { signal: AbortSignal }): Promise<void> {
  return new Promise((resolve) => {
    if (stop.signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    stop.signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });
}

class Watcher {
  private log: VerifiedLog | undefined;
  private names = new Map<string, string>();
  private daemonNames: Map<string, string> | undefined;

  constructor(
    private readonly ctx: Ctx,
    private readonly o: WatchOptions,
  ) {}

  private out(line: unknown, human: () => string[]): void {
    if (this.ctx.json) process.stdout.write(JSON.stringify(line) + '\n');
    else for (const l of human()) process.stdout.write(l + '\n');
  }

  private async nameOf(id: string): Promise<string | null> {
    const n = this.names.get(id);
    if (n) return n;
    this.daemonNames ??= await identityNames(this.ctx).catch(() => new Map<string, string>());
    return this.daemonNames.get(id) ?? null;
  }

  /** One round; resolves with the differences found (empty: consistent). */
  async round(): Promise<Difference[]> {
    const ctx = this.ctx;
    const { platform, checkpoint, previousSize } = await ctx.witness.contact();
    this.log = await fetchVerifiedLog(ctx, checkpoint, this.log);
    const reader = await ctx.reader();
    const entries = this.log.entries;
    for (const e of entries) {
      const c = e.command?.command;
      if (c?.type === 'identity.register' && e.decision?.allowed && isObj(c.body) && typeof c.body.name === 'string' && typeof c.body.publicKey === 'string') {
        try {
          this.names.set(identityIdFromPublicKey(Buffer.from(c.body.publicKey, 'base64')), c.body.name);
        } catch {
          // a registration the gates allowed has a valid key; nothing to name otherwise
        }
      }
      if (c?.type === 'platform.genesis') this.names.set(c.actor, 'platform');
    }

    const { expectedZones } = await import('../../domains/watch/expected.ts');
    const expected = await expectedZones(entries, this.o.imvu ? { imvus: [this.o.imvu] } : { people: reader ? [reader.id] : [] });
    if (this.o.imvu && !expected.imvus.some((i) => i.id === this.o.imvu))
      throw new CliError(`${this.o.imvu} is not an IMVU ${reader?.name ?? 'you'} created or is a member of (as far as the entries ${reader?.name ?? 'you'} may read say)`, EXIT.usage);

    // The entries to show: new since the last round or run, about the selected IMVUs.
    const cursor = readCursor(ctx, platform.id);
    const from = cursor && cursor.size <= checkpoint.size ? cursor.size : 0;
    const selected = new Set(expected.imvus.map((i) => i.id));
    const creations = new Map(expected.imvus.map((i) => [i.entry, i.id]));
    const zones = zoneOwners(entries, selected);
    this.out({ kind: 'checkpoint', size: checkpoint.size, previousSize, from }, () => [
      previousSize === null
        ? `✅ Checkpoint: tree size ${checkpoint.size}, signed by ${platform.origin} (first contact: saved as your checkpoint)`
        : `✅ Checkpoint: tree size ${checkpoint.size}, signed by ${platform.origin}, consistent with your saved checkpoint of tree size ${previousSize}`,
    ]);
    let shown = 0;
    for (const e of entries) {
      if (e.index < from) continue;
      const imvu = imvuOf(e, creations, zones);
      if (!imvu || !selected.has(imvu)) continue;
      const c = e.command.command;
      const deny = e.decision.gates.find((g) => g.status === 'deny');
      const line: WatchedEntry = {
        kind: 'entry',
        index: e.index,
        at: e.at,
        actor: c.actor,
        actorName: await this.nameOf(c.actor),
        type: c.type,
        imvu,
        allowed: e.decision.allowed,
        gate: deny?.gate ?? null,
        reason: deny?.reason ?? null,
      };
      shown++;
      this.out(line, () => [
        `#${line.index}  ${line.at}  ${(line.actorName ?? line.actor).padEnd(10)} ${line.type.padEnd(17)} ${imvu}  ${line.allowed ? 'ALLOWED' : `DENIED gate ${line.gate}: ${line.reason ?? ''}`}`,
      ]);
    }
    if (!shown && !ctx.json) process.stdout.write(`- no new entries about ${[...selected].join(', ') || 'your IMVUs'} since index ${from}\n`);
    writeFileAtomic(cursorPath(ctx, platform.id), JSON.stringify({ size: checkpoint.size, at: new Date().toISOString() } satisfies Cursor) + '\n');

    return this.compare(expected, checkpoint, platform.id);
  }

  private async compare(expected: ExpectedState, checkpoint: SeenCheckpoint, platformId: string): Promise<Difference[]> {
    const ctx = this.ctx;
    const differences: Difference[] = expected.problems.map((p) => ({ zone: '', owner: '', type: 'ledger', where: 'replay', expected: [], served: [], problem: p }));
    const health = await ctx.client.get<{ dns?: { address: string; port: number } | null; serving?: { compute?: boolean } }>('/health');
    const checks: ZoneCheck[] = [];
    if (!health.dns) {
      this.out({ kind: 'dns', served: false }, () => ['- The daemon runs no DNS server (/health): no zone to compare']);
    } else if (expected.zones.length) {
      const host = ['0.0.0.0', '::', ''].includes(health.dns.address) ? new URL(ctx.url).hostname.replace(/^\[|\]$/g, '') : health.dns.address;
      const [{ DnsTcpClient }, { checkZone }] = await Promise.all([import('../../domains/watch/dns-client.ts'), import('../../domains/watch/compare.ts')]);
      const dns = new DnsTcpClient({ host, port: health.dns.port });
      try {
        for (const z of expected.zones) {
          const check = await checkZone(z, dns);
          checks.push(check);
          differences.push(...check.differences);
          this.out({ kind: 'zone', zone: z.zone, imvu: z.imvu, mode: check.mode, serial: check.expectedSerial, servedSerial: check.servedSerial, checked: check.checked, ok: !check.differences.length }, () => [
            check.differences.length
              ? `✗ Zone ${z.zone} (${z.imvu}) at ${host}:${health.dns!.port}: ${check.differences.length} difference${check.differences.length > 1 ? 's' : ''} from the ledger (${check.mode === 'axfr' ? 'zone transfer' : `${check.checked} signed queries`})`
              : `✅ Zone ${z.zone} (${z.imvu}), serial ${check.servedSerial}: served as the ledger says (${check.mode === 'axfr' ? `zone transfer, ${check.checked} RRsets` : `${check.checked} signed queries`}, DNSSEC signatures checked against the ledger's keys)`,
          ]);
        }
      } finally {
        dns.close();
      }
    }
    await this.compareCompute(expected, health.serving?.compute === true, differences);
    await this.compareRoutes(expected, differences);
    if (!differences.length) return differences;
    for (const d of differences)
      this.out({ kind: 'difference', ...d }, () => [
        d.type === 'ledger'
          ? `✗ ${d.problem}`
          : `✗ ${d.zone}: ${d.owner} ${d.type} (${d.where}): ${d.problem}`,
        ...(d.type === 'ledger' ? [] : [`    expected (ledger): ${d.expected.length ? d.expected.join(' | ') : '(nothing)'}`, `    served:            ${d.served.length ? d.served.join(' | ') : '(nothing)'}`]),
      ]);
    const detectedAt = new Date().toISOString();
    const body = { kind: 'served-state', detectedAt, url: ctx.url, platformId, checkpoint: checkpoint.note, differences, zones: checks };
    const code = createHash('sha256').update(JSON.stringify(body)).digest('hex').slice(0, 8);
    const evidence = join(ctx.home.evidenceDir(), `${detectedAt.replace(/[:.]/g, '-')}-served-${code}.json`);
    writeFileAtomic(evidence, JSON.stringify({ code, ...body }, null, 2) + '\n');
    this.out({ kind: 'alarm', code, evidence, differences: differences.length }, () => [
      `✗ ALARM ${code}: what the platform serves is not what its ledger says (${differences.length} difference${differences.length > 1 ? 's' : ''})`,
      `  Evidence: ${evidence} (the served answers, signed with the zone's key, and the checkpoint they contradict; keep a copy)`,
    ]);
    return differences;
  }
  /**
   * Each selected IMVU's routes: the lines HAProxy serves for it (read back by the daemon over the
   * runtime API) against the table derived from the verified entries here, with the gateway's own
   * table code. A difference (a map edited by hand or a route the ledger never allowed) is an alarm.
   */
  private async compareRoutes(expected: ExpectedState, differences: Difference[]): Promise<void> {
    for (const imvu of expected.imvus) {
      if (!imvu.routes) continue;
      let view: { gateway?: string; routes?: Record<string, string[]> };
      try {
        view = await this.ctx.get(`/v1/imvus/${imvu.id}/gateway`);
      } catch (err) {
        this.out({ kind: 'routes', imvu: imvu.id, error: (err as Error).message }, () => [`- Routes of ${imvu.id}: the daemon did not report what its gateway serves: ${(err as Error).message}`]);
        continue;
      }
      if (view.gateway === 'off' || !view.routes) {
        this.out({ kind: 'routes', served: false }, () => ['- The daemon runs no gateway: no routes to compare']);
        return;
      }
      const bad: string[] = [];
      let lines = 0;
      for (const [map, want] of Object.entries(imvu.routes)) {
        const served = view.routes[map] ?? [];
        lines += want.length;
        // As sets of lines: HAProxy 2.6 matches map_str and map_beg keys in trees (the exact key, the
        // longest prefix), so the order lines are served in decides nothing.
        if ([...served].sort().join('\n') === [...want].sort().join('\n')) continue;
        bad.push(map);
        const w = new Set(want);
        const s = new Set(served);
        differences.push({ zone: imvu.id, owner: map, type: 'routes', where: 'gateway', expected: want.filter((l) => !s.has(l)), served: served.filter((l) => !w.has(l)), problem: `the gateway's ${map} map serves ${imvu.id} otherwise than the ledger says` });
      }
      this.out({ kind: 'routes', imvu: imvu.id, lines, ok: bad.length === 0, differ: bad }, () => [
        bad.length ? `✗ Routes of ${imvu.id}: the gateway serves its ${bad.join(', ')} map${bad.length > 1 ? 's' : ''} otherwise than the ledger says` : `✅ Routes of ${imvu.id}: served as the ledger says (${lines} map line${lines === 1 ? '' : 's'}: hosts, routes, roles, allow-lists)`,
      ]);
    }
  }

  /**
   * Each selected IMVU's workload: the kernel's cgroup limits (read by the daemon) against what the
   * envelope in the verified entries implies. A difference is an alarm like a zone's.
   */
  private async compareCompute(expected: ExpectedState, served: boolean, differences: Difference[]): Promise<void> {
    if (!served) {
      this.out({ kind: 'compute', served: false }, () => ['- The daemon runs no compute fabric (/health): no workload limits to compare']);
      return;
    }
    const { checkCompute } = await import('../../compute/watch.ts');
    for (const imvu of expected.imvus) {
      if (imvu.status === 'exited' || !imvu.envelope) continue;
      let reading: ComputeReading;
      try {
        reading = await this.ctx.get<ComputeReading>(`/v1/imvus/${imvu.id}/compute`);
      } catch (err) {
        this.out({ kind: 'compute', imvu: imvu.id, error: (err as Error).message }, () => [`- Workload of ${imvu.id}: the daemon did not report its kernel limits: ${(err as Error).message}`]);
        continue;
      }
      const fields = checkCompute(imvu.envelope, (imvu.burst ?? 1) > 1, reading);
      const bad = fields.filter((f) => !f.ok);
      this.out({ kind: 'compute', imvu: imvu.id, state: reading.state, fields, ok: bad.length === 0 }, () =>
        fields.length === 0
          ? [`- Workload of ${imvu.id}: ${reading.state}, no cgroup to compare`]
          : [
              `${bad.length ? '✗' : '✅'} Workload of ${imvu.id} (${reading.state}${reading.address ? ` at ${reading.address}` : ''}): its kernel cgroup limits ${bad.length ? `differ from the ledger's envelope in ${bad.length} field${bad.length > 1 ? 's' : ''}` : "equal the ledger's envelope"}`,
              ...fields.map((f) => `    ${f.ok ? ' ' : '✗'} ${f.field.padEnd(18)} kernel ${String(f.kernel ?? 'absent').padStart(12)}   ledger ${String(f.ledger ?? 'absent').padStart(12)}`),
            ],
      );
      for (const f of bad)
        differences.push({ zone: imvu.id, owner: f.field, type: 'compute', where: 'cgroup', expected: [String(f.ledger ?? 'absent')], served: [String(f.kernel ?? 'absent')], problem: `the kernel holds ${f.kernel ?? 'no value'}, the envelope in the ledger implies ${f.ledger ?? 'none'}` });
    }
  }
}

/** Zone name -> IMVU, for every zone the selected IMVUs have had according to the entries. */
function zoneOwners(entries: readonly LedgerEntry[], selected: ReadonlySet<string>): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of entries) {
    const b = isObj(e.command?.command?.body) ? e.command.command.body : {};
    if (!e.decision?.allowed || typeof b.imvu !== 'string' || !selected.has(b.imvu)) continue;
    for (const z of [b.zone, b.domain]) if (typeof z === 'string') out.set(z.toLowerCase(), b.imvu);
  }
  return out;
}

export function watchCommand(): Command {
  return new Command('watch')
    .description("monitor: follow the log from your saved checkpoint, print every new entry about your IMVUs (refused attempts included), and check that the DNS server serves each IMVU zone exactly as the ledger says, and that the kernel holds each workload to the envelope the ledger says, and that the gateway serves each IMVU's routes as the ledger says")
    .option('--imvu <id>', 'only this IMVU (default: every IMVU you created or are a member of)', imvuId)
    .option('--once', 'one round, then exit: 0 when everything is consistent, 4 on an alarm')
    .option('--interval <seconds>', 'seconds between rounds without --once', int(1, 86_400), 60)
    .addHelpText(
      'after',
      `
Each round: the platform's signed checkpoint must extend your saved one; the new entries are checked
against it and those about your IMVUs printed (JSON lines with --json); each IMVU zone is computed from
the ledger and compared with what the daemon's DNS server (its address in /health) serves: by zone
transfer when the server allows you one, otherwise by DNSSEC-signed answers validated with the keys
the ledger published. Any difference is an alarm: printed RRset by RRset, evidence written to
NEXUS_HOME/evidence/, exit code 4. Entries already shown are remembered in NEXUS_HOME/watch/.
When the daemon runs the compute fabric, each workload's cgroup limits as the kernel holds them are
printed beside those the IMVU's envelope in the entries implies (x its burst while one lasts); a
difference is an alarm too. When the daemon runs the gateway, each IMVU's hosts, routes, roles and
allow-lists as HAProxy serves them are compared with the table the entries imply; a difference is
an alarm too.`,
    )
    .action(async (o: WatchOptions, c: Command) => {
      const ctx = Ctx.of(c);
      const watcher = new Watcher(ctx, o);
      const stop = new AbortController();
      const onSigint = () => stop.abort();
      process.once('SIGINT', onSigint);
      process.once('SIGTERM', onSigint);
      try {
        for (;;) {
          const differences = await watcher.round();
          if (differences.length) throw verificationFailed(`${differences.length} difference${differences.length > 1 ? 's' : ''} between what the platform serves and its ledger`);
          if (o.once || stop.signal.aborted) return;
          await sleep(o.interval * 1000, stop);
          if (stop.signal.aborted) return;
        }
      } finally {
        process.off('SIGINT', onSigint);
        process.off('SIGTERM', onSigint);
      }
    });
}
