// Daemon configuration, resolved from (highest first) explicit options, the environment, a JSON
// config file, then defaults. Every value is validated; a bad one is a single-line ConfigError.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';

export const DEFAULTS = {
  dataDir: '.nexus',
  host: '127.0.0.1',
  port: 7600,
  logLevel: 'info',
  suffix: 'world',
  dns: true,
  dnsAddress: '127.0.0.1',
  meterIntervalMs: 60_000,
} as const;

/** The authoritative DNS server's default port: 53 when running as root, 5353 otherwise. */
export function defaultDnsPort(): number {
  return process.getuid?.() === 0 ? 53 : 5353;
}
export const CONFIG_FILE_NAME = 'nexus.json';
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export interface NexusConfig {
  /** Absolute path of the data directory. */
  dataDir: string;
  host: string;
  /** 0 asks the OS for a free port. */
  port: number;
  logLevel: (typeof LOG_LEVELS)[number];
  /** DNS suffix for IMVU domains; used only when a data directory is initialised. */
  suffix: string;
  /** Run the authoritative DNS server (`--no-dns` turns it off). */
  dns: boolean;
  dnsAddress: string;
  /** UDP and TCP; 0 asks the OS for a free port. */
  dnsPort: number;
  /** How often metered usage (DNS queries per IMVU) is reported into the ledger. */
  meterIntervalMs: number;
  /** The config file that was read, if any. */
  configFile?: string;
}

/** Explicit values (command-line flags or a caller's options); each wins over everything else. */
export interface ConfigOptions {
  dataDir?: string;
  host?: string;
  port?: number | string;
  logLevel?: string;
  suffix?: string;
  dns?: boolean | string;
  dnsAddress?: string;
  dnsPort?: number | string;
  meterIntervalMs?: number | string;
  /** A JSON config file to read instead of `<dataDir>/nexus.json`. */
  config?: string;
  /** Defaults to process.env. */
  env?: Record<string, string | undefined>;
  /** Base for relative paths given by options or the environment; defaults to process.cwd(). */
  cwd?: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const Host = z
  .string()
  .min(1, 'must not be empty')
  .max(253)
  .regex(/^[A-Za-z0-9.:[\]-]+$/, 'must be an IP address or host name');
const PORT_MESSAGE = 'must be an integer 0-65535';
const Port = z.preprocess(
  (v) => (typeof v === 'string' && /^\d{1,5}$/.test(v) ? Number(v) : v),
  z.number({ error: PORT_MESSAGE }).int(PORT_MESSAGE).min(0, PORT_MESSAGE).max(65535, PORT_MESSAGE),
);
const LogLevel = z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` });
const Suffix = z
  .string()
  .toLowerCase()
  .regex(/^[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63})*$/, 'must be a DNS suffix such as world');
const DataDir = z.string().min(1, 'must not be empty');
const BOOL_MESSAGE = 'must be true or false';
const Bool = z.preprocess(
  (v) => (typeof v === 'string' ? ({ true: true, '1': true, yes: true, on: true, false: false, '0': false, no: false, off: false } as Record<string, boolean>)[v.toLowerCase()] ?? v : v),
  z.boolean({ error: BOOL_MESSAGE }),
);
const INTERVAL_MESSAGE = 'must be an integer number of milliseconds, 10-86400000';
const IntervalMs = z.preprocess(
  (v) => (typeof v === 'string' && /^\d{1,9}$/.test(v) ? Number(v) : v),
  z.number({ error: INTERVAL_MESSAGE }).int(INTERVAL_MESSAGE).min(10, INTERVAL_MESSAGE).max(86_400_000, INTERVAL_MESSAGE),
);

const FIELDS = {
  dataDir: DataDir,
  host: Host,
  port: Port,
  logLevel: LogLevel,
  suffix: Suffix,
  dns: Bool,
  dnsAddress: Host,
  dnsPort: Port,
  meterIntervalMs: IntervalMs,
} as const;
type Field = keyof typeof FIELDS;

const ENV: Record<Field, string> = {
  dataDir: 'NEXUS_DATA',
  host: 'NEXUS_HOST',
  port: 'NEXUS_PORT',
  logLevel: 'NEXUS_LOG_LEVEL',
  suffix: 'NEXUS_SUFFIX',
  dns: 'NEXUS_DNS',
  dnsAddress: 'NEXUS_DNS_ADDRESS',
  dnsPort: 'NEXUS_DNS_PORT',
  meterIntervalMs: 'NEXUS_METER_INTERVAL_MS',
};
const FLAG: Record<Field, string> = {
  dataDir: '--data',
  host: '--host',
  port: '--port',
  logLevel: '--log-level',
  suffix: '--suffix',
  dns: '--no-dns',
  dnsAddress: '--dns-address',
  dnsPort: '--dns-port',
  meterIntervalMs: '--meter-interval',
};

/** What a config file may contain (the same fields, nothing else). */
export const ConfigFileSchema = z
  .object({
    dataDir: DataDir.optional(),
    host: Host.optional(),
    port: Port.optional(),
    logLevel: LogLevel.optional(),
    suffix: Suffix.optional(),
    dns: z.boolean({ error: BOOL_MESSAGE }).optional(),
    dnsAddress: Host.optional(),
    dnsPort: Port.optional(),
    meterIntervalMs: IntervalMs.optional(),
  })
  .strict();

function check<F extends Field>(field: F, value: unknown, source: string): z.output<(typeof FIELDS)[F]> {
  const r = FIELDS[field].safeParse(value);
  if (!r.success) throw new ConfigError(`invalid ${source} ${JSON.stringify(value)}: ${r.error.issues[0]?.message ?? 'invalid value'}`);
  return r.data as z.output<(typeof FIELDS)[F]>;
}

function readConfigFile(file: string): z.output<typeof ConfigFileSchema> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError(`cannot read config file ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message.split('\n')[0]}`);
  }
  const r = ConfigFileSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    const where = i && i.path.length ? i.path.join('.') : '';
    throw new ConfigError(`invalid config file ${file}: ${where ? `${where}: ` : ''}${i?.message ?? 'invalid'}`);
  }
  return r.data;
}

/** Resolves the daemon's configuration. Throws ConfigError (one line) on any bad value. */
export function resolveConfig(opts: ConfigOptions = {}): NexusConfig {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const given = (v: string | undefined): v is string => v !== undefined && v !== '';

  // The data directory first: it decides where the default config file lives.
  const explicitFile = opts.config ?? (given(env.NEXUS_CONFIG) ? env.NEXUS_CONFIG : undefined);
  const configFile = explicitFile !== undefined ? resolve(cwd, explicitFile) : undefined;
  const fromExplicitFile = configFile ? readConfigFile(configFile) : {};

  let dataDir: string;
  if (opts.dataDir !== undefined) dataDir = resolve(cwd, check('dataDir', opts.dataDir, FLAG.dataDir));
  else if (given(env.NEXUS_DATA)) dataDir = resolve(cwd, check('dataDir', env.NEXUS_DATA, ENV.dataDir));
  else if (fromExplicitFile.dataDir !== undefined) dataDir = resolve(dirname(configFile!), fromExplicitFile.dataDir);
  else dataDir = resolve(cwd, DEFAULTS.dataDir);

  let file = fromExplicitFile;
  let fileName = configFile;
  if (!configFile) {
    const inDataDir = join(dataDir, CONFIG_FILE_NAME);
    if (existsSync(inDataDir)) {
      file = readConfigFile(inDataDir);
      fileName = inDataDir;
      if (file.dataDir !== undefined && resolve(dataDir, file.dataDir) !== dataDir)
        throw new ConfigError(`invalid config file ${inDataDir}: dataDir cannot move the data directory it sits in`);
    }
  }

  const pick = <F extends Exclude<Field, 'dataDir'>>(field: F): z.output<(typeof FIELDS)[F]> => {
    const o = opts[field];
    if (o !== undefined) return check(field, o, FLAG[field]);
    const e = env[ENV[field]];
    if (given(e)) return check(field, e, ENV[field]);
    if (file[field] !== undefined) return file[field] as z.output<(typeof FIELDS)[F]>;
    return check(field, field === 'dnsPort' ? defaultDnsPort() : DEFAULTS[field as Exclude<Field, 'dataDir' | 'dnsPort'>], `default ${field}`);
  };

  return {
    dataDir,
    host: pick('host'),
    port: pick('port'),
    logLevel: pick('logLevel'),
    suffix: pick('suffix'),
    dns: pick('dns'),
    dnsAddress: pick('dnsAddress'),
    dnsPort: pick('dnsPort'),
    meterIntervalMs: pick('meterIntervalMs'),
    ...(fileName ? { configFile: fileName } : {}),
  };
}
