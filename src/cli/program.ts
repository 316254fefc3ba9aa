// The `nexus` program (commander): its commands, global options, and the mapping of every error to
// one line on stderr and an exit code. main.ts runs it.
//
// `nexus`: the command line of Nexus COS. Operator commands (init, serve, start) work on a data
// directory; every other command is a client of the daemon that signs with the user's own keys and
// checks the platform's log on every contact (see witness.ts). Exit codes: see errors.ts / README.md.
import { Command, CommanderError, Help, type Option } from 'commander';
import { CliError, EXIT, EXIT_HELP as EXIT_LINE, oneLine, usage } from './errors.ts';
import type { ErrorBody } from './client.ts';
import { takeJsonOutput } from './context.ts';
import { Home, defaultHome } from './home.ts';
import { VERSION } from './version.ts';
import { assertNoOpenAlarm } from './witness.ts';
import { operatorCommands } from './commands/operator.ts';
import { identityCommand } from './commands/identity.ts';
import { imvuCommand, memberCommand } from './commands/imvu.ts';
import { dnsCommand } from './commands/dns.ts';
import { domainCommand } from './commands/domain.ts';
import { mailCommand, routeCommand, consentCommand } from './commands/services.ts';
import { tokenCommand } from './commands/token.ts';
import { auditCommand } from './commands/audit.ts';
import { gatesCommand } from './commands/gates.ts';
import { witnessCommand } from './commands/witness.ts';
import { quotaCommand } from './commands/quota.ts';
import { snapshotCommand } from './commands/snapshot.ts';
import { computeCommand } from './commands/compute.ts';
import { statusCommand, stopCommand } from './commands/daemon.ts';
import { completionCommand, manCommand } from './commands/completion.ts';
import { exportCommand } from './commands/exit.ts';

/** Commands that still run while an alarm is open: the ones that show, acknowledge or do not involve a user's log. */
const ALLOWED_DURING_ALARM = new Set(['init', 'serve', 'start', 'status', 'stop', 'audit verify', 'audit acknowledge', 'audit receipts', 'audit split', 'audit witnesses add', 'audit witnesses list', 'audit witnesses remove', 'audit witnesses require', 'witness init', 'witness add-log', 'witness show', 'witness serve', 'identity forget-platform', 'export verify', 'completion', 'man']);

/** The environment and exit codes, for `--help` and the man page. */
export const ENV_HELP = `NEXUS_URL (daemon), NEXUS_HOME (keys, pinned platforms, saved checkpoints), NEXUS_DATA (data directory),
NEXUS_PORT (daemon port), NEXUS_AS (default signer).`;
/** The exit codes without their heading, for the man page's EXIT STATUS section. */
export const EXIT_HELP = EXIT_LINE.replace(/^Exit codes: /, '');

/**
 * Options declared required (requiredOption / makeOptionMandatory). commander checks them before it
 * looks for unknown options, so a misspelt flag was reported as the flag it failed to name; they are
 * checked here instead, once commander has refused unknown options and bad values (preAction).
 */
const REQUIRED = new WeakSet<Option>();

function path(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c && c.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

export function buildProgram(): Command {
  const program = new Command('nexus');
  program
    .description('Nexus COS: sovereign hosting with signed commands, 17 gates, a verifiable log and an exact 55/45 split')
    .version(VERSION, '-V, --version')
    .option('--server <url>', 'daemon URL (env NEXUS_URL; default http://127.0.0.1:7600)')
    .option('--ca <file>', 'PEM certificate authorities to trust for an https daemon, besides the system ones (env NEXUS_CA)')
    .option('--as <identity>', 'identity (local name or id) whose key signs the command (env NEXUS_AS)')
    .option('--json', 'print JSON on stdout; a failure prints one object {error, code, index, gates}')
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureHelp({
      showGlobalOptions: true,
      optionDescription(option: Option): string {
        const text = Help.prototype.optionDescription.call(this, option);
        return REQUIRED.has(option) ? `${text} (required)` : text;
      },
    })
    .configureOutput({
      outputError: (str, write) => write(`nexus: ${oneLine(str.replace(/^error: /, ''))} (see --help)\n`),
    })
    .addHelpText(
      'after',
      `
Environment: ${ENV_HELP}
With --json every command prints JSON on stdout; a failure prints one object
{"error": "...", "code": <exit code>, "index": <ledger entry or null>, "gates": [...] or null}.
${EXIT_LINE}`,
    )
    .hook('preAction', (_root, action) => {
      const missing = action.options.find((o) => REQUIRED.has(o) && action.getOptionValue(o.attributeName()) === undefined);
      if (missing) throw usage(`required option '${missing.flags}' not specified (see --help)`);
      if (!ALLOWED_DURING_ALARM.has(path(action))) assertNoOpenAlarm(new Home(defaultHome()));
    });

  for (const c of [
    ...operatorCommands(),
    statusCommand(),
    stopCommand(),
    identityCommand(),
    imvuCommand(),
    memberCommand(),
    dnsCommand(),
    domainCommand(),
    mailCommand(),
    routeCommand(),
    tokenCommand(),
    consentCommand(),
    auditCommand(),
    gatesCommand(),
    witnessCommand(),
    quotaCommand(),
    exportCommand(),
    snapshotCommand(),
    computeCommand(),
    completionCommand(),
    manCommand(),
  ])
    program.addCommand(c);
  // Settings that commander does not copy to commands created outside the program.
  const inherit = (cmd: Command) => {
    for (const sub of cmd.commands) {
      sub.exitOverride().showSuggestionAfterError(true).configureOutput(program.configureOutput()).configureHelp(program.configureHelp());
      for (const o of sub.options) {
        if (!o.mandatory) continue;
        o.mandatory = false;
        REQUIRED.add(o);
      }
      inherit(sub);
    }
  };
  inherit(program);
  return program;
}

/** Every leaf command of the tree (the ones with an action), with its path: for the docs and the tests. */
export function leafCommands(cmd: Command, prefix: string[] = []): { path: string[]; command: Command }[] {
  const here = cmd.parent ? [...prefix, cmd.name()] : prefix;
  if (!cmd.commands.length) return [{ path: here, command: cmd }];
  return cmd.commands.flatMap((c) => leafCommands(c, here));
}

interface Failure {
  code: number;
  /** For stderr; commander has printed its own. */
  message?: string;
  /** For --json: the message even when commander printed it. */
  error?: string;
  index?: number | null;
  gates?: unknown[] | null;
}

function exitCodeOf(err: unknown): Failure {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return { code: EXIT.ok };
    // commander has already printed its one-line message (or the help, for a group without a subcommand).
    const error = err.code === 'commander.help' ? 'a subcommand is needed (see --help)' : `${err.message.replace(/^error: /, '')} (see --help)`;
    return { code: EXIT.usage, error };
  }
  if (err instanceof CliError) {
    const body = (err as CliError & { body?: ErrorBody }).body;
    return { code: err.code, message: err.message, index: typeof body?.index === 'number' ? body.index : null, gates: Array.isArray(body?.gates) ? body.gates : null };
  }
  const e = err as { name?: string; message?: string };
  if (e?.name === 'ConfigError') return { code: EXIT.usage, message: e.message };
  if (e?.name === 'LostHistoryError') return { code: EXIT.lostHistory, message: e.message };
  return { code: EXIT.denied, message: `unexpected error: ${e?.message ?? String(err)}` };
}

/** Whether --json was given (read from argv: a failure may come before commander has parsed it). */
function wantsJson(argv: string[]): boolean {
  const args = argv.slice(2);
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).includes('--json');
}

const jsonText = (v: unknown) => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x), 2) + '\n';

export async function main(argv: string[] = process.argv): Promise<number> {
  const json = wantsJson(argv);
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    // With --json a command's result is held until it has succeeded: a failure prints only the error object.
    for (const out of takeJsonOutput()) process.stdout.write(jsonText(out));
    // A command that answers another program's status (`compute exec`: the workload command's) set it.
    return Number(process.exitCode ?? 0) || EXIT.ok;
  } catch (err) {
    const f = exitCodeOf(err);
    if (f.message) process.stderr.write(`nexus: ${oneLine(f.message)}\n`);
    if (process.env.NEXUS_DEBUG && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
    const held = takeJsonOutput();
    if (json && f.code !== EXIT.ok) {
      // What the command found before it failed (the report of a failed `audit verify`, the status
      // of a daemon that is down): an object's fields go beside the four (which win), anything else
      // in `details`.
      const found = held.length === 1 ? held[0] : held.length ? held : undefined;
      const spread = found !== null && typeof found === 'object' && !Array.isArray(found) ? (found as Record<string, unknown>) : undefined;
      const reason = typeof spread?.reason === 'string' ? spread.reason : undefined;
      const failure: Record<string, unknown> = {
        ...(spread ?? (found === undefined ? {} : { details: found })),
        error: oneLine(f.message || f.error || reason || `failed with exit code ${f.code}`),
        code: f.code,
        index: f.index ?? null,
        gates: f.gates ?? null,
      };
      process.stdout.write(JSON.stringify(failure, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x)) + '\n');
    } else for (const out of held) process.stdout.write(jsonText(out));
    return f.code;
  }
}
