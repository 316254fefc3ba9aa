// Key pairs generated on a worker thread of their own. Node's asynchronous generateKeyPair runs on
// libuv's thread pool (4 threads), which also serves every fs/promises call: with a dozen
// `imvu.create` waiting for their RSA-2048 DKIM keys (100-400 ms of CPU each), the checkpoint
// file's write and fsync after each commit queued behind them, and every command's receipt with
// it (a consent record went from 3 ms to 1.3 s, bench/RESULTS.md "imvu create"). One thread
// makes them one at a time: key generation takes at most one core and never the pool.
import type { KeyObject } from 'node:crypto';
import { Worker } from 'node:worker_threads';

export type KeyKind = 'rsa2048' | 'p256';

// Plain JavaScript evaluated by the worker: runs the same from the sources and from dist/.
const SOURCE = `
const { parentPort } = require('node:worker_threads');
const { generateKeyPairSync } = require('node:crypto');
parentPort.on('message', ({ id, kind }) => {
  try {
    const { privateKey } = kind === 'rsa2048' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    parentPort.postMessage({ id, key: privateKey });
  } catch (err) {
    parentPort.postMessage({ id, error: String((err && err.message) || err) });
  }
});
`;

interface Waiting {
  resolve: (k: KeyObject) => void;
  reject: (e: Error) => void;
}

let worker: Worker | undefined;
const waiting = new Map<number, Waiting>();
let nextId = 0;

function start(): Worker {
  const w = new Worker(SOURCE, { eval: true });
  w.on('message', (m: { id: number; key?: KeyObject; error?: string }) => {
    const q = waiting.get(m.id);
    waiting.delete(m.id);
    // Idle, the thread must not keep a process alive; while keys are owed, it must.
    if (waiting.size === 0) w.unref();
    if (!q) return;
    if (m.key) q.resolve(m.key);
    else q.reject(new Error(`key generation failed: ${m.error ?? 'no key'}`));
  });
  const fail = (err: Error) => {
    if (worker === w) worker = undefined;
    for (const q of waiting.values()) q.reject(err);
    waiting.clear();
  };
  w.on('error', fail);
  w.on('exit', (code) => fail(new Error(`the key generation thread exited (code ${code})`)));
  return w;
}

/** A new private key of `kind`, made on the key thread (requests are served in order). */
export function generatePrivateKey(kind: KeyKind): Promise<KeyObject> {
  worker ??= start();
  const w = worker;
  const id = nextId++;
  return new Promise<KeyObject>((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    w.ref();
    w.postMessage({ id, kind });
  });
}
