import { isIP } from 'node:net';

// Record values as the projection stores them (see src/core/policy/projection-writer.ts and the
// value checks in src/core/policy/preconditions.ts), parsed into typed data. A value that does not
// parse is skipped by the readers rather than served half-right.

export type RData =
  | { type: 'A' | 'AAAA'; address: string }
  | { type: 'CNAME' | 'NS'; target: string }
  | { type: 'MX'; preference: number; exchange: string }
  | { type: 'SRV'; priority: number; weight: number; port: number; target: string }
  | { type: 'TXT'; chunks: Buffer[] }
  | { type: 'CAA'; flags: number; tag: string; value: string }
  /** Only in the platform's own zone (src/domains/registry): the delegation signer of an IMVU zone below it. */
  | { type: 'DS'; keyTag: number; algorithm: number; digestType: number; digest: Buffer };

export const SERVED_TYPES = ['A', 'AAAA', 'CNAME', 'MX', 'TXT', 'SRV', 'NS', 'CAA'] as const;

const HOST = /^(?=.{1,254}$)([a-z0-9_*](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)+$/i;

/** An absolute host name as stored (`mail.example.world.`) without its trailing dot; `.` stays `.`. */
function host(value: string): string | undefined {
  if (value === '.') return '.';
  return HOST.test(value) ? value.slice(0, -1) : undefined;
}

function u16(s: string | undefined): number | undefined {
  if (s === undefined || !/^\d{1,5}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

/**
 * Splits text into character-strings of at most 255 bytes (RFC 1035 3.3.14), cutting between
 * UTF-8 sequences where possible so that each chunk stays valid text on its own.
 */
export function txtChunks(value: string): Buffer[] {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length === 0) return [Buffer.alloc(0)];
  const out: Buffer[] = [];
  let start = 0;
  while (start < bytes.length) {
    let end = Math.min(start + 255, bytes.length);
    if (end < bytes.length) {
      let back = end;
      // Step back over continuation bytes (10xxxxxx) to the start of the sequence being cut.
      while (back > start && back > end - 4 && (bytes[back]! & 0xc0) === 0x80) back--;
      if (back > start && (bytes[back]! & 0xc0) !== 0x80) end = back;
    }
    out.push(bytes.subarray(start, end));
    start = end;
  }
  return out;
}

export function parseRecord(type: string, value: string): RData | undefined {
  switch (type) {
    case 'A':
      return isIP(value) === 4 ? { type, address: value } : undefined;
    case 'AAAA':
      return isIP(value) === 6 ? { type, address: value } : undefined;
    case 'CNAME':
    case 'NS': {
      const target = value === '.' ? undefined : host(value);
      return target ? { type, target } : undefined;
    }
    case 'MX': {
      const m = /^(\d{1,5}) (\S+)$/.exec(value);
      const preference = u16(m?.[1]);
      const exchange = m ? host(m[2]!) : undefined;
      return preference !== undefined && exchange ? { type, preference, exchange } : undefined;
    }
    case 'SRV': {
      const m = /^(\d{1,5}) (\d{1,5}) (\d{1,5}) (\S+)$/.exec(value);
      if (!m) return undefined;
      const [priority, weight, port] = [u16(m[1]), u16(m[2]), u16(m[3])];
      const target = host(m[4]!);
      if (priority === undefined || weight === undefined || port === undefined || !target) return undefined;
      return { type, priority, weight, port, target };
    }
    case 'TXT':
      return { type, chunks: txtChunks(value) };
    case 'CAA': {
      const m = /^(\d{1,3}) ([a-z0-9]{1,15}) "([^"]*)"$/i.exec(value);
      if (!m || Number(m[1]) > 255) return undefined;
      return { type, flags: Number(m[1]), tag: m[2]!.toLowerCase(), value: m[3]! };
    }
    case 'DS': {
      const m = /^(\d{1,5}) (\d{1,3}) (\d{1,3}) ((?:[0-9A-F]{2}){1,64})$/.exec(value);
      const keyTag = u16(m?.[1]);
      if (!m || keyTag === undefined || Number(m[2]) > 255 || Number(m[3]) > 255) return undefined;
      return { type, keyTag, algorithm: Number(m[2]), digestType: Number(m[3]), digest: Buffer.from(m[4]!, 'hex') };
    }
    default:
      return undefined;
  }
}

/** The name a record points at (for additional-section processing and in-zone chains), lower case. */
export function targetOf(d: RData): string | undefined {
  switch (d.type) {
    case 'CNAME':
    case 'NS':
      return d.target.toLowerCase();
    case 'MX':
      return d.exchange.toLowerCase();
    case 'SRV':
      return d.target === '.' ? undefined : d.target.toLowerCase();
    default:
      return undefined;
  }
}

/** ASCII-only lower-casing: DNS names compare case-insensitively in ASCII only (RFC 4343). */
export function lowerAscii(s: string): string {
  return /[A-Z]/.test(s) ? s.replace(/[A-Z]+/g, (c) => c.toLowerCase()) : s;
}

/** True if `name` is `zone` or lies below it (both absolute, lower case, without trailing dot). */
export function isWithin(name: string, zone: string): boolean {
  return name === zone || (name.length > zone.length && name.endsWith(zone) && name.charCodeAt(name.length - zone.length - 1) === 46);
}
