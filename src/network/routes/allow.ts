// A route's `ip_whitelist` as HAProxy checks it. HAProxy has no per-route address lists that a
// runtime map can carry, so the check is a lookup per prefix length: the client address masked to
// each length (`src,ipmask(L)`), written `network/L@route`, is looked up in the `allow` map. Each
// allow-list entry is therefore stored as its network address, in exactly the text form HAProxy
// prints a masked address (inet_ntop: IPv4 dotted, IPv6 as RFC 5952 with glibc's embedded IPv4).
import { isIP } from 'node:net';

/** `addr[/len]` as `network/len` in HAProxy's text form, or undefined if it is no IP prefix. */
export function canonicalPrefix(entry: string): string | undefined {
  const [addr, lenText, ...rest] = entry.split('/');
  if (rest.length || !addr) return undefined;
  const v = isIP(addr);
  if (!v) return undefined;
  const max = v === 4 ? 32 : 128;
  if (lenText !== undefined && !/^\d{1,3}$/.test(lenText)) return undefined;
  const len = lenText === undefined ? max : Number(lenText);
  if (len > max) return undefined;
  if (v === 4) {
    const n = addr.split('.').reduce((a, o) => (a << 8n) | BigInt(Number(o)), 0n);
    const masked = len === 0 ? 0n : (n >> BigInt(32 - len)) << BigInt(32 - len);
    return `${[24n, 16n, 8n, 0n].map((s) => String((masked >> s) & 255n)).join('.')}/${len}`;
  }
  const words = ipv6Words(addr);
  if (!words) return undefined;
  const n = words.reduce((a, w) => (a << 16n) | BigInt(w), 0n);
  const masked = len === 0 ? 0n : (n >> BigInt(128 - len)) << BigInt(128 - len);
  const out = Array.from({ length: 8 }, (_, i) => Number((masked >> BigInt(16 * (7 - i))) & 0xffffn));
  return `${formatIpv6(out)}/${len}`;
}

function ipv6Words(addr: string): number[] | undefined {
  // An embedded IPv4 tail (::ffff:1.2.3.4) as its two words.
  const text = addr.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a: string, b: string, c: string, d: string) => `${((Number(a) << 8) | Number(b)).toString(16)}:${((Number(c) << 8) | Number(d)).toString(16)}`);
  const parts = text.split('::');
  if (parts.length > 2) return undefined;
  const parse = (s: string) => (s ? s.split(':').map((h) => (/^[0-9a-f]{1,4}$/i.test(h) ? parseInt(h, 16) : NaN)) : []);
  const a = parse(parts[0]!);
  const b = parts.length === 2 ? parse(parts[1]!) : [];
  const fill = 8 - a.length - b.length;
  if (parts.length === 1 ? fill !== 0 : fill < 1) return undefined;
  const words = [...a, ...Array<number>(parts.length === 2 ? fill : 0).fill(0), ...b];
  return words.length === 8 && words.every((w) => Number.isInteger(w)) ? words : undefined;
}

/** glibc's inet_ntop for IPv6: the longest run (two or more) of zero words as ::, lower-case hex. */
export function formatIpv6(w: number[]): string {
  let best = { base: -1, len: 0 };
  let cur = { base: -1, len: 0 };
  for (let i = 0; i < 8; i++) {
    if (w[i] === 0) {
      cur = cur.base === -1 ? { base: i, len: 1 } : { base: cur.base, len: cur.len + 1 };
      if (cur.len > best.len) best = { ...cur };
    } else cur = { base: -1, len: 0 };
  }
  if (best.len < 2) best = { base: -1, len: 0 };
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (best.base !== -1 && i >= best.base && i < best.base + best.len) {
      if (i === best.base) out += ':';
      continue;
    }
    if (i !== 0) out += ':';
    if (i === 6 && best.base === 0 && (best.len === 6 || (best.len === 5 && w[5] === 0xffff))) {
      out += `${w[6]! >> 8}.${w[6]! & 255}.${w[7]! >> 8}.${w[7]! & 255}`;
      break;
    }
    out += w[i]!.toString(16);
  }
  if (best.base !== -1 && best.base + best.len === 8) out += ':';
  return out;
}
