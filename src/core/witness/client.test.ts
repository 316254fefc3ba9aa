// The log's client against a hostile "witness" on a real socket: every answer the protocol does
// not allow becomes a typed refusal, never an exception, a hang or an unbounded read.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { generateKeyPair, publicKeyRaw } from '../identity/keys.ts';
import { signCheckpoint } from '../ledger/checkpoint.ts';
import { requestCosignature } from './client.ts';
import { cosign, cosignerVerifierKey } from './cosignature.ts';
import { parseAddCheckpointRequest } from './request.ts';

const log = generateKeyPair().privateKey;
const note = signCheckpoint({ origin: 'example.com/log', size: 7, rootHash: createHash('sha256').update('r').digest() }, 'example.com/log', log);
const text = note.slice(0, note.indexOf('\n\n') + 1);
const witnessKey = generateKeyPair().privateKey;
const vkey = cosignerVerifierKey('w.test/1', publicKeyRaw(witnessKey));
const good = cosign(text, 'w.test/1', witnessKey, 1700000000);

let answer: (res: ServerResponse, body: string) => void = () => undefined;
let lastBody = '';
let server: Server;
let url: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      lastBody = body;
      answer(res, body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

function reply(status: number, body: string | Buffer, type = 'text/plain') {
  answer = (res) => {
    res.writeHead(status, { 'content-type': type });
    res.end(body);
  };
}

describe('requestCosignature against a hostile witness', () => {
  it('sends the body of the specification to <prefix>/add-checkpoint and returns the verified line', async () => {
    const proof = [createHash('sha256').update('p').digest()];
    let path = '';
    answer = (res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`\u2014 other.witness AAAAAAAAAAAA\n${good}\n`);
    };
    server.once('request', (req) => (path = req.url ?? ''));
    const r = await requestCosignature(`${url}/prefix/`, note, 3, proof, { witnessVkey: vkey });
    expect(r).toEqual({ ok: true, cosignatures: [good] });
    expect(path).toBe('/prefix/add-checkpoint');
    expect(lastBody).toBe(`old 3\n${proof[0]!.toString('base64')}\n\n${note}`);
    expect(parseAddCheckpointRequest(lastBody).oldSize).toBe(3);
    // Without a witness key every well-formed line comes back, for the caller to check.
    expect(await requestCosignature(url, note, 3, proof)).toEqual({ ok: true, cosignatures: ['\u2014 other.witness AAAAAAAAAAAA', good] });
  });

  it('maps each refusal to its kind, with the size a 409 carries', async () => {
    reply(409, '42\n', 'text/x.tlog.size');
    expect(await requestCosignature(url, note, 3, [])).toMatchObject({ ok: false, kind: 'conflict', knownSize: 42 });
    for (const [status, kind] of [[422, 'unprocessable'], [403, 'forbidden'], [404, 'unknown-log'], [400, 'bad-request']] as const) {
      reply(status, 'no\n');
      expect(await requestCosignature(url, note, 3, [])).toMatchObject({ ok: false, kind, message: expect.stringContaining('no') });
    }
  });

  it('calls anything the protocol does not allow an invalid response', async () => {
    const cases: [number, string | Buffer, string?][] = [
      [200, 'garbage\n'],
      [200, ''],
      [200, `${cosign(text, 'w.test/1', generateKeyPair().privateKey, 1)}\n`], // right name, another key
      [200, `${cosign(text.replace('\n7\n', '\n8\n'), 'w.test/1', witnessKey, 1)}\n`], // another checkpoint
      [200, Buffer.from([0xff, 0xfe])],
      [200, 'x'.repeat(1024 * 1024)],
      [409, '42\n', 'text/plain'],
      [409, '042\n', 'text/x.tlog.size'],
      [409, '42', 'text/x.tlog.size'],
      [409, `${2 ** 60}\n`, 'text/x.tlog.size'],
      [302, ''],
      [500, 'boom'],
    ];
    for (const [status, body, type] of cases) {
      reply(status, body, type);
      const r = await requestCosignature(url, note, 3, [], { witnessVkey: vkey });
      expect(r, `${status} ${String(body).slice(0, 40)}`).toMatchObject({ ok: false, kind: 'invalid-response', status });
    }
  });

  it('gives up at the deadline on a witness that never answers, and reports a closed port as unreachable', async () => {
    answer = () => undefined; // holds the request open
    expect(await requestCosignature(url, note, 3, [], { timeoutMs: 300 })).toMatchObject({ ok: false, kind: 'unreachable', message: expect.stringMatching(/no answer within 300 ms/) });
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    expect(await requestCosignature(`http://127.0.0.1:${port}`, note, 0, [])).toMatchObject({ ok: false, kind: 'unreachable', message: expect.stringMatching(/connection refused/) });
  });

  it('refuses invalid arguments before sending anything', async () => {
    await expect(requestCosignature('ftp://x', note, 0, [])).rejects.toThrow(/http/);
    await expect(requestCosignature(url, note, -1, [])).rejects.toThrow(/old size/);
    await expect(requestCosignature(url, note, 0, [Buffer.alloc(31)])).rejects.toThrow(/32 bytes/);
    await expect(requestCosignature(url, note, 0, [], { witnessVkey: 'nope' })).rejects.toThrow(/verifier key/);
  });
});
