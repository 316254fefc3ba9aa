import { notYetEnforced } from '../gate.ts';

export const gate = notYetEnforced(
  2,
  'IMVU Isolation (Compute/Network)',
  ['imvu.create', 'imvu.scale'],
  'src/compute (namespaces per IMVU)',
  'the compute sandbox (namespaces, per-IMVU uid) is not built yet',
);
