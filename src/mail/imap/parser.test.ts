import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Framer, Reader } from './parser.ts';

const LIMITS = { maxLine: 1024, maxLiteral: 512, maxAppendLiteral: 4096, maxLiterals: 10, maxCommand: 8192 };

function frame(chunks: Buffer[]): { commands: string[]; continues: number; errors: string[] } {
  const f = new Framer(LIMITS);
  const out = { commands: [] as string[], continues: 0, errors: [] as string[] };
  for (const c of chunks) {
    f.push(c);
    for (let ev = f.next(); ev; ev = f.next()) {
      if (ev.kind === 'command') out.commands.push(ev.buf.toString('latin1'));
      else if (ev.kind === 'continue') out.continues++;
      else out.errors.push(ev.text);
    }
  }
  return out;
}

const literal = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
const command = fc.tuple(fc.constantFrom('a1', 'b2', 'X'), literal, fc.boolean()).map(([tag, lit, plus]) =>
  Buffer.concat([Buffer.from(`${tag} APPEND INBOX {${lit.length}${plus ? '+' : ''}}\r\n`), lit, Buffer.from(' extra\r\n')]));

describe('IMAP framer', () => {
  it('cuts the same commands however the stream is split', () => {
    fc.assert(fc.property(fc.array(command, { minLength: 1, maxLength: 5 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1 }), (cmds, sizes) => {
      const all = Buffer.concat(cmds);
      const chunks: Buffer[] = [];
      let off = 0;
      let i = 0;
      while (off < all.length) {
        const n = sizes[i++ % sizes.length]!;
        chunks.push(all.subarray(off, off + n));
        off += n;
      }
      const got = frame(chunks);
      expect(got.errors).toEqual([]);
      expect(got.commands).toEqual(cmds.map((c) => c.toString('latin1')));
      // And the reader gets each literal back byte for byte.
      got.commands.forEach((c, k) => {
        const r = new Reader(Buffer.from(c, 'latin1'));
        r.atom();
        r.sp();
        r.atom();
        r.sp();
        r.astring();
        r.sp();
        const lit = r.string();
        expect(lit.equals(cmds[k]!.subarray(cmds[k]!.indexOf('\n') + 1, cmds[k]!.length - 8))).toBe(true);
      });
    }));
  });

  it('never throws and stays bounded on arbitrary bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 3000 }), (bytes) => {
      const f = new Framer(LIMITS);
      f.push(Buffer.from(bytes));
      for (let ev = f.next(), n = 0; ev && n < 10_000; ev = f.next(), n++) {
        if (ev.kind === 'error' && ev.fatal) break;
      }
      expect(f.buffered).toBeLessThanOrEqual(LIMITS.maxLine + LIMITS.maxAppendLiteral + 64);
    }));
  });

  it('parses quoted strings and refuses bad ones with a clear error', () => {
    fc.assert(fc.property(fc.string({ maxLength: 50 }).filter((s) => !/[\r\n\x80-\uffff]/.test(s)), (s) => {
      const q = `"${s.replace(/[\\"]/g, '\\$&')}"`;
      expect(new Reader(Buffer.from(q, 'latin1')).string().toString('latin1')).toBe(s);
    }));
    expect(() => new Reader(Buffer.from('"abc')).string()).toThrow(/unterminated/);
    expect(() => new Reader(Buffer.from('{5}\r\nab')).string()).toThrow(/short literal/);
  });

  it('bounds a whole command: its lines and literals together, and one message per APPEND', () => {
    // Nine literals of 500 bytes: each within maxLiteral and within maxLiterals, 4,500 bytes in all.
    const many = Buffer.concat([Buffer.from('a SEARCH'), ...Array.from({ length: 9 }, () => Buffer.from(` TEXT {500+}\r\n${'x'.repeat(500)}`)), Buffer.from('\r\n')]);
    expect(frame([many]).commands).toHaveLength(1);
    const f = new Framer({ ...LIMITS, maxCommand: 2048 });
    f.push(many);
    const ev = f.next();
    expect(ev && ev.kind === 'error' && ev.fatal && ev.text).toMatch(/command too large/);
    // An APPEND's message literal is bounded by maxAppendLiteral, not by maxCommand; a second one is refused.
    const g = new Framer({ ...LIMITS, maxCommand: 2048 });
    g.push(Buffer.from(`a APPEND INBOX {3000+}\r\n${'m'.repeat(3000)}\r\n`));
    expect(g.next()?.kind).toBe('command');
    g.push(Buffer.from(`b APPEND INBOX {3000+}\r\n${'m'.repeat(3000)} {3000}\r\n`));
    const two = g.next();
    expect(two && two.kind === 'error' && two.text).toBe('one message per APPEND');
  });
});
