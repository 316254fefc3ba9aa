import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { MessageGuard } from './guard.ts';

async function through(chunks: Buffer[], max: number): Promise<{ guard: MessageGuard; out: Buffer }> {
  const guard = new MessageGuard(max);
  const parts: Buffer[] = [];
  await pipeline(Readable.from(chunks), guard, new Writable({ write: (c: Buffer, _e, cb) => (parts.push(c), cb()) }));
  return { guard, out: Buffer.concat(parts) };
}

/** Where the first bare CR or LF is, by a plain scan of the whole message. */
function firstBare(b: Buffer): number {
  for (let i = 0; i < b.length; i++) {
    if (b[i] === 0x0a && (i === 0 || b[i - 1] !== 0x0d)) return i;
    if (b[i] === 0x0d && b[i + 1] !== 0x0a) return i;
  }
  return -1;
}

const bytes = fc.array(fc.constantFrom(0x0d, 0x0a, 0x2e, 0x41, 0x20), { maxLength: 200 }).map((a) => Buffer.from(a));

describe('MessageGuard', () => {
  it('finds the first bare CR or LF however the message is split into chunks', async () => {
    await fc.assert(
      fc.asyncProperty(bytes, fc.array(fc.nat(200), { maxLength: 6 }), async (msg, cuts) => {
        const points = [...new Set(cuts.map((c) => c % (msg.length + 1)))].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let at = 0;
        for (const p of [...points, msg.length]) {
          if (p > at) chunks.push(msg.subarray(at, p));
          at = Math.max(at, p);
        }
        const { guard, out } = await through(chunks, 1 << 20);
        const want = firstBare(msg);
        if (want < 0) {
          expect(guard.bareAt).toBe(-1);
          expect(out.equals(msg)).toBe(true);
        } else expect(guard.bareAt).toBe(want);
      }),
      { numRuns: 300 },
    );
  });

  it('stops passing bytes on past the limit and says so', async () => {
    const { guard, out } = await through([Buffer.alloc(600, 0x41), Buffer.alloc(600, 0x41)], 1000);
    expect(guard.oversized).toBe(true);
    expect(out.length).toBeLessThanOrEqual(1000);
    expect(guard.bytes).toBe(1200);
  });

  it('keeps the header block, bounded', async () => {
    const { guard } = await through([Buffer.from('From: a@b.c\r\nSub'), Buffer.from('ject: x\r\n\r\nbody\r\n')], 1 << 20);
    expect(guard.headerBlock()!.toString()).toBe('From: a@b.c\r\nSubject: x\r\n');
    const big = await through([Buffer.from('X-A: ' + 'a'.repeat(300 * 1024) + '\r\n\r\nbody\r\n')], 1 << 20);
    expect(big.guard.headerBlock()).toBeUndefined();
  });
});
