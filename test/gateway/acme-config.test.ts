// The ACME options of the daemon: flag, environment and config file, each validated; without a
// directory the local CA issues (acme: null).
import { afterAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, resolveConfig } from '../../src/api/config.ts';

const dir = mkdtempSync(join(tmpdir(), 'nexus-acme-config-'));
const ca = join(dir, 'ca.pem');
writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
const base = { dataDir: join(dir, 'data'), env: {} as Record<string, string> };

describe('ACME configuration', () => {
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is off by default: the local CA issues', () => {
    expect(resolveConfig(base).acme).toBeNull();
  });

  it('takes the directory, the CA and the renewal window from flags', () => {
    const c = resolveConfig({ ...base, acmeDirectory: 'https://127.0.0.1:14000/dir', acmeCaCert: ca, acmeRenewDays: '10' });
    expect(c.acme).toMatchObject({ directory: 'https://127.0.0.1:14000/dir', caCertFile: ca, renewBeforeDays: 10 });
    expect(c.acme!.caCert).toContain('BEGIN CERTIFICATE');
  });

  it('from the environment and from the config file', () => {
    expect(resolveConfig({ ...base, env: { NEXUS_ACME_DIRECTORY: 'https://acme.example/dir', NEXUS_ACME_RENEW_DAYS: '20' } }).acme).toEqual({ directory: 'https://acme.example/dir', renewBeforeDays: 20, challenge: 'dns-01' });
    const file = join(dir, 'nexus.json');
    writeFileSync(file, JSON.stringify({ acmeDirectory: 'https://file.example/dir', acmeCaCert: 'ca.pem' }));
    expect(resolveConfig({ ...base, config: file }).acme).toMatchObject({ directory: 'https://file.example/dir', caCertFile: ca, renewBeforeDays: 30 });
    // The flag wins over the environment.
    expect(resolveConfig({ ...base, acmeDirectory: 'https://flag.example/dir', env: { NEXUS_ACME_DIRECTORY: 'https://env.example/dir' } }).acme!.directory).toBe('https://flag.example/dir');
  });

  it('takes the challenge type: dns-01 by default, http-01 by flag, environment or config file', () => {
    const dirOnly = { ...base, acmeDirectory: 'https://a.example/dir' };
    expect(resolveConfig(dirOnly).acme!.challenge).toBe('dns-01');
    expect(resolveConfig({ ...dirOnly, acmeChallenge: 'http-01' }).acme!.challenge).toBe('http-01');
    expect(resolveConfig({ ...dirOnly, env: { NEXUS_ACME_CHALLENGE: 'http-01' } }).acme!.challenge).toBe('http-01');
    const file = join(dir, 'challenge.json');
    writeFileSync(file, JSON.stringify({ acmeDirectory: 'https://file.example/dir', acmeChallenge: 'http-01' }));
    expect(resolveConfig({ ...base, config: file }).acme!.challenge).toBe('http-01');
    expect(() => resolveConfig({ ...dirOnly, acmeChallenge: 'tls-alpn-01' })).toThrow(/--acme-challenge .*dns-01 or http-01/);
    expect(() => resolveConfig({ ...base, acmeChallenge: 'http-01' })).toThrow(/no ACME directory/);
  });

  it('refuses what it cannot use, in one line', () => {
    const bad = (o: Parameters<typeof resolveConfig>[0], re: RegExp) => {
      expect(() => resolveConfig(o)).toThrow(ConfigError);
      expect(() => resolveConfig(o)).toThrow(re);
    };
    bad({ ...base, acmeDirectory: 'http://acme.example/dir' }, /--acme-directory .*https URL/);
    bad({ ...base, acmeDirectory: 'not a url' }, /https URL/);
    bad({ ...base, acmeCaCert: ca }, /no ACME directory/);
    bad({ ...base, acmeDirectory: 'https://a.example/dir', acmeCaCert: join(dir, 'missing.pem') }, /no such file/);
    bad({ ...base, acmeDirectory: 'https://a.example/dir', acmeRenewDays: '0' }, /1-365/);
    const notPem = join(dir, 'not.pem');
    writeFileSync(notPem, 'hello');
    chmodSync(notPem, 0o644);
    bad({ ...base, acmeDirectory: 'https://a.example/dir', acmeCaCert: notPem }, /no PEM CERTIFICATE block/);
  });
});
