import type { Store } from '../../core/store/index.ts';
import { Zone, type RecordRow } from '../dns-authority/zone.ts';
import { PLATFORM_ZONE_IMVU, readZoneRows } from '../registry/zone.ts';
import { lowerAscii, parseRecord, type RData } from '../records/rdata.ts';
import { SOA_TTL, synthesiseSoa } from '../records/soa.ts';
import { signedZoneText, type SignedZoneOptions, type ZoneKeys } from '../dnssec/index.ts';
import { zonemdText } from './zonemd.ts';

// A hosted zone as a BIND master file (RFC 1035 section 5): $ORIGIN, $TTL, the synthesised SOA
// first, then every record in canonical order (RFC 4034 6.1 for names, type code, then value),
// absolute names with trailing dots, character-strings quoted and escaped. Reads projections only.

const TYPE_CODE: Record<string, number> = { A: 1, NS: 2, CNAME: 5, SOA: 6, MX: 15, TXT: 16, AAAA: 28, SRV: 33, DS: 43, CAA: 257 };

/** A name as a master-file token: special and non-printable characters as \DDD. */
function nameToken(name: string): string {
  if (name === '' || name === '.') return '.';
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_*.-]/.test(c) ? c : `\\${String(byte).padStart(3, '0')}`;
  }
  return out.endsWith('.') ? out : out + '.';
}

/** A character-string in double quotes: `"` and `\` escaped, bytes outside printable ASCII as \DDD. */
export function quoted(bytes: Buffer): string {
  let out = '"';
  for (const b of bytes) {
    if (b === 0x22 || b === 0x5c) out += '\\' + String.fromCharCode(b);
    else if (b < 0x20 || b > 0x7e) out += `\\${String(b).padStart(3, '0')}`;
    else out += String.fromCharCode(b);
  }
  return out + '"';
}

function rdataText(d: RData): string {
  switch (d.type) {
    case 'A':
    case 'AAAA':
      return d.address;
    case 'CNAME':
    case 'NS':
      return nameToken(d.target);
    case 'MX':
      return `${d.preference} ${nameToken(d.exchange)}`;
    case 'SRV':
      return `${d.priority} ${d.weight} ${d.port} ${nameToken(d.target)}`;
    case 'TXT':
      return d.chunks.map(quoted).join(' ');
    case 'CAA':
      return `${d.flags} ${d.tag} ${quoted(Buffer.from(d.value, 'utf8'))}`;
    case 'DS':
      return `${d.keyTag} ${d.algorithm} ${d.digestType} ${d.digest.toString('hex').toUpperCase()}`;
  }
}

/** RFC 4034 6.1 canonical order: compare labels from the right, as lower-case bytes. */
export function canonicalCompare(a: string, b: string): number {
  const la = a.split('.').reverse();
  const lb = b.split('.').reverse();
  for (let i = 0; i < Math.min(la.length, lb.length); i++) {
    const c = Buffer.compare(Buffer.from(la[i]!, 'utf8'), Buffer.from(lb[i]!, 'utf8'));
    if (c !== 0) return c;
  }
  return la.length - lb.length;
}

export interface ExportOptions {
  /** Export the zone signed: DNSKEY, RRSIGs and the NSEC chain (src/domains/dnssec/signed-zone.ts). */
  dnssec?: ZoneKeys;
  signing?: SignedZoneOptions;
}

export async function exportZone(store: Store, zone: string, opts: ExportOptions = {}): Promise<string> {
  const name = lowerAscii(zone.replace(/\.$/, ''));
  if (opts.dnssec) return signedZoneText(store, name, opts.dnssec, opts.signing);
  const read = await readZoneRows(store, name);
  if (!read) throw new Error(`zone ${name} is not hosted here`);
  return render(name, read.imvu, read.serial, read.suffix, read.rows);
}

function render(zone: string, imvu: string, serial: number, suffix: string, rows: RecordRow[]): string {
  const soa = synthesiseSoa(zone, serial, lowerAscii(suffix));
  const origin = nameToken(zone);
  // The apex ZONEMD (RFC 8976): the digest of the zone as the server compiles and serves it.
  const zonemd = new Zone(zone, imvu, serial, soa, rows).zonemd;
  const lines = [
    `; zone ${zone} of ${imvu === PLATFORM_ZONE_IMVU ? 'the platform' : imvu}, serial ${serial}, exported from the Nexus projections`,
    `$ORIGIN ${origin}`,
    `$TTL ${SOA_TTL}`,
    `${origin}\t${SOA_TTL}\tIN\tSOA\t${soa.mname} ${soa.rname} ${soa.serial} ${soa.refresh} ${soa.retry} ${soa.expire} ${soa.minimum}`,
    `${origin}\t${SOA_TTL}\tIN\tZONEMD\t${zonemdText(zonemd)}`,
  ];
  const skipped: string[] = [];
  const records: { owner: string; type: string; text: string; ttl: number }[] = [];
  for (const r of rows) {
    const owner = lowerAscii(r.name);
    const data = parseRecord(r.type, r.value);
    if (!data || !(owner === zone || owner.endsWith('.' + zone)) || (r.type === 'CNAME' && owner === zone)) {
      skipped.push(`; skipped (not servable): ${owner} ${r.type} ${JSON.stringify(r.value)}`);
      continue;
    }
    records.push({ owner, type: r.type, text: rdataText(data), ttl: Number(r.ttl) >>> 0 });
  }
  // One TTL per RRset (RFC 2181 5.2): the smallest, as the server answers.
  const ttl = new Map<string, number>();
  for (const r of records) {
    const key = `${r.owner} ${r.type}`;
    ttl.set(key, Math.min(ttl.get(key) ?? Infinity, r.ttl));
  }
  records.sort(
    (a, b) => canonicalCompare(a.owner, b.owner) || (TYPE_CODE[a.type] ?? 0) - (TYPE_CODE[b.type] ?? 0) || (a.text < b.text ? -1 : a.text > b.text ? 1 : 0),
  );
  let previous = '';
  for (const r of records) {
    const line = `${nameToken(r.owner)}\t${ttl.get(`${r.owner} ${r.type}`)}\tIN\t${r.type}\t${r.text}`;
    if (line !== previous) lines.push(line);
    previous = line;
  }
  return [...lines, ...skipped, ''].join('\n');
}
