import { deny, pass, type Gate } from '../gate.ts';
import type { CommandType } from '../../types.ts';
import { checkPlatformPower } from './platform-powers.ts';

const PLATFORM_ONLY: readonly CommandType[] = [
  'pricebook.publish',
  'plan.publish',
  'notify.creator',
  'dkim.publish',
  'dkim.activate',
  'dkim.remove',
  'dnssec.publish',
  'dnssec.activate',
  'dnssec.remove',
  'dnssec.resign',
  'meter.register',
  'capacity.publish',
  'period.close',
  'noise.summary',
  'gateway.refusals',
  'platform.zone',
  'integrity.alarm',
  'ledger.snapshot',
  'acme.challenge',
  'certificate.issued',
  'platform.peer',
];

// Every entry is signed by the platform key (the chokepoint does it); commands only the
// platform may originate are refused from anyone else, so the platform can never disown them.
// What the platform may sign about an IMVU is an enumerated list (platform-powers.ts).
export const gate: Gate = {
  number: 17,
  name: 'Platform Non-Repudiation',
  enforcedIn:
    'src/core/policy/chokepoint.ts (the checkpoint of every commit and every platform-originated command signed by the platform key) + gates/17-platform-non-repudiation.ts + gates/platform-powers.ts (the platform\'s enumerated powers over an IMVU)',
  guards: 'all',
  status: 'enforced',
  async check(ctx) {
    if (ctx.command.type === 'platform.genesis') {
      if (ctx.index !== 0 || ctx.platform) return deny(17, 'the platform identity is declared once, as entry 0');
      return pass(17, 'platform key declared');
    }
    if (!ctx.platform) return deny(17, 'the ledger has no platform genesis entry');
    if (PLATFORM_ONLY.includes(ctx.command.type) && ctx.actor?.role !== 'platform')
      return deny(17, `${ctx.command.type} is originated by the platform only`);
    // A signed snapshot names the state the log is in just before it: its own index is its size
    // (its digest is checked by every verifier's replay, src/core/policy/verify.ts).
    if (ctx.command.type === 'ledger.snapshot' && Number((ctx.command.body as { size?: unknown }).size) !== ctx.index)
      return deny(17, `a ledger.snapshot records the state at its own index (${ctx.index}), not at ${String((ctx.command.body as { size?: unknown }).size)}`);
    if (ctx.actor?.role === 'platform') {
      const power = await checkPlatformPower(ctx);
      if (power) return power;
    }
    return pass(17, `entry signed by platform key ${ctx.platform.id}`);
  },
};
