// One SMTP transaction to a recipient domain's mail hosts, with nodemailer's SMTP client: MX hosts
// in preference order (each address in turn) until one answers the transaction; STARTTLS whenever
// the remote offers it (opportunistic: the certificate is not checked, as MTA-STS is not enforced).
// Each recipient comes back delivered, temporary (retry) or permanent (DSN).
import nodemailer from 'nodemailer';
import type { MxLookup } from './mx.ts';

export type Outcome = { kind: 'delivered'; remote: string } | { kind: 'temporary'; reason: string; remote?: string } | { kind: 'permanent'; reason: string; remote?: string };

export interface RemoteOptions {
  lookupMx: MxLookup;
  /** Port of the remote MTAs. Default 25 (tests: a free port on loopback). */
  port?: number;
  /** Used instead of the MX look-up for the domains it names (only when set). */
  transportMap?: Record<string, { host: string; port: number }>;
  /** Our host name in EHLO. */
  heloName: string;
  /** Per connection / greeting / socket inactivity. Default 30 s / 30 s / 5 min. */
  timeouts?: { connectionMs?: number; greetingMs?: number; socketMs?: number };
}

interface SmtpError extends Error {
  responseCode?: number;
  response?: string;
  code?: string;
  rejected?: string[];
  rejectedErrors?: SmtpError[];
  recipient?: string;
}

function describe(err: SmtpError): string {
  return (err.response ?? err.message ?? String(err)).replace(/[\r\n]+/g, ' ').slice(0, 500);
}

/** Delivers `raw` to `rcpts` (all of one domain) and says what became of each. */
export async function deliverRemote(opts: RemoteOptions, domain: string, mailFrom: string, rcpts: string[], raw: Buffer): Promise<Map<string, Outcome>> {
  const out = new Map<string, Outcome>();
  const all = (o: Outcome) => {
    for (const r of rcpts) out.set(r, o);
    return out;
  };
  const mapped = opts.transportMap?.[domain.toLowerCase()];
  let targets: { host: string; address: string; port: number }[];
  if (mapped) targets = [{ host: mapped.host, address: mapped.host, port: mapped.port }];
  else {
    const mx = await opts.lookupMx(domain);
    if (mx.kind !== 'hosts') return all({ kind: mx.kind, reason: mx.reason });
    targets = mx.hosts.flatMap((h) => h.addresses.map((address) => ({ host: h.host, address, port: opts.port ?? 25 })));
  }
  let last: Outcome = { kind: 'temporary', reason: `451 4.4.1 no mail host of ${domain} answered` };
  for (const t of targets) {
    const remote = `${t.host} [${t.address}]:${t.port}`;
    const transport = nodemailer.createTransport({
      host: t.address,
      port: t.port,
      secure: false,
      name: opts.heloName,
      // Opportunistic TLS: upgrade whenever STARTTLS is offered, accept any certificate.
      tls: { rejectUnauthorized: false, servername: t.host, minVersion: 'TLSv1.2' },
      connectionTimeout: opts.timeouts?.connectionMs ?? 30_000,
      greetingTimeout: opts.timeouts?.greetingMs ?? 30_000,
      socketTimeout: opts.timeouts?.socketMs ?? 300_000,
      logger: false,
    });
    try {
      const info = (await transport.sendMail({ envelope: { from: mailFrom, to: rcpts }, raw })) as { accepted?: unknown[]; rejected?: unknown[]; rejectedErrors?: SmtpError[] };
      const accepted = new Set((info.accepted ?? []).map((a) => String(a).toLowerCase()));
      for (const r of rcpts) {
        if (accepted.has(r.toLowerCase())) out.set(r, { kind: 'delivered', remote });
        else {
          const e = (info.rejectedErrors ?? []).find((x) => x.recipient?.toLowerCase() === r.toLowerCase());
          const code = e?.responseCode ?? 450;
          out.set(r, { kind: code >= 500 ? 'permanent' : 'temporary', reason: e ? describe(e) : '450 4.0.0 recipient not accepted', remote });
        }
      }
      return out;
    } catch (e) {
      const err = e as SmtpError;
      if (err.rejectedErrors && err.rejectedErrors.length > 0) {
        // Every recipient refused at RCPT: each with its own reply.
        for (const r of rcpts) {
          const x = err.rejectedErrors.find((y) => y.recipient?.toLowerCase() === r.toLowerCase());
          const code = x?.responseCode ?? err.responseCode ?? 450;
          out.set(r, { kind: code >= 500 ? 'permanent' : 'temporary', reason: describe(x ?? err), remote });
        }
        return out;
      }
      if (err.responseCode !== undefined) {
        // The remote answered the transaction (MAIL or DATA): its verdict holds for this domain.
        return all({ kind: err.responseCode >= 500 ? 'permanent' : 'temporary', reason: describe(err), remote });
      }
      // No SMTP answer (connection refused, timeout, TLS failure): try the next host.
      last = { kind: 'temporary', reason: `451 4.4.1 ${describe(err)}`, remote };
    } finally {
      transport.close();
    }
  }
  return all(last);
}
