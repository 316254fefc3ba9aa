import { notYetEnforced } from '../gate.ts';

export const gate = notYetEnforced(
  16,
  'No Cross-IMVU Leakage',
  ['imvu.create'],
  'src/compute + src/mail + src/network (per-IMVU uid, namespaces, Maildir permissions)',
  'storage, process and network isolation between IMVUs are not built yet',
);
