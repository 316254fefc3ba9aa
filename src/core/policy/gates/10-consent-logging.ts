import { deny, pass, type Gate } from '../gate.ts';

// Consent is the subject's own act: only the subject's signature can record it, so nobody
// (creator, admin or platform) can manufacture consent on someone else's behalf.
export const gate: Gate = {
  number: 10,
  name: 'Consent Logging',
  enforcedIn: 'src/core/policy/gates/10-consent-logging.ts (append-only consents, signed by the subject)',
  guards: ['consent.record'],
  status: 'enforced',
  async check(ctx) {
    if (!ctx.imvu) return deny(10, `unknown IMVU ${String(ctx.body.imvu)}`);
    if (ctx.body.subject !== ctx.actor?.id) return deny(10, 'consent can only be recorded by its subject');
    return pass(10, `consent of ${ctx.actor?.name} for '${String(ctx.body.purpose)}' appended`);
  },
};
