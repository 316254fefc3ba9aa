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
  nonce?: string;
  ts?: string;
}

export function signCommand(
  privateKey: KeyObject,
  type: CommandType,
  body: { [k: string]: Json },
  opts: SignOptions = {},
): SignedCommand {
  const actor: IdentityId = identityIdFromPublicKey(publicKeyRaw(privateKey));
  const command: Command = {
    v: 1,
    type,
    actor,
    nonce: opts.nonce ?? newNonce(),
    ts: opts.ts ?? new Date().toISOString(),
    body,
  };
  return { command, sig: sign(null, commandSigningBytes(command), privateKey).toString('base64') };
}

export function verifyCommandSignature(signed: SignedCommand, publicKey: KeyObject): boolean {
  try {
    const sig = Buffer.from(signed.sig, 'base64');
    if (sig.length !== 64) return false;
    return verify(null, commandSigningBytes(signed.command), publicKey, sig);
  } catch {
    return false;
  }
}
