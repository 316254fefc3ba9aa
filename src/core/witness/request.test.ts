// The add-checkpoint body parser: exact round trips, one accepted spelling per request, and
// hostile bodies (random, mutated, oversized, not UTF-8) refused with RequestFormatError only.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { generateKeyPair } from '../identity/keys.ts';
import { signCheckpoint } from '../ledger/checkpoint.ts';
import { formatAddCheckpointRequest, parseAddCheckpointRequest, RequestFormatError, MAX_PROOF_LINES, MAX_REQUEST_BYTES } from './request.ts';

const { privateKey } = generateKeyPair();
const hash = (s: string) => createHash('sha256').update(s).digest();
const note = (size: number, origin = 'example.com/log') => signCheckpoint({ origin, size, rootHash: hash(`root ${size}`) }, origin, privateKey);
const proofOf = (n: number) => Array.from({ length: n }, (_, i) => hash(`p${i}`));

function refused(body: string | Uint8Array, why?: RegExp): void {
  let err: unknown;
  try {
    parseAddCheckpointRequest(body);
  } catch (e) {
    err = e;
  }
  expect(err, JSON.stringify(typeof body === 'string' ? body.slice(0, 120) : 'bytes')).toBeInstanceOf(RequestFormatError);
  if (why) expect((err as Error).message).toMatch(why);
}

describe('add-checkpoint request body', () => {
  it('parses the layout of the specification: old size, proof lines, empty line, checkpoint', () => {
    const n = note(20852163);
    const body = `old 20852014\n${proofOf(4).map((h) => h.toString('base64') + '\n').join('')}\n${n}`;
    const r = parseAddCheckpointRequest(Buffer.from(body));
    expect(r.oldSize).toBe(20852014);
    expect(r.proof).toEqual(proofOf(4));
    expect(r.note).toBe(n);
    expect(r.checkpoint).toMatchObject({ origin: 'example.com/log', size: 20852163 });
    expect(r.signatures).toHaveLength(1);
    expect(formatAddCheckpointRequest(r)).toBe(body);
    expect(parseAddCheckpointRequest(`old 0\n\n${note(5)}`).proof).toEqual([]);
  });

  it('refuses every malformed variant with a reason', () => {
    const n = note(10);
    const p = proofOf(1)[0]!.toString('base64');
    refused(`old 01\n\n${n}`, /leading zeros/);
    refused(`old -1\n\n${n}`, /decimal/);
    refused(`old 9007199254740992\n\n${n}`, /decimal/);
    refused(`old  3\n\n${n}`);
    refused(`Old 3\n\n${n}`, /start with the line "old <size>"/);
    refused(`old 3\r\n\r\n${n}`);
    refused(`\uFEFFold 3\n\n${n}`);
    refused(`old 3\n${p}\n${n}`, /proof line 2 is not/);
    refused(`old 3\n${p.slice(0, -1)}\n\n${n}`, /proof line 1/);
    refused(`old 3\n${Buffer.alloc(31).toString('base64')}\n\n${n}`, /32-byte hash/);
    refused(`old 3\n${p}`, /ends inside/);
    refused(`old 3\n\n`, /missing/);
    expect(parseAddCheckpointRequest(`old 11\n\n${n}`).oldSize).toBe(11); // the witness's 400, after its origin and key checks
    refused(`old 3\n\n${n.replace('\n\n', '\n')}`, /not a signed checkpoint note/);
    refused(`old 3\n${proofOf(MAX_PROOF_LINES + 1).map((h) => h.toString('base64') + '\n').join('')}\n${n}`, /more than 63/);
    expect(parseAddCheckpointRequest(`old 3\n${proofOf(MAX_PROOF_LINES).map((h) => h.toString('base64') + '\n').join('')}\n${n}`).proof).toHaveLength(63);
    refused(Buffer.concat([Buffer.from('old 3\n\n'), Buffer.from([0xc3, 0x28]), Buffer.from(n)]), /not valid UTF-8/);
    refused(Buffer.alloc(MAX_REQUEST_BYTES + 1, 0x41), /larger than/);
    refused('x'.repeat(MAX_REQUEST_BYTES + 1), /larger than/);
    refused(`old 3\n\n${n}extra`, /not a signed checkpoint note/);
  });
});

describe('add-checkpoint parser with hostile input (property)', () => {
  // Signing is the slow part: a pool of real signed checkpoints, sizes from 0 to 2^40.
  const pool = fc.sample(fc.record({ size: fc.integer({ min: 0, max: 2 ** 40 }), origin: fc.stringMatching(/^[a-z0-9./-]{1,40}$/) }), 40).map(({ size, origin }) => ({ size, note: note(size, origin) }));
  const request = fc
    .record({ cp: fc.constantFrom(...pool), old: fc.nat(), proof: fc.integer({ min: 0, max: MAX_PROOF_LINES }) })
    .map(({ cp, old, proof }) => ({ oldSize: old % (cp.size + 1), proof: proofOf(proof), note: cp.note }));

  it('round-trips every well-formed request, bytes for bytes', () => {
    fc.assert(
      fc.property(request, (req) => {
        const body = formatAddCheckpointRequest(req);
        const r = parseAddCheckpointRequest(Buffer.from(body, 'utf8'));
        expect({ oldSize: r.oldSize, proof: r.proof, note: r.note }).toEqual(req);
        expect(formatAddCheckpointRequest(r)).toBe(body);
      }),
      { numRuns: 200 },
    );
  });

  it('a mutated body is refused, or is another well-formed request with exactly that spelling', () => {
    fc.assert(
      fc.property(request, fc.nat(), fc.oneof(fc.string({ maxLength: 4 }), fc.constantFrom('\n', '\n\n', '0', '=', ' ', '\r', '\u2014', '+')), (req, at, insert) => {
        const body = formatAddCheckpointRequest(req);
        const i = at % body.length;
        const mutated = body.slice(0, i) + insert + body.slice(i + 1);
        try {
          const r = parseAddCheckpointRequest(mutated);
          expect(formatAddCheckpointRequest(r)).toBe(mutated);
        } catch (err) {
          expect(err).toBeInstanceOf(RequestFormatError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('random strings and bytes never crash the parser', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 400 }),
          fc.string({ unit: 'binary', maxLength: 400 }),
          fc.uint8Array({ maxLength: 400 }),
          fc.string({ maxLength: 200 }).map((s) => `old 0\n\n${s}`),
          fc.array(fc.constantFrom('old 1\n', '\n', 'AAAA\n', `${hash('x').toString('base64')}\n`, 'example.com/log\n', '1\n', '\u2014 k AAAAAAAA\n'), { maxLength: 30 }).map((a) => a.join('')),
        ),
        (input) => {
          try {
            const r = parseAddCheckpointRequest(input);
            expect(formatAddCheckpointRequest(r)).toBe(typeof input === 'string' ? input : Buffer.from(input).toString('utf8'));
          } catch (err) {
            expect(err).toBeInstanceOf(RequestFormatError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
