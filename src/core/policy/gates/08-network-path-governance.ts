import { notYetEnforced } from '../gate.ts';

export const gate = notYetEnforced(
  8,
  'Network Path Governance',
  ['route.set'],
  'src/network (gateway accepts only the route table the ledger holds)',
  'the HTTP gateway that routes by the recorded policy is not built yet',
);
