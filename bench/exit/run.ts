// bench/exit: exports an IMVU holding a 1 GiB data volume and 10,000 messages through a real daemon
// and the built CLI (start, build, download, offline verification), then `nexus export verify`
// alone, and compares with `tar | sha256sum` of the same data in the same run. Not a test.
//   npx tsx bench/exit/run.ts [--gib 1] [--messages 10000] [--profile DIR]
// --profile DIR: the CLI's runs write CPU profiles there (run this script itself with
// `node --cpu-prof --import tsx` for the daemon's); bench/exit/profile.ts splits the build by part.
import { exec, execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initDataDir } from '../../src/core/platform.ts';
import { readExitStatus } from '../../src/imvu/exit/service.ts';
import { startServer } from '../../src/api/server.ts';
import { dataVolume } from '../../src/compute/snapshots/index.ts';
import { mailboxRoot } from '../../src/mail/maildir/paths.ts';
import { closeFolder, ensureMaildir, folderStatus, openFolder, uniqueName } from '../../src/mail/maildir/store.ts';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const GIB = arg('gib', 1);
const MESSAGES = arg('messages', 10_000);
const root = mkdtempSync(join(tmpdir(), 'bench-exit-'));
const data = join(root, 'data');
const home = join(root, 'home');
const out = join(root, 'out');
mkdirSync(data);
await (await initDataDir(data)).close();
const server = await startServer({ dataDir: data, host: '127.0.0.1', port: 0, logger: false });
const env = { ...process.env, NEXUS_HOME: home, NEXUS_URL: server.url };
// Asynchronously: the daemon answers from this very process.
const PROFILE = process.argv.includes('--profile') ? process.argv[process.argv.indexOf('--profile') + 1]! : undefined;
const nodeArgs = PROFILE ? ['--cpu-prof', '--cpu-prof-dir', PROFILE] : [];
const nexus = async (...args: string[]) => (await promisify(execFile)('node', [...nodeArgs, 'bin/nexus.js', ...args], { env, encoding: 'utf8', maxBuffer: 64 << 20 })).stdout;
const time = async (f: () => unknown | Promise<unknown>) => {
  const t = process.hrtime.bigint();
  await f();
  return Number(process.hrtime.bigint() - t) / 1e9;
};
try {
  await nexus('identity', 'create', 'alice', '--role', 'creator');
  await nexus('imvu', 'create', '--name', 'Bench', '--owner', 'alice', '--jurisdiction', 'EU-GDPR');
  // 1 GiB in 16 MiB files of random bytes (incompressible: the worst case for gzip).
  const vol = dataVolume(data, 'IMVU-001');
  mkdirSync(vol, { recursive: true });
  const block = randomBytes(16 * 1024 * 1024);
  for (let i = 0; i < GIB * 64; i++) writeFileSync(join(vol, `file-${i}.bin`), block.map((b, j) => (j === 0 ? i & 255 : b)));
  // The mailbox filled the way any Maildir delivery agent does it (files in cur/ with their flags
  // in the name), then indexed by one scan of the store: adding through Folder.add rewrites the
  // index on every message (about 6 minutes for 10,000), which is setup, not what is measured.
  const box = mailboxRoot(data, 'IMVU-001', 'creator@imvu001.world');
  ensureMaildir(box);
  for (let i = 0; i < MESSAGES; i++)
    writeFileSync(
      join(box, 'cur', `${uniqueName()}:2,${i % 3 ? 'S' : ''}`),
      `From: s${i}@example.org\r\nTo: creator@imvu001.world\r\nSubject: message ${i}\r\n\r\n${'body line\r\n'.repeat(20)}`,
    );
  const folder = openFolder(box);
  await folder.scan(false);
  const indexed = (await folderStatus(box)).messages;
  closeFolder(folder);
  if (indexed !== MESSAGES) throw new Error(`the store indexed ${indexed} messages, not ${MESSAGES}`);
  const load0 = execFileSync('uptime', { encoding: 'utf8' }).trim();
  const t0 = process.hrtime.bigint();
  await nexus('imvu', 'exit', 'IMVU-001');
  // The daemon's build alone: until the ledger records the archive ready.
  // Followed through the status file the daemon writes once the ledger has recorded the archive
  // ready (what `nexus imvu exit-status` reads): a CLI process every 200 ms would compete with
  // the build it measures for the 2 cores.
  while (readExitStatus(data, 'IMVU-001')?.state !== 'ready') await new Promise((r) => setTimeout(r, 100));
  if (!JSON.parse(await nexus('--json', 'imvu', 'exit-status', 'IMVU-001')).exit?.archive_sha256) throw new Error('the ledger does not record the archive ready');
  const build = Number(process.hrtime.bigint() - t0) / 1e9;
  const fetch = await time(() => nexus('imvu', 'exit', 'IMVU-001', '--out', out, '--timeout', '3600'));
  const exit = build + fetch;
  const verify = await time(() => nexus('export', 'verify', join(out, 'IMVU-001-exit.tar.gz')));
  const tarSha = await time(() => promisify(exec)(`tar -cf - -C ${JSON.stringify(join(data, 'imvus', 'IMVU-001'))} . | sha256sum`));
  // The disk's floor: writing the archive's size durably (the daemon writes its archive, the CLI
  // its copy, each fsynced; tar | sha256sum writes nothing).
  const ddFsync = await time(() => promisify(execFile)('dd', ['if=/dev/zero', `of=${join(root, 'dd')}`, 'bs=1M', `count=${Math.round(GIB * 1024)}`, 'conv=fsync']));
  rmSync(join(root, 'dd'), { force: true });
  const size = Number(execFileSync('stat', ['-c', '%s', join(out, 'IMVU-001-exit.tar.gz')], { encoding: 'utf8' }));
  const load1 = execFileSync('uptime', { encoding: 'utf8' }).trim();
  const rows: [string, string][] = [
    ['daemon build (`nexus imvu exit` until the ledger records the archive ready)', build.toFixed(1)],
    ['download and verification as it downloads (`nexus imvu exit --out DIR`)', fetch.toFixed(1)],
    ['the export: build + download and verification', exit.toFixed(1)],
    ['`nexus export verify` of the archive alone', verify.toFixed(1)],
    ['`tar -cf - DIR | sha256sum` of the same data (the peer)', tarSha.toFixed(1)],
    ['`dd conv=fsync` of the volume\'s size (the disk: written twice in an export)', ddFsync.toFixed(1)],
    ['ratio: export / tar+sha256', (exit / tarSha).toFixed(2)],
    ['ratio: verify alone / tar+sha256', (verify / tarSha).toFixed(2)],
  ];
  console.log(`${GIB} GiB data volume, ${MESSAGES} messages; archive ${size} bytes`);
  console.log(`uptime before: ${load0}\nuptime after:  ${load1}`);
  console.log(['| step | seconds |', '| --- | --- |', ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join('\n'));
  console.log(JSON.stringify({ gib: GIB, messages: MESSAGES, buildSeconds: build, downloadAndVerifySeconds: fetch, exitSeconds: exit, verifySeconds: verify, tarSha256Seconds: tarSha, ddFsyncSeconds: ddFsync, ratio: exit / tarSha, archiveBytes: size }));
} finally {
  await server.close();
  rmSync(root, { recursive: true, force: true });
}
