// GET /v1/status: what `nexus status` shows and the start-up banner prints (src/api/status-view.ts).
// Public facts only: no key, secret or private read; the pid and the data directory only to peers
// on this machine.
import { splitNote } from '../core/ledger/checkpoint.ts';
import { servedCheckpoint } from './checkpoint.ts';
import type { ApiContext } from './routes.ts';
import type { DaemonStatus, Listener } from './status-view.ts';

/** What the daemon knows about itself (set by startServer once it listens). */
export interface DaemonInfo {
  version: string;
  pid: number;
  dataDir: string;
  startedAt: string;
  listeners: Listener[];
  tls: boolean;
}

export async function daemonStatus(ctx: ApiContext, local: boolean): Promise<DaemonStatus> {
  const db = ctx.platform.store;
  const info = ctx.daemon;
  const p = await db.get<{ id: string; origin: string; suffix: string }>('SELECT id, origin, suffix FROM platform LIMIT 1');
  const counts = await db.get<{ total: number; active: number }>("SELECT COUNT(*) AS total, COALESCE(SUM(status = 'active'), 0) AS active FROM imvus");
  let checkpoint: DaemonStatus['ledger']['checkpoint'] = null;
  const served = await servedCheckpoint(ctx);
  if (served) {
    // The cosignature lines come last, after the platform's own signature.
    const { sigs } = splitNote(served.note);
    const witnesses = served.cosignatures ? sigs.slice(-served.cosignatures).map((s) => s.name) : [];
    checkpoint = { size: served.size, cosignatures: served.cosignatures, witnesses };
  }
  const integrity = ctx.platform.integrity;
  const last = integrity.alarms.at(-1);
  return {
    status: 'ok',
    version: info?.version ?? 'unknown',
    startedAt: info?.startedAt ?? '',
    pid: local && info ? info.pid : null,
    dataDir: local && info ? info.dataDir : null,
    platform: { id: p?.id ?? '', origin: p?.origin ?? '', suffix: p?.suffix ?? '' },
    listeners: info?.listeners ?? [],
    tls: info?.tls ?? false,
    ledger: { size: await db.ledgerSize(), checkpoint },
    imvus: { total: Number(counts?.total ?? 0), active: Number(counts?.active ?? 0) },
    integrity: {
      lastCheck: integrity.lastCheck?.at ?? null,
      alarm: integrity.lastCheck?.alarm ?? false,
      alarmsSinceStart: integrity.alarms.length,
      lastAlarm: last ? { index: last.index, trigger: last.trigger } : null,
      lostHistory: integrity.lostHistory ?? null,
    },
    witnesses: (ctx.witnesses?.status() ?? []).map((w) => ({
      name: w.name,
      url: w.url,
      reachable: w.lastError ? false : w.cosignedSize > 0 ? true : null,
      cosignedSize: w.cosignedSize,
      lagging: w.lagging,
      lastError: w.lastError ? w.lastError.message.slice(0, 300) : null,
    })),
  };
}
