// The route lines `nexus audit watch` compares: what follows from an IMVU's ledger entries alone.
import { describe, expect, it } from 'vitest';
import { imvuRouteLines, isImvuLine, routeValue, type MapName } from './table.ts';

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
