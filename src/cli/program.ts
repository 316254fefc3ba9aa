// The `nexus` program (commander): its commands, global options, and the mapping of every error to
// one line on stderr and an exit code. main.ts runs it.
//
// `nexus`: the command line of Nexus COS. Operator commands (init, serve, start) work on a data
// directory; every other command is a client of the daemon that signs with the user's own keys and
// checks the platform's log on every contact (see witness.ts). Exit codes: see errors.ts / README.md.
import { Command, CommanderError } from 'commander';
import { CliError, EXIT, oneLine } from './errors.ts';
import { Home, defaultHome } from './home.ts';
import { VERSION } from './version.ts';
import { assertNoOpenAlarm } from './witness.ts';
import { operatorCommands } from './commands/operator.ts';
import { identityCommand } from './commands/identity.ts';
import { imvuCommand, memberCommand } from './commands/imvu.ts';
import { dnsCommand } from './commands/dns.ts';
import { domainCommand } from './commands/domain.ts';
import { mailCommand, routeCommand, consentCommand } from './commands/services.ts';
import { auditCommand } from './commands/audit.ts';
import { gatesCommand } from './commands/gates.ts';
import { witnessCommand } from './commands/witness.ts';
import { quotaCommand } from './commands/quota.ts';
import { statusCommand, stopCommand } from './commands/daemon.ts';
import { completionCommand, manCommand } from './commands/completion.ts';

/** Commands that still run while an alarm is open: the ones that show, acknowledge or do not involve a user's log. */
const ALLOWED_DURING_ALARM = new Set(['init', 'serve', 'start', 'status', 'stop', 'audit verify', 'audit acknowledge', 'audit receipts', 'audit split', 'audit witnesses add', 'audit witnesses list', 'audit witnesses remove', 'audit witnesses require', 'witness init', 'witness add-log', 'witness show', 'witness serve', 'identity forget-platform', 'completion', 'man']);

/** The environment and exit codes, for `--help` and the man page. */
export const ENV_HELP = `NEXUS_URL (daemon), NEXUS_HOME (keys, pinned platforms, saved checkpoints), NEXUS_DATA (data directory),
NEXUS_PORT (daemon port), NEXUS_AS (default signer).`;
export const EXIT_HELP = `0 ok, 1 denied by policy, 2 usage error, 3 daemon unreachable, 4 verification failed,
5 serve/start refused: the database lost acknowledged ledger entries, 6 serve/start refused: another
daemon already serves the data directory.`;

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
    .option('--json', 'print machine-readable JSON')
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureHelp({ showGlobalOptions: true })
    .configureOutput({
      outputError: (str, write) => write(`nexus: ${oneLine(str.replace(/^error: /, ''))} (see --help)\n`),
    })
    .addHelpText('after', `\nEnvironment: ${ENV_HELP}\nExit codes: ${EXIT_HELP}`)
    .hook('preAction', (_root, action) => {
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
    consentCommand(),
    auditCommand(),
    gatesCommand(),
    witnessCommand(),
    quotaCommand(),
    completionCommand(),
    manCommand(),
  ])
    program.addCommand(c);
  // Settings that commander does not copy to commands created outside the program.
  const inherit = (cmd: Command) => {
    for (const sub of cmd.commands) {
      sub.exitOverride().showSuggestionAfterError(true).configureOutput(program.configureOutput()).configureHelp(program.configureHelp());
      inherit(sub);
    }
  };
  inherit(program);
  return program;
}

function exitCodeOf(err: unknown): { code: number; message?: string } {
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return { code: EXIT.ok };
    // commander has already printed its one-line message (or the help, for a group without a subcommand).
    return { code: EXIT.usage };
  }
  if (err instanceof CliError) return { code: err.code, message: err.message };
  const e = err as { name?: string; message?: string };
  if (e?.name === 'ConfigError') return { code: EXIT.usage, message: e.message };
  if (e?.name === 'LostHistoryError') return { code: EXIT.lostHistory, message: e.message };
  return { code: EXIT.denied, message: `unexpected error: ${e?.message ?? String(err)}` };
}

export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return EXIT.ok;
  } catch (err) {
    const { code, message } = exitCodeOf(err);
    if (message) process.stderr.write(`nexus: ${oneLine(message)}\n`);
    if (process.env.NEXUS_DEBUG && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
    return code;
  }
}
