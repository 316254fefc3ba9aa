// The body of a C2SP tlog-witness `POST /add-checkpoint` request:
//   old <size>\n
//   <base64 hash>\n        (0 to 63 consistency proof lines)
//   \n
//   <signed checkpoint note>
// Parsing is strict and bounded; anything malformed is a RequestFormatError (the witness answers 400).
import { decodeBase64Strict, parseCheckpoint, splitNote, type Checkpoint, type ParsedSignature } from '../ledger/checkpoint.ts';

export const MAX_PROOF_LINES = 63;
/** Enough for a checkpoint with 16 post-quantum signatures and a full proof; far beyond what a log sends. */
export const MAX_REQUEST_BYTES = 128 * 1024;
const HASH_BYTES = 32;
const DECIMAL = /^(?:0|[1-9][0-9]{0,15})$/;

export class RequestFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RequestFormatError';
  }
}

export interface AddCheckpointRequest {
  oldSize: number;
  proof: Buffer[];
  /** The signed checkpoint note, as sent. */
  note: string;
}

export interface ParsedAddCheckpoint extends AddCheckpointRequest {
  /** The note's text (the checkpoint body, with its final newline). */
  text: string;
  checkpoint: Checkpoint;
  signatures: ParsedSignature[];
}

/** A tree size in the wire form: ASCII decimal, no leading zeros, a safe integer; or null. */
export function parseSize(s: string): number | null {
  if (!DECIMAL.test(s)) return null;
  const n = Number(s);
  return Number.isSafeInteger(n) ? n : null;
}

export function formatAddCheckpointRequest(req: AddCheckpointRequest): string {
  const { oldSize, proof, note } = req;
  if (!Number.isSafeInteger(oldSize) || oldSize < 0) throw new Error(`old size must be a non-negative safe integer, got ${String(oldSize)}`);
  if (!Array.isArray(proof) || proof.length > MAX_PROOF_LINES) throw new Error(`a consistency proof has at most ${MAX_PROOF_LINES} hashes`);
  for (const h of proof) if (!(h instanceof Uint8Array) || h.length !== HASH_BYTES) throw new Error(`every proof hash is ${HASH_BYTES} bytes`);
  if (typeof note !== 'string') throw new Error('the checkpoint must be a signed note (a string)');
  return `old ${oldSize}\n${proof.map((h) => `${Buffer.from(h).toString('base64')}\n`).join('')}\n${note}`;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses (and checks the syntax of) an add-checkpoint body; does not check any signature or proof,
 * nor old size ≤ checkpoint size (the witness answers that with 400 after the origin and key checks).
 */
export function parseAddCheckpointRequest(body: Uint8Array | string): ParsedAddCheckpoint {
  let s: string;
  if (typeof body === 'string') {
    if (body.length > MAX_REQUEST_BYTES || Buffer.byteLength(body, 'utf8') > MAX_REQUEST_BYTES) throw new RequestFormatError(`request body is larger than ${MAX_REQUEST_BYTES} bytes`);
    s = body;
  } else if (body instanceof Uint8Array) {
    if (body.length > MAX_REQUEST_BYTES) throw new RequestFormatError(`request body is larger than ${MAX_REQUEST_BYTES} bytes`);
    try {
      s = utf8.decode(body);
    } catch {
      throw new RequestFormatError('request body is not valid UTF-8');
    }
  } else {
    throw new RequestFormatError('request body must be bytes or a string');
  }

  let pos = 0;
  const nextLine = (what: string): string => {
    const nl = s.indexOf('\n', pos);
    if (nl < 0) throw new RequestFormatError(`request body ends inside the ${what} (every line ends with a newline, and an empty line precedes the checkpoint)`);
    const line = s.slice(pos, nl);
    pos = nl + 1;
    return line;
  };

  const first = nextLine('old size line');
  if (!first.startsWith('old ')) throw new RequestFormatError('request body must start with the line "old <size>"');
  const oldSize = parseSize(first.slice(4));
  if (oldSize === null) throw new RequestFormatError('the old size is not a decimal number without leading zeros (at most 2^53 - 1)');

  const proof: Buffer[] = [];
  for (;;) {
    const line = nextLine('consistency proof');
    if (line === '') break;
    if (proof.length === MAX_PROOF_LINES) throw new RequestFormatError(`more than ${MAX_PROOF_LINES} consistency proof lines`);
    const h = decodeBase64Strict(line);
    if (h === null || h.length !== HASH_BYTES) throw new RequestFormatError(`consistency proof line ${proof.length + 1} is not a ${HASH_BYTES}-byte hash in canonical base64`);
    proof.push(h);
  }

  const note = s.slice(pos);
  if (note === '') throw new RequestFormatError('the checkpoint is missing after the empty line');
  let text: string;
  let signatures: ParsedSignature[];
  let checkpoint: Checkpoint;
  try {
    ({ text, sigs: signatures } = splitNote(note));
    checkpoint = parseCheckpoint(text);
  } catch (err) {
    throw new RequestFormatError(`the checkpoint is not a signed checkpoint note: ${(err as Error).message}`);
  }
  return { oldSize, proof, note, text, checkpoint, signatures };
}
