// `nexus status` names every listener by what it serves: the mail and gateway ports are not DNS.
import { describe, expect, it } from 'vitest';
import { formatStatus, type DaemonStatus } from './status-view.ts';

const status = (listeners: DaemonStatus['listeners']): DaemonStatus => ({
  status: 'ok',
  version: '0.1.0',
  startedAt: '2026-12-02T06:00:00.000Z',
  pid: 1,
  dataDir: '/d',
  platform: { id: 'nx1x', origin: 'nexus.local/nx1x', suffix: 'world' },
  listeners,
  tls: false,
  ledger: { size: 1, checkpoint: null },
  imvus: { total: 0, active: 0 },
  integrity: { lastCheck: null, alarm: false, alarmsSinceStart: 0, lastAlarm: null },
  witnesses: [],
});

describe('nexus status lines', () => {
  it('names each listener by its service', () => {
    const lines = formatStatus(
      status([
        { service: 'api', protocol: 'http', address: '127.0.0.1', port: 7600 },
        { service: 'dns', protocol: 'udp', address: '127.0.0.1', port: 53 },
        { service: 'dns', protocol: 'tcp', address: '127.0.0.1', port: 53 },
        { service: 'smtp', protocol: 'tcp', address: '127.0.0.1', port: 25 },
        { service: 'submission', protocol: 'tcp', address: '127.0.0.1', port: 587 },
        { service: 'smtps', protocol: 'tcp', address: '127.0.0.1', port: 465 },
        { service: 'imap', protocol: 'imaps', address: '127.0.0.1', port: 993 },
        { service: 'gateway', protocol: 'https', address: '::1', port: 443 },
      ]),
    );
    const listens = lines.filter((l) => l.startsWith('listens')).map((l) => l.replace(/^listens +/, '').replace(/ +/g, ' '));
    expect(listens).toEqual([
      'API HTTP 127.0.0.1:7600',
      'DNS UDP 127.0.0.1:53',
      'DNS TCP 127.0.0.1:53',
      'SMTP (MX) 127.0.0.1:25',
      'Submission 127.0.0.1:587',
      'SMTPS 127.0.0.1:465',
      'IMAPS 127.0.0.1:993',
      'Gateway HTTPS [::1]:443',
    ]);
  });

  it('says DNS is off when it does not listen', () => {
    expect(formatStatus(status([{ service: 'api', protocol: 'http', address: '127.0.0.1', port: 7600 }])).some((l) => /^listens +DNS +off$/.test(l))).toBe(true);
  });

  it('puts history lost while the daemon ran first on the integrity line', () => {
    const s = status([]);
    s.integrity = { ...s.integrity, lastCheck: '2026-12-03T08:00:00.000Z', alarm: true, lostHistory: 'the ledger has gaps: 9 entries stored for tree size 10' };
    expect(formatStatus(s).find((l) => l.startsWith('integrity'))).toMatch(/^integrity +HISTORY LOST: the ledger has gaps: 9 entries stored for tree size 10; ALARM at the last check/);
  });
});
