// How the authoritative server reads and answers UDP: batched (native/udp_batch.c: recvmmsg and
// sendmmsg, up to 64 datagrams per system call and per call into JavaScript) when the addon was
// built, else Node's dgram, one datagram at a time. Node's dgram costs about 20 us of CPU per
// answered datagram on the project machine, as much as answering it from the cache
// (bench/RESULTS.md, dns); the socket itself (binding, sharing it with the worker processes,
// closing) stays Node's in both modes.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type dgram from 'node:dgram';

interface NativeUdp {
  open(fd: number, onBatch: (n: number) => void, recv: Uint8Array, recvTable: Int32Array, addrs: Uint8Array, send: Uint8Array, sendTable: Int32Array): unknown;
  flush(handle: unknown, count: number): number;
  close(handle: unknown): void;
  stats(handle: unknown): [number, number, number];
  BATCH: number;
  SLOT: number;
  ADDR: number;
  RMETA: number;
  SEND_MAX: number;
  SMETA: number;
}

/** Where the compiled addon is: beside the compiled module (npm run build copies it), or node-gyp's output beside the source. */
const CANDIDATES = ['./native/udp_batch.node', './native/build/Release/udp_batch.node'];

let loaded: { native?: NativeUdp; reason?: string } | undefined;

function load(): { native?: NativeUdp; reason?: string } {
  if (loaded) return loaded;
  if (process.platform !== 'linux') return (loaded = { reason: 'recvmmsg/sendmmsg are Linux system calls' });
  const require = createRequire(import.meta.url);
  for (const rel of CANDIDATES) {
    const path = new URL(rel, import.meta.url);
    if (!existsSync(path)) continue;
    try {
      return (loaded = { native: require(path.pathname) as NativeUdp });
    } catch (err) {
      return (loaded = { reason: `the addon did not load: ${err instanceof Error ? err.message : String(err)}` });
    }
  }
  return (loaded = { reason: 'the addon was not built (npm run build compiles it with node-gyp; it needs a C compiler and Node headers)' });
}

/** Whether batched UDP is available here, and why not. */
export function batchedUdp(): { available: true } | { available: false; reason: string } {
  const l = load();
  return l.native ? { available: true } : { available: false, reason: l.reason! };
}

/** Sends one answer to the sender `to` stands for (what the receiver passed along with the query). */
export type UdpSend<T> = (out: Buffer, to: T | undefined) => void;

/** One received datagram, with its sender's address and port and the send function that answers it. */
export type UdpHandler = <T>(msg: Buffer, address: string, port: number, send: UdpSend<T>, to: T) => void;

export interface UdpListener {
  readonly mode: 'batched' | 'dgram';
  /** Batches read, answers whose sender had left the ring, answers the kernel refused or had no room for. */
  stats(): { batches: number; stale: number; dropped: number; truncated: number };
  /** Stops reading (batched mode); the socket itself is closed by its owner. */
  close(): void;
}

/** Longest run of answers held before they are sent, within one batch: bounds what batching adds to an answer's latency. */
const FLUSH_EVERY = 16;

/**
 * Reads `udp` and hands every datagram to `onMessage`. Batched unless `batched` is false or the
 * addon is missing. The dgram 'message' listener stays in both modes: in batched mode it gets
 * only what Node read before reading stopped.
 */
export function listenUdp(udp: dgram.Socket, onMessage: UdpHandler, o: { batched?: boolean; onError: (err: unknown) => void }): UdpListener {
  const sendTo = (out: Buffer, rinfo: dgram.RemoteInfo | undefined) => udp.send(out, rinfo!.port, rinfo!.address);
  udp.on('message', (msg, rinfo) => {
    try {
      onMessage(msg, rinfo.address, rinfo.port, sendTo, rinfo);
    } catch (err) {
      o.onError(err);
    }
  });
  const native = o.batched === false ? undefined : load().native;
  const handle = native && dgramHandle(udp);
  if (!native || !handle) {
    return { mode: 'dgram', stats: () => ({ batches: 0, stale: 0, dropped: 0, truncated: 0 }), close: () => undefined };
  }
  const N = native;
  const recv = Buffer.alloc(N.BATCH * N.SLOT);
  const recvTable = new Int32Array(N.BATCH * N.RMETA);
  const addrs = Buffer.alloc(N.BATCH * N.ADDR);
  const sendArea = Buffer.alloc(256 * 1024);
  const sendTable = new Int32Array(N.SEND_MAX * N.SMETA);
  let pending = 0;
  let used = 0;
  let inBatch = false;
  let scheduled = false;
  let truncated = 0;
  const flush = () => {
    scheduled = false;
    if (pending === 0) return;
    const n = pending;
    pending = 0;
    used = 0;
    N.flush(h, n);
  };
  const send: UdpSend<number> = (out, seq) => {
    if (seq === undefined) return;
    if (pending === N.SEND_MAX || used + out.length > sendArea.length) flush();
    out.copy(sendArea, used);
    const t = pending * N.SMETA;
    sendTable[t] = used;
    sendTable[t + 1] = out.length;
    sendTable[t + 2] = seq;
    used += out.length;
    pending++;
    if (inBatch) {
      if (pending >= FLUSH_EVERY) flush();
    } else if (!scheduled) {
      // An answer that waited on a lookup or a signature: sent with every other one finished in
      // this turn of the event loop (a microtask would run before most of them).
      scheduled = true;
      setImmediate(flush);
    }
  };
  const onBatch = (n: number) => {
    inBatch = true;
    try {
      for (let i = 0; i < n; i++) {
        const m = i * N.RMETA;
        const len = recvTable[m]!;
        if (recvTable[m + 4]) {
          // Longer than a slot (4,096 bytes): no DNS query over UDP is; not answered.
          truncated++;
          continue;
        }
        const msg = Buffer.allocUnsafe(len);
        recv.copy(msg, 0, i * N.SLOT, i * N.SLOT + len);
        const address = addrs.toString('latin1', i * N.ADDR, i * N.ADDR + recvTable[m + 3]!);
        try {
          onMessage(msg, address, recvTable[m + 2]!, send, recvTable[m + 1]!);
        } catch (err) {
          o.onError(err);
        }
      }
    } finally {
      inBatch = false;
      flush();
    }
  };
  // Declared after the closures that use it: none runs before the first batch, which comes later.
  const h = N.open(handle.fd, onBatch, recv, recvTable, addrs, sendArea, sendTable);
  // Node stops reading; the addon reads a duplicate of the descriptor from now on.
  handle.recvStop();
  let closed = false;
  return {
    mode: 'batched',
    stats: () => {
      const [batches, stale, dropped] = N.stats(h);
      return { batches, stale, dropped, truncated };
    },
    close: () => {
      if (closed) return;
      closed = true;
      flush();
      N.close(h);
    },
  };
}

/** The libuv handle of a bound dgram socket (its descriptor and recvStop), without the deprecated `_handle`. */
function dgramHandle(udp: dgram.Socket): { fd: number; recvStop(): number } | undefined {
  const key = Object.getOwnPropertySymbols(udp).find((s) => s.description === 'state symbol');
  const handle = key && (udp as unknown as Record<symbol, { handle?: { fd?: number; recvStop?: () => number } }>)[key]?.handle;
  if (!handle || typeof handle.fd !== 'number' || handle.fd < 0 || typeof handle.recvStop !== 'function') return undefined;
  return handle as { fd: number; recvStop(): number };
}
