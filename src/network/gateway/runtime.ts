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

/**
 * Bytes of map lines per `add map` payload. HAProxy's CLI reads a command and its payload into one
 * buffer (tune.bufsize, 16 KiB by default) and drops a longer one without a word: 500 route lines
 * (about 17 KiB) were dropped and a whole push emptied the map (bench/gateway/scale.ts at 10,000 IMVUs).
 */
export const MAP_PAYLOAD_BYTES = 8 * 1024;

/** Map lines as `add map` payloads of at most MAP_PAYLOAD_BYTES each (a longer line alone). */
export function payloads(lines: readonly [string, string][], max = MAP_PAYLOAD_BYTES): string[] {
  const out: string[] = [];
  let cur: string[] = [];
  let size = 0;
  for (const [k, v] of lines) {
    const line = `${k} ${v}`;
    if (cur.length && size + line.length + 1 > max) {
      out.push(cur.join('\n'));
      cur = [];
      size = 0;
    }
    cur.push(line);
    size += line.length + 1;
  }
  if (cur.length) out.push(cur.join('\n'));
  return out;
}

/** `show map` without a map: each map file's current line count (`entry_cnt`). */
export function parseMapCounts(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const l of text.split('\n')) {
    const m = /^\d+ \((.*)\) .*\bentry_cnt=(\d+)/.exec(l);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

/** `get map FILE KEY`: the line HAProxy matches for KEY (found=no: undefined). */
export function parseGetMap(text: string): { key: string; value: string } | undefined {
  if (!/found=yes/.test(text)) return undefined;
  const key = /key="([^"]*)"/.exec(text)?.[1];
  const value = /value="([^"]*)"/.exec(text)?.[1];
  return key === undefined || value === undefined ? undefined : { key, value };
}

/** One backend's servers from `show servers state <backend>` (HAProxy 2.6): name, address, port; undefined when there is no such backend. */
export function parseServersState(text: string): { server: string; addr: string; port: number }[] | undefined {
  const lines = text.split('\n');
  const head = lines.find((l) => l.startsWith('# '));
  if (!head) return undefined;
  const cols = head.slice(2).split(' ');
  const at = (name: string) => {
    const i = cols.indexOf(name);
    if (i < 0) throw new Error(`haproxy show servers state: no ${name} column`);
    return i;
  };
  const [name, addr, port] = [at('srv_name'), at('srv_addr'), at('srv_port')];
  return lines
    .filter((l) => /^\d+ /.test(l))
    .map((l) => l.split(' '))
    .map((f) => ({ server: f[name]!, addr: f[addr]!, port: Number(f[port]) }));
}
