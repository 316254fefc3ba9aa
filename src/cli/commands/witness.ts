// `nexus witness`: run an independent witness (C2SP tlog-witness) with its own key and state.
// It never talks to a platform: logs come to it with checkpoints and consistency proofs.
import { Command } from 'commander';
import { resolve } from 'node:path';
import type { LogStatus, WitnessStore } from '../../core/witness/index.ts';
import { port } from '../args.ts';
import { Ctx } from '../context.ts';
import { CliError, EXIT, usage } from '../errors.ts';
import { table } from '../format.ts';

const DEFAULT_PORT = 7601;

function setupErrors<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if ((err as Error)?.name === 'WitnessSetupError') throw usage((err as Error).message);
    throw err;
  }
}

/** The witness itself (its store and server), loaded by the commands that use it. */
const witnessCore = () => import('../../core/witness/index.ts');

async function withStore<T>(dataDir: string, fn: (s: WitnessStore) => T): Promise<T> {
  const { WitnessStore } = await witnessCore();
  const store = setupErrors(() => WitnessStore.open(dataDir));
  try {
    return setupErrors(() => fn(store));
  } finally {
    store.close();
  }
}

function when(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

export function witnessCommand(): Command {
  const cmd = new Command('witness').description('run an independent witness that cosigns checkpoints of the logs it follows, never two inconsistent ones (C2SP tlog-witness)');
  cmd.addHelpText(
    'after',
    `
A witness is operated by somebody other than the platform, on another machine. Set it up once:
  nexus witness init --data DIR --name witness.example.org/w1     (prints its verifier key)
  nexus witness add-log --data DIR --origin ORIGIN --vkey VKEY    (the platform's GET /v1/platform: origin, verifierKey)
  nexus witness serve --data DIR --port ${DEFAULT_PORT}
Give the platform the witness's URL and verifier key.`,
  );

  cmd
    .command('init')
    .description('create a witness: a new Ed25519 key (DIR/witness.key, mode 0600) and an empty state')
    .requiredOption('--data <dir>', "the witness's own data directory")
    .requiredOption('--name <name>', "the witness's key name, a schema-less URL such as witness.example.org/w1")
    .action(async (o: { data: string; name: string }, c: Command) => {
      const dir = resolve(o.data);
      const { initWitness } = await witnessCore();
      const made = setupErrors(() => initWitness(dir, o.name));
      Ctx.of(c).print({ name: made.name, vkey: made.vkey, dataDir: dir }, () => [
        `✅ Witness ${made.name} created in ${dir} (key ${made.keyFile}, mode 0600)`,
        `Verifier key (give it to the platforms and clients that rely on this witness):`,
        made.vkey,
        `Next: nexus witness add-log --data ${dir} --origin ORIGIN --vkey LOG_VKEY`,
      ]);
    });

  cmd
    .command('add-log')
    .description("follow a log: its origin and its verifier key (add another key for a log it follows to trust both)")
    .requiredOption('--data <dir>', "the witness's data directory")
    .requiredOption('--origin <origin>', "the log's origin, the first line of its checkpoints (GET /v1/platform: origin)")
    .requiredOption('--vkey <vkey>', "the log's verifier key, <name>+<key id>+<key> (GET /v1/platform: verifierKey)")
    .action(async (o: { data: string; origin: string; vkey: string }, c: Command) => {
      const dir = resolve(o.data);
      const added = await withStore(dir, (s) => s.addLog(o.origin, o.vkey));
      Ctx.of(c).print({ origin: o.origin, vkey: o.vkey, added }, () =>
        added ? `✅ Following ${o.origin} with key ${o.vkey.split('+').slice(0, 2).join('+')} (a running witness picks it up at once)` : `Already following ${o.origin} with that key; nothing changed`,
      );
    });

  cmd
    .command('show')
    .description("the witness's verifier key and the logs it follows, with the latest size it cosigned")
    .requiredOption('--data <dir>', "the witness's data directory")
    .action(async (o: { data: string }, c: Command) => {
      const dir = resolve(o.data);
      const { name, vkey, logs } = await withStore(dir, (s) => ({ name: s.name, vkey: s.vkey, logs: s.logs() }));
      const refused = logs.filter((l) => l.evidence > 0);
      Ctx.of(c).print({ name, vkey, logs }, () => [
        `Witness ${name}`,
        `Verifier key: ${vkey}`,
        '',
        logs.length
          ? table(
              ['LOG ORIGIN', 'COSIGNED SIZE', 'COSIGNED AT', 'KEYS', 'INCONSISTENT'],
              logs.map((l: LogStatus) => [l.origin, l.cosigned ? l.cosigned.size : 'none yet', l.cosigned ? when(l.cosigned.cosignedAt) : '-', l.vkeys.length, l.evidence]),
            )
          : `No logs followed yet: nexus witness add-log --data ${dir} --origin ORIGIN --vkey VKEY`,
        ...(refused.length
          ? ['', `⚠️  ${refused.map((l) => l.origin).join(', ')}: the log signed checkpoints inconsistent with one this witness cosigned; they are kept in ${dir}/witness.db (table evidence) as proof — tell the log's users.`]
          : []),
      ]);
    });

  cmd
    .command('serve')
    .description('run the witness: POST /add-checkpoint (C2SP tlog-witness) until SIGTERM or SIGINT')
    .requiredOption('--data <dir>', "the witness's data directory")
    .option('--port <n>', 'TCP port (0 picks a free port)', port, DEFAULT_PORT)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .action(async (o: { data: string; port: number; host: string }, c: Command) => {
      const dir = resolve(o.data);
      const { startWitnessServer } = await witnessCore();
      let running;
      try {
        running = await startWitnessServer({
          dataDir: dir,
          port: o.port,
          host: o.host,
          onInconsistent: (e) =>
            process.stderr.write(
              `nexus witness: refused a checkpoint of ${e.origin} at size ${e.size} that is inconsistent with the one cosigned at size ${e.cosignedSize}; kept as evidence (nexus witness show --data ${dir})\n`,
            ),
        });
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (e.name === 'WitnessSetupError') throw usage(e.message);
        if (e.code === 'EADDRINUSE') throw new CliError(`cannot listen on ${o.host}:${o.port}: the address is in use (pick another --port)`, EXIT.denied);
        if (e.code === 'EACCES') throw new CliError(`cannot listen on ${o.host}:${o.port}: permission denied (ports below 1024 need root)`, EXIT.denied);
        throw err;
      }
      const w = running;
      const ctx = Ctx.of(c);
      // It runs until stopped: printed at once (with --json as one JSON line), not held like a result.
      process.stdout.write(ctx.json ? JSON.stringify({ name: w.name, url: w.url, vkey: w.vkey }) + '\n' : `nexus witness ${w.name} listening on ${w.url} (verifier key ${w.vkey})\n`);
      await new Promise<void>((done) => {
        const stop = () => {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          void w.close().then(done, done);
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
    });

  return cmd;
}
