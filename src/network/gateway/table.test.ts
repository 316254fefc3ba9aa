// The route lines `nexus audit watch` compares: what follows from an IMVU's ledger entries alone.
import { describe, expect, it } from 'vitest';
import { imvuRouteLines, routeValue, type MapName } from './table.ts';

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
