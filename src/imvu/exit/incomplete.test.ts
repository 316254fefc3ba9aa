import { describe, expect, it } from 'vitest';
import { importHeaderDigest } from '../../core/policy/commands.ts';
import type { LedgerEntry } from '../../core/types.ts';
import { describeIncomplete, incompleteZones } from './incomplete.ts';

const IMVU = 'IMVU-001';
const ZONE = 'gallery-art.org';
const transfer = { imvu: IMVU, domain: ZONE, code: 'c', zone: { name: ZONE, serial: 1, records: [], dnssec: [] }, parts: [1, 2, 3].map((n) => ({ sha256: String(n).repeat(64), records: 1 })) };
const header = importHeaderDigest(transfer);

let index = 0;
const entry = (type: string, body: object, allowed = true) => ({ v: 1, index: ++index, at: '', command: { command: { type, body } }, decision: { allowed, gates: [] } }) as unknown as LedgerEntry;
const part = (n: number, allowed = true) => entry('imvu.import.part', { imvu: IMVU, import: header, part: n, records: [] }, allowed);

describe('incompleteZones', () => {
  it('lists the parts a transfer declared and no allowed part recorded', () => {
    const got = incompleteZones([entry('domain.transfer', transfer), part(0), part(1, false)], IMVU);
    expect(got).toEqual([{ zone: ZONE, declaredBy: 'domain.transfer', entry: index - 2, parts: 3, missing: [1, 2] }]);
    expect(describeIncomplete(got[0]!)).toMatch(/2 of the 3 parts its domain\.transfer \(ledger entry \d+\) declared were never recorded \(imvu\.import\.part 1-2\)/);
  });

  it('a transfer whose parts are all recorded is whole; a release ends what was owed', () => {
    expect(incompleteZones([entry('domain.transfer', transfer), part(0), part(1), part(2)], IMVU)).toEqual([]);
    expect(incompleteZones([entry('domain.transfer', transfer), part(0), entry('domain.release', { imvu: IMVU, domain: ZONE })], IMVU)).toEqual([]);
  });

  it('the same header again (released and transferred again) owes every part again', () => {
    const again = incompleteZones([entry('domain.transfer', transfer), part(0), part(1), part(2), entry('domain.release', { imvu: IMVU, domain: ZONE }), entry('domain.transfer', transfer), part(2)], IMVU);
    expect(again.map((z) => z.missing)).toEqual([[0, 1]]);
  });

  it("another IMVU's transfer is not this one's", () => {
    expect(incompleteZones([entry('domain.transfer', { ...transfer, imvu: 'IMVU-002' })], IMVU)).toEqual([]);
  });
});
