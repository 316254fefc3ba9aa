import { deny, pass, type Gate } from '../gate.ts';
import { JURISDICTIONS } from '../commands.ts';

export const gate: Gate = {
  number: 9,
  name: 'Jurisdiction Tagging',
  enforcedIn: 'src/core/policy/gates/09-jurisdiction-tagging.ts (IMVU registry jurisdiction field)',
  guards: ['imvu.create', 'imvu.import'],
  status: 'enforced',
  async check(ctx) {
    const j = String(ctx.body.jurisdiction);
    if (!(JURISDICTIONS as readonly string[]).includes(j))
      return deny(9, `unknown jurisdiction '${j}'; known: ${JURISDICTIONS.join(', ')}`);
    return pass(9, `jurisdiction ${j}`);
  },
};
