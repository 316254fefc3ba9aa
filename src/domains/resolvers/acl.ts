// Who may use the resolver: an allow-list of CIDR prefixes (IPv4 and IPv6). Everyone else is
// REFUSED. IPv4-mapped IPv6 sources (::ffff:a.b.c.d, from dual-stack sockets) count as IPv4.
import { BlockList, isIP } from 'node:net';

export const DEFAULT_ALLOW = ['127.0.0.0/8', '::1/128'];

export class AclError extends Error {
  override name = 'AclError';
}

export function parseCidr(cidr: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(cidr.trim());
  const family = m ? isIP(m[1]!) : 0;
  if (!m || family === 0) throw new AclError(`'${cidr}' is not an address or CIDR prefix (e.g. 10.0.0.0/8, fd00::/8)`);
  const max = family === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) throw new AclError(`'${cidr}': an IPv${family} prefix is at most /${max}`);
  return { address: m[1]!, prefix, family: family === 4 ? 'ipv4' : 'ipv6' };
}

export class Acl {
  private readonly list = new BlockList();
  readonly rules: readonly string[];

  constructor(cidrs: readonly string[]) {
    for (const c of cidrs) {
      const { address, prefix, family } = parseCidr(c);
      this.list.addSubnet(address, prefix, family);
    }
    this.rules = [...cidrs];
  }

  allows(address: string): boolean {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    const a = mapped ? mapped[1]! : address;
    const family = isIP(a);
    if (family === 0) return false;
    return this.list.check(a, family === 4 ? 'ipv4' : 'ipv6');
  }
}
