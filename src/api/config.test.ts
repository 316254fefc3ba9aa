import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, IANA_ROOT_HINTS, exposureWarning, resolveConfig, xfrOptions } from './config.ts';
import { DEFAULT_PLAN } from '../core/policy/commands.ts';
import { generateKeyPairSync as generateKeyPair } from 'node:crypto';
import { cosignerVerifierKey } from '../core/witness/cosignature.ts';

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

const DNS_DEFAULTS = {
  dns: true, dnsAddress: '127.0.0.1', dnsPort: process.getuid?.() === 0 ? 53 : 5353, dnssecDenial: 'nsec', meterIntervalMs: 60_000, integrityIntervalMs: 60_000, snapshotEvery: 100_000, keyPool: 4,
  // The gateway: on when haproxy is installed, loopback, 443/80 as root.
  gateway: true, gatewayAddress: '127.0.0.1', gatewayPort: process.getuid?.() === 0 ? 443 : 8443, gatewayHttpPort: process.getuid?.() === 0 ? 80 : 8080, gatewayRegion: '',
  // Zone transfers: nobody may transfer, nobody is notified.
  xfrAllow: [], tsig: null, notify: [],
  // Domain proofs start from the IANA root servers.
  rootHints: IANA_ROOT_HINTS.map((address) => ({ address, port: 53 })),
  // Outbound mail goes to remote MTAs on port 25.
  mailRelayPort: 25,
  // Plan limits published at init.
  plan: DEFAULT_PLAN,
  // The platform's name servers: none given, ns1.<suffix> at the DNS address.
  nameservers: [],
  // No witnesses; a witness exchange has 10 s.
  witnesses: [],
  witnessTimeoutMs: 10_000,
  // Plain HTTP on loopback; readable logs on a terminal.
  tls: null, acme: null, insecureHttp: false, logFormat: 'auto',
};

describe('resolveConfig', () => {
  it('defaults: ./.nexus under the working directory, 127.0.0.1:7600, info, world; DNS on 127.0.0.1 (53 as root, else 5353)', () => {
    expect(resolveConfig({ env: {}, cwd: dir })).toEqual({ computeRange: '10.96.0.0/11', dataDir: join(dir, '.nexus'), host: '127.0.0.1', port: 7600, logLevel: 'info', suffix: 'world', ...DNS_DEFAULTS });
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
    expect(resolveConfig({ env: { NEXUS_INTEGRITY_INTERVAL_MS: '1500' }, cwd: dir })).toMatchObject({ integrityIntervalMs: 1500 });
    expect(resolveConfig({ env: { NEXUS_INTEGRITY_INTERVAL_MS: '1500' }, cwd: dir, integrityIntervalMs: 250 })).toMatchObject({ integrityIntervalMs: 250 });
    oneLineError(() => resolveConfig({ env: { NEXUS_INTEGRITY_INTERVAL_MS: '1' }, cwd: dir }), /^invalid NEXUS_INTEGRITY_INTERVAL_MS "1": must be an integer number of milliseconds/);
    expect(resolveConfig({ env: { NEXUS_SNAPSHOT_EVERY: '0' }, cwd: dir })).toMatchObject({ snapshotEvery: 0 });
    expect(resolveConfig({ env: { NEXUS_SNAPSHOT_EVERY: '0' }, cwd: dir, snapshotEvery: 5000 })).toMatchObject({ snapshotEvery: 5000 });
    oneLineError(() => resolveConfig({ env: { NEXUS_SNAPSHOT_EVERY: '-3' }, cwd: dir }), /^invalid NEXUS_SNAPSHOT_EVERY "-3": must be a whole number of entries/);
    expect(resolveConfig({ env: { NEXUS_KEY_POOL: '64' }, cwd: dir })).toMatchObject({ keyPool: 64 });
    oneLineError(() => resolveConfig({ env: { NEXUS_KEY_POOL: '0' }, cwd: dir }), /^invalid NEXUS_KEY_POOL "0": must be a whole number of key sets from 1 to 10000$/);
    writeFileSync(file, JSON.stringify({ dns: 'yes' }));
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, config: file }), /^invalid config file .*: dns: must be true or false$/);
  });

  it('root hints for domain proofs: flag, environment, config file; IP addresses with an optional port only', () => {
    const file = join(dir, 'roots.json');
    writeFileSync(file, JSON.stringify({ rootHints: ['127.0.53.1:5300'] }));
    expect(resolveConfig({ env: {}, cwd: dir, config: file }).rootHints).toEqual([{ address: '127.0.53.1', port: 5300 }]);
    expect(resolveConfig({ env: { NEXUS_ROOT_HINTS: '192.0.2.1, [2001:db8::1]:5353' }, cwd: dir, config: file }).rootHints).toEqual([
      { address: '192.0.2.1', port: 53 },
      { address: '2001:db8::1', port: 5353 },
    ]);
    expect(resolveConfig({ env: { NEXUS_ROOT_HINTS: '192.0.2.1' }, cwd: dir, rootHints: ['198.51.100.1'] }).rootHints).toEqual([{ address: '198.51.100.1', port: 53 }]);
    oneLineError(() => resolveConfig({ env: { NEXUS_ROOT_HINTS: 'a.root-servers.net' }, cwd: dir }), /is a host name: give a root server's IP address/);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, rootHints: [] }), /--root-hints: must name at least one root server/);
  });

  it('options beat the environment, which beats the config file, which beats the defaults', () => {
    const file = join(dir, 'explicit.json');
    writeFileSync(file, JSON.stringify({ dataDir: 'from-file', host: '0.0.0.0', port: 9000, logLevel: 'warn', suffix: 'file.example' }));
    const fromFile = resolveConfig({ env: { NEXUS_CONFIG: file }, cwd: '/elsewhere' });
    // A relative dataDir in a config file is relative to that file.
    expect(fromFile).toEqual({ computeRange: '10.96.0.0/11', dataDir: join(dir, 'from-file'), host: '0.0.0.0', port: 9000, logLevel: 'warn', suffix: 'file.example', ...DNS_DEFAULTS, configFile: file });
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

  it('plan limits: --plan / NEXUS_PLAN (name=value pairs) / plan (object); unnamed limits keep their defaults; bad ones are one line', () => {
    expect(resolveConfig({ env: { NEXUS_PLAN: 'cpu_cores=16, imvus_per_creator=3' }, cwd: dir }).plan).toEqual({ ...DEFAULT_PLAN, cpu_cores: 16, imvus_per_creator: 3 });
    const file = join(dir, 'plan.json');
    writeFileSync(file, JSON.stringify({ plan: { memory_gb: 128 } }));
    expect(resolveConfig({ env: { NEXUS_CONFIG: file }, cwd: dir }).plan).toEqual({ ...DEFAULT_PLAN, memory_gb: 128 });
    expect(resolveConfig({ env: { NEXUS_CONFIG: file, NEXUS_PLAN: 'iops=9' }, cwd: dir, plan: 'storage_gb=2000' }).plan).toEqual({ ...DEFAULT_PLAN, storage_gb: 2000 });
    for (const bad of ['cpu=4', 'cpu_cores=0', 'cpu_cores=many', 'cpu_cores', 'cpu_cores=2048'])
      oneLineError(() => resolveConfig({ env: { NEXUS_PLAN: bad }, cwd: dir }), new RegExp(`^invalid NEXUS_PLAN "${bad}": must be plan limits such as cpu_cores=8`));
    writeFileSync(file, JSON.stringify({ plan: { cores: 4 } }));
    oneLineError(() => resolveConfig({ env: { NEXUS_CONFIG: file }, cwd: dir }), /invalid config file .*plan: must be plan limits/);
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

describe('resolveConfig: zone transfers (allow-list, TSIG, NOTIFY)', () => {
  // 32 bytes, base64: what `openssl rand -base64 32` or `tsig-keygen` gives.
  const SECRET = Buffer.from('nexus config test key, 32 bytes').toString('base64');
  const OTHER = Buffer.from('another config test key, 32 byte').toString('base64');
  const secretFile = (name: string, content: string, mode: number) => {
    const f = join(dir, name);
    writeFileSync(f, content);
    chmodSync(f, mode);
    return f;
  };

  it('none of them set: no xfr option for the server (transfers refused)', () => {
    const cfg = resolveConfig({ env: {}, cwd: dir });
    expect(cfg).toMatchObject({ xfrAllow: [], tsig: null, notify: [] });
    expect(xfrOptions(cfg)).toBeUndefined();
  });

  it('--xfr-allow / NEXUS_XFR_ALLOW / xfrAllow and --notify / NEXUS_NOTIFY / notify: flags beat the environment, which beats the file', () => {
    const file = join(dir, 'xfr.json');
    writeFileSync(file, JSON.stringify({ xfrAllow: ['192.0.2.0/24'], notify: ['127.0.0.1:5301'] }));
    expect(resolveConfig({ env: {}, cwd: dir, config: file })).toMatchObject({ xfrAllow: ['192.0.2.0/24'], notify: [{ address: '127.0.0.1', port: 5301 }] });
    // Comma-separated in the environment; IPv6 bare (port 53) or in brackets with a port; duplicates dropped.
    const env = { NEXUS_XFR_ALLOW: '10.0.0.0/8, 2001:db8::/32,10.0.0.0/8', NEXUS_NOTIFY: '127.0.0.2,[::1]:5302,::1' };
    expect(resolveConfig({ env, cwd: dir, config: file })).toMatchObject({
      xfrAllow: ['10.0.0.0/8', '2001:db8::/32'],
      notify: [{ address: '127.0.0.2', port: 53 }, { address: '::1', port: 5302 }, { address: '::1', port: 53 }],
    });
    // Repeated flags (commander's variadic options give an array), each may hold a comma list too.
    const cfg = resolveConfig({ env, cwd: dir, config: file, xfrAllow: ['127.0.0.1', '::1,172.16.0.0/12'], notify: ['127.0.0.1:5300'] });
    expect(cfg).toMatchObject({ xfrAllow: ['127.0.0.1', '::1', '172.16.0.0/12'], notify: [{ address: '127.0.0.1', port: 5300 }] });
    expect(xfrOptions(cfg)).toEqual({ allow: ['127.0.0.1', '::1', '172.16.0.0/12'], notify: [{ address: '127.0.0.1', port: 5300 }] });
  });

  it('bad addresses: one line naming the source and the entry; host names are never resolved', () => {
    oneLineError(() => resolveConfig({ env: { NEXUS_XFR_ALLOW: '127.0.0.1,10.0.0.0/33' }, cwd: dir }), /^invalid NEXUS_XFR_ALLOW "127.0.0.1,10.0.0.0\/33": "10.0.0.0\/33" is not an IP address or CIDR prefix/);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, xfrAllow: ['secondary.example.org'] }), /^invalid --xfr-allow: "secondary.example.org" is not an IP address or CIDR prefix/);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, xfrAllow: ['127.0.0.1'], notify: ['ns2.example.org:53'] }), /^invalid --notify: "ns2.example.org:53" is a host name: give the secondary's IP address \(names are not resolved\)$/);
    oneLineError(() => resolveConfig({ env: { NEXUS_NOTIFY: '127.0.0.1:70000' }, cwd: dir, xfrAllow: ['127.0.0.1'] }), /^invalid NEXUS_NOTIFY "127.0.0.1:70000": "127.0.0.1:70000": the port must be 1-65535$/);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, xfrAllow: ['127.0.0.1'], notify: ['[127.0.0.1]:53'] }), /^invalid --notify: "\[127.0.0.1\]:53" is not an IP address with an optional port/);
    const file = join(dir, 'bad-xfr.json');
    writeFileSync(file, JSON.stringify({ xfrAllow: ['127.0.0.1', 'any'] }));
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, config: file }), /^invalid config file .*bad-xfr.json: xfrAllow.1: "any" is not an IP address/);
    writeFileSync(file, JSON.stringify({ notify: 53 }));
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, config: file }), /^invalid config file .*: notify: must be a list of strings$/);
  });

  it('NOTIFY with nobody allowed to transfer, or to a remote secondary while DNS listens on loopback, is refused', () => {
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, notify: ['127.0.0.1:5300'] }), /^secondaries to NOTIFY are set .* but none may transfer: add --xfr-allow or a TSIG key/);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, xfrAllow: ['192.0.2.53'], notify: ['192.0.2.53'] }), /^cannot NOTIFY 192.0.2.53: DNS listens on 127.0.0.1 \(loopback\).*--dns-address/);
    expect(resolveConfig({ env: {}, cwd: dir, xfrAllow: ['192.0.2.53'], notify: ['192.0.2.53'], dnsAddress: '0.0.0.0' }).notify).toEqual([{ address: '192.0.2.53', port: 53 }]);
    // Without DNS none of it matters.
    expect(resolveConfig({ env: {}, cwd: dir, xfrAllow: ['192.0.2.53'], notify: ['192.0.2.53'], dns: false }).dns).toBe(false);
  });

  it('--nameserver / NEXUS_NAMESERVERS / nameservers: NAME=ADDRESS pairs, normalised once, never resolved', () => {
    const file = join(dir, 'ns.json');
    writeFileSync(file, JSON.stringify({ nameservers: ['ns1.world=192.0.2.53'] }));
    expect(resolveConfig({ env: {}, cwd: dir, config: file }).nameservers).toEqual([{ name: 'ns1.world', address: '192.0.2.53' }]);
    const env = { NEXUS_NAMESERVERS: 'NS1.World.=192.0.2.54, ns2.world=[2001:DB8:0::53]' };
    expect(resolveConfig({ env, cwd: dir, config: file }).nameservers).toEqual([
      { name: 'ns1.world', address: '192.0.2.54' },
      { name: 'ns2.world', address: '2001:db8::53' },
    ]);
    expect(resolveConfig({ env, cwd: dir, config: file, nameservers: ['ns1.world=127.0.0.1', 'ns1.world=127.0.0.1'] }).nameservers).toEqual([{ name: 'ns1.world', address: '127.0.0.1' }]);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, nameservers: ['ns1.world'] }), /^invalid --nameserver: "ns1.world" is not NAME=ADDRESS/);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, nameservers: ['ns1.world=ns.example.org'] }), /^invalid --nameserver: "ns.example.org" \(for ns1.world\) is not an IP address \(.*never resolved\)$/);
    oneLineError(() => resolveConfig({ env: { NEXUS_NAMESERVERS: 'world=192.0.2.1' }, cwd: dir }), /^invalid NEXUS_NAMESERVERS "world=192.0.2.1": "world" is not a host name such as ns1.world$/);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, nameservers: ['ns1.world=0.0.0.0'] }), /not an address a resolver can reach/);
    writeFileSync(file, JSON.stringify({ nameservers: 'ns1.world=192.0.2.53' }));
    expect(resolveConfig({ env: {}, cwd: dir, config: file }).nameservers).toEqual([{ name: 'ns1.world', address: '192.0.2.53' }]);
  });

  it('--witness / NEXUS_WITNESSES / witnesses: URL=VKEY pairs (or { url, vkey } in the file), each key checked', () => {
    const vkey = cosignerVerifierKey('witness.example/w1', generateKeyPair('ed25519').publicKey.export({ format: 'der', type: 'spki' }).subarray(-32));
    const other = cosignerVerifierKey('witness.example/w2', generateKeyPair('ed25519').publicKey.export({ format: 'der', type: 'spki' }).subarray(-32));
    const file = join(dir, 'witnesses.json');
    writeFileSync(file, JSON.stringify({ witnesses: [{ url: 'http://127.0.0.1:7601/', vkey }], witnessTimeoutMs: 3000 }));
    const fromFile = resolveConfig({ env: {}, cwd: dir, config: file });
    expect(fromFile.witnesses).toEqual([{ url: 'http://127.0.0.1:7601', vkey }]);
    expect(fromFile.witnessTimeoutMs).toBe(3000);
    expect(resolveConfig({ env: { NEXUS_WITNESSES: `http://127.0.0.1:1=${vkey},https://w2.example/prefix=${other}` }, cwd: dir }).witnesses).toEqual([
      { url: 'http://127.0.0.1:1', vkey },
      { url: 'https://w2.example/prefix', vkey: other },
    ]);
    expect(resolveConfig({ env: {}, cwd: dir, config: file, witnesses: [`http://127.0.0.1:2=${other}`] }).witnesses).toEqual([{ url: 'http://127.0.0.1:2', vkey: other }]);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, witnesses: ['http://127.0.0.1:2'] }), /^invalid --witness: "http:\/\/127.0.0.1:2" is not URL=VKEY/);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, witnesses: [`ftp://x=${vkey}`] }), /a witness URL is http or https/);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, witnesses: ['http://127.0.0.1:2=witness.example/w1+00000000+AAAA'] }), /the verifier key for witness http:\/\/127.0.0.1:2 is invalid/);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, witnesses: [`http://a=${vkey}`, `http://b=${vkey}`] }), /a witness key is listed twice/);
  });

  it('TSIG: the name from flag, environment or file; the secret from a file (flag, environment, file) or NEXUS_TSIG_SECRET', () => {
    const keyFile = secretFile('tsig.key', SECRET + '\n', 0o600);
    const otherFile = secretFile('other.key', OTHER, 0o600);
    // The config file's tsigSecretFile is relative to the config file.
    const sub = join(dir, 'etc');
    mkdirSync(sub, { recursive: true });
    secretFile('etc/file.key', OTHER, 0o640);
    const file = join(sub, 'tsig.json');
    writeFileSync(file, JSON.stringify({ tsigName: 'From-File.Example.', tsigSecretFile: 'file.key', xfrAllow: [] }));
    expect(resolveConfig({ env: {}, cwd: '/', config: file }).tsig).toEqual({ name: 'from-file.example', secret: OTHER });
    expect(resolveConfig({ env: { NEXUS_TSIG_NAME: 'env-key', NEXUS_TSIG_SECRET: SECRET }, cwd: dir, config: file }).tsig).toEqual({ name: 'env-key', secret: SECRET });
    expect(resolveConfig({ env: { NEXUS_TSIG_SECRET_FILE: 'tsig.key' }, cwd: dir, config: file }).tsig).toEqual({ name: 'from-file.example', secret: SECRET });
    // The flag beats both environment variables.
    const cfg = resolveConfig({ env: { NEXUS_TSIG_NAME: 'env-key', NEXUS_TSIG_SECRET: SECRET }, cwd: dir, config: file, tsigName: 'flag-key', tsigSecretFile: otherFile });
    expect(cfg.tsig).toEqual({ name: 'flag-key', secret: OTHER });
    // A TSIG key alone is enough for an xfr option: transfers signed with it, from anywhere.
    expect(xfrOptions(cfg)).toEqual({ tsig: { name: 'flag-key', secret: OTHER } });
    expect(resolveConfig({ env: {}, cwd: dir, tsigName: 'k', tsigSecretFile: keyFile }).tsig).toEqual({ name: 'k', secret: SECRET });
    // A long secret as `openssl rand -base64 64` prints it: wrapped over two lines.
    const long = Buffer.alloc(64, 7).toString('base64');
    const wrapped = secretFile('wrapped.key', `${long.slice(0, 64)}\n${long.slice(64)}\n`, 0o600);
    expect(resolveConfig({ env: {}, cwd: dir, tsigName: 'k', tsigSecretFile: wrapped }).tsig).toEqual({ name: 'k', secret: long });
    oneLineError(
      () => resolveConfig({ env: { NEXUS_TSIG_NAME: 'k', NEXUS_TSIG_SECRET: SECRET, NEXUS_TSIG_SECRET_FILE: keyFile }, cwd: dir }),
      /^both NEXUS_TSIG_SECRET and NEXUS_TSIG_SECRET_FILE are set: keep one$/,
    );
  });

  it('a secret file that every user may read (or replace) is refused; group-readable is accepted', () => {
    const open = secretFile('open.key', SECRET, 0o644);
    oneLineError(
      () => resolveConfig({ env: { NEXUS_TSIG_SECRET_FILE: open }, cwd: dir, tsigName: 'k' }),
      new RegExp(`^refusing TSIG secret file ${open} \\(NEXUS_TSIG_SECRET_FILE\\): it is readable by every user \\(mode 0644\\); chmod 600 ${open}$`),
    );
    const writable = secretFile('writable.key', SECRET, 0o602);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, tsigName: 'k', tsigSecretFile: writable }), /^refusing TSIG secret file .*writable.key \(--tsig-secret-file\): it is writable by every user \(mode 0602\)/);
    expect(resolveConfig({ env: {}, cwd: dir, tsigName: 'k', tsigSecretFile: secretFile('group.key', SECRET, 0o640) }).tsig).toEqual({ name: 'k', secret: SECRET });
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, tsigName: 'k', tsigSecretFile: join(dir, 'missing.key') }), /^cannot read TSIG secret file .*missing.key \(--tsig-secret-file\): no such file$/);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, tsigName: 'k', tsigSecretFile: dir }), /: not a regular file$/);
  });

  it('a name without a secret, or a secret without a name, is one line saying what is missing', () => {
    const keyFile = secretFile('half.key', SECRET, 0o600);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, tsigName: 'nexus-xfr' }), /^TSIG key nexus-xfr \(--tsig-name\) has no secret: set --tsig-secret-file, NEXUS_TSIG_SECRET_FILE, tsigSecretFile or NEXUS_TSIG_SECRET$/);
    oneLineError(() => resolveConfig({ env: { NEXUS_TSIG_SECRET: SECRET }, cwd: dir }), /^a TSIG secret is given \(NEXUS_TSIG_SECRET\) but no key name: set --tsig-name, NEXUS_TSIG_NAME or tsigName$/);
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, tsigSecretFile: keyFile }), /^a TSIG secret is given \(--tsig-secret-file\) but no key name/);
    const file = join(dir, 'half.json');
    writeFileSync(file, JSON.stringify({ tsigName: 'in-file' }));
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, config: file }), /^TSIG key in-file \(tsigName in .*half.json\) has no secret/);
  });

  it('a bad name or secret is refused, and the secret is never echoed', () => {
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, tsigName: 'two words', tsigSecretFile: secretFile('n.key', SECRET, 0o600) }), /^invalid --tsig-name "two words": must be a key name/);
    const short = Buffer.from('too short').toString('base64');
    for (const [env, opts, where] of [
      [{ NEXUS_TSIG_SECRET: short }, {}, 'in NEXUS_TSIG_SECRET'],
      [{ NEXUS_TSIG_SECRET: 'not base64!' }, {}, 'in NEXUS_TSIG_SECRET'],
      [{}, { tsigSecretFile: secretFile('bad.key', 'hmac-sha256:k:' + SECRET, 0o600) }, `in ${join(dir, 'bad.key')} \\(--tsig-secret-file\\)`],
    ] as const) {
      let message = '';
      try {
        resolveConfig({ env: { NEXUS_TSIG_NAME: 'k', ...env }, cwd: dir, ...opts });
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(new RegExp(`^invalid TSIG secret ${where}: must be a base64 HMAC-SHA256 secret of at least 16 bytes`));
      expect(message).not.toContain(short);
      expect(message).not.toContain(SECRET);
      expect(message).not.toContain('base64!');
    }
    // Secrets are not read from the config file itself (it is often readable, and copied around).
    const file = join(dir, 'secret-in-file.json');
    writeFileSync(file, JSON.stringify({ tsigName: 'k', tsigSecret: SECRET }));
    oneLineError(() => resolveConfig({ env: {}, cwd: dir, config: file }), /^invalid config file .*: tsigSecret: the TSIG secret is not read from the config file; use tsigSecretFile or NEXUS_TSIG_SECRET$/);
  });
});

describe('TLS and exposure settings', () => {
  const CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const KEY = '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n';

  it('reads --tls-cert/--tls-key, the environment or the config file (paths relative to it); both or neither', () => {
    const tls = join(dir, 'tls');
    mkdirSync(tls, { recursive: true });
    writeFileSync(join(tls, 'cert.pem'), CERT);
    writeFileSync(join(tls, 'key.pem'), KEY, { mode: 0o600 });
    chmodSync(join(tls, 'key.pem'), 0o600);
    expect(resolveConfig({ env: {}, cwd: tls, tlsCert: 'cert.pem', tlsKey: 'key.pem' }).tls).toEqual({ certFile: join(tls, 'cert.pem'), keyFile: join(tls, 'key.pem'), cert: CERT, key: KEY });
    expect(resolveConfig({ env: { NEXUS_TLS_CERT: join(tls, 'cert.pem'), NEXUS_TLS_KEY: join(tls, 'key.pem') }, cwd: dir }).tls?.certFile).toBe(join(tls, 'cert.pem'));
    const file = join(tls, 'nexus-tls.json');
    writeFileSync(file, JSON.stringify({ tlsCert: 'cert.pem', tlsKey: 'key.pem', insecureHttp: false, logFormat: 'json' }));
    expect(resolveConfig({ env: {}, cwd: dir, config: file })).toMatchObject({ tls: { keyFile: join(tls, 'key.pem') }, insecureHttp: false, logFormat: 'json' });
    oneLineError(() => resolveConfig({ env: {}, cwd: tls, tlsCert: 'cert.pem' }), /^a TLS certificate is given \(--tls-cert\) but no key: set --tls-key, NEXUS_TLS_KEY or tlsKey$/);
    oneLineError(() => resolveConfig({ env: {}, cwd: tls, tlsCert: 'key.pem', tlsKey: 'key.pem' }), /no PEM CERTIFICATE block/);
    chmodSync(join(tls, 'key.pem'), 0o644);
    oneLineError(() => resolveConfig({ env: {}, cwd: tls, tlsCert: 'cert.pem', tlsKey: 'key.pem' }), /^refusing TLS key file .*key\.pem \(--tls-key\): every user may read or replace it \(mode 0644\); chmod 600 /);
  });

  it('plain HTTP is an exposure on any address but loopback; TLS is not', () => {
    const at = (host: string, tls: null | object = null) => exposureWarning({ host, port: 7600, tls: tls as never });
    expect(at('127.0.0.1')).toBeUndefined();
    expect(at('::1')).toBeUndefined();
    expect(at('localhost')).toBeUndefined();
    expect(at('0.0.0.0')).toMatch(/^the API would listen on 0\.0\.0\.0:7600 without TLS/);
    expect(at('::')).toBeDefined();
    expect(at('192.0.2.7')).toBeDefined();
    expect(at('0.0.0.0', { cert: '', key: '' })).toBeUndefined();
    expect(resolveConfig({ env: { NEXUS_INSECURE_HTTP: 'true', NEXUS_LOG_FORMAT: 'pretty' }, cwd: dir })).toMatchObject({ insecureHttp: true, logFormat: 'pretty' });
    oneLineError(() => resolveConfig({ env: { NEXUS_LOG_FORMAT: 'xml' }, cwd: dir }), /^invalid NEXUS_LOG_FORMAT "xml": must be one of auto, json, pretty$/);
  });

  it('--dnssec-denial / NEXUS_DNSSEC_DENIAL: nsec (default) or compact, anything else refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nexus-config-denial-'));
    try {
      expect(resolveConfig({ env: {}, cwd: dir }).dnssecDenial).toBe('nsec');
      expect(resolveConfig({ env: { NEXUS_DNSSEC_DENIAL: 'compact' }, cwd: dir }).dnssecDenial).toBe('compact');
      expect(resolveConfig({ env: { NEXUS_DNSSEC_DENIAL: 'compact' }, cwd: dir, dnssecDenial: 'nsec' }).dnssecDenial).toBe('nsec');
      expect(() => resolveConfig({ env: {}, cwd: dir, dnssecDenial: 'nsec3' })).toThrow(/--dnssec-denial.*must be one of nsec, compact/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
