import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dnsFixture, type DnsFixture } from '../../src/domains/dns-authority/testing.ts';
import { exportZone } from '../../src/domains/zonefile/export.ts';

// BIND's own zone checker reads our export (Debian package bind9-utils).

const hasChecker = spawnSync('named-checkzone', ['-v']).status === 0;
if (!hasChecker) console.warn('dns-zonefile interop: named-checkzone not found (apt-get install bind9-utils); skipping');

describe.skipIf(!hasChecker)('named-checkzone accepts the BIND export', () => {
  let f: DnsFixture;
  let dir: string;
  beforeAll(async () => {
    f = await dnsFixture();
    await f.add('quote', 'TXT', 'say "hi" \\ and ; not a comment');
    dir = mkdtempSync(join(tmpdir(), 'nexus-zonefile-'));
  });
  afterAll(async () => {
    await f?.p.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const zone of ['imvu001.world', 'imvu002.world']) {
    it(`${zone}: loads with the serial, and reads back the same records`, async () => {
      const file = join(dir, `${zone}.zone`);
      writeFileSync(file, await exportZone(f.p.store, zone));
      const { serial } = (await f.p.store.get<{ serial: number }>('SELECT serial FROM zones WHERE name = ?', [zone]))!;
      const check = spawnSync('named-checkzone', ['-k', 'fail', '-n', 'fail', '-m', 'fail', '-M', 'fail', '-S', 'fail', zone, file], { encoding: 'utf8' });
      expect(check.stdout + check.stderr).toContain(`loaded serial ${serial}`);
      expect(check.status, check.stdout + check.stderr).toBe(0);
      expect(check.stdout + check.stderr).not.toMatch(/REQUIRED GLUE|error|ignoring/i);
      // Canonical dump by BIND, compared record by record with the projection.
      const dump = execFileSync('named-checkzone', ['-q', '-D', '-o', '-', zone, file], { encoding: 'utf8' });
      const rows = await f.p.store.all<{ n: number }>('SELECT COUNT(*) AS n FROM records WHERE zone = ?', [zone]);
      const dumped = dump.split('\n').filter((l) => l.trim() && !l.startsWith(';'));
      expect(dumped.length).toBe(rows[0]!.n + 2); // + the SOA and the ZONEMD
      // BIND reads the ZONEMD back (it prints the digest in groups): serial, SIMPLE, SHA-384, 48 octets.
      const zonemd = new RegExp(`^${zone.replace(/\./g, '\\.')}\\.\\s+3600\\s+IN\\s+ZONEMD\\s+${serial} 1 1 ([0-9A-F ]+)$`, 'm').exec(dump);
      expect(zonemd, dump).not.toBeNull();
      expect(zonemd![1]!.replace(/ /g, '')).toMatch(/^[0-9A-F]{96}$/);
      if (zone === 'imvu001.world') {
        expect(dump).toMatch(/quote\.imvu001\.world\.\s+3600\s+IN\s+TXT\s+"say \\"hi\\" \\\\ and ; not a comment"/);
        expect(dump).toMatch(/\*\.wild\.imvu001\.world\.\s+3600\s+IN\s+A\s+192\.0\.2\.9/);
        expect(dump).toMatch(/sub\.imvu001\.world\.\s+3600\s+IN\s+NS\s+ns1\.sub\.imvu001\.world\./);
      }
    });
  }
});
