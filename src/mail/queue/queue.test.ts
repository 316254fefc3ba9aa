import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { testPlatform, type Actor, type TestPlatform } from '../../core/testing.ts';
import { provisioner } from '../../imvu/provision.ts';
import { mailboxRoot } from '../maildir/paths.ts';
import { startSink, type Sink, type SinkOptions } from '../../../test/support/smtp-sink.ts';
import { MailQueue, type MailQueueOptions } from './queue.ts';
import type { MxLookup } from './mx.ts';

// The queue against a real SMTP server we did not write (smtp-server) on loopback, and the real
// Maildir of a hosted mailbox.

let p: TestPlatform;
let alice: Actor;
const SENDER = 'creator@imvu001.world';
const OUTSIDE = 'someone@outside.test';

beforeAll(async () => {
  p = await testPlatform({ provision: provisioner });
  alice = await p.register('alice', 'creator');
  expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
  expect((await p.as(alice, 'imvu.create', { name: 'Shop', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
});
afterAll(async () => p?.cleanup());

let sink: Sink | undefined;
let queue: MailQueue | undefined;
afterEach(async () => {
  await queue?.close();
  await sink?.close();
  queue = undefined;
  sink = undefined;
});

const mxTo = (): MxLookup => async () => ({ kind: 'hosts', hosts: [{ host: 'mx.outside.test', preference: 10, addresses: ['127.0.0.1'] }] });

async function setup(sinkOpts: SinkOptions = {}, q: Partial<MailQueueOptions> = {}): Promise<{ sink: Sink; queue: MailQueue }> {
  sink = await startSink(sinkOpts);
  queue = new MailQueue({
    dataDir: p.dataDir,
    db: p.store,
    remote: { lookupMx: mxTo(), port: sink.port, heloName: 'mail.nexus.test' },
    retry: { baseMs: 20, maxMs: 100, maxAttempts: 4 },
    tickMs: 10,
    ...q,
  });
  queue.start();
  return { sink, queue };
}

function message(subject: string, to = OUTSIDE): Buffer {
  return Buffer.from(`From: <${SENDER}>\r\nTo: <${to}>\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@imvu001.world>\r\n\r\nHello.\r\n`);
}

const inbox = (address: string, imvu = 'IMVU-001'): string[] => {
  const dir = join(mailboxRoot(p.dataDir, imvu, address), 'new');
  return existsSync(dir) ? readdirSync(dir).map((f) => readFileSync(join(dir, f), 'latin1')) : [];
};

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('outbound queue', () => {
  it('is on disk (message + envelope) when enqueue resolves, delivers over STARTTLS, then removes it', async () => {
    const { sink, queue } = await setup({ mailFrom: () => new Promise((r) => setTimeout(r, 200)) });
    const id = await queue.enqueue({ imvu: 'IMVU-001', identity: alice.id, mailFrom: SENDER, rcptTo: [OUTSIDE], raw: message('first') });
    const meta = JSON.parse(readFileSync(join(p.dataDir, 'mail-queue', `${id}.json`), 'utf8'));
    expect(meta).toMatchObject({ id, imvu: 'IMVU-001', mailFrom: SENDER, rcpts: [{ to: OUTSIDE }] });
    expect(readFileSync(join(p.dataDir, 'mail-queue', `${id}.eml`), 'latin1')).toContain('Subject: first');
    await until(() => sink.messages.length === 1);
    await queue.idle();
    expect(sink.messages[0]).toMatchObject({ from: SENDER, to: [OUTSIDE], tls: true });
    expect(sink.messages[0]!.raw.toString()).toContain('Subject: first');
    expect(existsSync(join(p.dataDir, 'mail-queue', `${id}.json`))).toBe(false);
    expect(existsSync(join(p.dataDir, 'mail-queue', `${id}.eml`))).toBe(false);
    expect(queue.counters.perImvu.get('IMVU-001')).toEqual({ messages: 1, bytes: message('first').length });
  });

  it('retries a temporary refusal with backoff and delivers once the remote accepts', async () => {
    let refuse = 2;
    const events: string[] = [];
    const { sink, queue } = await setup({ rcpt: () => (refuse-- > 0 ? '451 4.7.1 try later' : undefined) }, { onEvent: (e) => events.push(e.event) });
    await queue.enqueue({ imvu: 'IMVU-001', identity: alice.id, mailFrom: SENDER, rcptTo: [OUTSIDE], raw: message('retry') });
    // The remote holds the message before our side has read its 250 and recorded the delivery.
    await until(() => sink.messages.length === 1 && events.includes('delivered'));
    expect(events.filter((e) => e === 'deferred')).toHaveLength(2);
    expect(events.at(-1)).toBe('delivered');
    await queue.idle();
    expect(queue.size).toBe(0);
  });

  it('a permanent refusal sends one RFC 3464 DSN to the sender mailbox (local, no network hop)', async () => {
    const earlier = new Set(inbox(SENDER));
    const { sink, queue } = await setup({ rcpt: (a) => (a === 'nobody@outside.test' ? '550 5.1.1 no such user' : undefined) });
    await queue.enqueue({ imvu: 'IMVU-001', identity: alice.id, mailFrom: SENDER, rcptTo: ['nobody@outside.test', OUTSIDE], raw: message('bounce') });
    await until(() => inbox(SENDER).length === earlier.size + 1);
    await queue.idle();
    expect(sink.messages).toHaveLength(1);
    expect(sink.messages[0]!.to).toEqual([OUTSIDE]);
    const dsn = inbox(SENDER).find((m) => !earlier.has(m))!;
    expect(dsn).toMatch(/Content-Type: multipart\/report; report-type=delivery-status/);
    expect(dsn).toContain('Content-Type: message/delivery-status');
    expect(dsn).toContain('Final-Recipient: rfc822; nobody@outside.test');
    expect(dsn).toContain('Action: failed');
    expect(dsn).toContain('Status: 5.1.1');
    expect(dsn).toContain('Subject: bounce');
    expect(dsn).not.toContain(`Final-Recipient: rfc822; ${OUTSIDE}`);
    expect(queue.size).toBe(0);
  });

  it('gives up after the retry limit with a DSN; a failing DSN (null sender) gets none', async () => {
    // The inbox lists files in directory order, not arrival order: new DSNs are those not there before.
    const earlier = new Set(inbox(SENDER));
    const { queue } = await setup({ rcpt: () => '451 4.4.5 busy' });
    await queue.enqueue({ imvu: 'IMVU-001', identity: alice.id, mailFrom: SENDER, rcptTo: [OUTSIDE], raw: message('limit') });
    await queue.enqueue({ imvu: 'IMVU-001', identity: alice.id, mailFrom: '', rcptTo: [OUTSIDE], raw: message('null-sender') });
    await until(() => queue.size === 0);
    await queue.idle();
    const dsns = inbox(SENDER).filter((m) => !earlier.has(m));
    expect(dsns).toHaveLength(1);
    expect(dsns[0]).toContain('gave up after 4 attempts');
    expect(dsns[0]).toContain('Subject: limit');
    expect(queue.counters.dsns).toBe(1);
  });

  it('delivers to hosted mailboxes into their own IMVU Maildir, and bounces unknown hosted addresses', async () => {
    // The inbox lists files in directory order, not arrival order: new bounces are those not there before.
    const earlier = new Set(inbox(SENDER));
    const before = earlier.size;
    const { sink, queue } = await setup();
    await queue.enqueue({ imvu: 'IMVU-001', identity: alice.id, mailFrom: SENDER, rcptTo: ['admin@imvu002.world', 'ghost@imvu002.world'], raw: message('local', 'admin@imvu002.world') });
    // The bounce is written after the message leaves the queue: wait for both.
    await until(() => queue.size === 0 && inbox(SENDER).length > before);
    await queue.idle();
    expect(inbox('admin@imvu002.world', 'IMVU-002').some((m) => m.includes('Subject: local'))).toBe(true);
    expect(sink.messages).toHaveLength(0);
    const dsn = inbox(SENDER).filter((m) => !earlier.has(m));
    expect(dsn).toHaveLength(1);
    expect(dsn[0]).toContain('Final-Recipient: rfc822; ghost@imvu002.world');
  });

  it("an exited IMVU's domain is no longer hosted here: its mail goes where DNS says, never into the left-behind Maildir", async () => {
    // A third IMVU of its own, taken through its exit (the archive itself is not this suite's concern).
    expect((await p.as(alice, 'imvu.create', { name: 'Leaver', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    const gone = 'admin@imvu003.world';
    expect((await p.as(alice, 'imvu.exit', { imvu: 'IMVU-003' })).allowed).toBe(true);
    const digest = '0'.repeat(64);
    const ready = await p.chokepoint.submit(p.chokepoint.platformCommand('imvu.exit.ready', { imvu: 'IMVU-003', archive: { sha256: digest, size: 1 }, manifest: digest, treeSize: p.chokepoint.ledger.size }));
    expect(ready.allowed).toBe(true);
    expect((await p.as(alice, 'imvu.exit.confirm', { imvu: 'IMVU-003', archive: digest })).allowed).toBe(true);
    const { sink, queue } = await setup();
    await queue.enqueue({ imvu: 'IMVU-001', identity: alice.id, mailFrom: SENDER, rcptTo: [gone], raw: message('after-exit', gone) });
    await until(() => sink.messages.length === 1);
    await queue.idle();
    expect(sink.messages[0]).toMatchObject({ to: [gone] });
    expect(inbox(gone, 'IMVU-003')).toEqual([]);
  });

  it('after a crash: in-flight recipients are tried again, a message never accepted is swept', async () => {
    const { QueueStore } = await import('./store.ts');
    const store = new QueueStore(p.dataDir);
    const id = QueueStore.newId();
    store.add(
      { v: 1, id, imvu: 'IMVU-001', identity: alice.id, mailFrom: SENDER, created: Date.now(), bytes: 10, rcpts: [{ to: OUTSIDE, state: 'inflight', attempts: 0, next: 0 }] },
      message('inflight'),
    );
    const orphan = join(p.dataDir, 'mail-queue', `${QueueStore.newId()}.eml`);
    writeFileSync(orphan, 'never accepted');
    const recovered: string[] = [];
    const { sink } = await setup({}, { onEvent: (e) => e.event === 'recovered' && recovered.push(e.id) });
    await until(() => sink.messages.length === 1);
    expect(recovered).toEqual([id]);
    expect(existsSync(orphan)).toBe(false);
  });

  it('refuses what it must not accept: bad addresses, no recipients, oversized messages', async () => {
    const { queue } = await setup({}, { maxBytes: 1000 });
    const base = { imvu: 'IMVU-001', identity: alice.id, mailFrom: SENDER, rcptTo: [OUTSIDE], raw: message('x') };
    await expect(queue.enqueue({ ...base, mailFrom: 'a@b@c' })).rejects.toThrow(/envelope sender/);
    await expect(queue.enqueue({ ...base, rcptTo: [] })).rejects.toThrow(/recipients/);
    await expect(queue.enqueue({ ...base, rcptTo: ['x\r\nRCPT TO:<y@z.test>'] })).rejects.toThrow(/recipient/);
    await expect(queue.enqueue({ ...base, raw: Buffer.alloc(2000, 'a') })).rejects.toThrow(/too large/);
    expect(queue.size).toBe(0);
  });
});
