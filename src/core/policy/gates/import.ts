// The checks of a re-import from another platform (src/imvu/import/): `imvu.import` (gate 13: the
// creator takes their IMVU to another platform and back in) and `domain.transfer` (gate 3: a domain
// the IMVU held there, moved with the transfer code that platform signed at the exit). Replay
// decides both from the entry alone: the checkpoint and the code are verified here, offline.
import { openCheckpoint } from '../../ledger/checkpoint.ts';
import { openTransferCode } from '../../../imvu/exit/certificates.ts';
import type { GateResult } from '../../types.ts';
import { deny, isOwner, pass, type GateContext } from '../gate.ts';
import { isWithin } from '../naming.ts';
import { importPartDigest } from '../commands.ts';

interface ImportedZone {
  name: string;
  records: { name: string; type: string }[];
  dnssec: { state: string }[];
}

/** What every imported zone must satisfy: its records inside it, one active DNSSEC key at most. */
export function zoneProblem(zone: ImportedZone): string | undefined {
  const outside = zone.records.find((r) => !isWithin(r.name, zone.name));
  if (outside) return `record ${outside.name} ${outside.type} lies outside the zone ${zone.name}`;
  if (zone.dnssec.filter((k) => k.state === 'active').length > 1) return `zone ${zone.name} names more than one active DNSSEC key`;
  if (zone.dnssec.length > 0 && !zone.dnssec.some((k) => k.state === 'active')) return `zone ${zone.name} has DNSSEC keys but none active`;
  return undefined;
}

/** The source checkpoint of an import: signed by the key it names, of the size it names. */
export function openSourceCheckpoint(source: { origin: string; platformKey: string; checkpoint: string; treeSize: number }): { rootHash: Buffer } | string {
  try {
    const { checkpoint } = openCheckpoint(source.checkpoint, [{ name: source.origin, publicKeyRaw: Buffer.from(source.platformKey, 'base64') }], source.origin);
    if (checkpoint.size !== source.treeSize) return `the source checkpoint is of size ${checkpoint.size}, not ${source.treeSize}`;
    return { rootHash: checkpoint.rootHash };
  } catch (err) {
    return `the source checkpoint does not verify: ${(err as Error).message}`;
  }
}

/** Gate 13 on `imvu.import`. */
export async function checkImport(ctx: GateContext): Promise<GateResult> {
  const b = ctx.body as {
    id: string;
    owner: string;
    source: { origin: string; platformKey: string; checkpoint: string; treeSize: number };
    zone: ImportedZone;
    dkim: { state: string }[];
    mailboxes: string[];
  };
  if (!ctx.platform) return deny(13, 'the platform has no genesis entry');
  if (!ctx.actor || ctx.actor.id !== b.owner) return deny(13, `an IMVU is imported by its owner's own signature (the identity key it had on ${b.source.origin})`);
  if (b.source.origin === ctx.platform.origin) return deny(13, `the archive comes from this platform (${b.source.origin}); an import brings an IMVU from another one`);
  const cp = openSourceCheckpoint(b.source);
  if (typeof cp === 'string') return deny(13, cp);
  const taken = await ctx.db.get<{ id: string; status: string }>('SELECT id, status FROM imvus WHERE id = ?', [b.id]);
  if (taken) return deny(13, `${b.id} exists here (${taken.status}): an import keeps the IMVU's id, so it needs that id free`);
  const primary = `imvu${b.id.slice('IMVU-'.length)}.${ctx.platform.suffix}`;
  if (b.zone.name !== primary) return deny(13, `${b.id}'s zone here is ${primary}, not ${b.zone.name} (the platforms' suffixes differ)`);
  const problem = zoneProblem(b.zone);
  if (problem) return deny(13, problem);
  if (b.dkim.filter((k) => k.state === 'active').length > 1) return deny(13, 'more than one active DKIM selector');
  const stray = b.mailboxes.find((a) => a.slice(a.indexOf('@') + 1) !== primary);
  if (stray) return deny(13, `mailbox ${stray} is not at ${primary}; mailboxes at a transferred domain are added after its domain.transfer`);
  const box = b.mailboxes.length ? await ctx.db.get<{ address: string }>(`SELECT address FROM mailboxes WHERE address IN (${b.mailboxes.map(() => '?').join(', ')}) LIMIT 1`, b.mailboxes) : undefined;
  if (box) return deny(13, `mailbox ${box.address} exists here`);
  return pass(13, `import of ${b.id} by its creator, with its history on ${b.source.origin} up to ${b.source.treeSize} entries`);
}

/** Gate 3 on `domain.transfer`: the code, its signer and its binding to this IMVU's import. */
export async function checkTransfer(ctx: GateContext): Promise<GateResult> {
  const b = ctx.body as { domain: string; code: string; zone: ImportedZone };
  const imvu = ctx.imvu;
  if (!imvu) return deny(3, `unknown IMVU ${String(ctx.body.imvu)}`);
  if (!isOwner(ctx)) return deny(3, `only ${imvu.id}'s creator transfers a domain in`);
  const source = await ctx.db.get<{ origin: string; platform_key: string; tree_size: number }>('SELECT origin, platform_key, tree_size FROM imports WHERE imvu = ?', [imvu.id]);
  if (!source) return deny(3, `${imvu.id} was not imported from another platform: a domain is transferred in only with the IMVU it left with`);
  const peer = await ctx.db.get('SELECT 1 AS x FROM peers WHERE origin = ? AND public_key = ?', [source.origin, source.platform_key]);
  if (!peer) return deny(3, `this platform does not take domain transfers from ${source.origin} (its key is not a trusted peer): claim ${b.domain} and prove control instead`);
  let claim;
  try {
    claim = openTransferCode(b.code);
  } catch (err) {
    return deny(3, (err as Error).message);
  }
  if (claim.key !== source.platform_key || claim.origin !== source.origin) return deny(3, `the code is signed by ${claim.origin} (${claim.key}), not by the platform ${imvu.id} was imported from`);
  if (claim.domain !== b.domain) return deny(3, `the code is for ${claim.domain}, not ${b.domain}`);
  if (claim.imvu !== imvu.id || claim.owner !== imvu.owner) return deny(3, `the code is for ${claim.imvu} of ${claim.owner}, not ${imvu.id} of ${imvu.owner}`);
  if (claim.treeSize !== Number(source.tree_size)) return deny(3, `the code was signed at tree size ${claim.treeSize}, the imported exit at ${source.tree_size}`);
  if (b.zone.name !== b.domain) return deny(3, `the zone is ${b.zone.name}, not ${b.domain}`);
  const problem = zoneProblem(b.zone);
  if (problem) return deny(3, problem);
  return pass(3, `${b.domain} transferred from ${source.origin} with the code it signed for ${imvu.id} at the exit`);
}

/**
 * Gate 13 on `imvu.import.part`: by the owner, naming a header's digest (an `imvu.import` still
 * `importing`, or a `domain.transfer` of a domain the IMVU still holds), a part it declared and not
 * yet recorded, whose records hash to the declaration and lie inside that header's zone. Replay
 * decides it from the entries alone.
 */
export async function checkImportPart(ctx: GateContext): Promise<GateResult> {
  const b = ctx.body as { imvu: string; import: string; part: number; records: { name: string; type: string }[] };
  const imvu = ctx.imvu;
  if (!imvu) return deny(13, `unknown IMVU ${b.imvu}`);
  if (!isOwner(ctx)) return deny(13, `only ${imvu.id}'s creator records the parts of its import`);
  const declared = await ctx.db.get<{ imvu: string; zone: string; sha256: string; records: number; entry: number }>('SELECT imvu, zone, sha256, records, entry FROM import_parts WHERE header = ? AND part = ?', [b.import, b.part]);
  if (!declared || declared.imvu !== imvu.id) return deny(13, `part ${b.part} names the import ${b.import}, which declares no such part of ${imvu.id}`);
  if (Number(declared.entry) !== 0) return deny(13, `part ${b.part} of ${declared.zone} was recorded at entry ${declared.entry}: no change`);
  // The IMVU's own zone is an import's; any other, a transferred domain's.
  const own = declared.zone === imvu.domain;
  if (own && imvu.status !== 'importing') return deny(13, `${imvu.id} is ${imvu.status}, not importing`);
  if (!own && !(await ctx.db.get('SELECT 1 AS x FROM zones WHERE name = ? AND imvu = ?', [declared.zone, imvu.id]))) return deny(13, `${declared.zone} is no longer ${imvu.id}'s`);
  const digest = importPartDigest(b.records);
  if (digest !== declared.sha256 || b.records.length !== Number(declared.records))
    return deny(13, `part ${b.part} (${b.records.length} records, SHA-256 ${digest}) is not the part the ${own ? 'import' : 'transfer'} declared (${declared.records} records, ${declared.sha256})`);
  const outside = b.records.find((r) => !isWithin(r.name, declared.zone));
  if (outside) return deny(13, `record ${outside.name} ${outside.type} lies outside the zone ${declared.zone}`);
  const left = await ctx.db.get<{ n: number }>('SELECT COUNT(*) AS n FROM import_parts WHERE header = ? AND entry = 0', [b.import]);
  const whole = own ? `${imvu.id} is served from now on` : `${declared.zone} is served from now on`;
  return pass(13, `part ${b.part} of ${own ? `${imvu.id}'s import` : `the transfer of ${declared.zone}`}, as declared${Number(left?.n) === 1 ? `: the last one, ${whole}` : ''}`);
}
