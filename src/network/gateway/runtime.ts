// HAProxy's runtime API over its admin unix socket: one command per connection (non-interactive
// mode), the answer read to the end. Bounded in size and time; HAProxy is trusted to answer, but
// a stuck socket must not stall the daemon.
import { createConnection } from 'node:net';

const MAX_ANSWER = 32 * 1024 * 1024;

export async function runtimeCommand(socket: string, command: string, opts: { timeoutMs?: number; payload?: string } = {}): Promise<string> {
  if (/[\r\n]/.test(command)) throw new Error('runtime command must be one line');
  return new Promise((resolve, reject) => {
    const c = createConnection(socket);
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => c.destroy(new Error(`haproxy runtime API: no answer to '${command.split(' ')[0]}' within ${opts.timeoutMs ?? 5000} ms`)), opts.timeoutMs ?? 5000);
    c.on('connect', () => c.end(opts.payload === undefined ? `${command}\n` : `${command} <<\n${opts.payload.replace(/\n+$/, '')}\n\n`));
    c.on('data', (d: Buffer) => {
      size += d.length;
      if (size > MAX_ANSWER) return c.destroy(new Error('haproxy runtime API: answer too large'));
      chunks.push(d);
    });
    c.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    c.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}

/** `show stat` as rows keyed by column name. */
export function parseStat(csv: string): Record<string, string>[] {
  const lines = csv.split('\n').filter((l) => l.length > 0);
  const head = lines.shift();
  if (!head?.startsWith('# ')) throw new Error(`haproxy show stat: unexpected answer: ${csv.slice(0, 200)}`);
  const cols = head.slice(2).split(',');
  return lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [cols[i] ?? String(i), v])));
}

/** `show info` as name -> value. */
export function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of text.split('\n')) {
    const i = l.indexOf(':');
    if (i > 0) out[l.slice(0, i)] = l.slice(i + 1).trim();
  }
  return out;
}

/** `show map FILE` lines (`0x55... key value`) as [key, value] pairs in served order. */
export function parseShowMap(text: string): [string, string][] {
  const out: [string, string][] = [];
  for (const l of text.split('\n')) {
    const m = /^0x[0-9a-f]+ (\S+) (.*)$/.exec(l);
    if (m) out.push([m[1]!, m[2]!]);
  }
  return out;
}
