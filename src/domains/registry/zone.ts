import { isIP } from 'node:net';
import type { SqlReader } from '../../core/store/index.ts';
import type { RecordRow } from '../dns-authority/zone.ts';
import { DIGEST_SHA256, dsDigest } from '../dnssec/keys.ts';
import { dnskeyRdata, keyTag } from '../dnssec/keytag.ts';
import { isWithin, lowerAscii } from '../records/rdata.ts';

// The platform's own zone: the DNS suffix (`world`), the parent of every IMVU zone
// (`imvu001.world`). Nothing of it is stored as records: like the SOA of every zone it is derived
// from the projections, here from what the ledger says about the suffix and the zones below it:
//
// - the platform's DNSSEC key (`dnssec_keys`, imvu '') and name servers (`nameservers`), both
//   from the platform-signed `platform.zone` entry; until there is one, the zone does not exist
//   here (queries for it are REFUSED, as before);
// - at the apex: NS naming the name servers, each with its A/AAAA;
// - a delegation for every hosted zone below the suffix that no other hosted zone encloses (the
//   IMVU domains): NS naming the same name servers, and one DS per DNSSEC key the zone has,
//   computed from the key in `dnssec_keys` (SHA-256), so a new key is a new DS.
//
// Serial: the ledger index of the newest entry that shaped the zone, i.e. the largest `entry` of
// the platform's key row (every `platform.zone` rewrites it, with the name servers), of the zones
// below the suffix (created, never removed) and of their keys (a new key rewrites its row). Each
// change to the zone writes one of those rows with a larger index, so the serial moves with every
// change, never backwards, and needs no counter of its own. It moves for a few entries that do
// not change the zone (a key of a zone deeper down), which costs a secondary one transfer.

/** The `imvu` of the platform's own zone where a zone's owner is shown: no IMVU owns it. */
export const PLATFORM_ZONE_IMVU = '';
/** TTL of the NS, A/AAAA and DS records of the platform's zone (the DS as the child's DNSKEY). */
export const PLATFORM_ZONE_TTL = 3600;

/** A LIKE pattern for the names strictly below `suffix`. */
function below(suffix: string): string {
  return '%.' + suffix.replace(/[\\%_]/g, (c) => '\\' + c);
}

function parentOf(name: string): string {
  const dot = name.indexOf('.');
  return dot < 0 ? '' : name.slice(dot + 1);
}

/** The serial of the platform's zone, or undefined when the platform has not declared it (no `platform.zone` yet). */
export async function platformZoneSerial(db: SqlReader, suffix: string): Promise<number | undefined> {
  const key = await db.get<{ entry: number }>('SELECT entry FROM dnssec_keys WHERE zone = ? AND imvu = ?', [suffix, PLATFORM_ZONE_IMVU]);
  if (!key) return undefined;
  const like = below(suffix);
  // The newest first, by the entry indexes: almost every zone is under the suffix, so the first row
  // read is usually the answer (a MAX over a LIKE would read every zone).
  const row = await db.get<{ zones: number | null; keys: number | null; exits: number | null; parts: number | null }>(
    "SELECT (SELECT entry FROM zones WHERE name LIKE ? ESCAPE '\\' ORDER BY entry DESC LIMIT 1) AS zones, (SELECT entry FROM dnssec_keys WHERE zone LIKE ? ESCAPE '\\' ORDER BY entry DESC LIMIT 1) AS keys, (SELECT MAX(exited_entry) FROM exits) AS exits, (SELECT MAX(entry) FROM import_parts) AS parts",
    [like, like],
  );
  // An IMVU that exits takes its delegation out of the platform's zone, and one whose import's last
  // part is recorded puts it in: those are changes of the zone too.
  return Math.max(Number(key.entry), Number(row?.zones ?? 0), Number(row?.keys ?? 0), Number(row?.exits ?? 0), Number(row?.parts ?? 0)) >>> 0;
}

/** The DS of a zone's key as the platform's zone stores it: `<tag> <algorithm> 2 <SHA-256 hex>`. */
export function dsValue(zone: string, key: { algorithm: number; flags: number; public_key: string }): string {
  const rdata = dnskeyRdata(Number(key.flags), Number(key.algorithm), Buffer.from(key.public_key, 'base64'));
  return `${keyTag(rdata)} ${Number(key.algorithm)} ${DIGEST_SHA256} ${dsDigest(zone, rdata).toString('hex').toUpperCase()}`;
}

/** The names of the platform's name servers (`ns1.<suffix>` until it has declared them), sorted. */
export async function nameServerNames(db: SqlReader, suffix: string): Promise<string[]> {
  const rows = await db.all<{ name: string }>('SELECT DISTINCT name FROM nameservers ORDER BY name');
  return rows.length ? rows.map((r) => r.name) : [`ns1.${suffix}`];
}

/** The records of the platform's zone (apex NS, name server addresses, delegations with their DS), as the projections hold it now. */
export async function platformZoneRecords(db: SqlReader, suffix: string): Promise<RecordRow[]> {
  const servers = await db.all<{ name: string; address: string }>('SELECT name, address FROM nameservers ORDER BY name, address');
  const names = servers.length ? [...new Set(servers.map((s) => s.name))] : [`ns1.${suffix}`];
  const out: RecordRow[] = [];
  const ns = (owner: string) => {
    for (const n of names) out.push({ name: owner, type: 'NS', value: `${n}.`, ttl: PLATFORM_ZONE_TTL });
  };
  ns(suffix);
  for (const s of servers) out.push({ name: s.name, type: isIP(s.address) === 6 ? 'AAAA' : 'A', value: s.address, ttl: PLATFORM_ZONE_TTL });
  const like = below(suffix);
  // Exited IMVUs' zones are not served, so they are not delegated either (no lame delegation).
  const hosted = new Set(
    (await db.all<{ name: string }>("SELECT z.name AS name FROM zones z JOIN imvus i ON i.id = z.imvu WHERE z.name LIKE ? ESCAPE '\\' AND i.status NOT IN ('exited', 'importing')", [like])).map((z) =>
      lowerAscii(z.name),
    ),
  );
  const keys = new Map<string, { algorithm: number; flags: number; public_key: string }[]>();
  for (const k of await db.all<{ zone: string; algorithm: number; flags: number; public_key: string }>(
    "SELECT zone, algorithm, flags, public_key FROM dnssec_keys WHERE zone LIKE ? ESCAPE '\\' ORDER BY zone",
    [like],
  )) {
    const list = keys.get(k.zone);
    if (list) list.push(k);
    else keys.set(k.zone, [k]);
  }
  for (const child of [...hosted].sort()) {
    if (!isWithin(child, suffix)) continue;
    // Only the topmost hosted zones: a zone inside another is that zone's to delegate.
    let enclosed = false;
    for (let p = parentOf(child); p !== suffix && p !== ''; p = parentOf(p)) if (hosted.has(p)) enclosed = true;
    if (enclosed) continue;
    ns(child);
    for (const k of keys.get(child) ?? []) out.push({ name: child, type: 'DS', value: dsValue(child, k), ttl: PLATFORM_ZONE_TTL });
  }
  return out;
}

/** A hosted zone as one consistent read of the projections. */
export interface ZoneRows {
  name: string;
  /** The IMVU that owns the zone; PLATFORM_ZONE_IMVU ('') for the platform's own zone. */
  imvu: string;
  serial: number;
  /** The platform's DNS suffix (the SOA's MNAME is `ns1.<suffix>`). */
  suffix: string;
  rows: RecordRow[];
}

/**
 * Reads a hosted zone (an IMVU's, or the platform's own) from the projections, checking that the
 * records belong to the serial read (the same serial before and after). Undefined if it is not
 * hosted. `zone` is absolute, lower case, without the final dot.
 */
export async function readZoneRows(db: SqlReader, zone: string): Promise<ZoneRows | undefined> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const platform = await db.get<{ suffix: string }>('SELECT suffix FROM platform LIMIT 1');
    const suffix = platform ? lowerAscii(platform.suffix) : 'invalid';
    if (platform && zone === suffix) {
      const before = await platformZoneSerial(db, suffix);
      if (before !== undefined) {
        const rows = await platformZoneRecords(db, suffix);
        if ((await platformZoneSerial(db, suffix)) !== before) continue;
        return { name: zone, imvu: PLATFORM_ZONE_IMVU, serial: before, suffix, rows };
      }
    }
    const before = await db.get<{ serial: number; imvu: string }>('SELECT serial, imvu FROM zones WHERE name = ?', [zone]);
    if (!before) return undefined;
    const rows = await db.all<RecordRow & { [k: string]: string | number }>('SELECT name, type, value, ttl FROM records WHERE zone = ? ORDER BY entry, id', [zone]);
    const after = await db.get<{ serial: number; imvu: string }>('SELECT serial, imvu FROM zones WHERE name = ?', [zone]);
    if (!after || after.serial !== before.serial || after.imvu !== before.imvu) continue;
    return { name: zone, imvu: after.imvu, serial: Number(after.serial) >>> 0, suffix, rows };
  }
  throw new Error(`zone ${zone} kept changing while it was read`);
}
