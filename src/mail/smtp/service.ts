// The mail service as the daemon runs it: the MX and the submission listeners over the platform's
// projections, the `mail` service identity (registered by the platform on first start, the one
// meter of mail.messages, mail.bytes_in and mail.bytes_out), its usage meter (gate 6), and the
// record of refused submissions: a `mail.send` signed by the `mail` service on the user's behalf,
// which gate 5 denies with its reason. The service states what it saw; the user signed nothing,
// because an SMTP client logs in with a password, not with the identity's key.
import type { OpenPlatform } from '../../core/platform.ts';
import { signCommand } from '../../core/identity/envelope.ts';
import { ensureMeter, ensureServiceIdentity, type ServiceIdentity } from '../../core/service-identity.ts';
import { UsageMeter, type FlushResult } from '../../domains/metering.ts';
import { startMx, startSubmission, type Enqueue, type SmtpListener, type SubmissionOptions } from './server.ts';
import { mailResolver, type MailResolverOptions } from './dns.ts';
import { ensureMailTls } from './tls.ts';

export const MAIL_SERVICE = 'mail';
export const MAIL_METRICS = ['mail.messages', 'mail.bytes_in', 'mail.bytes_out'] as const;

export interface MailServiceOptions {
  platform: OpenPlatform;
  hostname: string;
  address?: string;
  /** null: that listener is off. 0: a free port. */
  smtpPort: number | null;
  submissionPort: number | null;
  smtpsPort: number | null;
  tls?: { cert: string | Buffer; key: string | Buffer };
  resolver: MailResolverOptions;
  enqueue?: Enqueue;
  maxMessageBytes?: number;
  maxRecipients?: number;
  sessionTimeoutMs?: number;
  meterIntervalMs?: number;
  /** AUTH failures allowed per source prefix and per account (default: limits.ts). */
  authLimits?: SubmissionOptions['authLimits'];
  noise?: { add(source: string, reason: string): void };
  onError?: (err: unknown) => void;
}

export interface MailService {
  identity: ServiceIdentity;
  meter: UsageMeter;
  mx?: SmtpListener;
  submission?: SmtpListener;
  smtps?: SmtpListener;
  tlsSource: string;
  close(): Promise<FlushResult>;
}

export async function startMailService(o: MailServiceOptions): Promise<MailService> {
  const { platform } = o;
  const identity = await ensureServiceIdentity(platform, MAIL_SERVICE);
  await ensureMeter(platform, identity, MAIL_METRICS);
  const meter = new UsageMeter({
    service: MAIL_SERVICE,
    key: identity.key,
    origin: platform.config.origin,
    submit: (signed) => platform.chokepoint.submit(signed),
    ...(o.meterIntervalMs !== undefined ? { intervalMs: o.meterIntervalMs } : {}),
    ...(o.onError ? { onError: (err: Error) => o.onError!(err) } : {}),
  }).start();
  const tls = await ensureMailTls(platform.dataDir, o.tls, o.hostname);
  const common = {
    store: platform.store,
    dataDir: platform.dataDir,
    tls,
    hostname: o.hostname,
    ...(o.address ? { address: o.address } : {}),
    ...(o.maxMessageBytes ? { maxMessageBytes: o.maxMessageBytes } : {}),
    ...(o.maxRecipients ? { maxRecipients: o.maxRecipients } : {}),
    ...(o.sessionTimeoutMs ? { sessionTimeoutMs: o.sessionTimeoutMs } : {}),
    ...(o.noise ? { noise: o.noise } : {}),
    ...(o.onError ? { onError: o.onError } : {}),
    count: (imvu: string, metric: string, n: number) => meter.count(imvu, metric, n),
  };
  const refuse = async (r: { imvu: string; identity: string; login: string; mailFrom: string; from: string[] }) => {
    await platform.chokepoint.submit(signCommand(identity.key, 'mail.send', { ...r }, { origin: platform.config.origin }));
  };
  const started: SmtpListener[] = [];
  const svc: Partial<MailService> = {};
  try {
    if (o.smtpPort !== null) started.push((svc.mx = await startMx({ ...common, port: o.smtpPort, resolver: mailResolver(o.resolver) })));
    const sub = { ...common, refuse, ...(o.enqueue ? { enqueue: o.enqueue } : {}), ...(o.authLimits ? { authLimits: o.authLimits } : {}) };
    if (o.submissionPort !== null) started.push((svc.submission = await startSubmission({ ...sub, port: o.submissionPort, implicitTls: false })));
    if (o.smtpsPort !== null) started.push((svc.smtps = await startSubmission({ ...sub, port: o.smtpsPort, implicitTls: true })));
  } catch (err) {
    await Promise.all(started.map((l) => l.close()));
    await meter.close();
    throw err;
  }
  let closing: Promise<FlushResult> | undefined;
  return {
    ...svc,
    identity,
    meter,
    tlsSource: tls.source,
    close: () =>
      (closing ??= (async () => {
        await Promise.all(started.map((l) => l.close()));
        return meter.close();
      })()),
  };
}
