// Delivery status notifications (RFC 3464): a multipart/report with a human part, a
// message/delivery-status part (per-message fields, then one block per failed recipient) and the
// original headers (text/rfc822-headers), sent from the null sender so it never gets one back.
import { randomBytes } from 'node:crypto';

export interface FailedRcpt {
  to: string;
  /** The remote reply or local reason. */
  diagnostic: string;
  /** RFC 3463 status, e.g. 5.1.1; derived from the diagnostic when absent. */
  status?: string;
  /** The remote MTA that answered, when there was one. */
  remoteMta?: string;
}

export interface DsnInput {
  /** Our host name (Reporting-MTA). */
  reportingMta: string;
  /** The original envelope sender: the DSN's recipient. */
  to: string;
  queueId: string;
  arrival: Date;
  failed: FailedRcpt[];
  /** The original message: only its header section is returned. */
  original: Buffer;
  now?: Date;
}

const MAX_HEADER_BYTES = 64 * 1024;

/** The enhanced status code in a reply (`550 5.1.1 ...`), else 5.0.0 for 5xx and 4.0.0 for 4xx. */
export function statusOf(diagnostic: string): string {
  const m = /\b([245])\.(\d{1,3})\.(\d{1,3})\b/.exec(diagnostic);
  if (m) return `${m[1]}.${m[2]}.${m[3]}`;
  return /^\s*4/.test(diagnostic) ? '4.0.0' : '5.0.0';
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ').replace(/[^\x20-\x7e]/g, '?').slice(0, 900);
}

/** The header section of a message (up to the first empty line), bounded. */
export function headerSection(raw: Buffer): string {
  const text = raw.subarray(0, MAX_HEADER_BYTES).toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  const head = end >= 0 ? text.slice(0, end) : text;
  return head.replace(/\r?\n/g, '\r\n') + '\r\n';
}

export function buildDsn(input: DsnInput): Buffer {
  const now = input.now ?? new Date();
  const boundary = `=_nexus-dsn-${randomBytes(8).toString('hex')}`;
  const mta = oneLine(input.reportingMta);
  const human = [
    'This is the mail system at ' + mta + '.',
    '',
    'Your message could not be delivered to the following recipients:',
    '',
    ...input.failed.map((f) => `  <${oneLine(f.to)}>: ${oneLine(f.diagnostic)}`),
    '',
  ].join('\r\n');
  const perMessage = [`Reporting-MTA: dns; ${mta}`, `X-Nexus-Queue-ID: ${oneLine(input.queueId)}`, `Arrival-Date: ${input.arrival.toUTCString()}`].join('\r\n');
  const perRcpt = input.failed.map((f) => {
    const lines = [
      `Final-Recipient: rfc822; ${oneLine(f.to)}`,
      'Action: failed',
      `Status: ${f.status ?? statusOf(f.diagnostic).replace(/^4/, '5')}`,
    ];
    if (f.remoteMta) lines.push(`Remote-MTA: dns; ${oneLine(f.remoteMta)}`);
    lines.push(`Diagnostic-Code: smtp; ${oneLine(f.diagnostic)}`, `Last-Attempt-Date: ${now.toUTCString()}`);
    return lines.join('\r\n');
  });
  const msg = [
    `From: Mail Delivery System <MAILER-DAEMON@${mta}>`,
    `To: <${oneLine(input.to)}>`,
    'Subject: Undelivered Mail Returned to Sender',
    `Date: ${now.toUTCString()}`,
    `Message-ID: <${randomBytes(12).toString('hex')}@${mta}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=us-ascii',
    '',
    human,
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    perMessage,
    '',
    perRcpt.join('\r\n\r\n'),
    '',
    `--${boundary}`,
    'Content-Type: text/rfc822-headers',
    '',
    headerSection(input.original),
    `--${boundary}--`,
    '',
  ].join('\r\n');
  return Buffer.from(msg, 'latin1');
}
