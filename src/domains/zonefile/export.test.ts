import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dnsFixture, LONG_TXT, type DnsFixture } from '../dns-authority/testing.ts';
import { canonicalCompare, exportZone, quoted } from './export.ts';

let f: DnsFixture;
beforeAll(async () => {
  f = await dnsFixture();
  await f.add('quote', 'TXT', 'say "hi" \\ bye\tnow é');
});
afterAll(async () => f?.p.cleanup());

describe('exportZone', () => {
  it('writes $ORIGIN, $TTL and the synthesised SOA first, then absolute names in canonical order', async () => {
    const text = await exportZone(f.p.store, 'imvu001.world');
    const lines = text.trimEnd().split('\n');
    const { serial } = (await f.p.store.get<{ serial: number }>('SELECT serial FROM zones WHERE name = ?', ['imvu001.world']))!;
    expect(lines[1]).toBe('$ORIGIN imvu001.world.');
    expect(lines[2]).toBe('$TTL 3600');
    expect(lines[3]).toBe(`imvu001.world.\t3600\tIN\tSOA\tns1.world. hostmaster.imvu001.world. ${serial} 3600 600 1209600 300`);
    const records = lines.slice(4).filter((l) => !l.startsWith(';'));
    expect(records).toContain('imvu001.world.\t3600\tIN\tNS\tns1.world.');
    expect(records).toContain('imvu001.world.\t3600\tIN\tMX\t10 mail.imvu001.world.');
    expect(records).toContain('_sip._tcp.imvu001.world.\t3600\tIN\tSRV\t10 5 5060 sip.imvu001.world.');
    expect(records).toContain('imvu001.world.\t3600\tIN\tCAA\t0 issue "letsencrypt.org"');
    expect(records).toContain('short-ttl.imvu001.world.\t60\tIN\tA\t192.0.2.70');
    expect(records.every((l) => l.split('\t')[0]!.endsWith('.'))).toBe(true);
    const owners = records.map((l) => l.split('\t')[0]!.slice(0, -1));
    expect([...owners].sort(canonicalCompare)).toEqual(owners);
    expect(owners[0]).toBe('imvu001.world');
  });

  it('quotes and escapes text, split into 255-byte strings', async () => {
    const text = await exportZone(f.p.store, 'imvu001.world');
    expect(text).toContain('quote.imvu001.world.\t3600\tIN\tTXT\t"say \\"hi\\" \\\\ bye\\009now \\195\\169"');
    const long = text.split('\n').find((l) => l.startsWith('long.'))!;
    expect(long.split('\t')[4]).toBe(`"${LONG_TXT.slice(0, 255)}" "${LONG_TXT.slice(255, 510)}" "${LONG_TXT.slice(510)}"`);
    expect(quoted(Buffer.from([0, 0x22, 0x7f]))).toBe('"\\000\\"\\127"');
  });

  it('refuses a zone that is not hosted', async () => {
    await expect(exportZone(f.p.store, 'nowhere.example')).rejects.toThrow(/not hosted/);
  });
});
