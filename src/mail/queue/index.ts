// What the daemon runs for outbound mail: the queue over its data directory, signing with each
// IMVU's DKIM key, delivering hosted domains locally and the rest to their MX hosts found by the
// project's resolver from the configured root hints, on `relayPort` (25; tests use a free port).
import type { OpenPlatform } from '../../core/platform.ts';
import type { RootHint } from '../../domains/resolvers/index.ts';
import { dkimSigner } from '../signing/dkim.ts';
import { maildirDeliverer, type DeliverLocal } from './local.ts';
import { mxResolver } from './mx.ts';
import { MailQueue, type QueueEvent, type RetryPolicy } from './queue.ts';

export { MailQueue, type EnqueueInput, type QueueCounters, type QueueEvent, type RetryPolicy } from './queue.ts';
export { maildirDeliverer, PermanentFailure, type DeliverLocal } from './local.ts';
export { mxResolver, type MxLookup } from './mx.ts';

export interface MailOutOptions {
  rootHints: RootHint[];
  /** Port of the servers learned from referrals. Default 53. */
  upstreamPort?: number;
  /** Port of remote MTAs. Default 25. */
  relayPort?: number;
  /** Our name in EHLO and in DSNs. */
  hostname: string;
  /** Local delivery (default: straight into the mailbox's Maildir). */
  deliverLocal?: DeliverLocal;
  retry?: Partial<RetryPolicy>;
  /** Each copy delivered locally, by the receiving IMVU (metering: mail in); with the default local delivery only. */
  onLocalDelivered?: (imvu: string, bytes: number) => void;
  /** Every delivered recipient's message (metering: messages and bytes out per IMVU). */
  onDelivered?: (imvu: string, bytes: number, local: boolean) => void;
  onEvent?: (e: QueueEvent) => void;
}

/** Opens the outbound queue of a platform's data directory and starts delivering what it holds. */
export function startMailOut(platform: Pick<OpenPlatform, 'dataDir' | 'store'>, opts: MailOutOptions): MailQueue {
  const queue = new MailQueue({
    dataDir: platform.dataDir,
    db: platform.store,
    sign: dkimSigner(platform.dataDir, platform.store),
    remote: {
      lookupMx: mxResolver({ rootHints: opts.rootHints, ...(opts.upstreamPort !== undefined ? { upstreamPort: opts.upstreamPort } : {}) }),
      port: opts.relayPort ?? 25,
      heloName: opts.hostname,
    },
    hostname: opts.hostname,
    deliverLocal: opts.deliverLocal ?? maildirDeliverer(platform.dataDir, platform.store, opts.onLocalDelivered),
    ...(opts.retry ? { retry: opts.retry } : {}),
    ...(opts.onDelivered ? { onDelivered: opts.onDelivered } : {}),
    ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
  });
  queue.start();
  return queue;
}
