import { pass, type Gate } from '../gate.ts';

// The chokepoint appends every command, allowed or denied, before it touches any projection.
export const gate: Gate = {
  number: 11,
  name: 'Audit Logging',
  enforcedIn: 'src/core/policy/chokepoint.ts (every command becomes a ledger entry, allowed or denied)',
  guards: 'all',
  status: 'enforced',
  async check(ctx) {
    return pass(11, `recorded as ledger entry ${ctx.index}`);
  },
};
