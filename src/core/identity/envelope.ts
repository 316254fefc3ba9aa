import { randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { canonicalBytes } from '../ledger/canonical.ts';
import type { Command, CommandType, IdentityId, Json, SignedCommand } from '../types.ts';
import { identityIdFromPublicKey, publicKeyRaw } from './keys.ts';

// Domain separation: a command signature can never be mistaken for a signature on anything else.
const COMMAND_CONTEXT = Buffer.from('nexus-command-v1\n', 'utf8');

export function commandSigningBytes(command: Command): Buffer {
  return Buffer.concat([COMMAND_CONTEXT, canonicalBytes(command)]);
}

export function newNonce(): string {
  return randomBytes(16).toString('base64url');
}

export interface SignOptions {
  /** The platform's log origin (GET /v1/platform): part of the signed bytes, so the command is valid there only. */
  origin: string;
  nonce?: string;
  ts?: string;
  /**
   * The signing identity. Default: the id of the key (self-certifying). After a rotation the id
   * stays that of the identity's first key while a later key signs, so it must be given.
   */
  actor?: IdentityId;
}

/** The one accepted spelling of a signature: 64 bytes in standard base64 with padding. */
export const SIGNATURE_RE = /^[A-Za-z0-9+/]{86}==$/;

/** True when `sig` is the canonical base64 of 64 bytes (no other alphabet, no missing padding, no stray bits). */
export function isCanonicalSignature(sig: unknown): sig is string {
  return typeof sig === 'string' && SIGNATURE_RE.test(sig) && Buffer.from(sig, 'base64').toString('base64') === sig;
}

export function signCommand(
  privateKey: KeyObject,
  type: CommandType,
  body: { [k: string]: Json },
  opts: SignOptions,
): SignedCommand {
  const actor: IdentityId = opts.actor ?? identityIdFromPublicKey(publicKeyRaw(privateKey));
  const command: Command = {
    v: 1,
    type,
    actor,
    origin: opts.origin,
    nonce: opts.nonce ?? newNonce(),
    ts: opts.ts ?? new Date().toISOString(),
    body,
  };
  return { command, sig: sign(null, commandSigningBytes(command), privateKey).toString('base64') };
}

/** commandSigningBytes() of a command whose canonical JSON is already at hand. */
export function signingBytesOfJson(commandJson: string): Buffer {
  return Buffer.concat([COMMAND_CONTEXT, Buffer.from(commandJson, 'utf8')]);
}

/** `message`, when given, must be commandSigningBytes(signed.command) (computed by the caller once). */
export function verifyCommandSignature(signed: SignedCommand, publicKey: KeyObject, message?: Buffer): boolean {
  try {
    if (!isCanonicalSignature(signed.sig)) return false;
    const sig = Buffer.from(signed.sig, 'base64');
    return verify(null, message ?? commandSigningBytes(signed.command), publicKey, sig);
  } catch {
    return false;
  }
}
