import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { BlueprintError, envExample, loadBlueprint, loadBlueprintFile, MAX_BLUEPRINT_BYTES, redactEnv } from './loader.ts';

const GOOD = `# a tiny web app
image: busybox
command: [/bin/httpd, -f, -p, "8080"]
env:
  GREETING: hello
  DB_PASSWORD: hunter2
port: 8080
health:
  http_path: /healthz
  interval_ms: 1000
files:
  - path: /www/index.html
    content: "<h1>hi</h1>"
    mode: 0o644
`;

describe('blueprint loader', () => {
  it('loads a valid blueprint, octal modes included', () => {
    const b = loadBlueprint(GOOD, 'app.yaml');
    expect(b.command).toEqual(['/bin/httpd', '-f', '-p', '8080']);
    expect(b.files?.[0]?.mode).toBe(0o644);
    expect(b.port).toBe(8080);
  });

  it.each([
    ['an unknown field, with its line', GOOD.replace('port: 8080', 'prot: 8080'), /^app\.yaml:7:1: unknown field prot$/],
    ['a wrong type, at the value', GOOD.replace('port: 8080', 'port: eighty'), /^app\.yaml:7:7: port: /],
    ['a bad nested field', GOOD.replace('interval_ms: 1000', 'interval_ms: 5'), /^app\.yaml:10:16: health\.interval_ms: /],
    ['a relative file path', GOOD.replace('/www/index.html', 'www/index.html'), /^app\.yaml:12:11: files\[0\]\.path: must be an absolute path/],
    ['a missing command', GOOD.replace(/command:.*\n/, ''), /^app\.yaml:2:1: command: /],
    ['a duplicate key', `${GOOD}port: 9090\n`, /^app\.yaml:15:1: .*[Mm]ap keys must be unique/],
    ['a YAML syntax error', 'command: [a, b\nport: 1\n', /^app\.yaml:\d+:\d+: /],
    ['two documents', `${GOOD}---\ncommand: [x]\n`, /^app\.yaml:\d+:\d+: .*[Ss]ource contains multiple documents/],
    ['a list instead of a mapping', '- a\n- b\n', /^app\.yaml: a blueprint is a mapping/],
    ['neither image nor files', 'command: [/bin/true]\n', /^app\.yaml:1:1: needs an image or files$/],
  ])('refuses %s with a clear error', (_what, text, message) => {
    expect(() => loadBlueprint(text, 'app.yaml')).toThrow(BlueprintError);
    expect(() => loadBlueprint(text, 'app.yaml')).toThrow(message);
  });

  it('refuses an alias bomb and an oversized file without expanding or reading them', async () => {
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]', ...Array.from({ length: 9 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)},*${String.fromCharCode(97 + i)}]`), 'command: [*j]'].join('\n');
    expect(() => loadBlueprint(bomb, 'bomb.yaml')).toThrow(/bomb\.yaml: .*(alias|Excessive)/i);
    const dir = await mkdtemp(join(tmpdir(), 'nexus-bp-'));
    try {
      const big = join(dir, 'big.yaml');
      await writeFile(big, `command: [x]\n#${'x'.repeat(MAX_BLUEPRINT_BYTES)}\n`);
      await expect(loadBlueprintFile(big)).rejects.toThrow(/more than the \d+ a blueprint may have/);
      const bin = join(dir, 'bin.yaml');
      await writeFile(bin, Buffer.from([0x63, 0x3a, 0x20, 0xff, 0xfe, 0x0a]));
      await expect(loadBlueprintFile(bin)).rejects.toThrow(/not UTF-8 text/);
      const ok = join(dir, 'ok.yaml');
      await writeFile(ok, GOOD);
      expect((await loadBlueprintFile(ok)).blueprint.port).toBe(8080);
      await expect(loadBlueprintFile(join(dir, 'none.yaml'))).rejects.toThrow(/no such file/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('arbitrary text never crashes it: a blueprint or a BlueprintError (property)', () => {
    const yamlish = fc.oneof(
      fc.string({ maxLength: 400 }),
      fc.jsonValue({ maxDepth: 4 }).map((v) => stringify(v)),
      fc.record({ command: fc.array(fc.string(), { maxLength: 3 }), image: fc.string(), port: fc.integer(), env: fc.dictionary(fc.string(), fc.string()) }, { requiredKeys: [] }).map((v) => stringify(v)),
      fc.array(fc.constantFrom('command:', ' - a', '&x', '*x', '[', ']', '{', '}', '!!binary', '!!js/function', '---', '? ', ': ', '<<: *x', '"', "'", '\t', '\n', 'port: 0x10', 'env: {A: 1}'), { maxLength: 30 }).map((a) => a.join('')),
    );
    fc.assert(
      fc.property(yamlish, (text) => {
        try {
          const b = loadBlueprint(text, 'x.yaml');
          expect(Array.isArray(b.command)).toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(BlueprintError);
          expect((err as Error).message.startsWith('x.yaml')).toBe(true);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('secrets in the environment', () => {
  it('redacts by name, and names listed as secret', () => {
    const env = { GREETING: 'hello', DB_PASSWORD: 'hunter2', STRIPE_API_KEY: 'sk_live', GITHUB_TOKEN: 'ghp', SESSION_SECRET: 's', PORT: '8080', KEYBOARD: 'qwerty', SENTRY_URL: 'https://k@x/1' };
    expect(redactEnv(env, ['SENTRY_URL'])).toEqual({
      DB_PASSWORD: '<redacted>',
      GITHUB_TOKEN: '<redacted>',
      GREETING: 'hello',
      KEYBOARD: 'qwerty',
      PORT: '8080',
      SENTRY_URL: '<redacted>',
      SESSION_SECRET: '<redacted>',
      STRIPE_API_KEY: '<redacted>',
    });
    expect(envExample({ GREETING: 'hello world', DB_PASSWORD: 'x' })).toBe('DB_PASSWORD=<redacted>\nGREETING="hello world"\n');
  });
});
