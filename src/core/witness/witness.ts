// The witness's one decision (C2SP tlog-witness, add-checkpoint): cosign a checkpoint only if it
// is signed by a key the witness trusts for its log and is consistent with the latest checkpoint
// the witness cosigned for that log, and record the new one durably before answering.
import { openNote } from '../ledger/checkpoint.ts';
import { verifyConsistency } from '../ledger/merkle.ts';
import { cosign } from './cosignature.ts';
import { parseAddCheckpointRequest, RequestFormatError } from './request.ts';
import type { WitnessStore } from './state.ts';

export const SIZE_CONTENT_TYPE = 'text/x.tlog.size';
const TEXT = 'text/plain; charset=utf-8';

export interface WitnessResponse {
  status: number;
  contentType: string;
  body: string;
  /** Set when a checkpoint validly signed by the log was refused as inconsistent (kept as evidence). */
  inconsistent?: { origin: string; size: number; cosignedSize: number };
}

const text = (status: number, message: string): WitnessResponse => ({ status, contentType: TEXT, body: `${message}\n` });

/** Serialises work per key (per log origin); the map holds only keys with work in flight. */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, fn: () => Promise<T> | T): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  get size(): number {
    return this.tails.size;
  }
}

export class Witness {
  private readonly lock = new KeyedLock();

  constructor(
    readonly store: WitnessStore,
    private readonly clock: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  get name(): string {
    return this.store.name;
  }

  get vkey(): string {
    return this.store.vkey;
  }

  /** Handles one add-checkpoint body; never throws on hostile input. */
  async addCheckpoint(body: Uint8Array | string): Promise<WitnessResponse> {
    let req;
    try {
      req = parseAddCheckpointRequest(body);
    } catch (err) {
      if (err instanceof RequestFormatError) return text(400, err.message);
      throw err;
    }
    const { oldSize, proof, note, text: cpText, checkpoint } = req;
    const origin = checkpoint.origin;
    const keys = this.store.logKeys(origin);
    if (!keys) return text(404, `this witness does not follow the log ${JSON.stringify(origin.slice(0, 200))}`);
    try {
      openNote(note, keys);
    } catch (err) {
      return text(403, `the checkpoint is not signed by a key this witness trusts for its log: ${(err as Error).message}`);
    }
    if (oldSize > checkpoint.size) return text(400, `old size ${oldSize} is larger than the checkpoint's size ${checkpoint.size}`);

    // The check of the old size and the write of the new state are one step per log: two requests
    // racing from the same old size cannot both pass (the spec's rollback race). The step is one
    // IMMEDIATE SQLite transaction, committed (fsynced) before the answer.
    return this.lock.run(origin, () =>
      this.store.transaction((): WitnessResponse => {
        const cur = this.store.cosigned(origin);
        if (oldSize !== cur.size) return { status: 409, contentType: SIZE_CONTENT_TYPE, body: `${cur.size}\n` };
        // A checkpoint the log signed that contradicts one already cosigned: proof of misbehaviour, kept.
        const refuse = (status: 409 | 422, reason: string): WitnessResponse => {
          this.store.keepEvidence({ origin, at: this.clock(), status, reason, oldSize, proof: proof.map((h) => h.toString('base64')), note });
          const res = status === 409 ? { status, contentType: SIZE_CONTENT_TYPE, body: `${cur.size}\n` } : text(status, reason);
          return { ...res, inconsistent: { origin, size: checkpoint.size, cosignedSize: cur.size } };
        };
        if (checkpoint.size === cur.size) {
          if (!checkpoint.rootHash.equals(cur.root)) return refuse(409, `the checkpoint has the size of the one this witness cosigned (${cur.size}) but another root hash`);
          if (proof.length !== 0) return text(422, 'a consistency proof between equal sizes is empty');
        } else if (!verifyConsistency(oldSize, checkpoint.size, cur.root, checkpoint.rootHash, proof)) {
          return refuse(422, `the consistency proof from size ${oldSize} to ${checkpoint.size} does not verify against the checkpoint this witness cosigned`);
        }
        // Cosignature times never go back for a log, whatever the clock does.
        const at = Math.max(this.clock(), cur.cosignedAt);
        const line = cosign(cpText, this.store.name, this.store.key, at);
        this.store.saveCosigned(origin, { size: checkpoint.size, root: checkpoint.rootHash, note, cosignedAt: at, cosignature: line });
        return { status: 200, contentType: TEXT, body: `${line}\n` };
      }),
    );
  }
}
