// What the zone-in-parts suites ask both platforms and compare: dig's answers for a large zone,
// without the RRSIGs' validity times and signature bytes (each platform signs at its own time).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import type { RunningServer } from '../../src/api/server.ts';
import type { Run } from '../cli/harness.ts';

const execFileAsync = promisify(execFile);

export function ok(r: Run): Run {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

export const dig = async (server: RunningServer, name: string, type: string) =>
  (await execFileAsync('dig', ['@127.0.0.1', '-p', String(server.dns!.server.port), '+time=10', '+tries=3', '+norec', '+dnssec', '+nocmd', '+nostats', '+noquestion', name, type], { encoding: 'utf8' })).stdout;

/** The status and answer section, without the RRSIGs' validity times and signature bytes. */
export function answer(text: string): string {
  const status = /status: (\w+)/.exec(text)?.[1] ?? '?';
  const lines = text.split('\n').filter((l) => l && !l.startsWith(';'));
  const records = lines.map((l) => {
    const f = l.split(/\s+/);
    const i = f.indexOf('RRSIG');
    return i === -1 ? f.join(' ') : [f[0], f[i + 1], f[i + 2], f[i + 3], f[i + 4], f[i + 7], f[i + 8]].join(' ');
  });
  return [status, ...records.sort()].join('\n');
}

/** The owner name of the i-th generated record. */
export const recordName = (i: number) => `h${String(i).padStart(5, '0')}`;

/** The apex, records across every part of a zone of `records` generated names, and one name past them. */
export function questionsFor(zone: string, records: number): [string, string][] {
  return [
    [zone, 'SOA'],
    [zone, 'DNSKEY'],
    [zone, 'NS'],
    ...[0, 1, 499, 500, 999, 1000, 1234, 1777, 2000, records - 2, records - 1].flatMap((i): [string, string][] => [
      [`${recordName(i)}.${zone}`, 'TXT'],
      [`${recordName(i)}.${zone}`, 'A'],
    ]),
    [`${recordName(records)}.${zone}`, 'TXT'],
  ];
}

/** Every question's answer from `server`, keyed by "name type". */
export const dnsOf = async (server: RunningServer, questions: [string, string][]) =>
  Object.fromEntries(await Promise.all(questions.map(async ([n, t]) => [`${n} ${t}`, answer(await dig(server, n, t))] as const)));
