import { createHash, createPublicKey, sign, verify, KeyObject } from 'node:crypto';

// C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint) carried in a C2SP signed note
// (c2sp.org/signed-note) with Ed25519 signatures (signature type 0x01).
//
// A checkpoint's note text:
//   <origin>\n<tree size, decimal, no leading zeros>\n<base64 RFC 6962 root hash>\n[<extension line>\n ...]
// A signed note:
//   <text ending in \n>\n— <key name> <base64(4-byte key ID || signature)>\n [more signature lines]
// Key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4].
//
// Everything here is strict and bounded: notes over 1 MiB or with more than 100 signature lines
// are refused before any signature is checked, and malformed input raises an Error that says
// what is wrong rather than crashing or being half-accepted.

export interface Checkpoint {
  origin: string;
  size: number;
  rootHash: Buffer;
  extensions?: string[];
}

export interface VerifiedNote {
  text: string;
  /** Names of the known keys whose signatures verified, in note order, without repeats. */
  signers: string[];
}

export interface NoteVerifier {
  name: string;
  publicKeyRaw: Uint8Array;
}

export const MAX_NOTE_BYTES = 1024 * 1024;
export const MAX_SIGNATURES = 100;

const SIG_PREFIX = '\u2014 '; // em dash, space
const ED25519_SIG_TYPE = 0x01;
const ED25519_KEY_BYTES = 32;
const ED25519_SIG_BYTES = 64;
const ROOT_HASH_BYTES = 32;
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

// ---------------------------------------------------------------------------------------------
// Character and encoding checks

// Control characters below U+0020 other than newline (the signed-note rule).
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0009\u000b-\u001f]/;
// A UTF-16 surrogate without its partner cannot be encoded as UTF-8.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// Unicode spaces (Go's unicode.IsSpace, which the reference note implementation uses).
const SPACE = /[\s\u0085]/u;
const STRICT_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const DECIMAL = /^(?:0|[1-9][0-9]*)$/;

function describe(s: string, max = 40): string {
  return JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s);
}

/** Throws unless `s` is a string within the size bound, valid as UTF-8, with no control characters but newline. */
function checkNoteChars(s: unknown, what: string): asserts s is string {
  if (typeof s !== 'string') throw new Error(`${what} must be a string`);
  if (s.length > MAX_NOTE_BYTES || Buffer.byteLength(s, 'utf8') > MAX_NOTE_BYTES) {
    throw new Error(`${what} is larger than ${MAX_NOTE_BYTES} bytes`);
  }
  const ctl = CONTROL.exec(s);
  if (ctl) throw new Error(`${what} contains control character U+${ctl[0].charCodeAt(0).toString(16).padStart(4, '0')} at offset ${ctl.index}`);
  const sur = LONE_SURROGATE.exec(s);
  if (sur) throw new Error(`${what} is not valid Unicode (lone surrogate at offset ${sur.index})`);
}

/** Standard base64 (RFC 4648 section 4) with padding and canonical trailing bits, or null. */
export function decodeBase64Strict(s: string): Buffer | null {
  if (!STRICT_BASE64.test(s)) return null;
  const b = Buffer.from(s, 'base64');
  return b.toString('base64') === s ? b : null;
}

/** A signed-note key name: non-empty, no Unicode spaces, plus signs or control characters. */
export function isValidKeyName(name: unknown): name is string {
  return (
    typeof name === 'string' &&
    name.length > 0 &&
    name.length <= 1024 &&
    !name.includes('+') &&
    !SPACE.test(name) &&
    !CONTROL.test(name) &&
    !LONE_SURROGATE.test(name)
  );
}

function checkKeyName(name: unknown): asserts name is string {
  if (!isValidKeyName(name)) {
    throw new Error(`invalid key name ${typeof name === 'string' ? describe(name) : String(name)}: it must be non-empty, without spaces, plus signs or control characters`);
  }
}

function checkPublicKeyRaw(pub: unknown): asserts pub is Uint8Array {
  if (!(pub instanceof Uint8Array) || pub.length !== ED25519_KEY_BYTES) {
    throw new Error(`an Ed25519 public key is ${ED25519_KEY_BYTES} raw bytes`);
  }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

export function formatCheckpoint(c: Checkpoint): string {
  if (typeof c !== 'object' || c === null) throw new Error('checkpoint must be an object');
  const { origin, size, rootHash, extensions } = c;
  if (typeof origin !== 'string' || origin === '') throw new Error('checkpoint origin must be a non-empty string');
  if (origin.includes('\n')) throw new Error('checkpoint origin must be a single line');
  if (!Number.isSafeInteger(size) || size < 0) throw new Error(`checkpoint size must be a non-negative safe integer, got ${String(size)}`);
  if (!(rootHash instanceof Uint8Array) || rootHash.length !== ROOT_HASH_BYTES) {
    throw new Error(`checkpoint root hash must be ${ROOT_HASH_BYTES} bytes`);
  }
  const ext = extensions ?? [];
  if (!Array.isArray(ext)) throw new Error('checkpoint extensions must be an array of strings');
  ext.forEach((e: unknown, i) => {
    if (typeof e !== 'string' || e === '' || e.includes('\n')) {
      throw new Error(`checkpoint extension ${i} must be a non-empty single line`);
    }
  });
  const text = `${origin}\n${size}\n${Buffer.from(rootHash).toString('base64')}\n${ext.map((e) => `${e}\n`).join('')}`;
  checkNoteChars(text, 'checkpoint');
  return text;
}

/** Parse checkpoint note text (as returned by openNote, not the signed note). Strict; throws on anything malformed. */
export function parseCheckpoint(text: string): Checkpoint {
  checkNoteChars(text, 'checkpoint');
  if (!text.endsWith('\n')) throw new Error('checkpoint must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) throw new Error(`checkpoint needs at least 3 lines (origin, tree size, root hash), got ${lines.length}`);
  lines.forEach((l, i) => {
    if (l === '') {
      throw new Error(`checkpoint line ${i + 1} is empty${i >= 3 ? ' (is this a signed note? open it with openNote first)' : ''}`);
    }
  });
  const [origin, sizeText, rootText] = lines as [string, string, string];
  if (!DECIMAL.test(sizeText)) throw new Error(`checkpoint tree size ${describe(sizeText)} is not a decimal number without leading zeros`);
  const size = Number(sizeText);
  if (!Number.isSafeInteger(size)) throw new Error(`checkpoint tree size ${describe(sizeText)} is too large`);
  const root = decodeBase64Strict(rootText);
  if (root === null) throw new Error(`checkpoint root hash ${describe(rootText)} is not canonical base64`);
  if (root.length !== ROOT_HASH_BYTES) throw new Error(`checkpoint root hash is ${root.length} bytes, expected ${ROOT_HASH_BYTES}`);
  const extensions = lines.slice(3);
  return extensions.length > 0 ? { origin, size, rootHash: root, extensions } : { origin, size, rootHash: root };
}

// ---------------------------------------------------------------------------------------------
// Keys

export function noteKeyId(name: string, publicKeyRaw: Uint8Array): Buffer {
  checkKeyName(name);
  checkPublicKeyRaw(publicKeyRaw);
  return createHash('sha256')
    .update(Buffer.from(name, 'utf8'))
    .update(Buffer.from([0x0a, ED25519_SIG_TYPE]))
    .update(publicKeyRaw)
    .digest()
    .subarray(0, 4);
}

/** "<name>+<8 hex key id>+<base64(0x01 || pubkey)>", the verifier key format of golang.org/x/mod/sumdb/note. */
export function verifierKey(name: string, publicKeyRaw: Uint8Array): string {
  const id = noteKeyId(name, publicKeyRaw);
  return `${name}+${id.toString('hex')}+${Buffer.concat([Buffer.from([ED25519_SIG_TYPE]), publicKeyRaw]).toString('base64')}`;
}

/** Inverse of verifierKey; throws unless the key is a well-formed Ed25519 verifier key whose ID matches. */
export function parseVerifierKey(vkey: string): NoteVerifier {
  if (typeof vkey !== 'string' || vkey.length > 4096) throw new Error('verifier key must be a short string');
  // Names cannot contain '+', but base64 key material can: split at the first two only.
  const first = vkey.indexOf('+');
  const second = first < 0 ? -1 : vkey.indexOf('+', first + 1);
  if (second < 0) throw new Error('verifier key must have the form <name>+<key id>+<key>');
  const name = vkey.slice(0, first);
  const idHex = vkey.slice(first + 1, second);
  const keyB64 = vkey.slice(second + 1);
  checkKeyName(name);
  if (!/^[0-9a-fA-F]{8}$/.test(idHex)) throw new Error(`verifier key ID ${describe(idHex)} is not 8 hex digits`);
  const key = decodeBase64Strict(keyB64);
  if (key === null) throw new Error('verifier key material is not canonical base64');
  if (key.length !== 1 + ED25519_KEY_BYTES || key[0] !== ED25519_SIG_TYPE) {
    throw new Error('verifier key is not an Ed25519 (type 0x01) key');
  }
  const publicKeyRaw = key.subarray(1);
  if (!noteKeyId(name, publicKeyRaw).equals(Buffer.from(idHex, 'hex'))) throw new Error('verifier key ID does not match its name and key');
  return { name, publicKeyRaw };
}

function checkSigningKey(privateKey: unknown): asserts privateKey is KeyObject {
  if (!(privateKey instanceof KeyObject) || privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') {
    throw new Error('signing key must be an Ed25519 private KeyObject');
  }
}

function rawPublicKeyOf(privateKey: KeyObject): Buffer {
  return createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(-ED25519_KEY_BYTES);
}

// ---------------------------------------------------------------------------------------------
// Signed notes

export interface ParsedSignature {
  name: string;
  keyId: Buffer;
  sig: Buffer;
  line: string; // without its newline
}

function checkNoteText(text: unknown): asserts text is string {
  checkNoteChars(text, 'note text');
  if (!text.endsWith('\n')) throw new Error('note text must end with a newline');
}

/** Split a signed note into its text and signature lines. Checks syntax only, no signatures. */
export function splitNote(note: unknown): { text: string; sigs: ParsedSignature[] } {
  checkNoteChars(note, 'note');
  if (!note.endsWith('\n')) throw new Error('malformed note: it must end with a newline');
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new Error('malformed note: no blank line separates the text from the signatures');
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (block === '') throw new Error('malformed note: it has no signature lines');
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) throw new Error(`malformed note: more than ${MAX_SIGNATURES} signature lines`);
  const sigs = lines.map((line, i): ParsedSignature => {
    const where = `signature line ${i + 1}`;
    if (!line.startsWith(SIG_PREFIX)) throw new Error(`malformed note: ${where} does not start with an em dash and a space`);
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.indexOf(' ');
    if (space < 0) throw new Error(`malformed note: ${where} has no space between key name and signature`);
    const name = rest.slice(0, space);
    if (!isValidKeyName(name)) throw new Error(`malformed note: ${where} has an invalid key name ${describe(name)}`);
    const raw = decodeBase64Strict(rest.slice(space + 1));
    if (raw === null) throw new Error(`malformed note: ${where} signature is not canonical base64`);
    if (raw.length < 5) throw new Error(`malformed note: ${where} signature is too short`);
    return { name, keyId: raw.subarray(0, 4), sig: raw.subarray(4), line };
  });
  return { text, sigs };
}

function signatureLine(text: string, name: string, privateKey: KeyObject): { line: string; keyId: Buffer } {
  checkKeyName(name);
  checkSigningKey(privateKey);
  const keyId = noteKeyId(name, rawPublicKeyOf(privateKey));
  const sig = sign(null, Buffer.from(text, 'utf8'), privateKey);
  return { line: `${SIG_PREFIX}${name} ${Buffer.concat([keyId, sig]).toString('base64')}`, keyId };
}

function assemble(text: string, lines: string[]): string {
  if (lines.length > MAX_SIGNATURES) throw new Error(`a note may carry at most ${MAX_SIGNATURES} signatures`);
  const note = `${text}\n${lines.map((l) => `${l}\n`).join('')}`;
  if (Buffer.byteLength(note, 'utf8') > MAX_NOTE_BYTES) throw new Error(`signed note would be larger than ${MAX_NOTE_BYTES} bytes`);
  return note;
}

/** Sign `text` (which must end in a newline) as a signed note with one Ed25519 signature line. */
export function signNote(text: string, name: string, privateKey: KeyObject): string {
  checkNoteText(text);
  return assemble(text, [signatureLine(text, name, privateKey).line]);
}

/**
 * Add a signature (e.g. a cosigner's) to a signed note. Existing signatures are kept as they are,
 * unverified; an existing signature by the same key (name and key ID) is replaced.
 */
export function addSignature(note: string, name: string, privateKey: KeyObject): string {
  const { text, sigs } = splitNote(note);
  const { line, keyId } = signatureLine(text, name, privateKey);
  const kept = sigs.filter((s) => !(s.name === name && s.keyId.equals(keyId))).map((s) => s.line);
  return assemble(text, [...kept, line]);
}

/**
 * Verify a signed note against trusted keys. Signatures by unknown keys (name and key ID not both
 * matching a verifier) are ignored; a signature by a known key that fails to verify is an error;
 * at least one known key must have signed. Throws on malformed notes or verifier lists.
 */
export function openNote(note: string, verifiers: NoteVerifier[]): VerifiedNote {
  if (!Array.isArray(verifiers)) throw new Error('verifiers must be an array');
  if (verifiers.length > 1000) throw new Error('too many verifiers');
  const known = new Map<string, { raw: Buffer; key: KeyObject | null }>();
  const ambiguous = new Set<string>();
  for (const v of verifiers) {
    if (typeof v !== 'object' || v === null) throw new Error('each verifier must be { name, publicKeyRaw }');
    checkKeyName(v.name);
    checkPublicKeyRaw(v.publicKeyRaw);
    const id = `${v.name}+${noteKeyId(v.name, v.publicKeyRaw).toString('hex')}`;
    const raw = Buffer.from(v.publicKeyRaw);
    const prev = known.get(id);
    if (prev === undefined) known.set(id, { raw, key: null });
    else if (!prev.raw.equals(raw)) ambiguous.add(id);
  }

  const { text, sigs } = splitNote(note);
  const body = Buffer.from(text, 'utf8');
  const signers: string[] = [];
  for (const s of sigs) {
    const id = `${s.name}+${s.keyId.toString('hex')}`;
    const entry = known.get(id);
    if (entry === undefined) continue; // unknown key: ignored, as the spec requires
    if (ambiguous.has(id)) throw new Error(`ambiguous verifier key ${id}: two different public keys share this name and key ID`);
    if (s.sig.length !== ED25519_SIG_BYTES) throw new Error(`invalid signature for key ${id}: not ${ED25519_SIG_BYTES} bytes`);
    let ok = false;
    try {
      entry.key ??= createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, entry.raw]), format: 'der', type: 'spki' });
      ok = verify(null, body, entry.key, s.sig);
    } catch {
      ok = false;
    }
    if (!ok) throw new Error(`invalid signature for key ${id}`);
    if (!signers.includes(s.name)) signers.push(s.name);
  }
  if (signers.length === 0) throw new Error(`note has no verifiable signature: none of its ${sigs.length} signatures is by a known key`);
  return { text, signers };
}

// ---------------------------------------------------------------------------------------------
// Convenience: checkpoints as signed notes

export function signCheckpoint(c: Checkpoint, name: string, privateKey: KeyObject): string {
  return signNote(formatCheckpoint(c), name, privateKey);
}

/** openNote + parseCheckpoint; with `origin`, also insists that the checkpoint is from that log. */
export function openCheckpoint(note: string, verifiers: NoteVerifier[], origin?: string): { checkpoint: Checkpoint; signers: string[] } {
  const { text, signers } = openNote(note, verifiers);
  const checkpoint = parseCheckpoint(text);
  if (origin !== undefined && checkpoint.origin !== origin) {
    throw new Error(`checkpoint origin ${describe(checkpoint.origin)} is not the expected ${describe(origin)}`);
  }
  return { checkpoint, signers };
}
