// `nexus status` and `nexus stop`: the running daemon, found by URL (--server / NEXUS_URL) or by
// its data directory (the pid and URL files it keeps there, src/core/daemon-files.ts).
import { Command } from 'commander';
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import { int } from '../args.ts';
import { Ctx } from '../context.ts';
import { CliError, EXIT } from '../errors.ts';
import { dataDirOf } from './operator.ts';
import { LOCK_FILE, pidAlive, pidHoldsFile, readPidFile, readUrlFile } from '../../core/daemon-files.ts';
import { formatStatus, type DaemonStatus } from '../../api/status-view.ts';

/** Exit with `code`, the explanation already printed. */
const quietExit = (code: typeof EXIT.unreachable | typeof EXIT.denied) => new CliError('', code);

const real = (p: string) => {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
};

/** The URL to connect to: a daemon listening on every address (0.0.0.0, ::) is reached on loopback. */
function connectable(url: string): string {
  const u = new URL(url);
  if (u.hostname === '0.0.0.0') u.hostname = '127.0.0.1';
  else if (u.hostname === '[::]') u.hostname = '[::1]';
  return u.origin;
}

type Found = { url: string; pid?: number } | { down: string };

/** The daemon serving `dataDir`, from its pid and URL files. */
function fromDataDir(dataDir: string): Found {
  const pid = readPidFile(dataDir);
  if (pid === null || !pidAlive(pid)) return { down: `no daemon serves ${dataDir}` };
  const url = readUrlFile(dataDir);
  if (!url) return { down: `a daemon (pid ${pid}) holds ${dataDir} but has not recorded its URL (still starting?)` };
  return { url: connectable(url), pid };
}

async function fetchStatus(ctx: Ctx, url: string): Promise<DaemonStatus | { down: string }> {
  const { Client } = await import('../client.ts');
  const caFile = ctx.opts.ca ?? (ctx.env.NEXUS_CA || undefined);
  const client = new Client(url, 10_000, caFile !== undefined ? { caFile } : {});
  try {
    return await client.get<DaemonStatus>('/v1/status');
  } catch (err) {
    if (err instanceof CliError && err.code === EXIT.unreachable) return { down: err.message.replace(/; start it with.*$/, '') };
    throw err;
  }
}

export function statusCommand(): Command {
  return new Command('status')
    .description('is the daemon up, and what it serves: version, platform, listeners, data directory, ledger and checkpoint, IMVUs, integrity, witnesses')
    .option('--data <dir>', "find the daemon serving this data directory (its pid and URL files) instead of --server / NEXUS_URL")
    .addHelpText(
      'after',
      '\nExit code 0 when the daemon answers, 3 when it is down or unreachable (with --json the object\n' +
        'says { "up": false, "reason": ... }). The pid and data directory are shown only when asking\n' +
        'from the same machine.',
    )
    .action(async (o: { data?: string }, c: Command) => {
      const ctx = Ctx.of(c);
      const dataDir = o.data !== undefined ? dataDirOf(o.data) : undefined;
      const found: Found = dataDir !== undefined ? fromDataDir(dataDir) : { url: ctx.url };
      const answer = 'down' in found ? found : await fetchStatus(ctx, found.url);
      const url = 'url' in found ? found.url : null;
      if ('down' in answer) {
        ctx.print({ up: false, url, ...(dataDir ? { dataDir } : {}), reason: answer.down }, () => `daemon  down: ${answer.down}`);
        throw quietExit(EXIT.unreachable);
      }
      const notes: string[] = [];
      if (dataDir && answer.dataDir && real(answer.dataDir) !== real(dataDir)) notes.push(`note: the daemon at ${url} serves ${answer.dataDir}, not ${dataDir}`);
      ctx.print({ up: true, url, ...answer }, () => [...formatStatus(answer, url ?? undefined), ...notes]);
    });
}

export function stopCommand(): Command {
  return new Command('stop')
    .description('stop the daemon serving a data directory (SIGTERM to the pid that holds its lock; waits until it has exited)')
    .option('--data <dir>', 'data directory (env NEXUS_DATA; default ./.nexus)')
    .option('--timeout <seconds>', 'how long to wait for it to exit', int(1, 3600), 30)
    .addHelpText(
      'after',
      '\nThe daemon finishes the commands in flight, closes its store and exits. Exit code 0 when it\n' +
        'has stopped or none was running, 1 when it did not exit in time or the pid could not be\n' +
        'confirmed as the daemon of that directory (nothing is signalled then).',
    )
    .action(async (o: { data?: string; timeout: number }, c: Command) => {
      const ctx = Ctx.of(c);
      const dataDir = dataDirOf(o.data);
      const pid = readPidFile(dataDir);
      const { isDataDirLocked } = await import('../../core/daemon-lock.ts');
      const locked = isDataDirLocked(dataDir);
      if (!locked || pid === null || !pidAlive(pid)) {
        if (locked) throw new CliError(`a process holds the lock of ${dataDir} but ${pid === null ? 'no pid file names it' : `pid ${pid} (its pid file) is gone`}; nothing signalled`, EXIT.denied);
        ctx.print({ stopped: false, running: false, dataDir }, () => `No daemon serves ${dataDir}; nothing to stop.`);
        return;
      }
      // The pid file could be stale and its pid reused: signal only the process that holds the lock file open.
      const holds = pidHoldsFile(pid, join(dataDir, LOCK_FILE));
      if (holds === false) throw new CliError(`pid ${pid} (named by ${join(dataDir, 'daemon.pid')}) does not hold ${join(dataDir, LOCK_FILE)}: it is not the daemon of ${dataDir}; nothing signalled`, EXIT.denied);
      if (holds === undefined) {
        // No /proc to look at (or another user's process): ask the daemon itself.
        const found = fromDataDir(dataDir);
        const s = 'url' in found ? await fetchStatus(ctx, found.url) : found;
        if ('down' in s || s.pid !== pid || !s.dataDir || real(s.dataDir) !== real(dataDir))
          throw new CliError(`cannot confirm that pid ${pid} is the daemon of ${dataDir}${'down' in s ? ` (${s.down})` : ''}; nothing signalled`, EXIT.denied);
      }
      try {
        process.kill(pid, 'SIGTERM');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ESRCH') {
          ctx.print({ stopped: false, running: false, dataDir }, () => `No daemon serves ${dataDir}; nothing to stop.`);
          return;
        }
        if (code === 'EPERM') throw new CliError(`not permitted to signal pid ${pid} (the daemon of ${dataDir} runs as another user: use sudo, or systemctl stop nexus)`, EXIT.denied);
        throw err;
      }
      const deadline = Date.now() + o.timeout * 1000;
      while (pidAlive(pid)) {
        if (Date.now() > deadline)
          throw new CliError(`the daemon (pid ${pid}) got SIGTERM but has not exited after ${o.timeout} s (commands in flight?); wait, or \`kill -9 ${pid}\``, EXIT.denied);
        await new Promise((r) => setTimeout(r, 100));
      }
      ctx.print({ stopped: true, pid, dataDir }, () => `Stopped the daemon (pid ${pid}) serving ${dataDir}.`);
    });
}
