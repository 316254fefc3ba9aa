import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isWithin, lowerAscii, parseRecord, txtChunks } from './rdata.ts';

describe('record values', () => {
  it('splits text into chunks of at most 255 bytes that join back to the text, without cutting a character', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 700 }), (s) => {
        const chunks = txtChunks(s);
        expect(chunks.every((c) => c.length <= 255)).toBe(true);
        expect(Buffer.concat(chunks).toString('utf8')).toBe(s);
        for (const c of chunks) expect(Buffer.from(c.toString('utf8'), 'utf8').equals(c)).toBe(true);
      }),
      { numRuns: 300 },
    );
    expect(txtChunks('')).toEqual([Buffer.alloc(0)]);
    expect(txtChunks('a'.repeat(510)).map((c) => c.length)).toEqual([255, 255]);
  });

  it('parses the stored forms of every served type and rejects the rest', () => {
    expect(parseRecord('MX', '10 mail.example.world.')).toEqual({ type: 'MX', preference: 10, exchange: 'mail.example.world' });
    expect(parseRecord('SRV', '0 0 443 .')).toEqual({ type: 'SRV', priority: 0, weight: 0, port: 443, target: '.' });
    expect(parseRecord('CAA', '128 issue "ca.example"')).toEqual({ type: 'CAA', flags: 128, tag: 'issue', value: 'ca.example' });
    expect(parseRecord('NS', 'ns1.world.')).toEqual({ type: 'NS', target: 'ns1.world' });
    expect(parseRecord('A', '300.1.1.1')).toBeUndefined();
    expect(parseRecord('AAAA', '192.0.2.1')).toBeUndefined();
    expect(parseRecord('MX', '70000 mail.example.world.')).toBeUndefined();
    expect(parseRecord('CNAME', 'relative')).toBeUndefined();
    expect(parseRecord('CAA', '256 issue "x"')).toBeUndefined();
    expect(parseRecord('SOA', 'anything')).toBeUndefined();
  });

  it('compares names in ASCII only (RFC 4343), and by whole labels', () => {
    expect(lowerAscii('WwW.Example.WORLD')).toBe('www.example.world');
    expect(lowerAscii('\u212A')).toBe('\u212A'); // the Kelvin sign is not a K
    expect(isWithin('a.example.world', 'example.world')).toBe(true);
    expect(isWithin('example.world', 'example.world')).toBe(true);
    expect(isWithin('badexample.world', 'example.world')).toBe(false);
  });
});
