// Stand-alone daemon entry: `node dist/api/daemon.js [--data DIR] [--port N] [--host H]
// [--log-level L] [--suffix S] [--config FILE] [--dns-address A] [--dns-port N] [--no-dns]
// [--meter-interval MS] [--xfr-allow CIDR...] [--tsig-name NAME] [--tsig-secret-file PATH]
// [--notify IP[:PORT]...] [--nameserver NAME=IP...] [--integrity-interval MS] [--snapshot-every N] [--witness URL=VKEY...]
// [--witness-timeout MS] [--tls-cert FILE --tls-key FILE] [--insecure-http] [--log-format F]` (the TSIG secret itself only from a file or
// NEXUS_TSIG_SECRET, never a flag). The CLI's `nexus serve` calls the same serve().
import { parseArgs } from 'node:util';
import { serve } from './server.ts';

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      data: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'log-level': { type: 'string' },
      suffix: { type: 'string' },
      config: { type: 'string' },
      'dns-address': { type: 'string' },
      'dns-port': { type: 'string' },
      'no-dns': { type: 'boolean' },
      'dnssec-denial': { type: 'string' },
      'meter-interval': { type: 'string' },
      'xfr-allow': { type: 'string', multiple: true },
      'tsig-name': { type: 'string' },
      'tsig-secret-file': { type: 'string' },
      notify: { type: 'string', multiple: true },
      nameserver: { type: 'string', multiple: true },
      'integrity-interval': { type: 'string' },
      'snapshot-every': { type: 'string' },
      witness: { type: 'string', multiple: true },
      'witness-timeout': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'insecure-http': { type: 'boolean' },
      'log-format': { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  await serve({
    ...(values.data !== undefined ? { dataDir: values.data } : {}),
    ...(values.port !== undefined ? { port: values.port } : {}),
    ...(values.host !== undefined ? { host: values.host } : {}),
    ...(values['log-level'] !== undefined ? { logLevel: values['log-level'] } : {}),
    ...(values.suffix !== undefined ? { suffix: values.suffix } : {}),
    ...(values.config !== undefined ? { config: values.config } : {}),
    ...(values['dns-address'] !== undefined ? { dnsAddress: values['dns-address'] } : {}),
    ...(values['dns-port'] !== undefined ? { dnsPort: values['dns-port'] } : {}),
    ...(values['no-dns'] ? { dns: false } : {}),
    ...(values['dnssec-denial'] !== undefined ? { dnssecDenial: values['dnssec-denial'] } : {}),
    ...(values['meter-interval'] !== undefined ? { meterIntervalMs: values['meter-interval'] } : {}),
    ...(values['xfr-allow'] !== undefined ? { xfrAllow: values['xfr-allow'] } : {}),
    ...(values['tsig-name'] !== undefined ? { tsigName: values['tsig-name'] } : {}),
    ...(values['tsig-secret-file'] !== undefined ? { tsigSecretFile: values['tsig-secret-file'] } : {}),
    ...(values.notify !== undefined ? { notify: values.notify } : {}),
    ...(values.nameserver !== undefined ? { nameservers: values.nameserver } : {}),
    ...(values['integrity-interval'] !== undefined ? { integrityIntervalMs: values['integrity-interval'] } : {}),
    ...(values['snapshot-every'] !== undefined ? { snapshotEvery: values['snapshot-every'] } : {}),
    ...(values.witness !== undefined ? { witnesses: values.witness } : {}),
    ...(values['witness-timeout'] !== undefined ? { witnessTimeoutMs: values['witness-timeout'] } : {}),
    ...(values['tls-cert'] !== undefined ? { tlsCert: values['tls-cert'] } : {}),
    ...(values['tls-key'] !== undefined ? { tlsKey: values['tls-key'] } : {}),
    ...(values['insecure-http'] ? { insecureHttp: true } : {}),
    ...(values['log-format'] !== undefined ? { logFormat: values['log-format'] } : {}),
  });
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`nexus serve: ${String((err as Error)?.message ?? err).split('\n')[0]}\n`);
  // LostHistoryError carries its own code (5): the database lost acknowledged entries.
  const code = (err as { exitCode?: unknown })?.exitCode;
  process.exit(typeof code === 'number' ? code : 2);
});
