// Exit codes of the `nexus` command, and the one error type that carries them.

export const EXIT = {
  ok: 0,
  /** Denied by policy: a gate said no (403, or 400/401/404 recorded as a denied ledger entry), or the daemon refused. */
  denied: 1,
  /**
   * Usage error: bad flags or arguments (caught here before anything is signed: nothing reaches the
   * ledger), no local key for the identity named, malformed request.
   */
  usage: 2,
  /** The daemon could not be reached. */
  unreachable: 3,
  /** Verification failed: a signature, a proof, a pinned key or the saved checkpoint does not hold. */
  verification: 4,
  /** `serve`/`start` refused: the database holds fewer ledger entries than its checkpoint file, or another history. */
  lostHistory: 5,
  /** `serve`/`start` refused: another daemon (named by its pid) already serves the data directory. */
  locked: 6,
  /**
   * Not found: the IMVU, zone, identity, ledger entry or checkpoint named does not exist on the
   * daemon (HTTP 404, recorded or not), or a local thing named (an alarm code, a checkpoint file, a
   * data directory) does not exist.
   */
  notFound: 7,
} as const;

/** One line per exit code, for `nexus --help` and the docs. */
export const EXIT_HELP =
  'Exit codes: 0 ok, 1 denied by policy, 2 usage error, 3 daemon unreachable, 4 verification failed,\n' +
  '5 serve/start refused: the database lost acknowledged ledger entries, 6 serve/start refused: another\n' +
  'daemon already serves the data directory, 7 not found (no such IMVU, zone, identity, entry, alarm or file).';

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports as one line on stderr (`nexus: <message>`) and exits with `code`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code: ExitCode,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export const usage = (message: string) => new CliError(message, EXIT.usage);
export const denied = (message: string) => new CliError(message, EXIT.denied);
export const verificationFailed = (message: string) => new CliError(message, EXIT.verification);
export const notFound = (message: string) => new CliError(message, EXIT.notFound);

/** One line, no stack: newlines folded, length bounded. */
export function oneLine(message: string, max = 2000): string {
  const flat = message.replace(/\s*\n\s*/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}
