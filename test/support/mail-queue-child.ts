// A process that holds an outbound queue, for the kill -9 test: node --import tsx this DATA PORT.
// Every stdin line is a JSON message to enqueue ({ mailFrom, rcptTo, raw: base64 }); "ok <n> <id>"
// is printed once enqueue resolved (accepted), "delivered <id>" per delivery, "idle" when empty.
// Every recipient domain goes to the SMTP server on 127.0.0.1:PORT, one message at a time.
import { createInterface } from 'node:readline';
import { MailQueue } from '../../src/mail/queue/queue.ts';

const [dataDir, port] = process.argv.slice(2);
if (!dataDir || !port) throw new Error('usage: mail-queue-child DATA PORT');

// No hosted domains in this process: every recipient is remote.
const db = { get: async () => undefined, all: async () => [] };
const queue = new MailQueue({
  dataDir,
  db,
  remote: {
    lookupMx: async () => ({ kind: 'hosts', hosts: [{ host: 'mx.outside.test', preference: 10, addresses: ['127.0.0.1'] }] }),
    port: Number(port),
    heloName: 'child.nexus.test',
    timeouts: { connectionMs: 2000, greetingMs: 2000, socketMs: 60_000 },
  },
  retry: { baseMs: 50, maxMs: 200, maxAttempts: 1000 },
  concurrency: 1,
  tickMs: 20,
  onEvent: (e) => {
    if (e.event === 'delivered') process.stdout.write(`delivered ${e.id}\n`);
    if (e.event === 'recovered') process.stdout.write(`recovered ${e.id}\n`);
  },
});
const started = queue.start();
process.stdout.write(`started ${started.entries} ${started.inflight}\n`);

let n = 0;
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  const m = JSON.parse(line) as { mailFrom: string; rcptTo: string[]; raw: string };
  void queue.enqueue({ imvu: 'IMVU-001', identity: 'nx1child', mailFrom: m.mailFrom, rcptTo: m.rcptTo, raw: Buffer.from(m.raw, 'base64') }).then(
    (id) => process.stdout.write(`ok ${++n} ${id}\n`),
    (err: Error) => process.stdout.write(`error ${err.message}\n`),
  );
});
setInterval(() => {
  if (queue.size === 0) process.stdout.write('idle\n');
}, 100);
