// bench/exit/profile.ts: where an export's time goes. Sets up an IMVU as run.ts does (through a
// daemon), stops the daemon, then runs the build (buildExitArchive) and the offline verification
// (verifyExitArchive) in this process, printing each part's seconds and writing a CPU profile of
// each (open in Chrome DevTools). Not a test.
//   npx tsx bench/exit/profile.ts [--gib 0.25] [--messages 2000] [--out DIR]
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { initDataDir, openDataDir } from '../../src/core/platform.ts';
import { startServer } from '../../src/api/server.ts';
import { dataVolume } from '../../src/compute/snapshots/index.ts';
import { mailboxRoot } from '../../src/mail/maildir/paths.ts';
import { closeFolder, ensureMaildir, openFolder, uniqueName } from '../../src/mail/maildir/store.ts';
import { buildExitArchive } from '../../src/imvu/exit/build.ts';
import { computePart, mailPart } from '../../src/imvu/exit/parts.ts';
import { verifyExitArchive } from '../../src/imvu/exit/verify.ts';

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const GIB = Number(arg('gib', '0.25'));
const MESSAGES = Number(arg('messages', '2000'));
const OUT = arg('out', '.');
const root = mkdtempSync(join(tmpdir(), 'bench-exit-prof-'));
const data = join(root, 'data');
mkdirSync(data);
await (await initDataDir(data)).close();
const server = await startServer({ dataDir: data, host: '127.0.0.1', port: 0, logger: false });
const env = { ...process.env, NEXUS_HOME: join(root, 'home'), NEXUS_URL: server.url };
const nexus = async (...args: string[]) => (await promisify(execFile)('node', ['bin/nexus.js', ...args], { env, encoding: 'utf8' })).stdout;
const session = new Session();
session.connect();
await session.post('Profiler.enable');
const profiled = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
  await session.post('Profiler.start');
  const t = performance.now();
  try {
    return await f();
  } finally {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(join(OUT, `exit-${name}.cpuprofile`), JSON.stringify(profile));
    console.log(`${name}: ${((performance.now() - t) / 1000).toFixed(2)} s`);
  }
};
try {
  await nexus('identity', 'create', 'alice', '--role', 'creator');
  await nexus('imvu', 'create', '--name', 'Bench', '--owner', 'alice', '--jurisdiction', 'EU-GDPR');
  const vol = dataVolume(data, 'IMVU-001');
  mkdirSync(vol, { recursive: true });
  const block = randomBytes(16 * 1024 * 1024);
  for (let i = 0; i < Math.round(GIB * 64); i++) writeFileSync(join(vol, `file-${i}.bin`), block.map((b, j) => (j === 0 ? i & 255 : b)));
  const box = mailboxRoot(data, 'IMVU-001', 'creator@imvu001.world');
  ensureMaildir(box);
  for (let i = 0; i < MESSAGES; i++)
    writeFileSync(join(box, 'cur', `${uniqueName()}:2,${i % 3 ? 'S' : ''}`), `From: s${i}@example.org\r\nSubject: message ${i}\r\n\r\n${'body line\r\n'.repeat(20)}`);
  const folder = openFolder(box);
  await folder.scan(false);
  closeFolder(folder);
  await server.close();
  const platform = await openDataDir(data);
  try {
    console.log(`load ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
    const t0 = performance.now();
    const marks: string[] = [];
    const built = await profiled('build', () =>
      buildExitArchive(
        {
          platform,
          checkpointNote: async () => undefined,
          parts: { mail: mailPart(platform), compute: computePart(platform) },
          onProgress: (part, f) => {
            if (f >= 1) marks.push(`${part} done at ${((performance.now() - t0) / 1000).toFixed(2)} s`);
          },
        },
        'IMVU-001',
      ),
    );
    console.log(marks.join('\n'));
    await profiled('verify', () => verifyExitArchive(built.file));
    console.log(`load ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  } finally {
    await platform.close();
  }
} finally {
  session.disconnect();
  rmSync(root, { recursive: true, force: true });
}
