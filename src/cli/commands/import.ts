// Re-import, from the creator's side: `nexus imvu import FILE` verifies another platform's exit
// archive offline, uploads it (a request signed by the creator), signs `imvu.import` (the same
// IMVU id, the same identity key, the zone with its serial and DNSSEC keys, DKIM selectors,
// mailboxes, routes, and the signed reference to the first platform's log), then redeploys the
// workload; `nexus domain transfer-in DOMAIN --code CODE` moves a domain the IMVU held there.
import { Command } from 'commander';
import { Ctx } from '../context.ts';
import { notFound, usage, verificationFailed } from '../errors.ts';
import type { Json } from '../../core/types.ts';
import type { Receipt } from '../client.ts';

interface ImportedZone {
  name: string;
  kind: string;
  serial: number;
  records: { name: string; type: string; value: string; ttl: number }[];
  dnssec: { flags: number; publicKey: string; state: string }[];
}

interface RestorePlan {
  id: string;
  name: string;
  owner: string;
  jurisdiction: string;
  envelope: Record<string, number> | null;
  zones: ImportedZone[];
  /** Zones the IMVU was still receiving in parts when it exited (src/imvu/exit/incomplete.ts): not in the archive. */
  incomplete?: { zone: string; parts: number; missing: number[] }[];
  dkim: { selector: string; publicKey: string; state: string }[];
  mailboxes: string[];
  routes: unknown;
  workload: { blueprint: Json; desired: string } | null;
}

/** A declared part as `GET /v1/imvus/:id/import` lists it: the zone it joins, its header, and its entry once recorded. */
interface RecordedPart {
  zone: string;
  part: number;
  header: string;
  sha256: string;
  records: number;
  entry: number | null;
}

interface ImportView {
  status: string | null;
  import: { archive_sha256: string; entry: number };
  parts: RecordedPart[];
  plan: RestorePlan | null;
}

/** Most records one imported entry carries (the schema's bound). */
const MAX_RECORDS_PER_ENTRY = 1000;
/** Room left in a part's body for its other fields (IMVU id, header digest, part number). */
const PART_BODY_BUDGET = 40 * 1024;

/** The zone's records in order, cut into parts that each fit one ledger entry. */
function splitRecords(records: Json[], size: (v: unknown) => Buffer): Json[][] {
  const parts: Json[][] = [];
  let cur: Json[] = [];
  let bytes = 2;
  for (const r of records) {
    const n = size(r).length + 1;
    if (cur.length && (bytes + n > PART_BODY_BUDGET || cur.length >= MAX_RECORDS_PER_ENTRY)) {
      parts.push(cur);
      cur = [];
      bytes = 2;
    }
    cur.push(r);
    bytes += n;
  }
  if (cur.length) parts.push(cur);
  return parts;
}

/**
 * A header (`imvu.import`, `domain.transfer`) whose zone does not fit one ledger entry (gate 0's body
 * bound, or more records than one entry carries): its records are cut into parts, and the header
 * declares them (SHA-256 and count) instead of carrying them. Undefined when the zone fits.
 */
async function declareParts(body: Record<string, Json>): Promise<Json[][] | undefined> {
  const { MAX_COMMAND_BODY_BYTES } = await import('../../core/policy/chokepoint.ts');
  const { importPartDigest } = await import('../../core/policy/commands.ts');
  const { canonicalBytes } = await import('../../core/ledger/canonical.ts');
  const records = (body.zone as { records: Json[] }).records;
  if (canonicalBytes(body).length <= MAX_COMMAND_BODY_BYTES && records.length <= MAX_RECORDS_PER_ENTRY) return undefined;
  const parts = splitRecords(records, canonicalBytes);
  body.zone = { ...(body.zone as Record<string, Json>), records: [] };
  body.parts = parts.map((p) => ({ sha256: importPartDigest(p), records: p.length }));
  return parts;
}

/**
 * Records, one entry each and in order, the declared parts of the header `header` that are not
 * recorded yet (`recorded`: what the daemon lists for it), so that running the command again after
 * an interruption sends only the rest. Returns what the last part's receipt says.
 */
async function sendParts<R>(ctx: Ctx, signer: ReturnType<Ctx['signer']>, imvu: string, header: string, parts: Json[][], recorded: RecordedPart[]): Promise<(Receipt & R) | undefined> {
  const done = new Set(recorded.filter((p) => p.entry !== null).map((p) => p.part));
  let last: (Receipt & R) | undefined;
  for (const [n, recs] of parts.entries()) {
    if (done.has(n)) continue;
    const p = await ctx.submit<Receipt & R>('POST', `/v1/imvus/${imvu}/import/parts`, 'imvu.import.part', { imvu, import: header, part: n, records: recs }, signer);
    if (!ctx.json) process.stderr.write(`part ${n + 1} of ${parts.length} recorded (${recs.length} records, ledger entry ${p.receipt.index})\n`);
    last = p.receipt as Receipt & R;
  }
  return last;
}

/** Whether the parts recorded for a header are the ones this run declares (else nothing is sent). */
async function sameParts(recorded: RecordedPart[], parts: Json[][] | undefined): Promise<boolean> {
  const { importPartDigest } = await import('../../core/policy/commands.ts');
  return !!parts && recorded.map((p) => p.sha256).join() === parts.map((p) => importPartDigest(p)).join();
}

const zoneBody = (z: ImportedZone) => ({ name: z.name, serial: z.serial, records: z.records, dnssec: z.dnssec.map((k) => ({ algorithm: 13, ...k })) });

export function addImportCommand(imvu: Command): void {
  imvu
    .command('import')
    .description("import an IMVU from another platform's exit archive: verified offline first, then recreated here under the same id and your same identity key (zone and DNSSEC keys, mailboxes, routes, workload), its history attached as a signed reference to the first platform's log; a zone too large for one ledger entry goes in declared parts (the IMVU is not served until the last), and running the command again after an interruption sends only the parts not recorded yet")
    .argument('<file>', 'the exit archive (.tar.gz)')
    .option('--platform-key <base64>', "the first platform's Ed25519 public key to require (default: the one in the archive)")
    .option('--no-start', 'deploy the workload but do not start it')
    .action(async (file: string, o: { platformKey?: string; start: boolean }, c: Command) => {
      const ctx = Ctx.of(c);
      const { existsSync, mkdtempSync, readFileSync, rmSync } = await import('node:fs');
      const { tmpdir } = await import('node:os');
      const { join } = await import('node:path');
      if (!existsSync(file)) throw notFound(`${file}: no such file`);
      const { verifyExitArchive, ArchiveInvalid } = await import('../../imvu/exit/verify.ts');
      const { createHash } = await import('node:crypto');
      const tmp = mkdtempSync(join(tmpdir(), 'nexus-import-'));
      let plan: RestorePlan;
      let note: string;
      let manifestSha256: string;
      let report;
      try {
        try {
          report = await verifyExitArchive(file, { keepIn: tmp, ...(o.platformKey ? { platformKey: o.platformKey } : {}) });
        } catch (err) {
          if (err instanceof ArchiveInvalid) throw verificationFailed(`the archive does not verify, nothing was imported: ${err.message}`);
          throw err;
        }
        const planFile = join(report.root, 'IMVU.json');
        if (!existsSync(planFile)) throw verificationFailed('the archive has no IMVU.json (an archive of an older format cannot be re-imported)');
        plan = JSON.parse(readFileSync(planFile, 'utf8')) as RestorePlan;
        note = readFileSync(join(report.root, 'ledger', 'checkpoint.note'), 'utf8');
        manifestSha256 = createHash('sha256').update(readFileSync(join(report.root, 'MANIFEST.json'))).digest('hex');
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
      const m = report.manifest.manifest;
      if (!ctx.home.localName(m.owner)) throw usage(`the archive's IMVU belongs to ${m.owner}; import its key here first (nexus identity import NAME --key FILE) and register it with this daemon`);
      const signer = ctx.signer([m.owner], `imvu import ${m.imvu}`);
      // A resumed import: the header is recorded and the IMVU is still importing; only the parts
      // not recorded yet are sent (the same split, checked against what the header declared).
      const known = await ctx.get<ImportView>(`/v1/imvus/${m.imvu}/import`, {}, { as: signer }).catch(() => undefined);
      const resuming = known?.status === 'importing' && known.import.archive_sha256 === report.sha256;
      if (!resuming) {
        if (!ctx.json) process.stderr.write(`✅ ${file} verifies offline (${m.imvu} from ${m.origin}, tree size ${m.treeSize}); uploading\n`);
        const tty = process.stderr.isTTY && !ctx.json;
        await ctx.client.upload(`/v1/imports/${report.sha256}`, file, signer, (sent, total) => {
          if (tty) process.stderr.write(`\ruploading ${Math.floor((sent / total) * 100)}%`);
        });
        if (tty) process.stderr.write('\n');
      }
      const primary = plan.zones.find((z) => z.kind === 'primary');
      if (!primary) throw verificationFailed(`IMVU.json names no primary zone for ${m.imvu}`);
      const body: Record<string, Json> = {
        id: m.imvu,
        name: plan.name,
        owner: m.owner,
        jurisdiction: plan.jurisdiction,
        ...(plan.envelope ? { envelope: plan.envelope } : {}),
        source: { origin: m.origin, platformKey: m.platformKey, checkpoint: note, treeSize: m.treeSize, archive: report.sha256, manifest: manifestSha256 },
        zone: zoneBody(primary) as unknown as Json,
        dkim: plan.dkim,
        mailboxes: plan.mailboxes.filter((a) => a.endsWith(`@${primary.name}`)),
        routes: (plan.routes ?? { public: [], private: [], restricted: [] }) as Json,
      };
      type Restored = { restored?: { mailboxes: number; messages: number; volume: { entries: number; bytes: number } | null } };
      // A zone too large for one ledger entry goes in declared parts after the header.
      const { importHeaderDigest } = await import('../../core/policy/commands.ts');
      const parts = await declareParts(body);
      // Only the import's own parts (a transferred domain's are listed too, under its zone).
      const mine = known?.parts.filter((p) => p.zone === primary.name) ?? [];
      let index: number;
      let header: string;
      let r: Restored['restored'];
      if (resuming) {
        if (!(await sameParts(mine, parts))) throw verificationFailed(`${m.imvu}'s recorded import declares other parts than this archive gives; nothing was sent`);
        index = known.import.entry;
        header = mine[0]!.header;
        if (!ctx.json) process.stderr.write(`resuming ${m.imvu}'s import: ${mine.filter((p) => p.entry === null).length} of ${parts!.length} parts still to record\n`);
      } else {
        const s = await ctx.submit<Receipt & Restored>('POST', '/v1/imvus/import', 'imvu.import', body, signer);
        index = s.receipt.index;
        header = importHeaderDigest(body);
        r = s.receipt.restored;
      }
      if (parts) {
        const last = await sendParts<Restored>(ctx, signer, m.imvu, header, parts, resuming ? mine : []);
        r = last?.restored ?? r;
      }
      const lines = [`✅ ${m.imvu} imported (ledger entry ${index}${parts ? `, its zone in ${parts.length} parts` : ''}), its history attached: ${m.origin} at tree size ${m.treeSize}`];
      if (r) lines.push(`✅ mail: ${r.mailboxes} mailbox(es), ${r.messages} message(s) restored`, r.volume ? `✅ data volume: ${r.volume.entries} entries, ${r.volume.bytes} bytes` : '   no data volume in the archive');
      if (plan.workload) {
        await ctx.submit('POST', `/v1/imvus/${m.imvu}/compute/deploy`, 'compute.deploy', { imvu: m.imvu, blueprint: plan.workload.blueprint }, signer);
        if (plan.workload.desired === 'running' && o.start) await ctx.submit('POST', `/v1/imvus/${m.imvu}/compute/start`, 'compute.start', { imvu: m.imvu }, signer);
        lines.push(`✅ workload deployed${plan.workload.desired === 'running' && o.start ? ' and started' : ''}`);
      }
      for (const z of plan.zones.filter((x) => x.kind !== 'primary')) lines.push(`   ${z.name}: nexus domain transfer-in ${z.name} --code CODE (from domains/domain-transfer-codes.txt)`);
      for (const z of plan.incomplete ?? [])
        lines.push(`   ${z.zone}: not whole on ${m.origin} when it exited (${z.missing.length} of ${z.parts} parts never recorded): not in the archive; claim it here and prove control (nexus domain claim)`);
      const custom = plan.mailboxes.filter((a) => !a.endsWith(`@${primary.name}`));
      if (custom.length) lines.push(`   mailboxes at transferred domains: add them after the transfer (${custom.join(', ')})`);
      ctx.print({ imvu: m.imvu, index, parts: parts?.length ?? 0, source: { origin: m.origin, treeSize: m.treeSize, archive: report.sha256 }, restored: r ?? null }, () => lines);
    });
}

export function addTransferIn(domain: Command): void {
  domain
    .command('transfer-in')
    .description("move a domain an imported IMVU held on the platform it left, with the transfer code that platform signed at the exit (domains/domain-transfer-codes.txt); the zone and its DNSSEC keys come from the imported archive; a zone too large for one ledger entry goes in declared parts (the domain is not served until the last), and running the command again after an interruption sends only the parts not recorded yet")
    .argument('<domain>', 'the domain')
    .requiredOption('--code <code>', 'the transfer code')
    .action(async (name: string, o: { code: string }, c: Command) => {
      const ctx = Ctx.of(c);
      const { openTransferCode } = await import('../../imvu/exit/certificates.ts');
      let claim;
      try {
        claim = openTransferCode(o.code.trim());
      } catch (err) {
        throw usage((err as Error).message);
      }
      if (claim.domain !== name) throw usage(`the code is for ${claim.domain}, not ${name}`);
      const signer = ctx.signer([claim.owner], `domain transfer-in ${name}`);
      const view = await ctx.get<ImportView>(`/v1/imvus/${claim.imvu}/import`, {}, { as: signer });
      const zone = view.plan?.zones.find((z) => z.name === name);
      if (!zone) throw notFound(`the archive ${claim.imvu} was imported from holds no zone ${name}`);
      const body: Record<string, Json> = { imvu: claim.imvu, domain: name, code: o.code.trim(), zone: zoneBody(zone) as unknown as Json };
      // A zone too large for one ledger entry goes in declared parts after the header, as an import's.
      const parts = await declareParts(body);
      const { importHeaderDigest } = await import('../../core/policy/commands.ts');
      const header = importHeaderDigest(body);
      // The header recorded already (an interrupted run): only the parts not recorded yet are sent.
      const recorded = view.parts.filter((p) => p.header === header);
      let index: number | null = null;
      if (recorded.length) {
        if (!(await sameParts(recorded, parts))) throw verificationFailed(`the recorded transfer of ${name} declares other parts than the archive gives; nothing was sent`);
        if (!ctx.json) process.stderr.write(`resuming the transfer of ${name}: ${recorded.filter((p) => p.entry === null).length} of ${parts!.length} parts still to record\n`);
      } else index = (await ctx.submit('POST', `/v1/imvus/${claim.imvu}/domains/transfer`, 'domain.transfer', body, signer)).receipt.index;
      if (parts) await sendParts(ctx, signer, claim.imvu, header, parts, recorded);
      const at = index === null ? 'its header recorded earlier' : `ledger entry ${index}`;
      ctx.print({ imvu: claim.imvu, domain: name, index, header, parts: parts?.length ?? 0 }, () => [
        `✅ ${name} transferred to ${claim.imvu} from ${claim.origin} (${at}${parts ? `, its zone in ${parts.length} parts` : ''}); it is served with the keys whose DS the parent holds`,
      ]);
    });
}
