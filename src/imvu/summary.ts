import type { ImvuRow } from '../core/policy/gate.ts';
// Read-only views of an IMVU assembled from the projections: what `POST /v1/imvus` returns after
// a creation and what `GET /v1/imvus/:id` shows. Never writes.
import type { SqlReader } from '../core/store/index.ts';
import type { Json } from '../core/types.ts';

export interface ZoneRecord {
  name: string;
  type: string;
  value: string;
  ttl: number;
}

export interface ZoneView {
  zone: string;
  imvu: string;
  /** The SOA serial: bumped by every change to the zone. */
  serial: number;
  /** SOA fields that follow from the state (timers are the DNS server's business). */
  soa: { mname: string; rname: string; serial: number };
  records: ZoneRecord[];
}

export interface Envelope {
  cpu_cores: number;
  memory_gb: number;
  storage_gb: number;
  iops: number;
  burst: { multiplier: number; minutes: number };
}

export interface ImvuSummary {
  id: string;
  name: string;
  owner: { id: string; name: string | null };
  jurisdiction: string;
  status: string;
  createdAt: string;
  /** Ledger index of the `imvu.create` entry. */
  entry: number;
  domain: string;
  stageDomain: string;
  domains: { name: string; kind: string }[];
  envelope: Envelope | null;
  zone: ZoneView | null;
  mailboxes: string[];
  members: string[];
  routes: Json;
  dkim: { selector: string; record: string; publicKey: string } | null;
}

export interface ImvuListItem {
  id: string;
  name: string;
  owner: string;
  jurisdiction: string;
  status: string;
  domain: string;
  /** The ledger entry that created it (its imvu.create). */
  entry: number;
}

/**
 * Every IMVU, or only those of `ids` (a creator's or member's own: looked up by id, so the list
 * costs that reader's IMVUs, not the platform's).
 */
export async function listImvus(db: SqlReader, ids?: Iterable<string>): Promise<ImvuListItem[]> {
  const cols = 'SELECT id, name, owner, jurisdiction, status, domain, entry FROM imvus';
  type Row = Omit<ImvuListItem, 'entry'> & { entry: number | bigint } & Record<string, string | number | bigint>;
  const rows = ids === undefined ? await db.all<Row>(`${cols} ORDER BY seq`) : await db.all<Row>(`${cols} WHERE id IN (SELECT value FROM json_each(?)) ORDER BY seq`, [JSON.stringify([...ids])]);
  return rows.map((r) => ({ ...r, entry: Number(r.entry) }));
}

export async function zoneView(db: SqlReader, zone: string): Promise<ZoneView | undefined> {
  const z = await db.get<{ name: string; imvu: string; serial: number }>('SELECT name, imvu, serial FROM zones WHERE name = ?', [zone.toLowerCase()]);
  if (!z) return undefined;
  const platform = await db.get<{ suffix: string }>('SELECT suffix FROM platform LIMIT 1');
  const records = await db.all<ZoneRecord & Record<string, string | number>>(
    'SELECT name, type, value, ttl FROM records WHERE zone = ? ORDER BY entry, id',
    [z.name],
  );
  return {
    zone: z.name,
    imvu: z.imvu,
    serial: z.serial,
    soa: { mname: `ns1.${platform?.suffix ?? z.name}.`, rname: `hostmaster.${z.name}.`, serial: z.serial },
    records: records.map((r) => ({ name: r.name, type: r.type, value: r.value, ttl: r.ttl })),
  };
}

export async function mailboxesOf(db: SqlReader, imvu: string): Promise<string[]> {
  return (await db.all<{ address: string }>('SELECT address FROM mailboxes WHERE imvu = ? ORDER BY address', [imvu])).map((m) => m.address);
}

export async function routesOf(db: SqlReader, imvu: string): Promise<Json | undefined> {
  const row = await db.get<{ policy: string }>('SELECT policy FROM routes WHERE imvu = ?', [imvu]);
  return row ? (JSON.parse(row.policy) as Json) : undefined;
}

export async function imvuSummary(db: SqlReader, id: string): Promise<ImvuSummary | undefined> {
  const imvu = await db.get<ImvuRow>('SELECT * FROM imvus WHERE id = ?', [id]);
  if (!imvu) return undefined;
  const owner = await db.get<{ name: string }>('SELECT name FROM identities WHERE id = ?', [imvu.owner]);
  const env = await db.get<{ cpu_cores: number; memory_gb: number; storage_gb: number; iops: number; burst_multiplier: number; burst_minutes: number }>(
    'SELECT cpu_cores, memory_gb, storage_gb, iops, burst_multiplier, burst_minutes FROM envelopes WHERE imvu = ?',
    [id],
  );
  const domains = await db.all<{ name: string; kind: string }>('SELECT name, kind FROM domains WHERE imvu = ? ORDER BY entry, name', [id]);
  const members = (await db.all<{ identity: string }>('SELECT identity FROM members WHERE imvu = ? ORDER BY entry', [id])).map((m) => m.identity);
  const dkim = await db.get<{ selector: string; public_key: string }>("SELECT selector, public_key FROM dkim_keys WHERE imvu = ? AND state = 'active'", [id]);
  return {
    id: imvu.id,
    name: imvu.name,
    owner: { id: imvu.owner, name: owner?.name ?? null },
    jurisdiction: imvu.jurisdiction,
    status: imvu.status,
    createdAt: imvu.created_at,
    entry: imvu.entry,
    domain: imvu.domain,
    stageDomain: imvu.stage_domain,
    domains,
    envelope: env
      ? {
          cpu_cores: env.cpu_cores,
          memory_gb: env.memory_gb,
          storage_gb: env.storage_gb,
          iops: env.iops,
          burst: { multiplier: env.burst_multiplier, minutes: env.burst_minutes },
        }
      : null,
    zone: (await zoneView(db, imvu.domain)) ?? null,
    mailboxes: await mailboxesOf(db, id),
    members,
    routes: (await routesOf(db, id)) ?? null,
    dkim: dkim ? { selector: dkim.selector, record: `${dkim.selector}._domainkey.${imvu.domain}`, publicKey: dkim.public_key } : null,
  };
}
