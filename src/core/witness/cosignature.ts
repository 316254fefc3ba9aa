// C2SP tlog-cosignature, Ed25519 flavour (cosignature/v1, signature type 0x04).
//
// A cosignature is a signed-note signature line on a checkpoint:
//   — <cosigner name> base64(key ID || u64 big-endian timestamp || Ed25519 signature)
// key ID = SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4]
// signed message = "cosignature/v1\n" || "time <timestamp>\n" || checkpoint note text
// A cosigner's verifier key (vkey) is "<name>+<8 hex key ID>+base64(0x04 || public key)".
//
// The note body itself is parsed by src/core/ledger/checkpoint.ts (one parser for notes); this
// file adds only what differs for cosignatures: the key ID byte, the timestamp and the message.
import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { decodeBase64Strict, isValidKeyName, parseCheckpoint, splitNote, MAX_SIGNATURES } from '../ledger/checkpoint.ts';

export const COSIGNATURE_V1_TYPE = 0x04;
const HEADER = 'cosignature/v1\n';
const SIG_PREFIX = '\u2014 ';
const KEY_BYTES = 32;
const SIG_BYTES = 64;
/** key ID (4) + timestamp (8) + Ed25519 signature (64). */
export const COSIGNATURE_BYTES = 4 + 8 + SIG_BYTES;
/** The spec's bound on the timestamp: 2^63 - 1. Within it we also need a safe integer. */
const MAX_TIMESTAMP = Number.MAX_SAFE_INTEGER;
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface Cosigner {
  name: string;
  publicKeyRaw: Buffer;
}

function checkName(name: unknown): asserts name is string {
  if (!isValidKeyName(name)) throw new Error(`invalid cosigner name ${JSON.stringify(String(name)).slice(0, 60)}: it must be non-empty, without spaces, plus signs or control characters`);
}

function checkKey(pub: unknown): asserts pub is Uint8Array {
  if (!(pub instanceof Uint8Array) || pub.length !== KEY_BYTES) throw new Error(`an Ed25519 public key is ${KEY_BYTES} raw bytes`);
}

function checkTimestamp(t: unknown): asserts t is number {
  if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0 || t > MAX_TIMESTAMP) throw new Error(`a cosignature timestamp is a whole number of seconds from 0 to ${MAX_TIMESTAMP}`);
}

export function cosignerKeyId(name: string, publicKeyRaw: Uint8Array): Buffer {
  checkName(name);
  checkKey(publicKeyRaw);
  return createHash('sha256').update(Buffer.from(name, 'utf8')).update(Buffer.from([0x0a, COSIGNATURE_V1_TYPE])).update(publicKeyRaw).digest().subarray(0, 4);
}

export function cosignerVerifierKey(name: string, publicKeyRaw: Uint8Array): string {
  const id = cosignerKeyId(name, publicKeyRaw);
  return `${name}+${id.toString('hex')}+${Buffer.concat([Buffer.from([COSIGNATURE_V1_TYPE]), publicKeyRaw]).toString('base64')}`;
}

/** Inverse of cosignerVerifierKey; throws unless it is a well-formed type 0x04 vkey whose ID matches. */
export function parseCosignerVerifierKey(vkey: unknown): Cosigner {
  if (typeof vkey !== 'string' || vkey.length > 4096) throw new Error('a cosigner verifier key is a short string');
  const first = vkey.indexOf('+');
  const second = first < 0 ? -1 : vkey.indexOf('+', first + 1);
  if (second < 0) throw new Error('a cosigner verifier key has the form <name>+<key id>+<key>');
  const name = vkey.slice(0, first);
  const idHex = vkey.slice(first + 1, second);
  checkName(name);
  if (!/^[0-9a-f]{8}$/.test(idHex)) throw new Error('the key ID of a cosigner verifier key is 8 lower-case hex digits');
  const key = decodeBase64Strict(vkey.slice(second + 1));
  if (key === null) throw new Error('the key material of a cosigner verifier key is not canonical base64');
  if (key.length !== 1 + KEY_BYTES || key[0] !== COSIGNATURE_V1_TYPE)
    throw new Error(`not a cosignature/v1 key (signature type 0x04 followed by a 32-byte Ed25519 key)${key[0] === 0x01 ? '; this is a log (type 0x01) key' : ''}`);
  const publicKeyRaw = key.subarray(1);
  if (!cosignerKeyId(name, publicKeyRaw).equals(Buffer.from(idHex, 'hex'))) throw new Error('the key ID of the cosigner verifier key does not match its name and key');
  return { name, publicKeyRaw };
}

/** The bytes a cosignature/v1 signs: header, time line, then the checkpoint note text (with its final newline). */
export function cosignedMessage(checkpointText: string, timestamp: number): Buffer {
  checkTimestamp(timestamp);
  return Buffer.from(`${HEADER}time ${timestamp}\n${checkpointText}`, 'utf8');
}

/** One cosignature line (without its newline) by `privateKey` under `name` over the checkpoint text. */
export function cosign(checkpointText: string, name: string, privateKey: KeyObject, timestamp: number): string {
  checkName(name);
  parseCheckpoint(checkpointText);
  const pub = createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(-KEY_BYTES);
  const ts = Buffer.alloc(8);
  ts.writeBigUInt64BE(BigInt(timestamp));
  const sig = sign(null, cosignedMessage(checkpointText, timestamp), privateKey);
  return `${SIG_PREFIX}${name} ${Buffer.concat([cosignerKeyId(name, pub), ts, sig]).toString('base64')}`;
}

export interface SignatureLine {
  name: string;
  keyId: Buffer;
  /** The bytes after the key ID (for a cosignature/v1: timestamp and signature). */
  payload: Buffer;
  /** The line without its newline. */
  line: string;
}

/**
 * Parses a sequence of note signature lines (a witness's 200 response): each "— <name> <base64>"
 * and ending in a newline, at most 100, each at least a key ID long. Lines of any signature type
 * are accepted here; whose they are is decided against the keys a caller trusts.
 */
export function parseSignatureLines(text: unknown): SignatureLine[] {
  if (typeof text !== 'string') throw new Error('signature lines must be a string');
  if (text.length > 256 * 1024) throw new Error('signature lines are longer than 256 KiB');
  if (text === '') throw new Error('no signature lines');
  if (!text.endsWith('\n')) throw new Error('signature lines must each end with a newline');
  if (text.startsWith('\n') || text.includes('\n\n')) throw new Error('empty line among signature lines');
  if (text.split('\n').length - 1 > MAX_SIGNATURES) throw new Error(`more than ${MAX_SIGNATURES} signature lines`);
  // The note parser checks every line (em dash, key name, canonical base64): reuse it on a dummy text.
  const { sigs } = splitNote(`x\n\n${text}`);
  return sigs.map((s) => ({ name: s.name, keyId: s.keyId, payload: s.sig, line: s.line }));
}

export type CosignatureCheck = { valid: true; name: string; timestamp: number } | { valid: false; reason: string };

/** The note text of a signed note, or a bare checkpoint text; throws if it is not a checkpoint. */
function checkpointTextOf(note: string): string {
  const text = note.includes('\n\n') ? splitNote(note).text : note;
  parseCheckpoint(text);
  return text;
}

/**
 * Checks one cosignature line against a witness's verifier key (type 0x04) and a checkpoint (the
 * signed note or its text). It does not check the log's own signature: open the checkpoint with the
 * log's key for that. Never throws on hostile input; the reason says what does not hold.
 */
export function verifyCosignature(note: string, cosignatureLine: string, witnessVkey: string): CosignatureCheck {
  let witness: Cosigner;
  try {
    witness = parseCosignerVerifierKey(witnessVkey);
  } catch (err) {
    return { valid: false, reason: `witness key: ${(err as Error).message}` };
  }
  let text: string;
  try {
    text = checkpointTextOf(note);
  } catch (err) {
    return { valid: false, reason: `checkpoint: ${(err as Error).message}` };
  }
  let line: SignatureLine;
  try {
    if (typeof cosignatureLine !== 'string') throw new Error('it must be a string');
    const lines = parseSignatureLines(cosignatureLine.endsWith('\n') ? cosignatureLine : `${cosignatureLine}\n`);
    if (lines.length !== 1) return { valid: false, reason: 'expected exactly one cosignature line' };
    line = lines[0]!;
  } catch (err) {
    return { valid: false, reason: `cosignature line: ${(err as Error).message}` };
  }
  if (line.name !== witness.name || !line.keyId.equals(cosignerKeyId(witness.name, witness.publicKeyRaw)))
    return { valid: false, reason: `the line is not by witness ${witness.name} (name or key ID differ)` };
  if (line.payload.length !== 8 + SIG_BYTES) return { valid: false, reason: `a cosignature/v1 is ${COSIGNATURE_BYTES} bytes with its key ID, got ${line.payload.length + 4}` };
  const ts = line.payload.readBigUInt64BE(0);
  if (ts > BigInt(MAX_TIMESTAMP)) return { valid: false, reason: 'the cosignature timestamp is out of range' };
  const timestamp = Number(ts);
  const key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, witness.publicKeyRaw]), format: 'der', type: 'spki' });
  let ok = false;
  try {
    ok = verify(null, cosignedMessage(text, timestamp), key, line.payload.subarray(8));
  } catch {
    ok = false;
  }
  return ok ? { valid: true, name: witness.name, timestamp } : { valid: false, reason: `the cosignature by ${witness.name} does not verify over this checkpoint` };
}
