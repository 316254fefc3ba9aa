// Assertions about what a refused request left in the ledger, read back over the API.
import { expect } from 'vitest';
import type { LedgerEntry } from '../../src/core/types.ts';
import type { Client, Res } from './api.ts';

/**
 * Asserts the refusal (status and error line) and the ledger entry it left: the entry at the
 * receipt's index records exactly what was sent, as denied, with a denial by `gate`.
 */
export async function expectRecordedDenial(api: Client, res: Res, sent: unknown, status: number, gate: number, error: RegExp): Promise<LedgerEntry> {
  expect(res.status, res.text).toBe(status);
  expect(res.body.error).toMatch(error);
  expect(res.body.error).toMatch(new RegExp(`^gate ${gate}: `));
  expect(res.body.allowed).toBe(false);
  const index = res.body.index as number;
  expect(Number.isInteger(index)).toBe(true);
  const { entries } = (await api.get<{ entries: LedgerEntry[] }>(`/v1/ledger/entries?from=${index}&to=${index + 1}`)).body;
  const entry = entries.find((e) => e.index === index);
  expect(entry, `ledger entry ${index}`).toBeDefined();
  expect(entry!.decision.allowed).toBe(false);
  expect(entry!.decision.gates.filter((g) => g.status === 'deny').map((g) => g.gate)).toContain(gate);
  expect(entry!.decision.gates).toEqual(res.body.gates);
  expect(entry!.command).toEqual(sent);
  return entry!;
}

/**
 * Asserts a refusal that left no ledger entry: an attempt that is not authenticated (unsigned,
 * forged, unknown identity, replayed, for another platform) is refused with `status` and only counted.
 */
export async function expectUnrecorded(api: Client, send: () => Promise<Res>, status: number, error: RegExp): Promise<Res> {
  const before = (await api.get<{ size: number }>('/health')).body.size;
  const res = await send();
  expect(res.status, res.text).toBe(status);
  expect(res.body.error).toMatch(error);
  expect(res.body.index).toBeUndefined();
  expect((await api.get<{ size: number }>('/health')).body.size).toBe(before);
  return res;
}

/** The entries the ledger holds about an IMVU, read through the `imvu` filter. */
export async function imvuEntries(api: Client, imvu: string): Promise<LedgerEntry[]> {
  return (await api.get<{ entries: LedgerEntry[] }>(`/v1/ledger/entries?imvu=${imvu}`)).body.entries;
}
