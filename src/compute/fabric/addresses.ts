// Each IMVU's workload network is one /30 of the compute range, chosen by the IMVU's sequence
// number (imvus.seq), so the address is a pure function of the ledger: the gateway, the audit
// watcher and an exported archive all compute the same one without asking the fabric.
// .0 network, .1 the host end of the veth pair, .2 the workload, .3 broadcast.

export const DEFAULT_COMPUTE_RANGE = '10.96.0.0/11';

export interface WorkloadNet {
  /** The /30, as a.b.c.d/30. */
  subnet: string;
  /** The host end of the veth pair (the workload's default gateway). */
  hostAddress: string;
  /** The workload's own address inside its network namespace. */
  workloadAddress: string;
  prefixLength: 30;
}

/** An IPv4 prefix as its first address (a 32-bit unsigned number), its size and its length. */
export interface Prefix {
  base: number;
  size: number;
  bits: number;
}

function addressNumber(address: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(address);
  if (!m) return undefined;
  const o = m.slice(1, 5).map(Number);
  if (o.some((x) => x > 255)) return undefined;
  return ((o[0]! << 24) | (o[1]! << 16) | (o[2]! << 8) | o[3]!) >>> 0;
}

/** A compute range: an IPv4 prefix of length 8 to 30 with its host bits zero. */
export function parseRange(range: string): Prefix {
  const m = /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})\/(\d{1,2})$/.exec(range);
  const base = m ? addressNumber(m[1]!) : undefined;
  if (!m) throw new Error(`compute range ${range}: must be an IPv4 prefix such as ${DEFAULT_COMPUTE_RANGE}`);
  const bits = Number(m[2]);
  if (base === undefined || bits < 8 || bits > 30) throw new Error(`compute range ${range}: octets 0-255, prefix length 8-30`);
  const size = 2 ** (32 - bits);
  if (base % size !== 0) throw new Error(`compute range ${range}: host bits must be zero`);
  return { base, size, bits };
}

/**
 * Any IPv4 prefix as `ip` prints it (a.b.c.d/n, or a bare address: /32), host bits dropped;
 * undefined when it is not one.
 */
export function parsePrefix(text: string): Prefix | undefined {
  const [addr, len] = text.split('/');
  const n = addressNumber(addr ?? '');
  const bits = len === undefined ? 32 : /^\d{1,2}$/.test(len) ? Number(len) : NaN;
  if (n === undefined || !(bits >= 0 && bits <= 32)) return undefined;
  const size = 2 ** (32 - bits);
  return { base: n - (n % size), size, bits };
}

/**
 * Whether two prefixes share an address. Two prefixes are either disjoint or one holds the other,
 * so it is enough that the shorter one holds the longer one's first address.
 */
export function prefixesOverlap(a: Prefix, b: Prefix): boolean {
  const [wide, narrow] = a.size >= b.size ? [a, b] : [b, a];
  return narrow.base - (narrow.base % wide.size) === wide.base;
}

/** Whether two compute ranges share an address (each as a.b.c.d/n). */
export function rangesOverlap(a: string, b: string): boolean {
  return prefixesOverlap(parseRange(a), parseRange(b));
}

/** Whether `address` (a.b.c.d) lies in `prefix`. */
export function prefixHolds(prefix: Prefix, address: string): boolean {
  const n = addressNumber(address);
  return n !== undefined && n >= prefix.base && n < prefix.base + prefix.size;
}

const dotted = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

/** How many IMVUs a range holds (seq 1 .. capacity). */
export function rangeCapacity(range = DEFAULT_COMPUTE_RANGE): number {
  return parseRange(range).size / 4 - 1;
}

/** The /30 of the IMVU with sequence number `seq` (1-based; the range's first /30 is never used). */
export function workloadNet(seq: number, range = DEFAULT_COMPUTE_RANGE): WorkloadNet {
  const { base, size } = parseRange(range);
  if (!Number.isInteger(seq) || seq < 1 || seq > size / 4 - 1) throw new Error(`IMVU sequence ${seq} does not fit in compute range ${range}`);
  const net = base + seq * 4;
  return { subnet: `${dotted(net)}/30`, hostAddress: dotted(net + 1), workloadAddress: dotted(net + 2), prefixLength: 30 };
}

/** The IMVU sequence number whose /30 holds `address`, or undefined when it is outside the range. */
export function seqOfAddress(address: string, range = DEFAULT_COMPUTE_RANGE): number | undefined {
  const n = addressNumber(address);
  if (n === undefined) return undefined;
  const { base, size } = parseRange(range);
  if (n < base || n >= base + size) return undefined;
  const seq = Math.floor((n - base) / 4);
  return seq >= 1 ? seq : undefined;
}
