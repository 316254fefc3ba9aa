// Shared shapes of the trust core. Everything that crosses a module boundary is plain JSON
// so that it can be canonicalised, signed, stored and replayed byte for byte.

export type Role = 'creator' | 'member' | 'admin' | 'service' | 'platform';
export const ROLES: readonly Role[] = ['creator', 'member', 'admin', 'service', 'platform'];

/** Self-certifying identity id: "nx1" + base32 of the first 20 bytes of SHA-256(public key). */
export type IdentityId = string;

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export const COMMAND_TYPES = [
  'platform.genesis',
  'identity.register',
  'imvu.create',
  'imvu.scale',
  'imvu.suspend',
  'imvu.resume',
  'imvu.exit',
  'imvu.exit.ready',
  'imvu.exit.confirm',
  'imvu.exit.expire',
  'imvu.purge',
  'imvu.import',
  'imvu.import.part',
  'domain.transfer',
  'platform.peer',
  'member.add',
  'domain.claim',
  'dns.record.add',
  'dns.record.remove',
  'mailbox.add',
  'mailbox.remove',
  'route.set',
  'consent.record',
  'usage.report',
  'revenue.record',
  'pricebook.publish',
  'notify.creator',
  'dkim.publish',
  'dnssec.publish',
  'dnssec.resign',
  'noise.summary',
  'gateway.refusals',
  'mail.refusals',
  'meter.register',
  'capacity.publish',
  'period.close',
  'domain.verify',
  'domain.verified',
  'domain.release',
  'dkim.activate',
  'dkim.remove',
  'dnssec.activate',
  'dnssec.remove',
  'plan.publish',
  'quota.approve',
  'platform.zone',
  'integrity.alarm',
  'ledger.snapshot',
  'identity.rotate',
  'identity.revoke',
  'snapshot.create',
  'snapshot.rollback',
  'mail.password.set',
  'mail.password.revoke',
  'dkim.rotate',
  'mail.send',
  'compute.deploy',
  'compute.start',
  'compute.stop',
  'compute.restart',
  'compute.exec',
  'compute.burst',
  'acme.challenge',
  'certificate.issued',
] as const;
export type CommandType = (typeof COMMAND_TYPES)[number];

/** What the caller signs. `ts` is an ISO-8601 UTC instant; `nonce` is 16+ random bytes, base64url. */
export interface Command {
  v: 1;
  type: CommandType;
  actor: IdentityId;
  /** The log origin of the one platform this command is for: a command signed for another platform is refused. */
  origin: string;
  nonce: string;
  ts: string;
  body: { [k: string]: Json };
}

/** A command with the actor's Ed25519 signature over the command's domain-separated JCS bytes: standard base64 with padding, 64 bytes, one spelling only. */
export interface SignedCommand {
  command: Command;
  sig: string;
}

export type GateStatus = 'pass' | 'deny' | 'not-enforced';

export interface GateResult {
  gate: number;
  status: GateStatus;
  reason?: string;
}

export interface Decision {
  allowed: boolean;
  gates: GateResult[];
}

/** One leaf of the ledger, before the platform signs it. */
export interface EntryBody {
  v: 1;
  index: number;
  /** Platform clock when the entry was appended (ISO-8601 UTC). */
  at: string;
  command: SignedCommand;
  decision: Decision;
  /** A denied command whose body was too large to keep: its body is stored as `{}`, with its hash and size here. */
  elided?: { sha256: string; bytes: number };
}

/**
 * The leaf as stored. The platform signs the tree, not each leaf: every commit writes a signed
 * checkpoint whose root covers every entry (gate 17), so one signature per batch binds them all.
 */
export type LedgerEntry = EntryBody;
