// The daemon's status (GET /v1/status) as a person reads it: the lines `nexus status` prints and
// the banner the daemon prints on a terminal when it starts. Types and text only: the CLI loads
// this module without the server.

export interface Listener {
  /** `api` (HTTP or HTTPS), `dns`, the mail listeners (`smtp` the MX, `submission` 587, `smtps` 465), `imap` (STARTTLS or implicit TLS) or `gateway` (HAProxy's HTTPS). */
  service: 'api' | 'dns' | 'smtp' | 'submission' | 'smtps' | 'imap' | 'gateway';
  protocol: 'http' | 'https' | 'udp' | 'tcp' | 'imap' | 'imaps';
  address: string;
  port: number;
}

export interface DaemonStatus {
  status: 'ok';
  version: string;
  startedAt: string;
  /** The daemon's pid and data directory: shown to peers on this machine only (null for others). */
  pid: number | null;
  dataDir: string | null;
  platform: { id: string; origin: string; suffix: string };
  listeners: Listener[];
  /** Whether the API is served over TLS. */
  tls: boolean;
  ledger: {
    size: number;
    /** The newest signed checkpoint and the witnesses that cosigned exactly it. */
    checkpoint: { size: number; cosignatures: number; witnesses: string[] } | null;
  };
  imvus: { total: number; active: number };
  integrity: {
    /** When the projections were last compared with the ledger (at start, then every interval). */
    lastCheck: string | null;
    /** Whether that check found a difference (an integrity alarm was raised and the projections rebuilt). */
    alarm: boolean;
    /** Alarms raised since the daemon started, and the newest one's ledger entry. */
    alarmsSinceStart: number;
    lastAlarm: { index: number; trigger: string } | null;
    /** Set when a check found entries deleted from the ledger while the daemon ran: the next start refuses. */
    lostHistory?: string | null;
  };
  witnesses: {
    name: string;
    url: string;
    /** true after a successful exchange, false after a failed one, null before the first. */
    reachable: boolean | null;
    cosignedSize: number;
    lagging: boolean;
    lastError: string | null;
  }[];
}

/** What each listener is called in `nexus status`: the service, and the protocol where it has several. */
const LISTENER_LABEL: Record<Listener['service'], (protocol: string) => string> = {
  api: (p) => `API ${p}`,
  dns: (p) => `DNS ${p}`,
  smtp: () => 'SMTP (MX)',
  submission: () => 'Submission',
  smtps: () => 'SMTPS',
  imap: (p) => p,
  gateway: (p) => `Gateway ${p}`,
};

const hostPort = (address: string, port: number) => `${address.includes(':') ? `[${address}]` : address}:${port}`;

/** The status as aligned lines (no trailing newline). */
export function formatStatus(s: DaemonStatus, url?: string, extra: [string, string][] = []): string[] {
  const rows: [string, string][] = [];
  rows.push(['daemon', `up (nexus ${s.version}${s.pid !== null ? `, pid ${s.pid}` : ''}, since ${s.startedAt})`]);
  if (url) rows.push(['url', url]);
  rows.push(['platform', `${s.platform.id} (log origin ${s.platform.origin}, suffix ${s.platform.suffix})`]);
  for (const l of s.listeners) {
    const what = LISTENER_LABEL[l.service](l.protocol.toUpperCase());
    rows.push(['listens', `${what.padEnd(13)} ${hostPort(l.address, l.port)}`]);
  }
  if (!s.listeners.some((l) => l.service === 'dns')) rows.push(['listens', `${'DNS'.padEnd(13)} off`]);
  rows.push(['data', s.dataDir ?? '(not shown to a remote peer)']);
  const cp = s.ledger.checkpoint;
  rows.push(['ledger', `${s.ledger.size} entries`]);
  rows.push([
    'checkpoint',
    cp ? `tree size ${cp.size}, ${cp.cosignatures} cosignature${cp.cosignatures === 1 ? '' : 's'}${cp.witnesses.length ? ` (${cp.witnesses.join(', ')})` : ''}` : 'none yet',
  ]);
  rows.push(['IMVUs', `${s.imvus.total} (${s.imvus.active} active)`]);
  const i = s.integrity;
  rows.push([
    'integrity',
    `${i.lostHistory ? `HISTORY LOST: ${i.lostHistory}; ` : ''}${i.alarm ? 'ALARM at the last check' : 'ok'} (last check ${i.lastCheck ?? 'not yet'}; ${i.alarmsSinceStart} alarm${i.alarmsSinceStart === 1 ? '' : 's'} since start${i.lastAlarm ? `, newest ledger entry ${i.lastAlarm.index}` : ''})`,
  ]);
  if (!s.witnesses.length) rows.push(['witnesses', 'none configured']);
  for (const w of s.witnesses) {
    const state = w.reachable === null ? 'not contacted yet' : w.reachable ? 'reachable' : `unreachable (${w.lastError ?? 'failed'})`;
    rows.push(['witness', `${w.name} ${w.url}: ${state}; cosigned up to tree size ${w.cosignedSize}${w.lagging ? ', lagging' : ''}`]);
  }
  rows.push(...extra);
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`);
}
