// SHA-256 on a worker thread: an exit archive's own digest and its members' digests are two passes
// of SHA-256 over the same gigabytes, the costliest work of an export and of its verification.
// With this, one of them runs on a second core while the main thread does the other (and the tar,
// the deflate framing and the file I/O). Bytes are copied once into transferred buffers, at most
// MAX_PENDING of them in flight: a slow worker slows its feeder, memory stays bounded. The worker
// gives each buffer back once hashed, so the same few are reused (no garbage per batch).
import { Worker } from 'node:worker_threads';

/** Bytes gathered before they are sent (fewer, larger messages). */
const BATCH = 4 << 20;
/** Bytes sent and not yet hashed before update() waits. */
const MAX_PENDING = 32 << 20;

// Plain JavaScript evaluated by the worker: runs the same from the sources and from dist/.
const SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const h = createHash('sha256');
let size = 0;
parentPort.on('message', (m) => {
  if (m === 'digest') {
    parentPort.postMessage({ sha256: h.digest('hex'), size });
    return;
  }
  h.update(new Uint8Array(m));
  size += m.byteLength;
  parentPort.postMessage(m, [m]);
});
`;

export class ParallelHash {
  private readonly worker = new Worker(SOURCE, { eval: true });
  private readonly free: ArrayBuffer[] = [];
  private batch = this.fresh();
  private used = 0;
  private pending = 0;
  private waiting: (() => void) | undefined;
  private failed: Error | undefined;
  private result: ((r: { sha256: string; size: number }) => void) | undefined;

  constructor() {
    this.worker.on('message', (m: ArrayBuffer | { sha256: string; size: number }) => {
      if (m instanceof ArrayBuffer) {
        this.pending -= m.byteLength;
        if (m.byteLength === BATCH) this.free.push(m);
        if (this.pending <= MAX_PENDING / 2) this.wake();
      } else this.result?.(m);
    });
    this.worker.on('error', (err) => {
      this.failed = err;
      this.wake();
    });
  }

  private fresh(): Uint8Array {
    return new Uint8Array(this.free.pop() ?? new ArrayBuffer(BATCH));
  }

  private wake(): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }

  private send(): void {
    if (!this.used) return;
    const full = this.batch.buffer as ArrayBuffer;
    const ab = this.used === BATCH ? full : full.slice(0, this.used);
    this.worker.postMessage(ab, [ab]);
    this.pending += this.used;
    this.batch = this.fresh();
    this.used = 0;
  }

  /** Adds `buf` to the digest; waits while the worker is too far behind. `buf` may be reused at once. */
  async update(buf: Uint8Array): Promise<void> {
    if (this.failed) throw this.failed;
    for (let off = 0; off < buf.length; ) {
      const n = Math.min(BATCH - this.used, buf.length - off);
      this.batch.set(buf.subarray(off, off + n), this.used);
      this.used += n;
      off += n;
      if (this.used === BATCH) this.send();
    }
    while (this.pending > MAX_PENDING && !this.failed) await new Promise<void>((r) => (this.waiting = r));
    if (this.failed) throw this.failed;
  }

  /** The SHA-256 (hex) and length of every byte given; ends the worker. */
  async digest(): Promise<{ sha256: string; size: number }> {
    this.send();
    try {
      if (this.failed) throw this.failed;
      return await new Promise<{ sha256: string; size: number }>((resolve, reject) => {
        this.result = resolve;
        this.worker.once('error', reject);
        this.worker.postMessage('digest');
      });
    } finally {
      await this.worker.terminate();
    }
  }

  /** Ends the worker without a digest (after a failure). */
  async abort(): Promise<void> {
    await this.worker.terminate();
  }
}
