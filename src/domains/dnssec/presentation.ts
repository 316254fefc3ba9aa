import type { Answer, DnskeyData, DsData, NsecData, RrsigData } from 'dns-packet';
import { typeCode } from './wire.ts';
import { ZONEMD, zonemdText } from '../zonefile/zonemd.ts';

// Master-file (presentation) form of the records a signed zone holds (RFC 1035 5.1, RFC 4034
// sections 2.2, 3.2, 4.2, 5.3): absolute names with trailing dots, special bytes as \DDD,
// character-strings quoted, RRSIG times as YYYYMMDDHHmmSS, digests in hex, keys in base64.

/** A name as a master-file token. */
export function nameText(name: string): string {
  if (name === '' || name === '.') return '.';
  let out = '';
  for (const byte of Buffer.from(name.endsWith('.') ? name.slice(0, -1) : name, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_*.-]/.test(c) ? c : `\\${String(byte).padStart(3, '0')}`;
  }
  return out + '.';
}

function quoted(bytes: Buffer): string {
  let out = '"';
  for (const b of bytes) {
    if (b === 0x22 || b === 0x5c) out += '\\' + String.fromCharCode(b);
    else if (b < 0x20 || b > 0x7e) out += `\\${String(b).padStart(3, '0')}`;
    else out += String.fromCharCode(b);
  }
  return out + '"';
}

/** RFC 4034 3.2: YYYYMMDDHHmmSS in UTC. */
export function timeText(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/[-:T]/g, '').slice(0, 14);
}

/** A type mnemonic, or TYPEnnn (RFC 3597) for one without. */
export function typeText(type: string): string {
  if (type === ZONEMD) return 'ZONEMD';
  const m = /^UNKNOWN_(\d+)$/.exec(type);
  return m ? `TYPE${m[1]}` : type;
}

export function rdataText(type: string, data: unknown): string {
  switch (type) {
    case 'A':
    case 'AAAA':
      return String(data);
    case 'NS':
    case 'CNAME':
      return nameText(String(data));
    case 'MX': {
      const d = data as { preference: number; exchange: string };
      return `${d.preference} ${nameText(d.exchange)}`;
    }
    case 'SRV': {
      const d = data as { priority: number; weight: number; port: number; target: string };
      return `${d.priority} ${d.weight} ${d.port} ${nameText(d.target)}`;
    }
    case 'TXT':
      return (Array.isArray(data) ? data : [data]).map((c: Buffer | string) => quoted(Buffer.isBuffer(c) ? c : Buffer.from(c, 'utf8'))).join(' ');
    case 'CAA': {
      const d = data as { flags?: number; tag: string; value: string };
      return `${d.flags ?? 0} ${d.tag} ${quoted(Buffer.from(d.value, 'utf8'))}`;
    }
    case 'SOA': {
      const d = data as { mname: string; rname: string; serial: number; refresh: number; retry: number; expire: number; minimum: number };
      return `${nameText(d.mname)} ${nameText(d.rname)} ${d.serial} ${d.refresh} ${d.retry} ${d.expire} ${d.minimum}`;
    }
    case 'DNSKEY': {
      const d = data as DnskeyData;
      return `${d.flags} 3 ${d.algorithm} ${d.key.toString('base64')}`;
    }
    case 'DS': {
      const d = data as DsData;
      return `${d.keyTag} ${d.algorithm} ${d.digestType} ${d.digest.toString('hex').toUpperCase()}`;
    }
    case 'RRSIG': {
      const d = data as RrsigData;
      return `${typeText(d.typeCovered)} ${d.algorithm} ${d.labels} ${d.originalTTL} ${timeText(d.expiration)} ${timeText(d.inception)} ${d.keyTag} ${nameText(d.signersName)} ${d.signature.toString('base64')}`;
    }
    case 'NSEC': {
      const d = data as NsecData;
      const types = [...d.rrtypes].sort((a, b) => typeCode(a) - typeCode(b));
      return `${nameText(d.nextDomain)} ${types.map(typeText).join(' ')}`;
    }
    case ZONEMD:
      return zonemdText(data as Buffer);
    default:
      throw new Error(`no presentation form for ${type}`);
  }
}

/** One RR as a master-file line: owner, TTL, class, type, RDATA. */
export function rrText(a: Answer): string {
  const r = a as unknown as { name: string; type: string; ttl?: number; data: unknown };
  return `${nameText(r.name)}\t${r.ttl ?? 0}\tIN\t${typeText(r.type)}\t${rdataText(r.type, r.data)}`;
}
