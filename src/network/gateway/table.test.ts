// The route lines `nexus audit watch` compares: what follows from an IMVU's ledger entries alone.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { imvuRouteLines, isImvuLine, mapDelta, routeValue, touchedImvus, type MapName } from './table.ts';
import type { LedgerEntry } from '../../core/types.ts';

const maps = (requestsPerWindow: number, connections: number, port = 8080): Partial<Record<MapName, [string, string][]>> => ({
  hosts: [['a.world', 'IMVU-001']],
  exact: [['IMVU-001/health', routeValue('public', port, 600, 'IMVU-001.2', false, { requests: requestsPerWindow, connections })]],
  prefix: [
    ['IMVU-001/', routeValue('public', 8080, 600, 'IMVU-001.1', false, { requests: requestsPerWindow, connections })],
    ['IMVU-002/', routeValue('public', 8080, 600, 'IMVU-002.1', false, { requests: 1, connections: 1 })],
  ],
});

describe('imvuRouteLines', () => {
  it("leaves out the IMVU's bounds, which depend on the serving node's per-core limits, and keeps the rest of each route", () => {
    const lines = imvuRouteLines(maps(30_000, 128), 'IMVU-001');
    expect(lines.exact).toEqual(['IMVU-001/health public|8080|600|IMVU-001.2|0']);
    expect(lines.prefix).toEqual(['IMVU-001/ public|8080|600|IMVU-001.1|0']);
    // Another node's limits: the same lines.
    expect(imvuRouteLines(maps(1_000_000, 4), 'IMVU-001')).toEqual(lines);
    // A route sent to another port is another line.
    expect(imvuRouteLines(maps(30_000, 128, 8081), 'IMVU-001').exact).toEqual(['IMVU-001/health public|8081|600|IMVU-001.2|0']);
  });

  it('a route value carries the route id and the IMVU bounds after the five ledger fields', () => {
    expect(routeValue('private', 3001, 120, 'IMVU-007.3', true, { requests: 30_000, connections: 128 })).toBe('private|3001|120|IMVU-007.3|1|30000|128');
  });
});

describe('isImvuLine', () => {
  // IMVU-100 is a prefix of IMVU-1000 as text: a creator of IMVU-100 must not be shown IMVU-1000's lines.
  const lines: [MapName, string, string][] = [
    ['hosts', 'shop1000.world', 'IMVU-1000'],
    ['imvus', 'IMVU-1000', '1|US-CCPA|*'],
    ['exact', 'IMVU-1000/health', 'public|8080|600|IMVU-1000.1|0'],
    ['prefix', 'IMVU-1000/', 'public|8080|600|IMVU-1000.2|0'],
    ['roles', 'IMVU-1000.1:admin', '1'],
    ['allow', '10.0.0.0/8@IMVU-1000.1', '1'],
  ];
  it("takes each map's line by the id in its place, not by text the id is a prefix of", () => {
    for (const [m, k, v] of lines) {
      expect(isImvuLine(m, 'IMVU-1000', k, v), `${m} ${k}`).toBe(true);
      expect(isImvuLine(m, 'IMVU-100', k, v), `${m} ${k}`).toBe(false);
    }
    // A host pointed at another IMVU is that IMVU's line, whatever the name says.
    expect(isImvuLine('hosts', 'IMVU-001', 'imvu001.world', 'IMVU-002')).toBe(false);
    expect(isImvuLine('hosts', 'IMVU-002', 'imvu001.world', 'IMVU-002')).toBe(true);
  });
});

/** A map as HAProxy's runtime API changes it: `del map` drops every line of a key, `set map` sets every line of a key (none: the gateway adds it), `add map` appends. */
function applyDelta(lines: [string, string][], d: ReturnType<typeof mapDelta>): [string, string][] {
  let out = lines.filter(([k]) => !d.del.includes(k));
  const add = [...d.add];
  for (const [k, v] of d.set) {
    if (out.some(([x]) => x === k)) out = out.map(([x, y]) => [x, x === k ? v : y]);
    else add.push([k, v]);
  }
  return [...out, ...add];
}

describe('mapDelta', () => {
  const key = fc.constantFrom('IMVU-001/a', 'IMVU-001/b', 'IMVU-001/c', 'IMVU-001/d', 'IMVU-001/e');
  const line = fc.tuple(key, fc.constantFrom('public|1', 'public|2', 'private|3'));
  const sorted = (l: [string, string][]) => l.map(([k, v]) => `${k} ${v}`).sort();

  it("turns one IMVU's lines into the new ones, with other IMVUs' lines untouched (any lines, duplicate keys too)", () => {
    fc.assert(
      fc.property(fc.array(line, { maxLength: 6 }), fc.array(line, { maxLength: 6 }), (before, after) => {
        const others: [string, string][] = [['IMVU-002/a', 'public|9']];
        expect(sorted(applyDelta([...others, ...before], mapDelta(before, after)))).toEqual(sorted([...others, ...after]));
      }),
    );
  });

  it('sends nothing for unchanged lines, and a changed value as one set', () => {
    const before: [string, string][] = [['IMVU-001/a', 'public|1'], ['IMVU-001/b', 'public|1']];
    expect(mapDelta(before, before)).toEqual({ del: [], set: [], add: [] });
    expect(mapDelta(before, [['IMVU-001/a', 'public|2'], ['IMVU-001/c', 'public|1']])).toEqual({ del: ['IMVU-001/b'], set: [['IMVU-001/a', 'public|2']], add: [['IMVU-001/c', 'public|1']] });
  });
});

describe('touchedImvus', () => {
  const entry = (index: number, type: string, body: Record<string, unknown>, allowed = true) => ({ index, command: { command: { type, body } }, decision: { allowed, gates: [] } }) as unknown as LedgerEntry;
  const created = async (index: number) => (index === 7 ? 'IMVU-007' : undefined);

  it('names the IMVUs whose routes, envelope, status or domains an entry may change; neither usage nor refusals', async () => {
    const t = await touchedImvus(
      [
        entry(1, 'usage.report', { imvu: 'IMVU-001' }),
        entry(2, 'consent.record', { imvu: 'IMVU-001' }),
        entry(3, 'route.set', { imvu: 'IMVU-002' }),
        entry(4, 'imvu.scale', { imvu: 'IMVU-003' }),
        entry(5, 'route.set', { imvu: 'IMVU-004' }, false),
        entry(6, 'identity.register', { name: 'bob' }),
        entry(7, 'imvu.create', { owner: 'x', name: 'seven' }),
        entry(8, 'domain.verified', { imvu: 'IMVU-005', domain: 'x.example' }),
        entry(9, 'imvu.import', { id: 'IMVU-009' }),
        entry(10, 'integrity.alarm', { imvus: ['IMVU-001'] }),
      ],
      created,
    );
    expect([...t!].sort()).toEqual(['IMVU-002', 'IMVU-003', 'IMVU-005', 'IMVU-007', 'IMVU-009']);
  });

  it('gives up (the table is read whole) on an entry it cannot place', async () => {
    expect(await touchedImvus([entry(1, 'platform.peer', { origin: 'x' })], created)).toBeUndefined();
    expect(await touchedImvus([entry(8, 'imvu.create', { owner: 'x' })], created)).toBeUndefined();
  });
});
