// Exit codes of the `nexus` command, and the one error type that carries them.

export const EXIT = {
  ok: 0,
  /** Denied by policy: a gate said no (403, or 400/401/404 recorded as a denied ledger entry), or the daemon refused. */
  denied: 1,
  /** Usage error: bad flags or arguments, unknown local identity, malformed request. */
  usage: 2,
  /** The daemon could not be reached. */
  unreachable: 3,
  /** Verification failed: a signature, a proof, a pinned key or the saved checkpoint does not hold. */
  verification: 4,
  /** `serve`/`start` refused: the database holds fewer ledger entries than its checkpoint file, or another history. */
  lostHistory: 5,
  /** `serve`/`start` refused: another daemon (named by its pid) already serves the data directory. */
  locked: 6,
} as const;

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

/** One line, no stack: newlines folded, length bounded. */
export function oneLine(message: string, max = 2000): string {
  const flat = message.replace(/\s*\n\s*/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}
