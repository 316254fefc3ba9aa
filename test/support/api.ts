// A real daemon on a free port over a fresh data directory, and a small client that signs commands
// with the core's own functions and talks to it over HTTP with fetch.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw } from '../../src/core/identity/keys.ts';
import { signCommand, type SignOptions } from '../../src/core/identity/envelope.ts';
import { initDataDir } from '../../src/core/platform.ts';
import type { Actor } from '../../src/core/testing.ts';
import type { CommandType, Json, LedgerEntry, Role, SignedCommand } from '../../src/core/types.ts';
import { startServer, type RunningServer, type ServerOptions } from '../../src/api/server.ts';
import { signRead } from '../../src/api/read-auth.ts';

export type { Actor };

export interface Res<T = Record<string, unknown>> {
  status: number;
  body: T;
  text: string;
  headers: Headers;
}

export type Body = { [k: string]: Json };

export class Client {
  private origin_: string | undefined;
  /**
   * @param reader who signs `get()`s (RFC 9421 signed reads); none: they go unsigned. `startTestApi()`
   * reads as the platform, which may read everything; `getAs()` reads as someone else or anonymously.
   */
  constructor(
    readonly url: string,
    public reader?: Actor,
  ) {}

  /** The platform's log origin, which every command signed for it carries. */
  async origin(): Promise<string> {
    this.origin_ ??= (await this.get<{ origin: string }>('/v1/platform')).body.origin;
    return this.origin_;
  }

  async request<T = Record<string, unknown>>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Res<T>> {
    const init: RequestInit = { method, headers: { ...headers } };
    if (body !== undefined) {
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
      (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
    }
    const res = await fetch(this.url + path, init);
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed as T, text, headers: res.headers };
  }

  get<T = Record<string, unknown>>(path: string): Promise<Res<T>> {
    return this.getAs<T>(this.reader ?? null, path);
  }

  /** GET signed as `actor` (RFC 9421, as the CLI signs), or unsigned with `null`. */
  getAs<T = Record<string, unknown>>(actor: Actor | null, path: string, headers: Record<string, string> = {}): Promise<Res<T>> {
    const signed = actor ? signRead(actor.key, actor.id, 'GET', this.url + path) : {};
    return this.request<T>('GET', path, undefined, { ...signed, ...headers });
  }

  /** Signs `body` as `actor` and sends it to `method path`. */
  async as(actor: Actor, method: string, path: string, type: CommandType, body: Body, opts?: Partial<SignOptions>): Promise<Res> {
    return this.request(method, path, signCommand(actor.key, type, body, { origin: await this.origin(), ...opts }));
  }

  async entry(index: number): Promise<LedgerEntry> {
    const r = await this.get<{ entries: LedgerEntry[] }>(`/v1/ledger/entries?from=${index}&to=${index + 1}`);
    const e = r.body.entries[0];
    if (!e) throw new Error(`no ledger entry ${index}`);
    return e;
  }

  async size(): Promise<number> {
    return (await this.get<{ size: number }>('/health')).body.size;
  }
}

/** The gates that denied, from a receipt-shaped body. */
export function deniedGates(body: unknown): number[] {
  const gates = (body as { gates?: { gate: number; status: string }[] }).gates ?? [];
  return gates.filter((g) => g.status === 'deny').map((g) => g.gate);
}

export interface TestApi extends Client {
  dir: string;
  server: RunningServer;
  platformKey: KeyObject;
  platformId: string;
  /** The platform as an actor (it may read everything): what `get()` signs with by default. */
  platform: Actor;
  /** Registers an identity over the API: creators and members sign for themselves, the platform registers the rest. */
  register(name: string, role: Exclude<Role, 'platform'>): Promise<Actor>;
  /** Creates an IMVU for `creator` over POST /v1/imvus; returns the response body (with `imvu`). */
  createImvu(creator: Actor, name: string, jurisdiction?: string): Promise<Res>;
  /** The platform's log origin. */
  platformOrigin: string;
  sign(actor: Actor, type: CommandType, body: Body, opts?: Partial<SignOptions>): SignedCommand;
  close(): Promise<void>;
}

export function newKey(): { key: KeyObject; id: string; publicKey: string } {
  const { privateKey } = generateKeyPair();
  const raw = publicKeyRaw(privateKey);
  return { key: privateKey, id: identityIdFromPublicKey(raw), publicKey: raw.toString('base64') };
}

/**
 * `dns`: also run the DNS service (e.g. `{ port: 0, meterIntervalMs: 200 }`); off by default.
 * `challenge`: how domain proofs are looked up (root hints of a loopback hierarchy, or a function); off by default.
 */
export async function startTestApi(opts: Pick<ServerOptions, 'dns' | 'limits' | 'noiseIntervalMs' | 'challenge' | 'mailOut' | 'mail' | 'compute'> = {}): Promise<TestApi> {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-api-'));
  const init = await initDataDir(dir);
  const platformKey = init.platformKey;
  const platformId = init.platformId;
  const origin = init.config.origin;
  await init.close();
  const server = await startServer({ dataDir: dir, port: 0, logger: false, ...opts });
  const platform: Actor = { name: 'platform', id: platformId, key: platformKey };
  const client = new Client(server.url, platform);
  const api = Object.assign(client, {
    platform,
    dir,
    server,
    platformKey,
    platformId,
    async register(name: string, role: Exclude<Role, 'platform'>): Promise<Actor> {
      const k = newKey();
      const signer = role === 'creator' || role === 'member' ? k.key : platformKey;
      const r = await client.request('POST', '/v1/identities', signCommand(signer, 'identity.register', { name, role, publicKey: k.publicKey }, { origin }));
      if (r.status !== 201) throw new Error(`register ${name}: ${r.status} ${r.text}`);
      return { name, id: k.id, key: k.key };
    },
    createImvu(creator: Actor, name: string, jurisdiction = 'US-CCPA'): Promise<Res> {
      return client.as(creator, 'POST', '/v1/imvus', 'imvu.create', { name, owner: creator.id, jurisdiction });
    },
    platformOrigin: origin,
    sign: (actor: Actor, type: CommandType, body: Body, opts?: Partial<SignOptions>) => signCommand(actor.key, type, body, { origin, ...opts }),
    async close() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  });
  return api;
}
