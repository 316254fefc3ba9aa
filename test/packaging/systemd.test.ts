// packaging/nexus.service: systemd accepts every line of it (systemd-analyze verify, when
// installed), and it keeps the hardening the install note promises.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const UNIT = readFileSync(join(ROOT, 'packaging', 'nexus.service'), 'utf8');
const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

/** The [Service] settings, name → values (a setting may repeat). */
function settings(unit: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const line of unit.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) map.set(m[1]!, [...(map.get(m[1]!) ?? []), m[2]!]);
  }
  return map;
}

describe('packaging/nexus.service', () => {
  it('runs `nexus start` on /var/lib/nexus with the promised hardening', () => {
    const s = settings(UNIT);
    expect(s.get('ExecStart')).toEqual(['/usr/local/bin/nexus start']);
    expect(s.get('Environment')).toContain('NEXUS_DATA=/var/lib/nexus');
    expect(s.get('ProtectSystem')).toEqual(['strict']);
    expect(s.get('ReadWritePaths')).toEqual(['/var/lib/nexus']);
    expect(s.get('NoNewPrivileges')).toEqual(['yes']);
    expect(s.get('PrivateTmp')).toEqual(['yes']);
    expect(s.get('CapabilityBoundingSet')).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(s.get('AmbientCapabilities')).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(s.get('User')).toEqual(['nexus']);
    // Exit codes 5 (lost history) and 6 (directory already served) are not cured by restarting.
    expect(s.get('RestartPreventExitStatus')).toEqual(['5 6']);
  });

  it.skipIf(!hasAnalyze)('passes systemd-analyze verify without a warning', () => {
    // verify checks that ExecStart's program exists: point it at this checkout's CLI.
    const dir = mkdtempSync(join(tmpdir(), 'nexus-unit-'));
    try {
      const unit = join(dir, 'nexus.service');
      writeFileSync(unit, UNIT.replace('/usr/local/bin/nexus ', `${process.execPath} ${join(ROOT, 'bin', 'nexus.js')} `));
      const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
      // verify exits 0 even for unknown keys and bad values; its warnings name the file.
      expect(`${r.stdout}${r.stderr}`.split('\n').filter((l) => l.includes(unit))).toEqual([]);
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!hasAnalyze)('the check catches a bad line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nexus-unit-'));
    try {
      const unit = join(dir, 'nexus.service');
      writeFileSync(unit, UNIT.replace('/usr/local/bin/nexus ', `${process.execPath} `).replace('ProtectSystem=strict', 'ProtectSystem=strikt'));
      const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
      expect(`${r.stdout}${r.stderr}`).toContain('strikt');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
