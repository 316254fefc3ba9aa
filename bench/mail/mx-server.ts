// Our MX alone in its own process, for bench/mail/run.ts: a throw-away platform with one IMVU, a
// fixture DNS for the sender's SPF/DKIM/DMARC look-ups (mailauth runs on every message, as in
// production), and the MX on a free port of 127.0.0.1. Prints `port <n> <data dir>` when ready;
// ends on SIGTERM. Run under `node --cpu-prof` to profile (BENCH_PROFILE=1 in run.ts).
import { testPlatform } from '../../src/core/testing.ts';
import { startMailService } from '../../src/mail/smtp/service.ts';
import { startFixtureDns } from '../../test/mail/fixture-dns.ts';

const dns = await startFixtureDns([
  { name: 'good.test', type: 'TXT', data: 'v=spf1 ip4:127.0.0.1 -all' },
  { name: '_dmarc.good.test', type: 'TXT', data: 'v=DMARC1; p=none' },
]);
const p = await testPlatform();
const alice = await p.register('alice', 'creator');
await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' });
const mail = await startMailService({
  platform: p,
  hostname: 'mx.bench',
  smtpPort: 0,
  submissionPort: null,
  smtpsPort: null,
  maxMessageBytes: 50 * 1024 * 1024,
  resolver: { rootHints: [{ name: 'root.', address: '127.0.0.1', port: dns.port }], upstreamPort: dns.port },
});
process.stdout.write(`port ${mail.mx!.port} ${p.dataDir}\n`);
const stop = async () => {
  await mail.close();
  await dns.close();
  await p.cleanup();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
