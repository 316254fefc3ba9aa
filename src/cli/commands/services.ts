import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import type { Json } from '../../core/types.ts';
import { collect, imvuId, text } from '../args.ts';
import { DOMAIN_RE } from '../../core/policy/vocabulary.ts';
import { Ctx, receiptLine } from '../context.ts';
import { usage } from '../errors.ts';
import { table } from '../format.ts';
import { fetchImvu, listOf } from './imvu.ts';
import { ApiError } from '../client.ts';
import { consentPseudonym, type Pseudonym } from '../pseudonym.ts';
import { addMailExportCommand } from './mail-export.ts';

// --- mail ---------------------------------------------------------------------------------------

export function mailCommand(): Command {
  const mail = new Command('mail').description('mail of IMVUs');
  const mailbox = mail.command('mailbox').description('mailboxes');

  const address = async (ctx: Ctx, id: string, a: string) => {
    const addr = a.includes('@') ? a.toLowerCase() : `${a.toLowerCase()}@${(await fetchImvu(ctx, id)).domain}`;
    const at = addr.lastIndexOf('@');
    // What the schema takes: a dot-atom local part (no spaces, no empty parts) at a domain name.
    if (at <= 0 || at > 64 || !/^[a-z0-9_+-]+(\.[a-z0-9_+-]+)*$/.test(addr.slice(0, at)) || !DOMAIN_RE.test(addr.slice(at + 1)))
      throw usage(`'${a}' is not a mailbox address such as info or info@example.world (a-z, 0-9, _, + and - in dot-separated parts; no spaces)`);
    return addr;
  };

  mailbox
    .command('add')
    .description('add a mailbox (by the IMVU creator or a member)')
    .argument('<imvu>', 'IMVU id', imvuId)
    .argument('<address>', 'address on a domain of the IMVU (a bare local part uses its primary domain)')
    .action(async (id: string, a: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const addr = await address(ctx, id, a);
      const signer = await ctx.signerLazy(async () => (await fetchImvu(ctx, id)).owner.id, 'mail mailbox add');
      const s = await ctx.submit('POST', `/v1/imvus/${id}/mailboxes`, 'mailbox.add', { imvu: id, address: addr }, signer);
      ctx.print({ imvu: id, address: addr, index: s.receipt.index }, () => [`✅ Mailbox ${addr} added to ${id}`, `✅ ${receiptLine(s)}`]);
    });

  mailbox
    .command('list')
    .alias('ls')
    .description("list an IMVU's mailboxes")
    .argument('<imvu>', 'IMVU id', imvuId)
    .action(async (id: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const list = listOf<string | { address: string }>(await ctx.get(`/v1/imvus/${id}/mailboxes`), 'mailboxes').map((m) => (typeof m === 'string' ? m : m.address));
      ctx.print(list, () => (list.length ? list : `${id} has no mailboxes`));
    });

  mailbox
    .command('rm')
    .alias('remove')
    .description('remove a mailbox (only the IMVU creator)')
    .argument('<imvu>', 'IMVU id', imvuId)
    .argument('<address>', 'address')
    .action(async (id: string, a: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const addr = await address(ctx, id, a);
      const signer = await ctx.signerLazy(async () => (await fetchImvu(ctx, id)).owner.id, 'mail mailbox rm');
      const s = await ctx.submit('DELETE', `/v1/imvus/${id}/mailboxes`, 'mailbox.remove', { imvu: id, address: addr }, signer);
      ctx.print({ imvu: id, address: addr, index: s.receipt.index }, () => [`✅ Mailbox ${addr} removed from ${id}`, `✅ ${receiptLine(s)}`]);
    });
  mail
    .command('password')
    .description("set the app password a mailbox logs in with (SMTP submission, IMAP): hashed here with scrypt, only the hash is signed and sent; it logs in as the identity that signs")
    .argument('<imvu>', 'IMVU id', imvuId)
    .argument('<address>', 'mailbox address (a bare local part uses the primary domain)')
    .option('--stdin', 'read the password from the first line of standard input instead of prompting')
    .option('--revoke', 'remove the mailbox\'s app password instead')
    .addHelpText('after', '\nExamples:\n  nexus mail password IMVU-001 info\n  printf %s "$PW" | nexus mail password IMVU-001 info@example.world --stdin\n  nexus mail password IMVU-001 info --revoke')
    .action(async (id: string, a: string, o: { stdin?: boolean; revoke?: boolean }, c: Command) => {
      const ctx = Ctx.of(c);
      const addr = await address(ctx, id, a);
      const signer = await ctx.signerLazy(async () => (await fetchImvu(ctx, id)).owner.id, 'mail password');
      if (o.revoke) {
        const s = await ctx.submit('POST', '/v1/commands', 'mail.password.revoke', { imvu: id, address: addr }, signer);
        ctx.print({ imvu: id, address: addr, index: s.receipt.index }, () => [`✅ App password of ${addr} revoked`, `✅ ${receiptLine(s)}`]);
        return;
      }
      const password = o.stdin ? await firstLine(process.stdin) : await promptHidden(`App password for ${addr}: `);
      if (!password) throw usage('the password is empty');
      const { hashAppPassword } = await import('../../mail/auth/app-password.ts');
      const hash = await hashAppPassword(password);
      const s = await ctx.submit('POST', '/v1/commands', 'mail.password.set', { imvu: id, address: addr, hash }, signer);
      ctx.print({ imvu: id, address: addr, index: s.receipt.index }, () => [`✅ App password of ${addr} set (only its scrypt hash is recorded)`, `✅ ${receiptLine(s)}`]);
    });
  const dkim = mail.command('dkim').description("the IMVU's DKIM signing key");
  dkim
    .command('rotate')
    .description(
      'start a DKIM key rotation (by the IMVU creator or a member): the platform publishes a new selector beside the active one at once, ' +
        'signs with it once its record TTL has passed (1 h), and removes the old selector 7 days after that; both stay published during the overlap, ' +
        'each step is a platform entry the gates time and a notice to the creator',
    )
    .argument('<imvu>', 'IMVU id', imvuId)
    .addHelpText('after', '\nExamples:\n  nexus mail dkim rotate IMVU-001\n  nexus mail dkim rotate IMVU-001 --as member1')
    .action(async (id: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const signer = await ctx.signerLazy(async () => (await fetchImvu(ctx, id)).owner.id, 'mail dkim rotate');
      const s = await ctx.submit('POST', '/v1/commands', 'dkim.rotate', { imvu: id }, signer);
      const published = s.receipt.followUps?.find((f) => f.allowed);
      ctx.print({ imvu: id, index: s.receipt.index, ...(published ? { published: published.index } : {}) }, () => [
        `✅ DKIM rotation of ${id} started: the next selector is published beside the active one${published ? ` (entry ${published.index})` : ''}`,
        '   it signs from one hour later; the old selector stays published 7 days after that, then is removed',
        `✅ ${receiptLine(s)}`,
      ]);
    });
  addMailExportCommand(mail);
  return mail;
}

async function firstLine(input: NodeJS.ReadableStream): Promise<string> {
  let buf = '';
  for await (const chunk of input) {
    buf += String(chunk);
    if (buf.includes('\n') || buf.length > 4096) break;
  }
  return buf.split(/\r?\n/)[0]!.slice(0, 1024);
}

/** Reads a line from the terminal without echoing it. */
async function promptHidden(question: string): Promise<string> {
  if (!process.stdin.isTTY) throw usage('no terminal to prompt on: pass the password with --stdin');
  process.stderr.write(question);
  const stdin = process.stdin;
  stdin.setRawMode(true);
  stdin.resume();
  return new Promise((resolve, reject) => {
    let s = '';
    const onData = (d: Buffer) => {
      for (const ch of d.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done(undefined, s);
        if (ch === '\u0003') return done(usage('cancelled'));
        if (ch === '\u007f') s = s.slice(0, -1);
        else s += ch;
      }
    };
    const done = (err: Error | undefined, v?: string) => {
      stdin.removeListener('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(v!);
    };
    stdin.on('data', onData);
  });
}

// --- routes -------------------------------------------------------------------------------------

type Policy = { public: Json[]; private: Json[]; restricted: Json[] };
const CLASSES = ['public', 'private', 'restricted'] as const;

async function parsePolicy(raw: unknown, where: string): Promise<Policy> {
  const { TrafficPolicy, formatZodError } = await import('../../core/policy/commands.ts');
  // Accept the policy itself, or the spec's document shape { imvu_id, routes: { public, private, restricted } }.
  const candidate = raw && typeof raw === 'object' && 'routes' in raw ? (raw as { routes: unknown }).routes : raw;
  const filled = candidate && typeof candidate === 'object' && !Array.isArray(candidate) ? { public: [], private: [], restricted: [], ...candidate } : candidate;
  const r = TrafficPolicy.safeParse(filled);
  if (!r.success) throw usage(`${where} is not a traffic policy: ${formatZodError(r.error)}`);
  return r.data as unknown as Policy;
}

function pathBackend(spec: string, cls: string): { path: string; backend: string } {
  const i = spec.indexOf('=');
  if (i <= 0 || i === spec.length - 1) throw usage(`--${cls} expects PATH=BACKEND (e.g. '/*=public-api'), got '${spec}'`);
  return { path: spec.slice(0, i), backend: spec.slice(i + 1) };
}

function routeLines(p: Policy | null): string[] {
  if (!p) return ['no routes'];
  const rows: string[][] = [];
  for (const cls of CLASSES) {
    for (const r of p[cls] as { path: string; backend: string; require_identity?: boolean; require_roles?: string[] }[]) {
      rows.push([cls, r.path, r.backend, r.require_roles?.length ? `roles: ${r.require_roles.join(',')}` : r.require_identity ? 'signed identity' : '']);
    }
  }
  return rows.length ? [table(['CLASS', 'PATH', 'BACKEND', 'REQUIRES'], rows)] : ['no routes'];
}

export function routeCommand(): Command {
  const route = new Command('route').description('Nexus-Net traffic policy of IMVUs (public / private / restricted routes)');

  route
    .command('set')
    .description('set the traffic policy of an IMVU from a file, or from flags (classes not named by a flag are kept)')
    .argument('<imvu>', 'IMVU id', imvuId)
    .option('--file <policy.json>', 'JSON: { public: [...], private: [...], restricted: [...] } (or { routes: {...} })')
    .option('--policy <routing-policy.yaml>', 'YAML as in the spec: public_routes, private_routes, restricted_routes (path, backend NAME:PORT, rate_limit N/min, require_identity, require_roles, ip_whitelist)')
    .option('--public <path=backend>', 'a public route (repeatable)', collect)
    .option('--private <path=backend>', 'a private route, needs a signed identity (repeatable)', collect)
    .option('--restricted <path=backend>', 'a restricted route, needs a role (repeatable)', collect)
    .option('--roles <roles>', 'roles for the --restricted routes, comma-separated', 'admin')
    .action(async (id: string, o: { file?: string; policy?: string; public?: string[]; private?: string[]; restricted?: string[]; roles: string }, c: Command) => {
      const ctx = Ctx.of(c);
      const flagged = CLASSES.filter((k) => o[k]?.length);
      if (!o.file && !o.policy && !flagged.length) throw usage('route set needs --policy routing-policy.yaml, --file POLICY.json or at least one of --public, --private, --restricted');
      if ([o.file, o.policy, flagged.length ? 'flags' : undefined].filter(Boolean).length > 1) throw usage('give one of --policy, --file or route flags');
      let policy: Policy;
      if (o.policy) {
        let text: string;
        try {
          text = readFileSync(o.policy, 'utf8');
        } catch (err) {
          throw usage(`cannot read ${o.policy}: ${(err as Error).message.split('\n')[0]}`);
        }
        const { policyFromYaml } = await import('../../network/routes/yaml.ts');
        try {
          policy = policyFromYaml(text) as unknown as Policy;
        } catch (err) {
          throw usage(`${o.policy}: ${(err as Error).message}`);
        }
      } else if (o.file) {
        let raw: unknown;
        try {
          raw = JSON.parse(readFileSync(o.file, 'utf8'));
        } catch (err) {
          throw usage(`cannot read ${o.file}: ${(err as Error).message.split('\n')[0]}`);
        }
        policy = await parsePolicy(raw, o.file);
      } else {
        const current = (await ctx.get<Json>(`/v1/imvus/${id}/routes`).catch(() => null)) as unknown;
        const base = current && typeof current === 'object' ? await parsePolicy((current as { routes?: unknown }).routes ?? current, 'the current policy') : { public: [], private: [], restricted: [] };
        const roles = o.roles.split(',').map((r) => r.trim()).filter(Boolean);
        policy = { ...base };
        if (o.public?.length) policy.public = o.public.map((s) => pathBackend(s, 'public'));
        if (o.private?.length) policy.private = o.private.map((s) => ({ ...pathBackend(s, 'private'), require_identity: true }));
        if (o.restricted?.length) policy.restricted = o.restricted.map((s) => ({ ...pathBackend(s, 'restricted'), require_identity: true, require_roles: roles }));
        policy = await parsePolicy(policy, 'the routes given');
      }
      const signer = await ctx.signerLazy(async () => (await fetchImvu(ctx, id)).owner.id, 'route set');
      const s = await ctx.submit('PUT', `/v1/imvus/${id}/routes`, 'route.set', { imvu: id, policy: policy as unknown as Json }, signer);
      ctx.print({ imvu: id, policy, index: s.receipt.index }, () => [`✅ Traffic policy of ${id} set`, ...routeLines(policy), `✅ ${receiptLine(s)}`]);
    });

  route
    .command('list')
    .alias('ls')
    .description("list an IMVU's routes")
    .argument('<imvu>', 'IMVU id', imvuId)
    .action(async (id: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const res = await ctx.get<unknown>(`/v1/imvus/${id}/routes`);
      const raw = res && typeof res === 'object' && 'routes' in res ? (res as { routes: unknown }).routes : res;
      const policy = raw ? await parsePolicy(raw, 'the daemon') : null;
      ctx.print(policy, () => routeLines(policy));
    });
  return route;
}

// --- consent ------------------------------------------------------------------------------------

interface ConsentRow {
  entry?: number;
  subject: string;
  imvu: string;
  purpose: string;
  granted: boolean | number;
  at: string;
}

/** Whether the daemon knows an identity (a public key-directory lookup, unsigned). */
async function registered(ctx: Ctx, id: string): Promise<boolean> {
  try {
    await ctx.client.get(`/v1/identities/${id}`);
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return false;
    throw err;
  }
}

export function consentCommand(): Command {
  const consent = new Command('consent').description('consent records (only the subject can record its own consent, under a pseudonym per IMVU)');

  consent
    .command('record')
    .description('record your consent (granted or revoked) for a purpose of an IMVU, signed by your pseudonym for that IMVU (derived from your key)')
    .requiredOption('--imvu <id>', 'IMVU id', imvuId)
    .requiredOption('--purpose <purpose>', 'what the consent is for, e.g. marketing-email (at most 200 characters)', text(200))
    .addOption(new Option('--granted', 'consent is given').conflicts('revoked'))
    .addOption(new Option('--revoked', 'consent is withdrawn').conflicts('granted'))
    .action(async (o: { imvu: string; purpose: string; granted?: boolean; revoked?: boolean }, c: Command) => {
      const ctx = Ctx.of(c);
      if (!o.granted && !o.revoked) throw usage('consent record needs --granted or --revoked');
      const subject = ctx.signer([], 'consent record');
      const { platform } = await ctx.connect();
      const p: Pseudonym = consentPseudonym(subject.key, platform.origin, o.imvu);
      const signer = { name: p.name, id: p.id, key: p.key };
      // The pseudonym registers itself (self-signed, role member) the first time it is used; the
      // subject's own identity signs nothing here, so nothing in the ledger links the two.
      if (!(await registered(ctx, p.id))) await ctx.submit('POST', '/v1/identities', 'identity.register', { name: p.name, role: 'member', publicKey: p.publicKey }, signer);
      const body = { imvu: o.imvu, subject: p.id, purpose: o.purpose, granted: !!o.granted };
      const s = await ctx.submit('POST', '/v1/consents', 'consent.record', body, signer);
      ctx.home.rememberConsent(subject.name, platform.origin, o.imvu);
      ctx.print({ ...body, index: s.receipt.index, pseudonymOf: subject.name }, () => [
        `✅ ${subject.name} ${o.granted ? 'granted' : 'revoked'} consent for '${o.purpose}' in ${o.imvu}, as its pseudonym ${p.id} for ${o.imvu}`,
        `✅ ${receiptLine(s)}`,
      ]);
    });

  consent
    .command('list')
    .alias('ls')
    .description('consent history of a subject (yours: found through your pseudonyms) and/or an IMVU (its creator, members, admins)')
    .option('--subject <identity>', 'subject: a local identity (its pseudonyms), or a name or id')
    .option('--imvu <id>', 'IMVU id', imvuId)
    .action(async (o: { subject?: string; imvu?: string }, c: Command) => {
      const ctx = Ctx.of(c);
      if (!o.subject && !o.imvu) throw usage('consent list needs --subject or --imvu');
      let rows: ConsentRow[] = [];
      const local = o.subject ? ctx.home.localName(o.subject) : undefined;
      if (local) {
        // One's own history: the pseudonym of each IMVU reads its own consents.
        const me = ctx.home.signer(local);
        const { platform } = await ctx.connect();
        const imvus = o.imvu ? [o.imvu] : ctx.home.consentImvus(local, platform.origin);
        for (const imvu of imvus) {
          const p = consentPseudonym(me.key, platform.origin, imvu);
          try {
            rows.push(...listOf<ConsentRow>(await ctx.get('/v1/consents', { subject: p.id, imvu }, { as: { name: p.name, id: p.id, key: p.key } }), 'consents'));
          } catch (err) {
            // 401: that pseudonym was never registered, so it never consented to anything.
            if (!(err instanceof ApiError && err.status === 401)) throw err;
          }
        }
      } else {
        const subject = o.subject ? await ctx.identityId(o.subject) : undefined;
        rows = listOf<ConsentRow>(await ctx.get('/v1/consents', { subject, imvu: o.imvu }), 'consents');
      }
      ctx.print(rows, () =>
        rows.length
          ? table(['AT', 'IMVU', 'SUBJECT', 'PURPOSE', 'CONSENT', 'ENTRY'], rows.map((r) => [r.at, r.imvu, local ? `${r.subject} (${local})` : r.subject, r.purpose, r.granted ? 'granted' : 'revoked', r.entry ?? '']))
          : 'no consent records',
      );
    });
  return consent;
}
