// Served zone versus expected zone. Two ways to read what is served:
//
// - AXFR, when the server transfers the zone to us (xfr.ts: a TSIG key or an allowed address):
//   every RRset of the transfer is compared with the expected one, the DNSKEY RRset with the keys
//   the ledger published, and every RRSIG in it is checked against those keys.
// - Otherwise queries, with DO=1, over TCP: every expected RRset is asked for and the answer
//   compared, section by section, with what the server's own answer code (`Zone.lookup`) gives for
//   the expected zone; answers must carry an RRSIG that validates with a key the ledger published.
//   Names are checked one by one: at every expected name and every name the ledger ever
//   mentioned in the zone, a query for a type nobody stores (HINFO) gets a denial whose NSEC
//   must show exactly the types the ledger gives that name: the name's own NSEC (NXNAME in a
//   compact denial, RFC 9824, where the name must not exist), or, from a server that denies with
//   the zone's NSEC chain (the default), NXDOMAIN with an NSEC covering the name, the NSEC
//   covering an empty non-terminal (next name below it), or a wildcard's NSEC (`deniedTypes`).
//   A record added at a name nobody ever mentioned is found only by AXFR.
//
// ZONEMD (RFC 8976) is compared like any other RRset. In a transfer, the apex ZONEMD must be the
// digest of exactly what was transferred (verifyZonemd), carry the SOA serial the ledger gives, and,
// for an unsigned zone, equal the digest of the zone the ledger gives; a signed zone's digest covers
// its signatures (new ones each time it is signed), so there it must be signed with a key the ledger
// published instead. By queries the digest cannot be recomputed (that needs the whole zone): the
// apex ZONEMD RRset must be there, with the serial the ledger gives and signed with a ledger key
// (for an unsigned zone, equal to the ledger's digest).
import type { Answer, NsecData, RrsigData } from 'dns-packet';
import type { ServedRR } from '../dns-authority/journal.ts';
import { DNSKEY_TTL } from '../dnssec/online.ts';
import { dnskeyRdata, keyTag } from '../dnssec/keytag.ts';
import { rdataText } from '../dnssec/presentation.ts';
import { verifyRRset } from '../dnssec/sign.ts';
import { canonicalRdata, compareNames } from '../dnssec/wire.ts';
import { lowerAscii } from '../records/rdata.ts';
import { SOA_TTL } from '../records/soa.ts';
import { HASH_SHA384, SCHEME_SIMPLE, ZONEMD, decodeZonemd, verifyZonemd, zonemdAnswer, zonemdText } from '../zonefile/zonemd.ts';
import type { DnsTcpClient, Message } from './dns-client.ts';
import type { DnskeyData, ExpectedZone } from './expected.ts';

export interface Difference {
  zone: string;
  owner: string;
  type: string;
  /** Where it was seen: `axfr`, or the query and section. */
  where: string;
  /** The RRset the ledger gives, one "TTL RDATA" per record (empty: it must not exist). */
  expected: string[];
  /** The RRset the server gave. */
  served: string[];
  /** What is wrong, in words. */
  problem: string;
}

export interface ZoneCheck {
  zone: string;
  imvu: string;
  mode: 'axfr' | 'queries';
  expectedSerial: number;
  servedSerial: number | null;
  /** RRsets compared (AXFR) or queries asked. */
  checked: number;
  differences: Difference[];
  /** The messages the server sent (base64), signed by the zone's key: the evidence. */
  messages: string[];
}

interface RR {
  name: string;
  type: string;
  ttl: number;
  data: unknown;
}

/** Types that are the signer's, not the zone data's: compared on their own terms. */
const DNSSEC_TYPES = new Set(['RRSIG', 'NSEC', 'NSEC3', 'NSEC3PARAM', 'DNSKEY', 'OPT']);
const isZonemd = (type: string) => type === ZONEMD || type === 'ZONEMD' || type === 'TYPE63';
/** A type nobody stores in a zone here: a query for it shows a name's type bitmap (NODATA) or its absence (NXNAME). */
const PROBE_TYPE = 'HINFO';
const NXNAME_NAMES = new Set(['UNKNOWN_128', 'NXNAME', 'TYPE128']);

const bare = (s: string) => lowerAscii(s.endsWith('.') ? s.slice(0, -1) : s);

function show(type: string, ttl: number, data: unknown): string {
  try {
    if (isZonemd(type) && (Buffer.isBuffer(data) || data instanceof Uint8Array)) return `${ttl} ${zonemdText(data)}`;
    return `${ttl} ${rdataText(type, data)}`;
  } catch {
    return `${ttl} \\# ${Buffer.isBuffer(data) ? data.toString('hex') : JSON.stringify(data)}`;
  }
}

function key(type: string, ttl: number, data: unknown): string {
  try {
    return `${ttl} ${canonicalRdata(type, data).toString('hex')}`;
  } catch {
    return show(type, ttl, data);
  }
}

type Sets = Map<string, { owner: string; type: string; rrs: Map<string, string> }>;

function group(rrs: Iterable<RR>): Sets {
  const out: Sets = new Map();
  for (const r of rrs) {
    const owner = bare(r.name);
    const k = `${owner}\t${r.type}`;
    let set = out.get(k);
    if (!set) out.set(k, (set = { owner, type: r.type, rrs: new Map() }));
    set.rrs.set(key(r.type, r.ttl, r.data), show(r.type, r.ttl, r.data));
  }
  return out;
}

function compareSets(zone: string, where: string, expected: Sets, served: Sets): Difference[] {
  const out: Difference[] = [];
  for (const k of new Set([...expected.keys(), ...served.keys()])) {
    const e = expected.get(k);
    const s = served.get(k);
    const ek = [...(e?.rrs.keys() ?? [])].sort();
    const sk = [...(s?.rrs.keys() ?? [])].sort();
    if (ek.join('\n') === sk.join('\n')) continue;
    const owner = (e ?? s)!.owner;
    const type = (e ?? s)!.type;
    const problem = !s ? 'the ledger has this RRset; the server does not serve it' : !e ? 'the server serves this RRset; the ledger has no such records' : 'the served RRset differs from the ledger';
    out.push({ zone, owner, type, where, expected: [...(e?.rrs.values() ?? [])].sort(), served: [...(s?.rrs.values() ?? [])].sort(), problem });
  }
  return out;
}

const asRR = (r: ServedRR): RR => ({ name: r.owner, type: r.type, ttl: r.ttl, data: r.data });
const fromAnswer = (a: Answer): RR => a as unknown as RR;

function dnskeyRRs(zone: string, keys: DnskeyData[]): RR[] {
  return keys.map((k) => ({ name: zone, type: 'DNSKEY', ttl: DNSKEY_TTL, data: k }));
}

function tagOf(k: DnskeyData): number {
  return keyTag(dnskeyRdata(k.flags, k.algorithm, k.key));
}

/** Does `sig` (over owner/type) validate with one of the ledger's keys of the zone over `data`? */
function validates(z: ExpectedZone, sig: RrsigData, owner: string, data: readonly unknown[]): boolean {
  if (bare(sig.signersName) !== z.zone) return false;
  for (const k of z.dnskeys) {
    if (tagOf(k) !== sig.keyTag || k.algorithm !== sig.algorithm) continue;
    try {
      if (verifyRRset(k.key, sig, owner, data)) return true;
    } catch {
      // a key or signature that does not parse validates nothing
    }
  }
  return false;
}

/** The apex ZONEMD the ledger gives an unsigned zone (a signed zone's digest covers its signatures: not predictable). */
function expectedZonemd(z: ExpectedZone): RR | undefined {
  if (z.dnskeys.length) return undefined;
  return fromAnswer(zonemdAnswer(z.zone, SOA_TTL, decodeZonemd(z.compiled.zonemd)));
}

/** What the apex ZONEMD RRset `served` (with the serial the ledger gives) does not explain; empty when it is as it must be. */
function zonemdProblems(z: ExpectedZone, served: RR[]): string[] {
  if (!served.length) return ['the zone carries no ZONEMD at its apex'];
  const out: string[] = [];
  for (const r of served) {
    let d;
    try {
      d = decodeZonemd(r.data as Uint8Array);
    } catch (err) {
      out.push(`a served ZONEMD does not parse: ${(err as Error).message}`);
      continue;
    }
    if (d.scheme !== SCHEME_SIMPLE || d.algorithm !== HASH_SHA384) out.push(`a served ZONEMD has scheme ${d.scheme} and hash algorithm ${d.algorithm}, not SIMPLE with SHA-384 (1 1)`);
    else if (d.serial !== z.serial) out.push(`the served ZONEMD is for serial ${d.serial}, not the serial ${z.serial} the ledger gives`);
  }
  if (served.length > 1) out.push(`the apex holds ${served.length} ZONEMD records; the platform publishes one`);
  return out;
}

function zonemdDifference(z: ExpectedZone, where: string, served: RR[], problem: string): Difference {
  const want = expectedZonemd(z);
  return {
    zone: z.zone,
    owner: z.zone,
    type: 'ZONEMD',
    where,
    expected: want ? [show(want.type, want.ttl, want.data)] : [`a ZONEMD with serial ${z.serial}, SIMPLE, SHA-384, the digest of the zone as transferred, signed with a key the ledger published`],
    served: served.map((r) => show(r.type, r.ttl, r.data)),
    problem,
  };
}

/** Compares a zone transfer (every RR, the closing SOA included) with the expected zone. */
export function compareTransfer(z: ExpectedZone, transferred: Answer[], messages: Buffer[]): ZoneCheck {
  const rrs = transferred.slice(0, -1).map(fromAnswer);
  const soa = rrs.find((r) => r.type === 'SOA');
  const data = rrs.filter((r) => !DNSSEC_TYPES.has(r.type));
  // The apex ZONEMD: the digest of exactly what was transferred, with the ledger's serial.
  const apexZonemd = rrs.filter((r) => isZonemd(r.type) && bare(r.name) === z.zone);
  const zonemdWhere = 'axfr: ZONEMD';
  const differences: Difference[] = zonemdProblems(z, apexZonemd).map((p) => zonemdDifference(z, zonemdWhere, apexZonemd, p));
  if (apexZonemd.length) {
    const v = verifyZonemd(z.zone, rrs);
    if (!v.ok) differences.push(zonemdDifference(z, zonemdWhere, apexZonemd, `the served ZONEMD is not the digest of the zone transferred (${v.reason})`));
  }
  // An unsigned zone's digest follows from the ledger: compared with the other RRsets below. A
  // signed zone's cannot be predicted: checked above, and its signature in the RRSIG loop below.
  const want = expectedZonemd(z);
  const expectedRRs = [...z.records.map(asRR), ...(want ? [want] : apexZonemd)];
  differences.push(...compareSets(z.zone, 'axfr', group(expectedRRs), group(data)));
  if (z.dnskeys.length && apexZonemd.length) {
    const zonemdData = apexZonemd.map((r) => r.data);
    const signedBy = rrs.some((r) => r.type === 'RRSIG' && bare(r.name) === z.zone && isZonemd((r.data as RrsigData).typeCovered) && validates(z, r.data as RrsigData, z.zone, zonemdData));
    if (!signedBy) differences.push(zonemdDifference(z, zonemdWhere, apexZonemd, 'the served ZONEMD is not signed with a key the ledger published'));
  }
  differences.push(...compareSets(z.zone, 'axfr', group(dnskeyRRs(z.zone, z.dnskeys)), group(rrs.filter((r) => r.type === 'DNSKEY'))));
  const sets = new Map<string, unknown[]>();
  for (const r of rrs) if (r.type !== 'RRSIG') sets.set(`${bare(r.name)}\t${r.type}`, [...(sets.get(`${bare(r.name)}\t${r.type}`) ?? []), r.data]);
  for (const r of rrs) {
    if (r.type !== 'RRSIG') continue;
    const sig = r.data as RrsigData;
    const owner = bare(r.name);
    const covered = sets.get(`${owner}\t${sig.typeCovered}`);
    if (!covered || !validates(z, sig, owner, covered))
      differences.push({
        zone: z.zone,
        owner,
        type: `RRSIG(${sig.typeCovered})`,
        where: 'axfr',
        expected: [`a signature by DNSKEY ${z.dnskeys.map(tagOf).join(' or ') || '(none: the zone has no key)'} over the served RRset`],
        served: [show('RRSIG', r.ttl, sig)],
        problem: 'this signature does not validate with the keys the ledger published for the zone',
      });
  }
  const servedSerial = soa ? Number((soa.data as { serial: number }).serial) : null;
  return { zone: z.zone, imvu: z.imvu, mode: 'axfr', expectedSerial: z.serial, servedSerial, checked: group(rrs).size, differences, messages: messages.map((m) => m.toString('base64')) };
}

function sectionSets(msg: Message, section: 'answers' | 'authorities' | 'additionals'): Sets {
  return group(((msg[section] ?? []) as Answer[]).map(fromAnswer).filter((r) => !DNSSEC_TYPES.has(r.type)));
}

function expectedSets(rrs: Answer[]): Sets {
  return group(rrs.map(fromAnswer).filter((r) => !DNSSEC_TYPES.has(r.type)));
}

/**
 * The types a denial for `name` says it has: its own NSEC's bitmap (either denial); from a chain
 * denial, NXNAME for an NXDOMAIN whose NSEC covers the name, none for an empty non-terminal (the
 * covering NSEC's next name lies below it), a wildcard's bitmap for a name it answers for.
 */
function deniedTypes(msg: Message, name: string): string[] {
  const nsecs = ((msg.authorities ?? []) as Answer[]).map(fromAnswer).filter((r) => r.type === 'NSEC');
  const bitmap = (r: RR) => [...new Set((r.data as NsecData).rrtypes.filter((t) => t !== 'RRSIG' && t !== 'NSEC').map((t) => (NXNAME_NAMES.has(t) ? 'NXNAME' : t)))].sort();
  const own = nsecs.find((r) => bare(r.name) === name);
  if (own) return bitmap(own);
  if (((msg.answers ?? []) as Answer[]).length) return ['(an answer instead of a denial)'];
  const covering = nsecs.find((r) => covers(bare(r.name), bare((r.data as NsecData).nextDomain), name));
  if (!covering) return ['(no NSEC)'];
  if (msg.rcode === 'NXDOMAIN') return ['NXNAME'];
  const next = bare((covering.data as NsecData).nextDomain);
  if (next.endsWith('.' + name)) return [];
  const wildcard = nsecs.find((r) => bare(r.name).startsWith('*.') && name.endsWith(bare(r.name).slice(1)));
  return wildcard ? bitmap(wildcard) : ['(no NSEC)'];
}

/** An NSEC from `owner` to `next` covers `name`: it lies strictly between them in canonical order (the last NSEC wraps round to the apex). */
function covers(owner: string, next: string, name: string): boolean {
  const after = compareNames(owner, name) < 0;
  const before = compareNames(name, next) < 0;
  return compareNames(owner, next) < 0 ? after && before : after || before;
}

/** Checks the zone by asking for everything the ledger says it holds, and for the names it must not hold. */
export async function compareByQueries(z: ExpectedZone, dns: DnsTcpClient): Promise<ZoneCheck> {
  const differences: Difference[] = [];
  const messages: string[] = [];
  let servedSerial: number | null = null;
  let checked = 0;
  const ask = async (owner: string, type: string): Promise<Message> => {
    const msg = await dns.query(owner, type);
    messages.push(msg.raw.toString('base64'));
    checked++;
    return msg;
  };
  const signed = z.dnskeys.length > 0;

  // The keys first: every signature below is checked against the ledger's, not the served ones.
  if (signed) {
    const msg = await ask(z.zone, 'DNSKEY');
    const served = ((msg.answers ?? []) as Answer[]).map(fromAnswer).filter((r) => r.type === 'DNSKEY' && bare(r.name) === z.zone);
    differences.push(...compareSets(z.zone, `${z.zone} DNSKEY: answer`, group(dnskeyRRs(z.zone, z.dnskeys)), group(served)));
  }

  const sets = group(z.records.map(asRR));
  for (const { owner, type } of sets.values()) {
    const msg = await ask(owner, type);
    const where = `${owner} ${type}`;
    if (msg.rcode !== 'NOERROR' && msg.rcode !== 'NXDOMAIN') {
      differences.push({ zone: z.zone, owner, type, where, expected: [...sets.get(`${owner}\t${type}`)!.rrs.values()], served: [], problem: `the server answered ${msg.rcode}` });
      continue;
    }
    const want = z.compiled.lookup(owner, owner, type);
    differences.push(...compareSets(z.zone, `${where}: answer`, expectedSets(want.answers), sectionSets(msg, 'answers')));
    differences.push(...compareSets(z.zone, `${where}: authority`, expectedSets(want.authorities), sectionSets(msg, 'authorities')));
    differences.push(...compareSets(z.zone, `${where}: additional`, expectedSets(want.additionals), sectionSets(msg, 'additionals')));
    if (type === 'SOA') {
      const soa = ((msg.answers ?? []) as Answer[]).map(fromAnswer).find((r) => r.type === 'SOA');
      servedSerial = soa ? Number((soa.data as { serial: number }).serial) : null;
    }
    // An authoritative answer is signed with a key the ledger published.
    if (signed && want.aa && !want.referral) {
      const answers = ((msg.answers ?? []) as Answer[]).map(fromAnswer);
      for (const set of expectedSets(want.answers).values()) {
        const data = answers.filter((r) => bare(r.name) === set.owner && r.type === set.type).map((r) => r.data);
        const sigs = answers.filter((r) => r.type === 'RRSIG' && bare(r.name) === set.owner && (r.data as RrsigData).typeCovered === set.type);
        if (!data.length || sigs.some((s) => validates(z, s.data as RrsigData, set.owner, data))) continue;
        differences.push({
          zone: z.zone,
          owner: set.owner,
          type: `RRSIG(${set.type})`,
          where: `${where}: answer`,
          expected: [`a signature by DNSKEY ${z.dnskeys.map(tagOf).join(' or ')}`],
          served: sigs.map((s) => show('RRSIG', s.ttl, s.data)),
          problem: sigs.length ? 'no signature of this answer validates with the keys the ledger published' : 'the answer is not signed',
        });
      }
    }
  }

  // The apex ZONEMD: there, with the ledger's serial, signed with a ledger key (for an unsigned zone,
  // the ledger's digest). Its digest can only be recomputed from a transfer.
  {
    const msg = await ask(z.zone, ZONEMD);
    const where = `${z.zone} ZONEMD: answer`;
    const answers = ((msg.answers ?? []) as Answer[]).map(fromAnswer);
    const served = answers.filter((r) => isZonemd(r.type) && bare(r.name) === z.zone);
    for (const p of zonemdProblems(z, served)) differences.push(zonemdDifference(z, where, served, p));
    const want = expectedZonemd(z);
    if (want && served.length) differences.push(...compareSets(z.zone, where, group([want]), group(served)));
    if (signed && served.length) {
      const sigs = answers.filter((r) => r.type === 'RRSIG' && bare(r.name) === z.zone && isZonemd((r.data as RrsigData).typeCovered));
      if (!sigs.some((s) => validates(z, s.data as RrsigData, z.zone, served.map((r) => r.data))))
        differences.push(zonemdDifference(z, where, served, sigs.length ? 'no signature of the served ZONEMD validates with the keys the ledger published' : 'the served ZONEMD is not signed'));
    }
  }

  // What exists at each name: the NSEC of a NODATA answer lists it (compact denial).
  if (signed) {
    const names = new Set([...[...sets.values()].map((s) => s.owner), ...z.mentioned]);
    for (const name of [...names].sort()) {
      if (z.compiled.delegationOf(name)) continue; // below a cut: the child's business
      const types = z.compiled.typesAt(name);
      const expected = types === undefined ? ['NXNAME'] : [...types, ...(name === z.zone ? ['DNSKEY'] : [])].sort();
      const served = deniedTypes(await ask(name, PROBE_TYPE), name);
      if (expected.join(' ') !== served.join(' '))
        differences.push({
          zone: z.zone,
          owner: name,
          type: 'types',
          where: `${name} ${PROBE_TYPE}: NSEC type bitmap`,
          expected: types === undefined ? ['(the name does not exist)'] : expected,
          served: served.length === 1 && served[0] === 'NXNAME' ? ['(the name does not exist)'] : served,
          problem: types === undefined ? 'the server has a name the ledger does not' : 'the types served at this name are not those of the ledger',
        });
    }
  }
  if (servedSerial !== z.serial)
    differences.unshift({
      zone: z.zone,
      owner: z.zone,
      type: 'SOA serial',
      where: `${z.zone} SOA: answer`,
      expected: [String(z.serial)],
      served: [servedSerial === null ? '(none)' : String(servedSerial)],
      problem: 'the served serial is not the one the ledger gives',
    });
  return { zone: z.zone, imvu: z.imvu, mode: 'queries', expectedSerial: z.serial, servedSerial, checked, differences, messages };
}

/** Checks one zone: AXFR if the server transfers it to us, otherwise queries. */
export async function checkZone(z: ExpectedZone, dns: DnsTcpClient): Promise<ZoneCheck> {
  const xfr = await dns.axfr(z.zone);
  if ('refused' in xfr) return compareByQueries(z, dns);
  return compareTransfer(z, xfr.records, xfr.messages);
}
