// One ACME (RFC 8555) certificate order with DNS-01, through acme-client. The challenge records
// are not written here: `publish` and `remove` are given by the caller (the gateway puts them in
// the IMVU's zone through the chokepoint, so every record our DNS served for a certificate is in
// the ledger), and `served` waits until our authoritative server answers them.
import acme from 'acme-client';
import { X509Certificate, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { rootCertificates } from 'node:tls';
import { execFileSync } from 'node:child_process';
import { Agent } from 'node:https';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export interface ChallengeRecord {
  /** `_acme-challenge.<name>` */
  name: string;
  /** base64url(SHA-256(key authorization)) */
  value: string;
}

/** An HTTP-01 challenge (RFC 8555 8.3): `http://<host>/.well-known/acme-challenge/<token>` answers the key authorization. */
export interface HttpChallenge {
  host: string;
  token: string;
  keyAuthorization: string;
}

export type ChallengeType = 'dns-01' | 'http-01';

/** The hooks of one kind of challenge: make the answers available, wait until they are served, take them away. */
export interface ChallengeHooks<T> {
  publish(r: T[]): Promise<void>;
  remove(r: T[]): Promise<void>;
  served(r: T[]): Promise<void>;
}

export interface Issued {
  /** Leaf then chain, PEM. */
  chain: string;
  key: string;
  names: string[];
  serial: string;
  sha256: string;
  notBefore: string;
  notAfter: string;
  issuer: string;
}

export interface AcmeOrderOptions {
  directory: string;
  /** Extra CA (PEM) trusted for the directory's HTTPS, beside the system's (a private CA such as Pebble's). */
  caCert?: string;
  /** The account key file (created once, EC P-256, 0600). */
  accountKeyFile: string;
  email?: string;
}

/** What a certificate says about itself, in the ledger's spelling. */
export function certificateFacts(pem: string): Omit<Issued, 'chain' | 'key' | 'names'> & { names: string[] } {
  const x = new X509Certificate(pem);
  const names = (x.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4).toLowerCase())
    .sort();
  return {
    names: [...new Set(names)],
    serial: x.serialNumber.toLowerCase().replace(/^0+(?=.)/, ''),
    sha256: x.fingerprint256.replace(/:/g, '').toLowerCase(),
    notBefore: new Date(x.validFrom).toISOString().replace(/\.\d{3}Z$/, '.000Z'),
    notAfter: new Date(x.validTo).toISOString().replace(/\.\d{3}Z$/, '.000Z'),
    issuer: x.issuer.replace(/\n/g, ', ').slice(0, 512),
  };
}

/** A PKCS#10 request for `names` (the first is the subject) with OpenSSL, as the local CA does. */
function makeCsr(names: string[], keyPem: string): string {
  for (const n of names) if (!/^[a-z0-9.*-]{1,253}$/.test(n)) throw new Error(`not a host name: ${n}`);
  // OpenSSL reads the key from a file (it cannot rewind a pipe); a private directory, removed after.
  const dir = mkdtempSync(join(tmpdir(), 'nexus-csr-'));
  try {
    writeFileSync(join(dir, 'key.pem'), keyPem, { mode: 0o600 });
    return execFileSync('openssl', ['req', '-new', '-key', join(dir, 'key.pem'), '-subj', `/CN=${names[0]}`, '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`], {
      encoding: 'utf8',
      timeout: 30_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export class AcmeOrderer {
  private client: acme.Client | undefined;

  constructor(private readonly o: AcmeOrderOptions) {
    // acme-client's one HTTP client: trust the configured CA for the directory beside the system's.
    if (o.caCert) acme.axios.defaults.httpsAgent = new Agent({ ca: [...rootCertificates, o.caCert], keepAlive: false });
  }

  private async account(): Promise<acme.Client> {
    if (this.client) return this.client;
    const file = this.o.accountKeyFile;
    if (!existsSync(file)) {
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      writeFileSync(`${file}.tmp`, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
    }
    const client = new acme.Client({ directoryUrl: this.o.directory, accountKey: readFileSync(file), backoffAttempts: 20, backoffMin: 200, backoffMax: 3000 });
    await client.createAccount({ termsOfServiceAgreed: true, ...(this.o.email ? { contact: [`mailto:${this.o.email}`] } : {}) });
    this.client = client;
    return client;
  }

  /**
   * Orders a certificate for `names` (the first is the subject). The challenges of every pending
   * authorisation (DNS-01 records, or HTTP-01 tokens with `http`) are published in one call, then
   * removed in one call, whatever happens.
   */
  async order(names: string[], hooks: ChallengeHooks<ChallengeRecord> & { http?: ChallengeHooks<HttpChallenge> }, type: ChallengeType = 'dns-01'): Promise<Issued> {
    const client = await this.account();
    const order = await client.createOrder({ identifiers: names.map((value) => ({ type: 'dns', value })) });
    const authzs = await client.getAuthorizations(order);
    const pending: { challenge: acme.Authorization['challenges'][number]; answer: string; host: string }[] = [];
    for (const a of authzs) {
      if (a.status === 'valid') continue;
      const challenge = a.challenges.find((c) => c.type === type);
      if (!challenge) throw new Error(`the ACME CA offers no ${type} challenge for ${a.identifier.value}`);
      pending.push({ challenge, host: a.identifier.value, answer: await client.getChallengeKeyAuthorization(challenge) });
    }
    if (pending.length) {
      const run = async <T>(h: ChallengeHooks<T>, items: T[]) => {
        await h.publish(items);
        try {
          await h.served(items);
          for (const p of pending) await client.completeChallenge(p.challenge);
          for (const p of pending) await client.waitForValidStatus(p.challenge);
        } finally {
          await h.remove(items);
        }
      };
      if (type === 'http-01') {
        if (!hooks.http) throw new Error('http-01 challenges need a place to answer them (the gateway\'s plain-HTTP listener)');
        await run(hooks.http, pending.map((p) => ({ host: p.host, token: (p.challenge as { token: string }).token, keyAuthorization: p.answer })));
      } else await run(hooks, pending.map((p) => ({ name: `_acme-challenge.${p.host}`, value: p.answer })));
    }
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const key = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const csr = makeCsr(names, key);
    const finalized = await client.finalizeOrder(order, csr);
    const chain = await client.getCertificate(finalized);
    const facts = certificateFacts(chain);
    // The CA must have certified the key we hold, for the names we asked.
    if (!new X509Certificate(chain).publicKey.equals(createPublicKey(key))) throw new Error('the ACME CA returned a certificate for another key');
    const want = [...names].sort();
    if (facts.names.join(' ') !== want.join(' ')) throw new Error(`the ACME CA returned a certificate for ${facts.names.join(', ')}, not ${want.join(', ')}`);
    return { chain: chain.trim() + '\n', key, ...facts };
  }
}
