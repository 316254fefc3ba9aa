// The exit, from the creator's side: `nexus imvu exit IMVU --out DIR` starts it, follows the
// build (a bar on a terminal, progress lines otherwise), downloads the archive, and verifies it
// offline against the platform key pinned here and the creator's witness policy before saying it
// is complete; `exit-status`, `exit-confirm`, `purge`; and `nexus export verify FILE`, which needs
// no daemon and no network.
import { Command } from 'commander';
import type { Readable } from 'node:stream';
import { Ctx } from '../context.ts';
import { usage, verificationFailed, notFound } from '../errors.ts';
import type { LocalIdentity } from '../home.ts';

const imvuId = (v: string) => {
  if (!/^IMVU-\d{3,9}$/.test(v)) throw usage(`${v} is not an IMVU id (IMVU-001)`);
  return v;
};
const collect = (v: string, prev: string[] = []) => [...prev, v];

interface ExitView {
  imvu: string;
  status: string;
  exit: { started_at: string; ready_at: string | null; archive_sha256: string | null; archive_size: number | null; exited_at: string | null; how: string | null } | null;
  build: { state: string; parts: Record<string, { fraction: number; status?: string; detail?: string }>; error?: string } | null;
}

const PART_LABELS: Record<string, string> = {
  domains: 'Domains and DNS',
  mail: 'Mail archive',
  compute: 'Compute and data',
  network: 'Routing policy',
  ledger: 'Ledger and statements',
  secrets: 'Secrets (age)',
  archive: 'Archive and manifest',
};

export function statusLines(v: ExitView): string[] {
  const lines = [`${v.imvu}: ${v.status}${v.exit?.exited_at ? ` (${v.exit.how} at ${v.exit.exited_at})` : ''}`];
  if (!v.exit) return [...lines, 'no exit has been started'];
  lines.push(`exit started ${v.exit.started_at}`);
  for (const [name, p] of Object.entries(v.build?.parts ?? {})) {
    const label = PART_LABELS[name] ?? name;
    if (p.status === 'missing') lines.push(`⚠️  ${label}: missing (${p.detail ?? ''})`);
    else if (p.fraction >= 1) lines.push(`✅ ${label} complete${p.detail ? ` (${p.detail})` : ''}`);
    else lines.push(`⏳ ${label} in progress (${Math.floor(p.fraction * 100)}% done)`);
  }
  if (v.build?.state === 'failed') lines.push(`❌ the build failed: ${v.build.error ?? 'unknown error'} (retried by the daemon)`);
  if (v.exit.archive_sha256) lines.push(`archive ready ${v.exit.ready_at}: sha256:${v.exit.archive_sha256} (${v.exit.archive_size} bytes)`);
  return lines;
}

/** Verifies the archive `file`, read from disk or, with `source`, from the bytes as they are downloaded. */
async function verifyFile(ctx: Ctx, file: string, platformKey?: string, source?: NodeJS.ReadableStream) {
  const { verifyExitArchive, verifyExitStream, ArchiveInvalid } = await import('../../imvu/exit/verify.ts');
  const policy = ctx.home.witnessPolicy();
  const opts = { ...(platformKey ? { platformKey } : {}), ...(policy.require > 0 ? { witnesses: policy } : {}) };
  try {
    return await (source ? verifyExitStream(source as Readable, file, opts) : verifyExitArchive(file, opts));
  } catch (err) {
    if (err instanceof ArchiveInvalid) throw verificationFailed(`export verification failed: ${err.message}`);
    throw err;
  }
}

export function addExitCommands(imvu: Command): void {
  imvu
    .command('exit')
    .description("exit an IMVU: needs only the creator's signature (no status blocks it); with --out, waits for the archive, downloads it and verifies it")
    .argument('<imvu>', 'IMVU id', imvuId)
    .option('--out <dir>', 'download the archive into this folder and verify it')
    .option('--recipient <key>', 'who can open secrets/secrets.age: an age (age1...) or SSH public key; repeatable (default: your identity key as ssh-ed25519)', collect)
    .option('--timeout <seconds>', 'how long to wait for the archive', (v) => Number(v), 3600)
    .option('--passphrase-file <file>', "with --out: also write the secrets encrypted to this passphrase (age's scrypt recipient) as IMVU-secrets.age beside the archive; needs secrets.age encrypted to your identity key (the default) and age installed")
    .action(async (id: string, o: { out?: string; recipient?: string[]; timeout: number; passphraseFile?: string }, c: Command) => {
      const ctx = Ctx.of(c);
      const before = await ctx.get<{ owner: { id: string } }>(`/v1/imvus/${id}`);
      const signer = ctx.signer([before.owner.id], `imvu exit ${id}`);
      const view0 = await ctx.get<ExitView>(`/v1/imvus/${id}/exit`);
      if (view0.status !== 'exiting' && view0.status !== 'exited') {
        const body = { imvu: id, ...(o.recipient?.length ? { recipients: o.recipient } : {}) };
        const s = await ctx.submit('POST', `/v1/imvus/${id}/exit`, 'imvu.exit', body, signer);
        if (!ctx.json) process.stderr.write(`✅ ${id} is exiting (ledger entry ${s.receipt.index}); it stays served while the archive is built\n`);
      } else if (!o.out) {
        ctx.print(view0, () => statusLines(view0));
        return;
      }
      if (!o.out) {
        const v = await ctx.get<ExitView>(`/v1/imvus/${id}/exit`);
        ctx.print(v, () => [...statusLines(v), `follow it with \`nexus imvu exit-status ${id}\`; fetch it with \`nexus imvu exit ${id} --out DIR\``]);
        return;
      }
      const v = await waitReady(ctx, id, o.timeout * 1000, signer);
      const { mkdirSync } = await import('node:fs');
      const { join } = await import('node:path');
      mkdirSync(o.out, { recursive: true });
      const file = join(o.out, `${id}-exit.tar.gz`);
      const tty = process.stderr.isTTY && !ctx.json;
      const contact = await ctx.connect();
      // Verified while it downloads: one pass over the bytes, the report once both are done.
      const { PassThrough } = await import('node:stream');
      const tap = new PassThrough({ highWaterMark: 4 << 20 });
      const verifying = verifyFile(ctx, file, contact.platform.publicKey, tap);
      verifying.catch(() => undefined);
      try {
        await ctx.client.download(
          `/v1/imvus/${id}/exit/archive`,
          file,
          signer,
          (got, total) => {
            if (tty) process.stderr.write(`\rdownloading ${got}${total ? ` of ${total}` : ''} bytes`);
          },
          tap,
        );
      } catch (err) {
        tap.destroy();
        await verifying.catch(() => undefined);
        throw err;
      }
      if (tty) process.stderr.write('\n');
      const report = await verifying;
      if (report.sha256 !== v.exit?.archive_sha256) throw verificationFailed(`the archive downloaded (sha256:${report.sha256}) is not the one the ledger records (sha256:${v.exit?.archive_sha256})`);
      const passphraseCopy = o.passphraseFile ? await secretsToPassphrase(ctx, id, file, o.passphraseFile, signer) : undefined;
      ctx.print({ imvu: id, file, sha256: report.sha256, size: report.size, report: report.lines, ...(passphraseCopy ? { passphraseSecrets: passphraseCopy } : {}) }, () => [
        ...report.lines,
        '',
        `✅ ${file}`,
        ...(passphraseCopy ? [`✅ ${passphraseCopy}: the secrets, for your passphrase (age -d ${passphraseCopy})`] : []),
        `when you have kept it safe: nexus imvu exit-confirm ${id} --archive ${file}`,
      ]);
    });

  imvu
    .command('exit-status')
    .description("an IMVU's exit: each part of the archive (complete, in progress, missing) and whether it is ready")
    .argument('<imvu>', 'IMVU id', imvuId)
    .action(async (id: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const v = await ctx.get<ExitView>(`/v1/imvus/${id}/exit`);
      ctx.print(v, () => statusLines(v));
    });

  imvu
    .command('exit-confirm')
    .description('confirm you downloaded the exit archive (by its SHA-256): the IMVU becomes exited and is no longer served, metered or billed')
    .argument('<imvu>', 'IMVU id', imvuId)
    .option('--archive <file>', 'the archive you downloaded (its SHA-256 is what you confirm)')
    .option('--sha256 <hex>', 'the SHA-256 of the archive, if you keep it elsewhere')
    .action(async (id: string, o: { archive?: string; sha256?: string }, c: Command) => {
      const ctx = Ctx.of(c);
      let digest = o.sha256?.toLowerCase();
      if (o.archive) {
        const { hashFile } = await import('../../imvu/exit/manifest.ts');
        const { existsSync } = await import('node:fs');
        if (!existsSync(o.archive)) throw notFound(`${o.archive}: no such file`);
        digest = (await hashFile(o.archive)).sha256;
      }
      if (!digest || !/^[0-9a-f]{64}$/.test(digest)) throw usage('give --archive FILE or --sha256 HEX');
      const before = await ctx.get<{ owner: { id: string } }>(`/v1/imvus/${id}`);
      const s = await ctx.submit('POST', `/v1/imvus/${id}/exit/confirm`, 'imvu.exit.confirm', { imvu: id, archive: digest }, ctx.signer([before.owner.id], `imvu exit-confirm ${id}`));
      ctx.print({ imvu: id, status: 'exited', index: s.receipt.index }, () => [`✅ ${id} exited: no longer served, metered or billed; its data is kept 30 days, then deleted after 90`]);
    });

  imvu
    .command('purge')
    .description('release (after the 30-day grace) or delete (after the 90-day retention) an exited IMVU (admin; refused before those dates)')
    .argument('<imvu>', 'IMVU id', imvuId)
    .requiredOption('--stage <stage>', 'release or delete', (v) => {
      if (v !== 'release' && v !== 'delete') throw usage('--stage is release or delete');
      return v;
    })
    .action(async (id: string, o: { stage: string }, c: Command) => {
      const ctx = Ctx.of(c);
      const s = await ctx.submit('POST', `/v1/imvus/${id}/purge`, 'imvu.purge', { imvu: id, stage: o.stage }, ctx.signer([], `imvu purge ${id}`));
      ctx.print({ imvu: id, stage: o.stage, index: s.receipt.index }, () => [`✅ ${id}: ${o.stage} recorded (ledger entry ${s.receipt.index})`]);
    });
}

/**
 * The passphrase copy of the secrets: secrets/secrets.age is opened here with the creator's own
 * identity key (age -d, as an OpenSSH key in a private temp file) and sealed again to the
 * passphrase with age's scrypt recipient. The daemon never sees the passphrase; the copy sits beside
 * the signed archive, which stays as the platform signed it.
 */
async function secretsToPassphrase(ctx: Ctx, id: string, archive: string, passphraseFile: string, as: LocalIdentity): Promise<string> {
  const { mkdtempSync, readFileSync, rmSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { dirname, join } = await import('node:path');
  const { execFileSync } = await import('node:child_process');
  let passphrase: string;
  try {
    passphrase = readFileSync(passphraseFile, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    throw usage(`cannot read ${passphraseFile}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!passphrase) throw usage(`${passphraseFile} is empty`);
  const tmp = mkdtempSync(join(tmpdir(), 'nexus-secrets-'));
  try {
    execFileSync('tar', ['-xzf', archive, '-C', tmp, `${id}/secrets/secrets.age`]);
    const { sshPrivateKey } = await import('../../core/identity/openssh.ts');
    const key = join(tmp, 'identity');
    writeFileSync(key, sshPrivateKey(as.key), { mode: 0o600 });
    let plain: Buffer;
    try {
      plain = execFileSync('age', ['-d', '-i', key, join(tmp, id, 'secrets', 'secrets.age')], { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      throw usage(`cannot open secrets.age with ${as.name}'s key (${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim().split('\n')[0]}): was it encrypted to other recipients?`);
    }
    const { encryptWithPassphrase } = await import('../../imvu/exit/age-scrypt.ts');
    const out = join(dirname(archive), `${id}-secrets.age`);
    writeFileSync(out, encryptWithPassphrase(plain, passphrase), { mode: 0o600 });
    void ctx;
    return out;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function waitReady(ctx: Ctx, id: string, timeoutMs: number, as: LocalIdentity): Promise<ExitView> {
  const until = Date.now() + timeoutMs;
  const tty = process.stderr.isTTY && !ctx.json;
  let lastLine = '';
  for (;;) {
    const v = await ctx.get<ExitView>(`/v1/imvus/${id}/exit`, {}, { as });
    const ready = !!v.exit?.archive_sha256;
    const parts = Object.values(v.build?.parts ?? {});
    // Ready: the bar (or the last line) says 100%, also when the archive was built before we looked.
    const done = ready ? 1 : parts.length ? parts.reduce((s, p) => s + Math.min(1, p.fraction), 0) / parts.length : 0;
    const line = `building ${id}'s archive: ${Math.floor(done * 100)}%`;
    if (tty) {
      const width = 30;
      const filled = Math.round(done * width);
      process.stderr.write(`\r[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${Math.floor(done * 100)}%`);
    } else if (line !== lastLine && !ctx.json) process.stderr.write(`${line}\n`);
    lastLine = line;
    if (ready) {
      if (tty) process.stderr.write('\n');
      return v;
    }
    if (Date.now() > until) throw usage(`the archive of ${id} was not ready within the timeout; the daemon keeps building it (nexus imvu exit-status ${id})`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

export function exportCommand(): Command {
  const cmd = new Command('export').description('exit archives');
  cmd
    .command('verify')
    .description('verify an exit archive offline (no daemon, no network): manifest signature, every file hash, every inclusion proof, every statement and its 55/45 split, every zone and mbox; exit 4 naming the first bad file')
    .argument('<file>', 'the .tar.gz archive')
    .option('--platform-key <base64>', "the platform's Ed25519 public key to require (default: the one in the archive)")
    .action(async (file: string, o: { platformKey?: string }, c: Command) => {
      const ctx = Ctx.of(c);
      const { existsSync } = await import('node:fs');
      if (!existsSync(file)) throw notFound(`${file}: no such file`);
      const report = await verifyFile(ctx, file, o.platformKey);
      ctx.print({ imvu: report.imvu, sha256: report.sha256, size: report.size, report: report.lines, manifest: report.manifest.manifest }, () => report.lines);
    });
  return cmd;
}
