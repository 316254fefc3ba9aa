// The outbound queue's own rates: enqueue (attribution + DKIM RSA-2048 signature + message and
// envelope written and fsynced, directory fsynced) and delivery to an SMTP server on loopback
// (smtp-server, STARTTLS, one connection per message), for 2 KiB messages.
// Run: npx tsx bench/mail-queue/run.ts [messages]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPlatform } from '../../src/core/testing.ts';
import { provisioner } from '../../src/imvu/provision.ts';
import { MailQueue } from '../../src/mail/queue/queue.ts';
import { dkimSigner } from '../../src/mail/signing/dkim.ts';
import { startSink } from '../../test/support/smtp-sink.ts';

const N = Number(process.argv[2] ?? 300);
const p = await testPlatform({ provision: provisioner });
const alice = await p.register('alice', 'creator');
await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' });
const sink = await startSink();
const body = 'x'.repeat(76) + '\r\n';
const raw = (i: number) => Buffer.from(`From: <creator@imvu001.world>\r\nTo: <r@outside.test>\r\nSubject: m${i}\r\n\r\n${body.repeat(26)}`);
const dir = mkdtempSync(join(tmpdir(), 'nexus-bench-mq-'));
const lat: number[] = [];
const queue = new MailQueue({
  dataDir: p.dataDir,
  db: p.store,
  sign: dkimSigner(p.dataDir, p.store),
  remote: { lookupMx: async () => ({ kind: 'hosts', hosts: [{ host: 'mx.outside.test', preference: 10, addresses: ['127.0.0.1'] }] }), port: sink.port, heloName: 'bench.nexus.test' },
  tickMs: 5,
});
// Enqueue alone (delivery not started yet).
let t = performance.now();
for (let i = 0; i < N; i++) {
  const s = performance.now();
  await queue.enqueue({ imvu: 'IMVU-001', identity: alice.id, mailFrom: 'creator@imvu001.world', rcptTo: ['r@outside.test'], raw: raw(i) });
  lat.push(performance.now() - s);
}
const enqueueS = (performance.now() - t) / 1000;
lat.sort((a, b) => a - b);
// Then delivery of everything queued (8 at once).
t = performance.now();
queue.start();
while (sink.messages.length < N) await new Promise((r) => setTimeout(r, 5));
await queue.idle();
const deliverS = (performance.now() - t) / 1000;
await queue.close();
await sink.close();
await p.cleanup();
rmSync(dir, { recursive: true, force: true });
const q = (x: number) => lat[Math.min(lat.length - 1, Math.floor(x * lat.length))]!.toFixed(2);
console.log(`messages: ${N} of ${raw(0).length} bytes`);
console.log(`enqueue (sign + fsync), one at a time: ${(N / enqueueS).toFixed(0)} msg/s, p50 ${q(0.5)} ms, p99 ${q(0.99)} ms`);
console.log(`delivery to smtp-server over STARTTLS, 8 at once: ${(N / deliverS).toFixed(0)} msg/s`);
