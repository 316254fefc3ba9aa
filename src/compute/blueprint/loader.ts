// The blueprint file: YAML (npm `yaml`, YAML 1.2 core schema) checked by the strict blueprint
// schema (schema.ts), the same one the signed compute.deploy body is checked by. The file is
// hostile input: its size is bounded before it is parsed, aliases are capped (no "billion laughs"),
// a key may appear once, one document only, and every problem is reported as one line that names
// the file, the line and column, and the field.
import { open } from 'node:fs/promises';
import { LineCounter, parseDocument, isMap, isNode, isScalar, YAMLError } from 'yaml';
import type { z } from 'zod';
import { blueprintSchema, type Blueprint } from './schema.ts';

/** A blueprint holds at most 1 MiB of file contents (schema.ts); with everything else, this. */
export const MAX_BLUEPRINT_BYTES = 2 * 1024 * 1024;
const MAX_ALIASES = 64;

export class BlueprintError extends Error {}

function where(source: string, lc: LineCounter, offset: number | undefined): string {
  if (offset === undefined) return source;
  const { line, col } = lc.linePos(offset);
  return `${source}:${line}:${col}`;
}

/** Parses and validates blueprint text; throws BlueprintError with `source:line:col: field: why`. */
export function loadBlueprint(text: string, source = 'blueprint'): Blueprint {
  if (typeof text !== 'string') throw new BlueprintError(`${source}: not text`);
  if (Buffer.byteLength(text) > MAX_BLUEPRINT_BYTES) throw new BlueprintError(`${source}: ${Buffer.byteLength(text)} bytes, more than the ${MAX_BLUEPRINT_BYTES} a blueprint may have`);
  const lc = new LineCounter();
  let doc;
  try {
    doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, strict: true, prettyErrors: false, version: '1.2', schema: 'core', merge: false });
  } catch (err) {
    throw new BlueprintError(`${source}: not YAML: ${String((err as Error)?.message ?? err).split('\n')[0]}`);
  }
  const problem = doc.errors[0];
  if (problem) throw new BlueprintError(`${where(source, lc, problem.pos[0])}: ${problem.message.split('\n')[0]}`);
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (err) {
    const msg = err instanceof YAMLError || err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new BlueprintError(`${source}: ${msg}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new BlueprintError(`${source}: a blueprint is a mapping (command:, image: or files:, env:, port:, health:)`);
  const parsed = blueprintSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw new BlueprintError(describeIssue(source, lc, doc, parsed.error.issues[0]!));
}

function describeIssue(source: string, lc: LineCounter, doc: ReturnType<typeof parseDocument>, issue: z.core.$ZodIssue): string {
  const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p));
  // The deepest node that exists along the path: an unknown key points at its map, a missing one at its parent.
  let offset: number | undefined;
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true);
    if (isNode(node) && node.range) {
      offset = node.range[0];
      break;
    }
  }
  if (issue.code === 'unrecognized_keys') {
    // Point at the unknown key itself.
    const map = path.length === 0 ? doc.contents : doc.getIn(path, true);
    const pair = isMap(map) ? map.items.find((it) => isScalar(it.key) && it.key.value === issue.keys[0]) : undefined;
    if (pair && isNode(pair.key) && pair.key.range) offset = pair.key.range[0];
  }
  const field = path.length ? path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('').replace(/^\./, '') : '';
  let why = issue.message;
  if (issue.code === 'unrecognized_keys') why = `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.join(', ')}`;
  return `${where(source, lc, offset)}: ${field ? `${field}: ` : ''}${why}`;
}

/** Reads and loads a blueprint file, refusing one larger than MAX_BLUEPRINT_BYTES before reading it whole. */
export async function loadBlueprintFile(path: string): Promise<{ blueprint: Blueprint; text: string }> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new BlueprintError(`${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new BlueprintError(`${path}: not a regular file`);
    if (st.size > MAX_BLUEPRINT_BYTES) throw new BlueprintError(`${path}: ${st.size} bytes, more than the ${MAX_BLUEPRINT_BYTES} a blueprint may have`);
    const buf = Buffer.alloc(MAX_BLUEPRINT_BYTES + 1);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n > MAX_BLUEPRINT_BYTES) throw new BlueprintError(`${path}: grew past ${MAX_BLUEPRINT_BYTES} bytes while it was read`);
    }
    const text = new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, n));
    return { blueprint: loadBlueprint(text, path), text };
  } catch (err) {
    if (err instanceof BlueprintError) throw err;
    throw new BlueprintError(`${path}: ${err instanceof TypeError ? 'not UTF-8 text' : (err as Error).message}`);
  } finally {
    await fh.close();
  }
}

/**
 * Secrets in the environment, by name: a variable whose name ends in _SECRET, _TOKEN, _PASSWORD,
 * _PASS, _PASSPHRASE, _KEY, _PRIVATE_KEY, _CREDENTIAL(S) or _API_KEY, or is one of those words
 * itself (SECRET, TOKEN, PASSWORD, ...), case-insensitive; plus any name listed in `also`.
 */
export const SECRET_NAME = /(^|_)(SECRET|TOKEN|PASSWORD|PASSWD|PASS|PASSPHRASE|KEY|PRIVATE_KEY|CREDENTIALS?|API_KEY|DSN)$/i;

export const REDACTED = '<redacted>';

export function isSecretName(name: string, also: readonly string[] = []): boolean {
  return SECRET_NAME.test(name) || also.includes(name);
}

/** The environment with every secret's value replaced by `<redacted>` (what an exit's env.example shows). */
export function redactEnv(env: Record<string, string> | undefined, also: readonly string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(env ?? {}).sort()) out[k] = isSecretName(k, also) ? REDACTED : env![k]!;
  return out;
}

/** env.example text: one KEY=value line each, secrets redacted, values quoted when they need it. */
export function envExample(env: Record<string, string> | undefined, also: readonly string[] = []): string {
  const lines = Object.entries(redactEnv(env, also)).map(([k, v]) => `${k}=${/^[A-Za-z0-9_./:@<>-]*$/.test(v) ? v : JSON.stringify(v)}`);
  return lines.length ? `${lines.join('\n')}\n` : '';
}
