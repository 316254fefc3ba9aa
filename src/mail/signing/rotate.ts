// DKIM key rotation as the platform's timed power (gate 17, src/core/policy/gates/platform-powers.ts):
// one call makes the next step that is due, so a scheduler (or `nexus mail dkim rotate`) can call
// it again until the rotation is done.
//   1. publish: a new key (selector nexus<N+1>), private half written durably first, beside the
//      active one; both selectors are in the zone from now on.
//   2. activate, once the new record has been published for its TTL: mail is signed with it, the
//      old selector is retired but stays published, so queued and retried mail still verifies.
//   3. remove the retired selector after its retention; its private key file goes last.
// The gates judge every step against the ledger's own times, so a step called early is refused
// and recorded, never taken.
import { rmSync } from 'node:fs';
import type { OpenPlatform } from '../../core/platform.ts';
import type { Receipt } from '../../core/policy/chokepoint.ts';
import { DKIM_RETIRE_S, DKIM_TTL_S } from '../../core/policy/gates/platform-powers.ts';
import { generateDkimKey, writeSecretFile } from '../../imvu/provision.ts';
import { selectorKeyPath } from './keys.ts';

export type RotationStep =
  | { step: 'published' | 'activated' | 'removed'; selector: string; receipt: Receipt }
  | { step: 'waiting'; selector: string; until: string; what: 'activate' | 'remove' };

type KeyRow = {
  selector: string;
  state: string;
  since: string;
};

const number = (selector: string) => Number(selector.replace(/^nexus/, ''));

/** Takes the next due step of `imvu`'s DKIM rotation (starting one when none is under way). */
export async function dkimRotateStep(platform: Pick<OpenPlatform, 'dataDir' | 'store' | 'chokepoint'>, imvu: string, now = new Date()): Promise<RotationStep> {
  const keys = await platform.store.all<KeyRow>('SELECT selector, state, since FROM dkim_keys WHERE imvu = ? ORDER BY entry', [imvu]);
  const active = keys.find((k) => k.state === 'active');
  if (!active) throw new Error(`${imvu} has no active DKIM key`);
  const submit = (type: 'dkim.publish' | 'dkim.activate' | 'dkim.remove', body: { [k: string]: string }) =>
    platform.chokepoint.submit(platform.chokepoint.platformCommand(type, { imvu, ...body }));
  const retired = keys.find((k) => k.state === 'retired');
  if (retired) {
    const until = new Date(Date.parse(retired.since) + DKIM_RETIRE_S * 1000);
    if (now < until) return { step: 'waiting', selector: retired.selector, until: until.toISOString(), what: 'remove' };
    const receipt = await submit('dkim.remove', { selector: retired.selector });
    if (receipt.allowed) rmSync(selectorKeyPath(platform.dataDir, imvu, retired.selector), { force: true });
    return { step: 'removed', selector: retired.selector, receipt };
  }
  const standby = keys.find((k) => k.state === 'published');
  if (standby) {
    const until = new Date(Date.parse(standby.since) + DKIM_TTL_S * 1000);
    if (now < until) return { step: 'waiting', selector: standby.selector, until: until.toISOString(), what: 'activate' };
    return { step: 'activated', selector: standby.selector, receipt: await submit('dkim.activate', { selector: standby.selector }) };
  }
  const selector = `nexus${number(active.selector) + 1}`;
  const { privateKey, publicKeyDer } = await generateDkimKey();
  // The private half is on disk before the public half is recorded: an activated key can always sign.
  writeSecretFile(selectorKeyPath(platform.dataDir, imvu, selector), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  return { step: 'published', selector, receipt: await submit('dkim.publish', { selector, publicKey: publicKeyDer.toString('base64') }) };
}

/** The IMVUs with a rotation under way: through `dkim_keys_state`, so a pass reads those few rows, not every IMVU's keys. */
export const ROTATIONS_UNDER_WAY = "SELECT DISTINCT imvu FROM dkim_keys WHERE state IN ('published', 'retired') ORDER BY imvu";

/**
 * The scheduler's pass: for every IMVU with a rotation under way (a published standby or a
 * retired selector), the step that is due at `now`, if any. A rotation is started only by
 * `dkim.rotate` (`nexus mail dkim rotate`), never here. Returns what it did.
 */
export async function advanceDkimRotations(platform: Pick<OpenPlatform, 'dataDir' | 'store' | 'chokepoint'>, now = new Date()): Promise<RotationStep[]> {
  const rows = await platform.store.all<{ imvu: string }>(ROTATIONS_UNDER_WAY);
  const out: RotationStep[] = [];
  for (const { imvu } of rows) {
    const step = await dkimRotateStep(platform, imvu, now);
    if (step.step !== 'waiting') out.push(step);
  }
  return out;
}

export interface DkimScheduler {
  /** One pass now (what the timer does); resolves with what it did. */
  tick(): Promise<RotationStep[]>;
  close(): Promise<void>;
}

/** Advances DKIM rotations every `intervalMs` (default 5 min; a step is due an hour or a week after the previous one). */
export function startDkimScheduler(
  platform: Pick<OpenPlatform, 'dataDir' | 'store' | 'chokepoint'>,
  opts: { intervalMs?: number; now?: () => Date; onStep?: (s: RotationStep) => void; onError?: (err: unknown) => void } = {},
): DkimScheduler {
  let running: Promise<RotationStep[]> | undefined;
  const tick = () =>
    (running ??= advanceDkimRotations(platform, opts.now?.() ?? new Date())
      .then((steps) => {
        for (const s of steps) opts.onStep?.(s);
        return steps;
      })
      .catch((err: unknown) => {
        opts.onError?.(err);
        return [];
      })
      .finally(() => (running = undefined)));
  const timer = setInterval(() => void tick(), opts.intervalMs ?? 300_000);
  timer.unref();
  return {
    tick,
    async close() {
      clearInterval(timer);
      await running;
    },
  };
}
