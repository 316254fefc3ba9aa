import { deny, pass, type Gate, type GateContext } from '../gate.ts';
import type { GateResult } from '../../types.ts';

// Mail is attributed to an identity of the IMVU it claims to come from. Submission logs in with an
// app password (mail.password.set, bound to the identity that set it); the envelope sender and the
// From header must be mailboxes of that identity's IMVU. The check runs in the submission server
// for every message (src/mail/smtp/submission.ts); a message that fails it is refused with 550 and
// recorded as a `mail.send` signed by the `mail` service on the user's behalf, which this gate
// denies by the same rule, so the refusal is in the log with its reason and replays identically.
// Accepted messages are metered (mail.messages), not logged one by one.

const MAIL_SERVICE = 'mail';

async function isMailbox(ctx: GateContext, imvu: string, address: string): Promise<boolean> {
  return !!(await ctx.db.get('SELECT 1 AS x FROM mailboxes WHERE address = ? AND imvu = ?', [address.toLowerCase(), imvu]));
}

/** Why a send by `identity`, logged in as `login`, with these senders, is not attributable to `imvu`; undefined when it is. */
export async function attributionProblem(ctx: GateContext, imvu: string, identity: string, login: string, senders: string[]): Promise<string | undefined> {
  const pw = await ctx.db.get<{ imvu: string; identity: string }>('SELECT imvu, identity FROM mail_passwords WHERE address = ?', [login]);
  if (!pw || pw.imvu !== imvu || pw.identity !== identity) return `${login} has no app password of ${identity} in ${imvu}`;
  for (const s of senders) if (!(await isMailbox(ctx, imvu, s))) return `sender ${JSON.stringify(s.slice(0, 320))} is not a mailbox of ${imvu}, the IMVU of ${identity}`;
  return undefined;
}

export const gate: Gate = {
  number: 5,
  name: 'Mail Attribution',
  enforcedIn: 'src/mail/smtp/submission.ts (AUTH with an app password bound to an identity; envelope sender and From must be mailboxes of its IMVU) and this gate (mail.send, the refused attempts)',
  guards: ['mailbox.add', 'mailbox.remove', 'mail.password.set', 'mail.password.revoke', 'mail.send', 'mail.refusals'],
  status: 'enforced',
  async check(ctx): Promise<GateResult> {
    const b = ctx.body;
    const imvu = ctx.imvu?.id ?? String(b.imvu);
    switch (ctx.command.type) {
      case 'mail.send': {
        if (ctx.actor?.role !== 'service' || ctx.actor.name !== MAIL_SERVICE) return deny(5, `mail.send is recorded by the ${MAIL_SERVICE} service only`);
        const senders = [String(b.mailFrom), ...((b.from as string[] | undefined) ?? [])];
        const problem = await attributionProblem(ctx, imvu, String(b.identity), String(b.login), senders);
        return problem ? deny(5, problem) : pass(5, `${String(b.login)} sends as a mailbox of ${imvu}`);
      }
      case 'mail.refusals':
        // The IMAP server's count of what it refused this IMVU's logins: only the mail service says so.
        if (ctx.actor?.role !== 'service' || ctx.actor.name !== MAIL_SERVICE) return deny(5, `mail.refusals is recorded by the ${MAIL_SERVICE} service only`);
        return pass(5, `refusals of ${imvu}'s logins counted by the ${MAIL_SERVICE} service`);
      case 'mail.password.set':
        return pass(5, `${String(b.address)} logs in as ${ctx.actor?.name ?? ctx.command.actor} of ${imvu}`);
      default:
        // A mailbox is bound to its IMVU by the domain it is at (preconditions: a domain of the IMVU).
        return pass(5, `${String(b.address ?? '')} belongs to ${imvu}`);
    }
  },
};
