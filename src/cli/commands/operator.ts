// Operator commands: init, serve, start. They run on the machine that holds the data directory.
import { Command } from 'commander';
import { resolve } from 'node:path';
import { isInitialised } from '../../core/platform-files.ts';
import { DEFAULTS } from '../../api/defaults.ts';
import type { PlanLimits } from '../../core/policy/vocabulary.ts';
import { int, port } from '../args.ts';
import { Ctx } from '../context.ts';
import { CliError, EXIT, usage } from '../errors.ts';
import type { ServeOptions } from '../../api/server.ts';

/** The data directory: --data, NEXUS_DATA, or ./.nexus (as the daemon resolves it). */
export function dataDirOf(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(flag ?? (env.NEXUS_DATA || DEFAULTS.dataDir));
}

async function init(dataDir: string, suffix: string | undefined, planFlag: string | undefined): Promise<{ id: string; origin: string; suffix: string; dataDir: string; plan: PlanLimits }> {
  if (isInitialised(dataDir)) throw usage(`${dataDir} is already initialised (a platform key exists there); use another --data directory, or \`nexus serve\``);
  // The plan limits: --plan, else NEXUS_PLAN, else the defaults (published in the ledger from now on).
  const { ConfigError, resolveConfig } = await import('../../api/config.ts');
  let plan: PlanLimits;
  try {
    plan = resolveConfig({ dataDir, ...(planFlag !== undefined ? { plan: planFlag } : {}) }).plan;
  } catch (err) {
    if (err instanceof ConfigError) throw usage(err.message);
    throw err;
  }
  const { initDataDir } = await import('../../core/platform.ts');
  const p = await initDataDir(dataDir, { ...(suffix ? { suffix } : {}), plan });
  try {
    return { id: p.platformId, origin: p.config.origin, suffix: p.config.suffix, dataDir, plan };
  } finally {
    await p.close();
  }
}

interface ServeFlags {
  data?: string;
  port?: number;
  host?: string;
  config?: string;
  suffix?: string;
  logLevel?: string;
  dnsAddress?: string;
  dnsPort?: number;
  dnssecDenial?: string;
  imapPort?: number;
  imapsPort?: number;
  smtpPort?: number;
  submissionPort?: number;
  smtpsPort?: number;
  /** commander's `--no-dns`: false when given, true otherwise. */
  dns?: boolean;
  /** commander's `--no-gateway`. */
  gateway?: boolean;
  /** commander's `--no-mail`. */
  mail?: boolean;
  gatewayAddress?: string;
  gatewayPort?: number;
  gatewayHttpPort?: number;
  region?: string;
  meterInterval?: number;
  xfrAllow?: string[];
  tsigName?: string;
  tsigSecretFile?: string;
  notify?: string[];
  rootHints?: string[];
  mailRelayPort?: number;
  plan?: string;
  nameserver?: string[];
  integrityInterval?: number;
  snapshotEvery?: number;
  keyPool?: number;
  computeRange?: string;
  witness?: string[];
  witnessTimeout?: number;
  tlsCert?: string;
  tlsKey?: string;
  insecureHttp?: boolean;
  acmeDirectory?: string;
  acmeCaCert?: string;
  acmeRenewDays?: number;
  acmeChallenge?: string;
  logFormat?: string;
}

async function runDaemon(o: ServeFlags, initialiseIfNeeded: boolean): Promise<void> {
  const opts = {
    ...(o.data !== undefined ? { dataDir: o.data } : {}),
    ...(o.port !== undefined ? { port: o.port } : {}),
    ...(o.host !== undefined ? { host: o.host } : {}),
    ...(o.config !== undefined ? { config: o.config } : {}),
    ...(o.suffix !== undefined ? { suffix: o.suffix } : {}),
    ...(o.logLevel !== undefined ? { logLevel: o.logLevel } : {}),
    ...(o.dnsAddress !== undefined ? { dnsAddress: o.dnsAddress } : {}),
    ...(o.dnsPort !== undefined ? { dnsPort: o.dnsPort } : {}),
    ...(o.dnssecDenial !== undefined ? { dnssecDenial: o.dnssecDenial } : {}),
    ...(o.imapPort !== undefined ? { imapPort: o.imapPort } : {}),
    ...(o.imapsPort !== undefined ? { imapsPort: o.imapsPort } : {}),
    ...(o.smtpPort !== undefined ? { smtpPort: o.smtpPort } : {}),
    ...(o.submissionPort !== undefined ? { submissionPort: o.submissionPort } : {}),
    ...(o.smtpsPort !== undefined ? { smtpsPort: o.smtpsPort } : {}),
    // Only an explicit --no-dns counts: commander defaults the flag to true, which must not beat NEXUS_DNS.
    ...(o.dns === false ? { dns: false } : {}),
    ...(o.gateway === false ? { gateway: false } : {}),
    ...(o.mail === false ? { mail: false } : {}),
    ...(o.gatewayAddress !== undefined ? { gatewayAddress: o.gatewayAddress } : {}),
    ...(o.gatewayPort !== undefined ? { gatewayPort: o.gatewayPort } : {}),
    ...(o.gatewayHttpPort !== undefined ? { gatewayHttpPort: o.gatewayHttpPort } : {}),
    ...(o.region !== undefined ? { gatewayRegion: o.region } : {}),
    ...(o.meterInterval !== undefined ? { meterIntervalMs: o.meterInterval } : {}),
    ...(o.xfrAllow !== undefined ? { xfrAllow: o.xfrAllow } : {}),
    ...(o.tsigName !== undefined ? { tsigName: o.tsigName } : {}),
    ...(o.tsigSecretFile !== undefined ? { tsigSecretFile: o.tsigSecretFile } : {}),
    ...(o.notify !== undefined ? { notify: o.notify } : {}),
    ...(o.rootHints !== undefined ? { rootHints: o.rootHints } : {}),
    ...(o.mailRelayPort !== undefined ? { mailRelayPort: o.mailRelayPort } : {}),
    ...(o.plan !== undefined ? { plan: o.plan } : {}),
    ...(o.nameserver !== undefined ? { nameservers: o.nameserver } : {}),
    ...(o.integrityInterval !== undefined ? { integrityIntervalMs: o.integrityInterval } : {}),
    ...(o.snapshotEvery !== undefined ? { snapshotEvery: o.snapshotEvery } : {}),
    ...(o.keyPool !== undefined ? { keyPool: o.keyPool } : {}),
    ...(o.computeRange !== undefined ? { computeRange: o.computeRange } : {}),
    ...(o.witness !== undefined ? { witnesses: o.witness } : {}),
    ...(o.witnessTimeout !== undefined ? { witnessTimeoutMs: o.witnessTimeout } : {}),
    ...(o.tlsCert !== undefined ? { tlsCert: o.tlsCert } : {}),
    ...(o.tlsKey !== undefined ? { tlsKey: o.tlsKey } : {}),
    ...(o.insecureHttp ? { insecureHttp: true } : {}),
    ...(o.acmeDirectory !== undefined ? { acmeDirectory: o.acmeDirectory } : {}),
    ...(o.acmeCaCert !== undefined ? { acmeCaCert: o.acmeCaCert } : {}),
    ...(o.acmeRenewDays !== undefined ? { acmeRenewDays: o.acmeRenewDays } : {}),
    ...(o.acmeChallenge !== undefined ? { acmeChallenge: o.acmeChallenge } : {}),
    ...(o.logFormat !== undefined ? { logFormat: o.logFormat } : {}),
  };
  const { resolveConfig, exposureWarning } = await import('../../api/config.ts');
  const cfg = resolveConfig(opts);
  if (!initialiseIfNeeded && !isInitialised(cfg.dataDir))
    throw usage(`${cfg.dataDir} is not a nexus data directory; run \`nexus init --data ${cfg.dataDir}\` first, or \`nexus start\``);
  try {
    // The lock and the API's socket before the daemon's modules load (seconds on a busy machine):
    // from here on /health says the daemon is starting (src/api/early.ts). Not for a refused
    // exposure (serve() says why) nor a first start (initialisation is quick).
    let prebound: ServeOptions['prebound'];
    if (isInitialised(cfg.dataDir) && !(exposureWarning(cfg) && !cfg.insecureHttp)) {
      const { lockDataDir } = await import('../../core/daemon-lock.ts');
      const { EarlyListener } = await import('../../api/early.ts');
      const lock = lockDataDir(cfg.dataDir);
      try {
        prebound = { lock, early: await EarlyListener.listen({ host: cfg.host, port: cfg.port, ...(cfg.tls ? { tls: { cert: cfg.tls.cert, key: cfg.tls.key } } : {}) }) };
      } catch (err) {
        lock.release();
        throw err;
      }
    }
    const { serve } = await import('../../api/server.ts');
    await serve({ ...opts, init: initialiseIfNeeded, ...(prebound ? { prebound } : {}) });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // The DNS sockets: the message already names the address, the port and what to do.
    if (e.name === 'ListenError') throw new CliError(e.message, EXIT.denied);
    if (e.name === 'DataDirLockedError') throw new CliError(e.message, EXIT.locked);
    if (e.code === 'EADDRINUSE') throw new CliError(`cannot listen on ${cfg.host}:${cfg.port}: the address is in use (is a daemon already running? pick another --port)`, EXIT.denied);
    if (e.code === 'EACCES') throw new CliError(`cannot listen on ${cfg.host}:${cfg.port}: permission denied (ports below 1024 need root)`, EXIT.denied);
    throw err;
  }
}

function daemonOptions(cmd: Command): Command {
  return cmd
    .option('--data <dir>', 'data directory (env NEXUS_DATA; default ./.nexus)')
    .option('--port <n>', 'TCP port (env NEXUS_PORT; default 7600; 0 picks a free port)', port)
    .option('--host <host>', 'address to listen on (env NEXUS_HOST; default 127.0.0.1); any other than loopback needs TLS or --insecure-http')
    .option('--tls-cert <file>', 'serve the API over HTTPS with this PEM certificate (chain) (env NEXUS_TLS_CERT; config file `tlsCert`)')
    .option('--tls-key <file>', 'the PEM private key of --tls-cert, not readable by other users (env NEXUS_TLS_KEY; config file `tlsKey`)')
    .option('--insecure-http', 'allow plain HTTP on a non-loopback address, with a warning (env NEXUS_INSECURE_HTTP=true)')
    .option('--log-format <format>', 'auto (readable lines and a start-up banner on a terminal, JSON lines otherwise), json or pretty (env NEXUS_LOG_FORMAT)')
    .option('--config <file>', 'JSON config file (default <data>/nexus.json)')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent (env NEXUS_LOG_LEVEL)')
    .option('--dns-address <address>', 'address of the authoritative DNS server, UDP and TCP (env NEXUS_DNS_ADDRESS; default 127.0.0.1)')
    .option('--dns-port <n>', 'DNS port (env NEXUS_DNS_PORT; default 53 as root, otherwise 5353; 0 picks a free port)', port)
    .option('--no-dns', 'do not run the DNS server (env NEXUS_DNS=false)')
    .option('--dnssec-denial <mode>', 'how signed answers prove a name or type does not exist: nsec (the zone\'s NSEC chain, as zone transfers carry it) or compact (RFC 9824) (env NEXUS_DNSSEC_DENIAL; default nsec)')
    .option('--imap-port <n>', 'IMAP port with STARTTLS, e.g. 143; logins are the app passwords (nexus mail password), only after STARTTLS (env NEXUS_IMAP_PORT; default 143 as root, otherwise no IMAP; 0 picks a free port)', port)
    .option('--smtp-port <n>', 'the MX: inbound mail for hosted mailboxes, (env NEXUS_SMTP_PORT; default 25 as root, otherwise no SMTP; 0 picks a free port)', port)
    .option('--submission-port <n>', 'mail submission with STARTTLS and app passwords, (env NEXUS_SUBMISSION_PORT; default 587 as root, otherwise none)', port)
    .option('--smtps-port <n>', 'mail submission with implicit TLS, (env NEXUS_SMTPS_PORT; default 465 as root, otherwise none)', port)
    .option('--imaps-port <n>', 'IMAP port with implicit TLS, with the --tls-cert certificate, else the mail one generated under DATA/keys/tls (env NEXUS_IMAPS_PORT; default 993 as root, otherwise none)', port)
    .option('--gateway-address <address>', 'address of the HTTPS gateway (HAProxy) (env NEXUS_GATEWAY_ADDRESS; default 127.0.0.1)')
    .option('--gateway-port <n>', 'HTTPS port of the gateway (env NEXUS_GATEWAY_PORT; default 443 as root, otherwise 8443)', port)
    .option('--gateway-http-port <n>', 'HTTP port of the gateway, redirecting to HTTPS (env NEXUS_GATEWAY_HTTP_PORT; default 80 as root, otherwise 8080)', port)
    .option('--acme-directory <url>', "certificates of the gateway from this ACME CA (RFC 8555), DNS-01 answered by nexus's own DNS (env NEXUS_ACME_DIRECTORY; config file `acmeDirectory`; default: the platform's local CA)")
    .option('--acme-ca-cert <file>', 'a PEM CA certificate trusted for the ACME directory\'s HTTPS, e.g. a test CA such as Pebble\'s (env NEXUS_ACME_CA_CERT; config file `acmeCaCert`)')
    .option('--acme-challenge <type>', 'how the ACME CA validates: dns-01 (answered by nexus\'s own DNS) or http-01 (answered by the gateway\'s plain-HTTP listener, port 80; the names must point at it) (env NEXUS_ACME_CHALLENGE; config file `acmeChallenge`; default dns-01)')
    .option('--acme-renew-days <n>', 'renew a certificate this many days before it expires (env NEXUS_ACME_RENEW_DAYS; default 30)', int(1, 365))
    .option('--region <region>', "this gateway node's region, e.g. eu-west: private and restricted routes of IMVUs whose jurisdiction keeps data elsewhere (EU-GDPR: eu; UK-GDPR: uk, eu; CH-FADP: ch, eu) are refused here with 451 (env NEXUS_GATEWAY_REGION; default none, which serves them nowhere)")
    .option('--no-mail', 'as root, do not serve SMTP and IMAP on their well-known ports (25, 587, 465, 143, 993) when none is given (env NEXUS_MAIL=false)')
    .option('--no-gateway', 'do not run the gateway even when haproxy is installed (env NEXUS_GATEWAY=false)')
    .option('--meter-interval <ms>', 'how often metered usage is reported into the ledger (env NEXUS_METER_INTERVAL_MS; default 60000)', int(10, 86_400_000))
    .option('--xfr-allow <cidr...>', 'addresses or CIDR prefixes that may transfer zones (AXFR/IXFR) without TSIG (env NEXUS_XFR_ALLOW, comma-separated; default none)')
    .option('--tsig-name <name>', 'TSIG key (HMAC-SHA256) name a secondary signs transfers with, from any address (env NEXUS_TSIG_NAME)')
    .option('--tsig-secret-file <path>', 'file holding the base64 TSIG secret, not readable by other users (env NEXUS_TSIG_SECRET_FILE, or the secret itself in NEXUS_TSIG_SECRET)')
    .option('--compute-range <cidr>', "the private IPv4 range each IMVU's workload gets its own /30 from; it must not overlap another platform's on this host, nor addresses or routes of other software, else the compute fabric stays off (env NEXUS_COMPUTE_RANGE; default 10.96.0.0/11)")
    .option('--integrity-interval <ms>', 'how often the daemon compares the projections with what the platform wrote: at the next interval after another connection wrote to the database, otherwise every interval but no sooner than 9 times the last comparison took; after a clean restart that skipped the start-up scan (close seal), the first one at once (env NEXUS_INTEGRITY_INTERVAL_MS; default 60000)', int(10, 86_400_000))
    .option('--key-pool <n>', 'key sets (DKIM RSA-2048, DNSSEC P-256) kept made for imvu create: a burst of this many creations does not wait for key generation, which makes about 5 sets per second on one core (env NEXUS_KEY_POOL; default 4)', int(1, 10_000))
    .option('--snapshot-every <entries>', 'sign a ledger.snapshot (the state digest `audit verify --from-snapshot` starts from) after every this many entries; 0 never (env NEXUS_SNAPSHOT_EVERY; default 100000)', int(0, 1_000_000_000))
    .option('--notify <ip:port...>', 'secondaries to NOTIFY when a zone changes: IP addresses only, port 53 unless given, IPv6 as [addr]:port (env NEXUS_NOTIFY, comma-separated)')
    .option('--root-hints <ip:port...>', 'root servers where domain proofs (the TXT at _nexus-challenge.DOMAIN) start their look-ups (env NEXUS_ROOT_HINTS, comma-separated; default the IANA root servers)')
    .option('--mail-relay-port <port>', 'port of the remote MTAs outbound mail is delivered to (env NEXUS_MAIL_RELAY_PORT; default 25; tests point it at a free port on loopback)', int(1, 65535))
    .option('--witness <url=vkey...>', 'a witness that cosigns the checkpoints: its URL and verifier key, repeatable (env NEXUS_WITNESSES, comma-separated; config file `witnesses`)')
    .option('--witness-timeout <ms>', 'deadline of one request to a witness (env NEXUS_WITNESS_TIMEOUT_MS; default 10000)', int(10, 86_400_000))
    .option('--nameserver <name=ip...>', "the platform's name servers, served in its own zone (the suffix) and named by every IMVU zone (env NEXUS_NAMESERVERS, comma-separated; default ns1.<suffix>=the DNS address)")
    .addHelpText(
      'after',
      '\nZone transfers are refused unless --xfr-allow or a TSIG key is set. DNSSEC needs no\n' +
        'flag: every zone is signed online with its own key, and the platform\'s own zone (the\n' +
        'suffix) delegates to each IMVU zone with its DS: `nexus dns ds ZONE` prints the DS and the\n' +
        'suffix\'s trust anchor. Configuring a secondary: src/domains/README.md.\n\n' +
        'Each --witness gets every new checkpoint (the newest, one request at a time) and its\n' +
        'cosignatures are served with GET /v1/ledger/checkpoint; a witness that is down or refuses\n' +
        'never stops the daemon: /health (witnesses) and the metrics say so.',
    );
}

const planText = (p: PlanLimits) => Object.entries(p).map(([k, v]) => `${k}=${v}`).join(',');

export function operatorCommands(): Command[] {
  const initCmd = new Command('init')
    .description('initialise a data directory: a new platform key and the genesis ledger entry')
    .option('--data <dir>', 'data directory (env NEXUS_DATA; default ./.nexus)')
    .option('--suffix <suffix>', 'DNS suffix of IMVU domains', DEFAULTS.suffix)
    .option('--plan <limits>', `plan limits published in the ledger, e.g. cpu_cores=16,memory_gb=64 (env NEXUS_PLAN; default ${planText(DEFAULTS.plan)}); above them needs \`nexus quota approve\``)
    .action(async (o: { data?: string; suffix: string; plan?: string }, c: Command) => {
      const ctx = Ctx.of(c);
      const made = await init(dataDirOf(o.data), o.suffix, o.plan);
      ctx.print(made, () => [
        `✅ Initialised ${made.dataDir}`,
        `✅ Platform identity: ${made.id}`,
        `✅ Log origin: ${made.origin} (checkpoints are signed with the platform key in ${made.dataDir}/keys/platform.key, mode 0600)`,
        `✅ IMVU domains: imvuNNN.${made.suffix}`,
        `✅ Plan limits (in the ledger): ${planText(made.plan)}`,
        `Next: nexus serve --data ${made.dataDir}`,
      ]);
    });

  const serveCmd = daemonOptions(new Command('serve').description('run the daemon (HTTP API and authoritative DNS) on an initialised data directory')).action(
    async (o: ServeFlags) => runDaemon(o, false),
  );

  const startCmd = daemonOptions(new Command('start').description('initialise the data directory if needed, then run the daemon (what `npm start` runs)'))
    .option('--suffix <suffix>', 'DNS suffix of IMVU domains, used only when initialising')
    .option('--plan <limits>', 'plan limits, e.g. cpu_cores=16,imvus_per_creator=20 (env NEXUS_PLAN), used only when initialising')
    .action(async (o: ServeFlags) => runDaemon(o, true));

  return [initCmd, serveCmd, startCmd];
}
