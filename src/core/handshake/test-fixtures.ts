// Test-only helpers: hand-built ledger entries with fake signatures. Not part of the public API.
import type { CommandType, Json, LedgerEntry } from '../types.ts';

export interface FakeEntry {
  index: number;
  type: CommandType;
  body: { [k: string]: Json };
  ts?: string;
  allowed?: boolean;
}

export function fakeEntry({ index, type, body, ts = '2025-12-15T12:00:00Z', allowed = true }: FakeEntry): LedgerEntry {
  return {
    v: 1,
    index,
    at: ts,
    command: {
      command: { v: 1, type, actor: 'nx1fakeactor', origin: 'nexus.test/fixtures', nonce: `nonce-${index}`, ts, body },
      sig: 'fake-signature',
    },
    decision: { allowed, gates: [] },
  };
}

/** Builds entries with consecutive indices from 0, in the given order. */
export function ledger(...specs: Omit<FakeEntry, 'index'>[]): LedgerEntry[] {
  return specs.map((s, index) => fakeEntry({ ...s, index }));
}

export function priceBook(
  version: number,
  effectiveFrom: string,
  prices: Record<string, [amount: string, per: string]>,
  currency = 'USD',
): { [k: string]: Json } {
  const p: { [k: string]: Json } = {};
  for (const [metric, [amount, per]] of Object.entries(prices)) p[metric] = { amount, per };
  return { version, currency, effectiveFrom, prices: p };
}

export function usage(
  imvu: string,
  start: string,
  metrics: Record<string, string>,
  service = 'meter',
  end = start,
): { [k: string]: Json } {
  return { imvu, service, period: { start, end }, metrics };
}

export function revenue(imvu: string, amount: string, extra: { currency?: string; at?: string; memo?: string } = {}): { [k: string]: Json } {
  const body: { [k: string]: Json } = { imvu, amount, currency: extra.currency ?? 'USD' };
  if (extra.at !== undefined) body.at = extra.at;
  if (extra.memo !== undefined) body.memo = extra.memo;
  return body;
}

/** Recursively freezes a value, to prove functions do not mutate their inputs. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
