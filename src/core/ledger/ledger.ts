import { createHash, type KeyObject } from 'node:crypto';
import { canonicalBytes, canonicalJson } from './canonical.ts';
import { leafHash, nodeHash, EMPTY_ROOT, inclusionProof, consistencyProof, type StoredNode } from './merkle.ts';
import { formatCheckpoint, signNote } from './checkpoint.ts';
import type { LedgerEntry } from '../types.ts';
import type { Store, WriteTx } from '../store/index.ts';

/** The bytes that are hashed into the tree and stored: the canonical encoding of the entry. */
export function encodeEntry(entry: LedgerEntry): Buffer {
  return canonicalBytes(entry);
}

const ENTRY_KEYS = new Set(['v', 'index', 'at', 'command', 'decision']);

/**
 * encodeEntry(entry) for an entry whose `command` is known to encode as `commandJson` (the
 * chokepoint made it when it copied the input): the members are assembled in JCS order (at,
 * command, decision, index, v) instead of serialising the command a second time. Anything but a
 * plain entry of those five members is encoded in full.
 */
export function encodeEntryWith(entry: LedgerEntry, commandJson: string | undefined): Buffer {
  const keys = Object.keys(entry);
  if (commandJson === undefined || keys.length !== ENTRY_KEYS.size || !keys.every((k) => ENTRY_KEYS.has(k))) return encodeEntry(entry);
  if (entry.v !== 1 || typeof entry.at !== 'string' || !Number.isSafeInteger(entry.index) || typeof entry.decision !== 'object' || entry.decision === null) return encodeEntry(entry);
  return Buffer.from(`{"at":${canonicalJson(entry.at)},"command":${commandJson},"decision":${canonicalJson(entry.decision)},"index":${entry.index},"v":1}`, 'utf8');
}

export function decodeEntry(data: Buffer): LedgerEntry {
  return JSON.parse(data.toString('utf8')) as LedgerEntry;
}

/**
 * A denied command's body larger than this is stored as its SHA-256 and size only, so an
 * authenticated identity cannot grow the log by the size of its refused junk.
 */
export const MAX_DENIED_BODY_BYTES = 2048;

/** The entry as it is recorded: a denied command's body over MAX_DENIED_BODY_BYTES replaced by its hash and size. */
export function elideEntry(entry: LedgerEntry): LedgerEntry {
  const body = entry.command?.command?.body;
  if (entry.decision.allowed || body === undefined) return entry;
  const bytes = canonicalBytes(body);
  if (bytes.length <= MAX_DENIED_BODY_BYTES) return entry;
  return { ...entry, command: { ...entry.command, command: { ...entry.command.command, body: {} } }, elided: { sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.length } };
}

/**
 * The right edge of the tree: the roots of its complete subtrees, largest first. Appending
 * needs only these (never a read), and the root is a fold over at most log2(n) hashes.
 */
export class Frontier {
  constructor(
    private size_: number,
    private readonly stack: { level: number; hash: Buffer }[],
  ) {}

  static async load(store: Store): Promise<Frontier> {
    const size = await store.ledgerSize();
    const stack: { level: number; hash: Buffer }[] = [];
    let start = 0;
    for (let level = 52; level >= 0; level--) {
      const width = 2 ** level;
      if (size - start >= width) {
        const hash = await store.node(level, start / width);
        if (!hash) throw new Error(`ledger node (${level}, ${start / width}) is missing: run \`nexus audit verify\``);
        stack.push({ level, hash });
        start += width;
      }
    }
    return new Frontier(size, stack);
  }

  get size(): number {
    return this.size_;
  }

  /** The roots of the complete subtrees, largest first (what a verifier's snapshot keeps of the tree). */
  edge(): { level: number; hash: Buffer }[] {
    return this.stack.map((n) => ({ level: n.level, hash: Buffer.from(n.hash) }));
  }

  clone(): Frontier {
    return new Frontier(this.size_, [...this.stack]);
  }

  /** Adds a leaf and returns every node it completes, for the store. */
  append(data: Uint8Array): StoredNode[] {
    return this.appendLeafHash(leafHash(data));
  }

  /** Adds a leaf given its leaf hash (a reader who was given only the hash of a withheld entry). */
  appendLeafHash(leaf: Buffer): StoredNode[] {
    const index = this.size_;
    let hash = leaf;
    let level = 0;
    const nodes: StoredNode[] = [{ level: 0, index, hash }];
    while (this.stack.length > 0 && this.stack[this.stack.length - 1]!.level === level) {
      const left = this.stack.pop()!;
      hash = nodeHash(left.hash, hash);
      level++;
      nodes.push({ level, index: Math.floor(index / 2 ** level), hash });
    }
    this.stack.push({ level, hash });
    this.size_++;
    return nodes;
  }

  root(): Buffer {
    if (this.stack.length === 0) return EMPTY_ROOT;
    let h = this.stack[this.stack.length - 1]!.hash;
    for (let i = this.stack.length - 2; i >= 0; i--) h = nodeHash(this.stack[i]!.hash, h);
    return h;
  }
}

/** A position in a batch to come back to (with the store's own savepoint rolled back alongside). */
export type AppendMark = Frontier;

export interface Appender {
  /** Index the next appended entry will get. */
  readonly next: number;
  append(data: Buffer): Promise<number>;
  mark(): AppendMark;
  /** Forgets every entry appended since `mark` (the caller rolls back their rows in the store). */
  reset(mark: AppendMark): void;
}

/** A checkpoint the batch saved: its tree size, root and signed note. */
export interface SavedCheckpoint {
  size: number;
  root: Buffer;
  note: string;
}

/**
 * What else commits with a batch (the projection digests, src/core/policy/integrity.ts) and what
 * must happen after it is durable but before any caller is answered (the checkpoint file).
 */
export interface CommitHooks {
  /** First step inside every batch transaction. */
  begin?(): void;
  /** Last step inside every batch transaction; `checkpoint` is set when the batch saved one. */
  seal?(tx: WriteTx, checkpoint: SavedCheckpoint | undefined): Promise<void>;
  /** After COMMIT, before the batch's result is returned. */
  committed?(checkpoint: SavedCheckpoint | undefined): Promise<void>;
}

export interface LedgerOptions {
  origin: string;
  keyName: string;
  platformKey: KeyObject;
}

/** Append-only log over a Store: entries, their tree nodes, and a signed checkpoint per commit. */
export class Ledger {
  hooks: CommitHooks = {};
  private readonly listeners = new Set<(checkpoint: SavedCheckpoint) => void>();

  private constructor(
    private readonly store: Store,
    private frontier: Frontier,
    private readonly opts: LedgerOptions,
  ) {}

  static async open(store: Store, opts: LedgerOptions): Promise<Ledger> {
    return new Ledger(store, await Frontier.load(store), opts);
  }

  get size(): number {
    return this.frontier.size;
  }

  root(): Buffer {
    return this.frontier.root();
  }

  /**
   * Runs `fn` in one store transaction with a scratch frontier; the frontier is kept only if the
   * transaction (entries, nodes, checkpoint) commits.
   */
  async batch<T>(fn: (log: Appender, tx: WriteTx) => Promise<T>): Promise<T> {
    return (await this.batchWithCheckpoint(fn)).result;
  }

  /**
   * Like batch(), and also returns the checkpoint the batch saved (undefined when it appended
   * nothing): the first signed checkpoint that includes every entry of the batch, which is what a
   * submitter's receipt carries. Nothing more is signed for it.
   */
  async batchWithCheckpoint<T>(fn: (log: Appender, tx: WriteTx) => Promise<T>): Promise<{ result: T; checkpoint: SavedCheckpoint | undefined }> {
    let saved: SavedCheckpoint | undefined;
    const out = await this.store.transaction(async (tx) => {
      this.hooks.begin?.();
      let scratch = this.frontier.clone();
      const before = scratch.size;
      const log: Appender = {
        get next() {
          return scratch.size;
        },
        async append(data) {
          const index = scratch.size;
          await tx.appendEntry(index, data, scratch.append(data));
          return index;
        },
        mark: () => scratch.clone(),
        reset(mark) {
          scratch = mark.clone();
        },
      };
      const out = await fn(log, tx);
      if (scratch.size !== before) {
        const root = scratch.root();
        saved = { size: scratch.size, root, note: this.signCheckpoint(scratch.size, root) };
        await tx.saveCheckpoint(saved.size, saved.note);
      }
      await this.hooks.seal?.(tx, saved);
      this.frontier = scratch;
      return out;
    });
    await this.hooks.committed?.(saved);
    if (saved) for (const fn of this.listeners) fn(saved);
    return { result: out, checkpoint: saved };
  }

  /**
   * Told (synchronously, after the commit hooks) about every checkpoint a batch made durable; it
   * must not block: the witness collector only notes the newest and returns.
   */
  onCheckpoint(fn: (checkpoint: SavedCheckpoint) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  signCheckpoint(size: number, root: Buffer): string {
    return signNote(formatCheckpoint({ origin: this.opts.origin, size, rootHash: root }), this.opts.keyName, this.opts.platformKey);
  }

  async checkpoint(): Promise<string> {
    const latest = await this.store.latestCheckpoint();
    if (latest && latest.size === this.size) return latest.note;
    return this.signCheckpoint(this.size, this.root());
  }

  inclusionProof(index: number, size = this.size): Buffer[] {
    return inclusionProof(this.store.nodeSource(), index, size);
  }

  consistencyProof(oldSize: number, newSize = this.size): Buffer[] {
    return consistencyProof(this.store.nodeSource(), oldSize, newSize);
  }
}
