// Certificates by ACME for every IMVU the gateway serves: ordered when an IMVU has none for its
// current names, renewed when fewer than `renewBeforeMs` remain, recorded in the ledger
// (`certificate.issued`) before they are served, and installed in HAProxy over the runtime API
// without a reload. The DNS-01 challenge is answered by our own authoritative DNS: the platform
// publishes `_acme-challenge.<name>` TXT in the IMVU's zone through the chokepoint
// (`acme.challenge`, notified to the creator) and removes it once the CA has validated. With
// `challenge: 'http-01'` the gateway's plain-HTTP listener answers the token instead (HAProxy's
// `acme` map, haproxy-config.ts), for names whose A records point at this gateway.
import { Resolver } from 'node:dns/promises';
import { existsSync, readFileSync } from 'node:fs';
import type { OpenPlatform } from '../../core/platform.ts';
import { isWithin } from '../../core/policy/naming.ts';
import type { TableImvu } from '../gateway/table.ts';
import { AcmeOrderer, certificateFacts, type ChallengeHooks, type ChallengeRecord, type ChallengeType, type HttpChallenge, type Issued } from './order.ts';

/** The `directory` of a `certificate.issued` entry whose certificate the platform's local CA issued. */
export const LOCAL_CA_DIRECTORY = 'urn:nexus:local-ca';

export const DEFAULT_RENEW_BEFORE_MS = 30 * 86_400_000;

export interface AcmeSettings {
  /** The ACME directory URL (Let's Encrypt, or Pebble in tests). */
  directory: string;
  /** Extra CA (PEM text) trusted for the directory's HTTPS. */
  caCert?: string;
  email?: string;
  /** Renew when fewer than this remain of a certificate's validity (default 30 days). */
  renewBeforeMs?: number;
  /** How often certificates are checked for renewal (default 1 hour). */
  checkIntervalMs?: number;
  /** Our authoritative DNS server: a challenge is handed to the CA only once it answers it there. */
  dns?: { address: string; port: number };
  /**
   * How the CA validates (default dns-01, through our DNS). http-01: the gateway's plain-HTTP
   * listener (port 80) answers the token itself; the names must point at this gateway.
   */
  challenge?: ChallengeType;
}

export interface AcmeManagerOptions extends AcmeSettings {
  platform: OpenPlatform;
  accountKeyFile: string;
  /** The file HAProxy serves the IMVU's certificate from. */
  certFile(imvu: string): string;
  /** Writes the certificate and key (one PEM) to that file and hands it to HAProxy. */
  install(imvu: string, pem: string): Promise<void>;
  /** Where HTTP-01 tokens are answered (the gateway's `acme` map), for `challenge: 'http-01'`. */
  http?: ChallengeHooks<HttpChallenge>;
  log?: (line: string) => void;
}

export interface CertificateRow {
  imvu: string;
  names: string;
  serial: string;
  sha256: string;
  not_before: string;
  not_after: string;
  issuer: string;
  /** The ACME directory, or LOCAL_CA_DIRECTORY for the platform's own CA. */
  directory: string;
  entry: number;
  [k: string]: string | number;
}

/** The ledger's certificate of an IMVU (the `certificates` projection). */
export async function ledgerCertificate(platform: OpenPlatform, imvu: string): Promise<CertificateRow | undefined> {
  return platform.store.get<CertificateRow>('SELECT imvu, names, serial, sha256, not_before, not_after, issuer, directory, entry FROM certificates WHERE imvu = ?', [imvu]);
}

/**
 * Removes the DNS-01 challenge records that no order in progress published: a daemon killed
 * mid-order leaves its `acme.challenge` publish without the remove. Through the chokepoint, as the
 * platform (one `acme.challenge` remove per IMVU, notified to its creator like the publish was).
 * `live` holds `name value` of the records of orders in progress in this process. Returns how many
 * records were removed.
 */
export async function removeStaleChallenges(platform: OpenPlatform, live: Set<string> = new Set(), log?: (line: string) => void): Promise<number> {
  const rows = await platform.store.all<{ zone: string; name: string; value: string; imvu: string }>(
    "SELECT r.zone, r.name, r.value, z.imvu FROM records r JOIN zones z ON z.name = r.zone WHERE r.type = 'TXT' AND r.name LIKE '\\_acme-challenge.%' ESCAPE '\\' ORDER BY z.imvu, r.name",
  );
  const byImvu = new Map<string, { zone: string; name: string; value: string }[]>();
  for (const r of rows) {
    if (live.has(`${r.name} ${r.value}`)) continue;
    const list = byImvu.get(r.imvu) ?? [];
    list.push({ zone: r.zone, name: r.name, value: r.value });
    byImvu.set(r.imvu, list);
  }
  let removed = 0;
  for (const [imvu, records] of byImvu)
    for (let i = 0; i < records.length; i += 100) {
      const chunk = records.slice(i, i + 100);
      const r = await platform.chokepoint.submit(platform.chokepoint.platformCommand('acme.challenge', { imvu, action: 'remove', records: chunk }));
      if (!r.allowed) {
        log?.(`acme: stale challenge records of ${imvu} not removed: ${r.gates.filter((g) => g.status === 'deny').map((g) => `gate ${g.gate}: ${g.reason}`).join('; ')}`);
        continue;
      }
      removed += chunk.length;
      log?.(`acme: ${imvu}: removed ${chunk.length} challenge record(s) left by an order that did not finish (${chunk.map((c) => c.name).join(', ')}; entry ${r.index})`);
    }
  return removed;
}

export class AcmeManager {
  renewBeforeMs: number;
  private readonly orderer: AcmeOrderer;
  private readonly failures = new Map<string, { n: number; next: number; why: string }>();
  private running: Promise<void> | undefined;
  private pending: TableImvu[] | undefined;
  /** `name value` of the challenge records of the orders in progress (removeStaleChallenges keeps them). */
  readonly live = new Set<string>();
  /** Orders completed (issued and installed), for status and tests. */
  issued = 0;

  constructor(private readonly o: AcmeManagerOptions) {
    this.renewBeforeMs = o.renewBeforeMs ?? DEFAULT_RENEW_BEFORE_MS;
    this.orderer = new AcmeOrderer({ directory: o.directory, accountKeyFile: o.accountKeyFile, ...(o.caCert ? { caCert: o.caCert } : {}), ...(o.email ? { email: o.email } : {}) });
  }

  /** Why the IMVU needs a new certificate now, or undefined. */
  async due(i: TableImvu, now = Date.now()): Promise<string | undefined> {
    const row = await ledgerCertificate(this.o.platform, i.id);
    if (!row) return 'no certificate from the ACME CA yet';
    // The local CA's certificate (recorded too) only stands in until the ACME CA's is served.
    if (row.directory !== this.o.directory) return `its certificate is from ${row.issuer}, not the ACME CA`;
    if (row.names !== i.hosts.join(' ')) return `its names changed (${row.names} -> ${i.hosts.join(' ')})`;
    if (Date.parse(row.not_after) - now <= this.renewBeforeMs) return `it expires at ${row.not_after}`;
    // The file HAProxy loads must be the certificate the ledger holds.
    const file = this.o.certFile(i.id);
    if (!existsSync(file) || certificateFacts(readFileSync(file, 'utf8')).sha256 !== row.sha256) return 'the served file is not the certificate in the ledger';
    return undefined;
  }

  /** Brings every IMVU's certificate up to date, one order at a time; concurrent calls coalesce. */
  ensure(imvus: TableImvu[]): Promise<void> {
    this.pending = imvus;
    // Cleared in a later microtask, so a run that finishes at once cannot leave itself behind.
    this.running ??= this.drain().finally(() => (this.running = undefined));
    return this.running;
  }

  private async drain(): Promise<void> {
    while (this.pending) {
      const list = this.pending;
      this.pending = undefined;
      for (const i of list) {
        const f = this.failures.get(i.id);
        if (f && Date.now() < f.next) continue;
        const why = await this.due(i).catch((e: unknown) => `unreadable: ${(e as Error).message}`);
        if (!why) continue;
        try {
          await this.issue(i, why);
          this.failures.delete(i.id);
        } catch (e) {
          const n = (f?.n ?? 0) + 1;
          const wait = Math.min(60_000 * 2 ** (n - 1), 6 * 3_600_000);
          this.failures.set(i.id, { n, next: Date.now() + wait, why: (e as Error).message });
          this.o.log?.(`acme: ${i.id}: order failed (${(e as Error).message.split('\n')[0]}); next attempt in ${Math.round(wait / 1000)} s`);
        }
      }
    }
  }

  /** The last failure per IMVU, for status. */
  get failing(): Map<string, string> {
    return new Map([...this.failures].map(([k, v]) => [k, v.why]));
  }

  /** Orders, records and installs a certificate for the IMVU's names now. */
  async issue(i: TableImvu, why = 'asked'): Promise<Issued> {
    const { platform } = this.o;
    this.o.log?.(`acme: ordering a certificate for ${i.id} (${i.hosts.join(', ')}): ${why}`);
    const zones = (await platform.store.all<{ name: string }>('SELECT name FROM zones WHERE imvu = ?', [i.id])).map((z) => z.name);
    const zoneOf = (r: ChallengeRecord) => {
      const host = r.name.slice('_acme-challenge.'.length);
      const z = zones.filter((zone) => isWithin(host, zone)).sort((a, b) => b.length - a.length)[0];
      if (!z) throw new Error(`${host} lies in no zone of ${i.id}: our DNS cannot answer its challenge`);
      return z;
    };
    const submit = async (action: 'publish' | 'remove', records: ChallengeRecord[]) => {
      for (const r of records) this.live[action === 'publish' ? 'add' : 'delete'](`${r.name} ${r.value}`);
      const body = { imvu: i.id, action, records: records.map((r) => ({ zone: zoneOf(r), name: r.name, value: r.value })) };
      const r = await platform.chokepoint.submit(platform.chokepoint.platformCommand('acme.challenge', body));
      if (!r.allowed) throw new Error(`acme.challenge ${action} denied: ${r.gates.filter((g) => g.status === 'deny').map((g) => `gate ${g.gate}: ${g.reason}`).join('; ')}`);
    };
    const issued = await this.orderer.order(
      i.hosts,
      {
        publish: (records) => submit('publish', records),
        remove: (records) => submit('remove', records),
        served: (records) => this.served(records),
        ...(this.o.http ? { http: this.o.http } : {}),
      },
      this.o.challenge ?? 'dns-01',
    );
    const body = {
      imvu: i.id,
      names: issued.names,
      serial: issued.serial,
      sha256: issued.sha256,
      notBefore: issued.notBefore,
      notAfter: issued.notAfter,
      issuer: issued.issuer,
      directory: this.o.directory,
    };
    // In the ledger first: a certificate is never served before a creator can find it there.
    const r = await platform.chokepoint.submit(platform.chokepoint.platformCommand('certificate.issued', body));
    if (!r.allowed) throw new Error(`certificate.issued denied: ${r.gates.filter((g) => g.status === 'deny').map((g) => `gate ${g.gate}: ${g.reason}`).join('; ')}`);
    await this.o.install(i.id, issued.chain + issued.key);
    this.issued++;
    this.o.log?.(`acme: ${i.id}: certificate ${issued.serial} until ${issued.notAfter} recorded (entry ${r.index}) and served`);
    return issued;
  }

  /** Until our DNS server answers every record (the projection is committed; the server re-reads it). */
  private async served(records: ChallengeRecord[], timeoutMs = 30_000): Promise<void> {
    const dns = this.o.dns;
    if (!dns) return;
    const resolver = new Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([`${dns.address.includes(':') ? `[${dns.address}]` : dns.address}:${dns.port}`]);
    const until = Date.now() + timeoutMs;
    for (const r of records) {
      for (;;) {
        const txt = await resolver.resolveTxt(r.name).catch(() => [] as string[][]);
        if (txt.some((t) => t.join('') === r.value)) break;
        if (Date.now() > until) throw new Error(`our DNS server did not serve ${r.name} TXT within ${timeoutMs} ms`);
        await new Promise((res) => setTimeout(res, 100));
      }
    }
  }
}
