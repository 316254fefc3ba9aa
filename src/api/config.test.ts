import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, resolveConfig } from './config.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nexus-config-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const oneLineError = (fn: () => unknown, re: RegExp) => {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as Error).message).toMatch(re);
  expect((err as Error).message).not.toContain('\n');
};

const DNS_DEFAULTS = { dns: true, dnsAddress: '127.0.0.1', dnsPort: process.getuid?.() === 0 ? 53 : 5353, meterIntervalMs: 60_000 };

describe('resolveConfig', () => {
  it('defaults: ./.nexus under the working directory, 127.0.0.1:7600, info, world; DNS on 127.0.0.1 (53 as root, else 5353)', () => {
    expect(resolveConfig({ env: {}, cwd: dir })).toEqual({ dataDir: join(dir, '.nexus'), host: '127.0.0.1', port: 7600, logLevel: 'info', suffix: 'world', ...DNS_DEFAULTS });
  });

  it('DNS and metering settings: flags, environment and config file keys', () => {
    const file = join(dir, 'dns.json');
    writeFileSync(file, JSON.stringify({ dns: true, dnsAddress: '127.0.0.9', dnsPort: 5300, meterIntervalMs: 5000 }));
    expect(resolveConfig({ env: {}, cwd: dir, config: file })).toMatchObject({ dns: true, dnsAddress: '127.0.0.9', dnsPort: 5300, meterIntervalMs: 5000 });
    const env = { NEXUS_DNS_ADDRESS: '::1', NEXUS_DNS_PORT: '5301', NEXUS_METER_INTERVAL_MS: '200', NEXUS_DNS: 'off' };
    expect(resolveConfig({ env, cwd: dir, config: file })).toMatchObject({ dns: false, dnsAddress: '::1', dnsPort: 5301, meterIntervalMs: 200 });
    expect(resolveConfig({ env, cwd: dir, dns: true, dnsPort: 0, dnsAddress: '127.0.0.2', meterIntervalMs: '250' })).toMatchObject({
      dns: true, dnsAddress: '127.0.0.2', dnsPort: 0, meterIntervalMs: 250,
    });
    oneLineError(() => resolveConfig({ env: { NEXUS_DNS_PORT: '99999' }, cwd: dir }), /^invalid NEXUS_DNS_PORT "99999": must be an integer 0-65535$/);
    oneLineError(() => resolveConfig({ env: { NEXUS_METER_INTERVAL_MS: '5' }, cwd: dir }), /^invalid NEXUS_METER_INTERVAL_MS "5": must be an integer number of milliseconds/);
    oneLineError(() => resolveConfig({ env: { NEXUS_DNS: 'maybe' }, cwd: dir }), /^invalid NEXUS_DNS "maybe": must be true or false$/);
    writeFileSync(file, JSON.stringify({ dns: 'yes' }));
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, config: file }), /^invalid config file .*: dns: must be true or false$/);
  });

  it('options beat the environment, which beats the config file, which beats the defaults', () => {
    const file = join(dir, 'explicit.json');
    writeFileSync(file, JSON.stringify({ dataDir: 'from-file', host: '0.0.0.0', port: 9000, logLevel: 'warn', suffix: 'file.example' }));
    const fromFile = resolveConfig({ env: { NEXUS_CONFIG: file }, cwd: '/elsewhere' });
    // A relative dataDir in a config file is relative to that file.
    expect(fromFile).toEqual({ dataDir: join(dir, 'from-file'), host: '0.0.0.0', port: 9000, logLevel: 'warn', suffix: 'file.example', ...DNS_DEFAULTS, configFile: file });
    const env = { NEXUS_CONFIG: file, NEXUS_PORT: '7700', NEXUS_LOG_LEVEL: 'debug', NEXUS_DATA: 'env-data' };
    expect(resolveConfig({ env, cwd: dir })).toMatchObject({ dataDir: join(dir, 'env-data'), host: '0.0.0.0', port: 7700, logLevel: 'debug', suffix: 'file.example' });
    expect(resolveConfig({ env, cwd: dir, port: 0, dataDir: '/abs/data', suffix: 'Flag.World' })).toMatchObject({ dataDir: '/abs/data', port: 0, logLevel: 'debug', suffix: 'flag.world' });
  });

  it('reads nexus.json from the data directory when no config file is named', () => {
    const data = join(dir, 'with-json');
    mkdirSync(data, { recursive: true });
    writeFileSync(join(data, 'nexus.json'), JSON.stringify({ port: 7611, host: '::1' }));
    expect(resolveConfig({ env: { NEXUS_DATA: data }, cwd: dir })).toMatchObject({ dataDir: data, port: 7611, host: '::1', configFile: join(data, 'nexus.json') });
    writeFileSync(join(data, 'nexus.json'), JSON.stringify({ dataDir: '/somewhere/else' }));
    oneLineError(() => resolveConfig({ env: { NEXUS_DATA: data }, cwd: dir }), /cannot move the data directory/);
  });

  it('a bad value is one clear line naming where it came from', () => {
    oneLineError(() => resolveConfig({ env: { NEXUS_PORT: 'eighty' }, cwd: dir }), /^invalid NEXUS_PORT "eighty": must be an integer 0-65535$/);
    oneLineError(() => resolveConfig({ env: { NEXUS_PORT: '70000' }, cwd: dir }), /NEXUS_PORT "70000"/);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, port: -1 }), /^invalid --port -1/);
    oneLineError(() => resolveConfig({ env: { NEXUS_LOG_LEVEL: 'loud' }, cwd: dir }), /NEXUS_LOG_LEVEL "loud": must be one of fatal, error/);
    oneLineError(() => resolveConfig({ env: { NEXUS_SUFFIX: 'no spaces' }, cwd: dir }), /NEXUS_SUFFIX .*DNS suffix/);
    oneLineError(() => resolveConfig({ env: { NEXUS_HOST: 'a b' }, cwd: dir }), /NEXUS_HOST/);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ not json');
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, config: bad }), /^cannot read config file .*bad.json: /);
    writeFileSync(bad, JSON.stringify({ port: 'x' }));
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, config: bad }), /^invalid config file .*: port: /);
    writeFileSync(bad, JSON.stringify({ colour: 'blue' }));
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, config: bad }), /colour/);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, config: join(dir, 'missing.json') }), /no such file/);
  });
});
