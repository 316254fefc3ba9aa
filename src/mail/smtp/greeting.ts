// The greeting delay. smtp-server waits a fixed 100 ms before its 220 greeting, to catch clients
// that talk first (a spam bot's pregreet); Postfix's smtpd greets at once and leaves that test to
// postscreen. Every new connection paid those 100 ms: with one message per connection, as most
// MTAs send, it was the largest cost of the MX (bench/mail: the server idle, clients waiting).
// This makes the delay a per-server option (`greetingDelayMs` in the server's options), keeping
// the library's early-talker refusal for whatever arrives before the greeting.
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

export const DEFAULT_GREETING_DELAY_MS = 10;

interface Patched {
  _server: { options: { maxClients?: number; greetingDelayMs?: number }; connections: Set<unknown> };
  name: string;
  _setListeners(cb: () => void): void;
  send(code: number, text: string, close?: boolean): void;
  connectionReady(): void;
}

let installed = false;

/** Installs the option once per process (smtp-server 3.x: `init()` as in the library, the delay from the options). */
export function installGreetingDelay(): void {
  if (installed) return;
  installed = true;
  (SMTPConnection.prototype as unknown as { init(this: Patched): void }).init = function init(this: Patched) {
    this._setListeners(() => {
      const o = this._server.options;
      if (o.maxClients && this._server.connections.size > o.maxClients) return this.send(421, this.name + ' Too many connected clients, try again in a moment', false);
      const t = setTimeout(() => this.connectionReady(), o.greetingDelayMs ?? 100);
      t.unref();
    });
  };
}
