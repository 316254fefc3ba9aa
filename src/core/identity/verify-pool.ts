import { Worker } from 'node:worker_threads';
import { cpus } from 'node:os';

// Ed25519 verification is the most expensive step of the chokepoint (~100 µs) and needs no
// state, so it runs on worker threads while the main thread gates and commits the previous batch.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { verify, createPublicKey } = require('node:crypto');
const SPKI = Buffer.from('302a300506032b6570032100', 'hex');
const keys = new Map();
parentPort.on('message', ({ id, items }) => {
  const out = new Uint8Array(items.length);
  for (let i = 0; i < items.length; i++) {
    const [message, key, sig] = items[i];
    try {
      let k = keys.get(key);
      if (!k) {
        if (keys.size > 10000) keys.clear();
        k = createPublicKey({ key: Buffer.concat([SPKI, Buffer.from(key, 'base64')]), format: 'der', type: 'spki' });
        keys.set(key, k);
      }
      const s = Buffer.from(sig, 'base64');
      out[i] = s.length === 64 && verify(null, message, k, s) ? 1 : 0;
    } catch {
      out[i] = 0;
    }
  }
  parentPort.postMessage({ id, out });
});
`;

export interface VerifyItem {
  message: Uint8Array;
  /** base64 of the raw 32-byte Ed25519 public key */
  publicKey: string;
  /** base64 signature */
  sig: string;
}

export class VerifyPool {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, (out: Uint8Array) => void>();
  private nextId = 0;
  private turn = 0;

  constructor(size = Math.max(1, cpus().length - 1)) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(WORKER_SOURCE, { eval: true });
      w.unref();
      w.on('message', ({ id, out }: { id: number; out: Uint8Array }) => {
        const done = this.waiting.get(id);
        this.waiting.delete(id);
        done?.(out);
      });
      this.workers.push(w);
    }
  }

  verifyMany(items: VerifyItem[]): Promise<boolean[]> {
    if (items.length === 0) return Promise.resolve([]);
    const id = this.nextId++;
    const worker = this.workers[this.turn++ % this.workers.length]!;
    return new Promise((resolve) => {
      this.waiting.set(id, (out) => resolve(Array.from(out, (x) => x === 1)));
      worker.postMessage({ id, items: items.map((i) => [i.message, i.publicKey, i.sig]) });
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
