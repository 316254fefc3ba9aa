import { notYetEnforced } from '../gate.ts';

export const gate = notYetEnforced(
  12,
  'Immutable Snapshots',
  ['imvu.exit'],
  'src/compute (content-addressed snapshots recorded in the ledger)',
  'compute snapshots are not built yet',
);
