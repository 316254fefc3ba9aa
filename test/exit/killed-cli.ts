// The parts suites kill a CLI mid-way (an import or a transfer-in), once it has recorded a given
// part, to leave the receiving platform with a declaration whose parts are not all in.
import { spawn } from 'node:child_process';
import { BIN, ROOT } from '../cli/harness.ts';

/** Runs `nexus ARGS` and SIGKILLs it once it reports part `part` recorded; the number of parts it declared. */
export async function killedAfterPart(args: string[], env: Record<string, string>, part: number): Promise<number> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  await new Promise<void>((res, rej) => {
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (new RegExp(`part ${part} of \\d+ recorded`).test(err)) {
        child.kill('SIGKILL');
        res();
      }
    });
    child.once('exit', (code) => rej(new Error(`nexus ${args.join(' ')} ended (${code}) before its part ${part}: ${err}`)));
  });
  return Number(/part \d+ of (\d+) recorded/.exec(err)![1]);
}
