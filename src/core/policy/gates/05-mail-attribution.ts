import { notYetEnforced } from '../gate.ts';

export const gate = notYetEnforced(
  5,
  'Mail Attribution',
  ['mailbox.add', 'mailbox.remove', 'dkim.publish'],
  'src/mail (submission AUTH bound to an identity, DKIM signing per IMVU)',
  'the mail system (SMTP submission with identity-bound AUTH and DKIM signing) is not built yet',
);
