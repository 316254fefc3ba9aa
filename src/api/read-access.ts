// Who may read what (docs/API.md, "Reading: who can read what"). An admin and the platform read
// everything; any other registered identity reads what concerns the IMVUs it created or is a member
// of, what it signed itself, what is addressed to it, and the platform facts everyone must be able
// to check. Of every other ledger entry it gets only the leaf hash, so it can still recompute the
// Merkle tree and check the platform's signed checkpoint.
import type { SqlReader } from '../core/store/index.ts';
import type { LedgerEntry } from '../core/types.ts';
import type { Reader } from './read-auth.ts';

/** A ledger entry the reader may not see: its position and leaf hash only. */
export interface WithheldEntry {
  index: number;
  /** SHA-256(0x00 || entry bytes), hex: enough to rebuild the tree, nothing about the content. */
  leafHash: string;
  withheld: true;
}

/**
 * Allowed commands everyone may read in full: they define the platform itself and the rules every
 * bill and every zone follows (prices, capacities, meters, plan limits, the suffix zone), and the
 * signed state snapshots (ledger.snapshot) a creator's verify checks against what the API serves.
 */
const PLATFORM_TYPES = new Set(['platform.genesis', 'pricebook.publish', 'capacity.publish', 'meter.register', 'plan.publish', 'platform.zone', 'ledger.snapshot']);
/** Roles whose registrations are public facts: who administers, who meters. */
const PUBLIC_ROLES = new Set(['admin', 'service']);

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

export class ReadScope {
  private constructor(
    readonly reader: Reader,
    /** Admin or platform: everything. */
    readonly all: boolean,
    /** IMVUs the reader created or is a member of. */
    readonly imvus: ReadonlySet<string>,
    /** Zones of those IMVUs. */
    readonly zones: ReadonlySet<string>,
    /** Ledger indices of those IMVUs' creations. */
    readonly creations: ReadonlySet<number>,
    /** Creators and members of those IMVUs (their registrations concern the reader too). */
    readonly people: ReadonlySet<string>,
  ) {}

  static async of(db: SqlReader, reader: Reader): Promise<ReadScope> {
    if (reader.role === 'admin' || reader.role === 'platform') return new ReadScope(reader, true, new Set(), new Set(), new Set(), new Set());
    const own = await db.all<{ id: string; entry: number }>(
      'SELECT id, entry FROM imvus WHERE owner = ? UNION SELECT i.id, i.entry FROM imvus i JOIN members m ON m.imvu = i.id WHERE m.identity = ?',
      [reader.id, reader.id],
    );
    const imvus = new Set(own.map((r) => r.id));
    const zones = new Set<string>();
    const people = new Set<string>([reader.id]);
    for (const id of imvus) {
      for (const z of await db.all<{ name: string }>('SELECT name FROM zones WHERE imvu = ?', [id])) zones.add(z.name);
      for (const p of await db.all<{ id: string }>('SELECT owner AS id FROM imvus WHERE id = ? UNION SELECT identity AS id FROM members WHERE imvu = ?', [id, id]))
        people.add(p.id);
    }
    return new ReadScope(reader, false, imvus, zones, new Set(own.map((r) => r.entry)), people);
  }

  /** May the reader see this IMVU's private state (summary, mailboxes, routes, notifications, statements, consents)? */
  canReadImvu(imvu: string): boolean {
    return this.all || this.imvus.has(imvu);
  }

  canReadZone(zone: string): boolean {
    return this.all || this.zones.has(zone.toLowerCase().replace(/\.$/, ''));
  }

  /** Whether the reader sees this entry in full (otherwise only its leaf hash). */
  sees(e: LedgerEntry): boolean {
    if (this.all) return true;
    const cmd = e.command?.command;
    if (!cmd) return false;
    if (cmd.actor === this.reader.id) return true;
    const body = isObject(cmd.body) ? cmd.body : {};
    if (e.decision?.allowed) {
      if (PLATFORM_TYPES.has(cmd.type)) return true;
      if (cmd.type === 'identity.register' && typeof body.role === 'string' && PUBLIC_ROLES.has(body.role)) return true;
    }
    if (this.creations.has(e.index)) return true;
    if (typeof body.imvu === 'string' && this.imvus.has(body.imvu)) return true;
    if (typeof body.zone === 'string' && this.zones.has(body.zone.toLowerCase())) return true;
    if (cmd.type === 'notify.creator' && body.recipient === this.reader.id) return true;
    // Registrations of the creators and members the reader shares an IMVU with (they sign their own
    // registration, so the actor is the registered id): the reader checks their signatures.
    if (cmd.type === 'identity.register' && e.decision?.allowed && this.people.has(cmd.actor)) return true;
    return false;
  }
}
