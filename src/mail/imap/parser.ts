// The IMAP command reader. Two layers: the framer cuts the byte stream into whole commands (lines
// plus the literals they announce, `{n}` synchronising or `{n+}` LITERAL+), within fixed bounds;
// the Reader then parses one command's bytes. Nothing here trusts the peer: every size is capped
// and every error is a clear message, never a throw out of the connection.

export interface FramerLimits {
  /** Longest line between literals. */
  maxLine: number;
  /** Largest literal in any command but APPEND. */
  maxLiteral: number;
  /** Largest APPEND literal (a message). */
  maxAppendLiteral: number;
  /** Most literals in one command. */
  maxLiterals: number;
  /** Most bytes in one command, lines and literals together (APPEND: besides its message literal). */
  maxCommand: number;
}

export const DEFAULT_FRAMER_LIMITS: FramerLimits = {
  maxLine: 64 * 1024,
  maxLiteral: 64 * 1024,
  maxAppendLiteral: 50 * 1024 * 1024,
  maxLiterals: 1000,
  maxCommand: 1024 * 1024,
};

export type FrameEvent =
  | { kind: 'command'; buf: Buffer }
  /** A synchronising literal is acceptable: send `+ ...`. */
  | { kind: 'continue' }
  /** A command that cannot be read; `fatal` means the stream cannot be resynchronised. */
  | { kind: 'error'; tag: string | null; text: string; fatal: boolean; tooBig?: boolean };

const LITERAL_AT_END = /\{(\d{1,20})(\+?)\}\r?$/;

export class Framer {
  private chunks: Buffer[] = [];
  private buf = Buffer.alloc(0);
  /** Start of the line being scanned. */
  private lineStart = 0;
  private literalLeft = 0;
  private literals = 0;
  /** Size of the APPEND message literal in the command being read (0: none yet). */
  private messageBytes = 0;
  /** True when the current command has started arriving (for the command deadline). */
  started = false;

  constructor(private readonly limits: FramerLimits = DEFAULT_FRAMER_LIMITS) {}

  /** Bytes held (bounded by the limits). */
  get buffered(): number {
    return this.buf.length + this.chunks.reduce((n, c) => n + c.length, 0);
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.started = this.started || chunk.length > 0;
  }

  /** The next event, or null when more bytes are needed. */
  next(): FrameEvent | null {
    if (this.literalLeft > 0 && this.chunks.length) {
      // A large literal arrives in many chunks: join them once it is whole, not at every chunk.
      let have = this.buf.length - this.lineStart;
      for (const c of this.chunks) have += c.length;
      if (have < this.literalLeft) return null;
    }
    if (this.chunks.length) {
      this.buf = this.buf.length ? Buffer.concat([this.buf, ...this.chunks]) : Buffer.concat(this.chunks);
      this.chunks = [];
    }
    for (;;) {
      if (this.literalLeft > 0) {
        const have = this.buf.length - this.lineStart;
        if (have < this.literalLeft) return null;
        this.lineStart += this.literalLeft;
        this.literalLeft = 0;
      }
      const lf = this.buf.indexOf(10, this.lineStart);
      if (lf === -1) {
        if (this.buf.length - this.lineStart > this.limits.maxLine) {
          return this.fail('line too long', true);
        }
        if (this.buf.length === 0) this.started = false;
        return null;
      }
      if (lf - this.lineStart > this.limits.maxLine) return this.fail('line too long', true);
      const line = this.buf.toString('latin1', this.lineStart, lf);
      const lit = LITERAL_AT_END.exec(line);
      if (lit) {
        const n = Number(lit[1]);
        const nonSync = lit[2] === '+';
        const head = this.buf.toString('latin1', 0, Math.min(this.buf.length, 64));
        const isAppend = /^\S+ (UID )?APPEND /i.test(head);
        const max = isAppend ? this.limits.maxAppendLiteral : this.limits.maxLiteral;
        // One literal of an APPEND may be a message (up to maxAppendLiteral); everything else in the
        // command, lines and literals (this.buf starts at the command), stays within maxCommand.
        const message = isAppend && n > this.limits.maxLiteral;
        const total = lf + 1 - this.messageBytes + (message ? 0 : n);
        let why: string | null = null;
        if (n > max) why = `literal too large (max ${max})`;
        else if (message && this.messageBytes > 0) why = 'one message per APPEND';
        else if (++this.literals > this.limits.maxLiterals) why = 'too many literals';
        else if (total > this.limits.maxCommand) why = `command too large (max ${this.limits.maxCommand} bytes)`;
        if (why) {
          // A synchronising literal was never sent: drop the command. A non-synchronising one is on
          // its way and cannot be told apart from commands: close.
          return this.fail(why, nonSync, true, lf + 1);
        }
        if (message) this.messageBytes = n;
        this.lineStart = lf + 1;
        this.literalLeft = n;
        if (!nonSync) return { kind: 'continue' };
        continue;
      }
      const cmd = this.buf.subarray(0, lf + 1);
      this.buf = this.buf.subarray(lf + 1);
      this.lineStart = 0;
      this.literals = 0;
      this.messageBytes = 0;
      this.started = this.buf.length > 0;
      return { kind: 'command', buf: cmd };
    }
  }

  private fail(text: string, fatal: boolean, tooBig = false, dropTo?: number): FrameEvent {
    this.messageBytes = 0;
    const tag = /^([^\s(){%*"\\\]]{1,64}) /.exec(this.buf.toString('latin1', 0, Math.min(this.buf.length, 80)))?.[1] ?? null;
    if (fatal) {
      this.buf = Buffer.alloc(0);
      this.lineStart = 0;
    } else {
      this.buf = this.buf.subarray(dropTo ?? this.buf.length);
      this.lineStart = 0;
      this.literals = 0;
    }
    return { kind: 'error', tag, text, fatal, tooBig };
  }
}

export class ParseError extends Error {}

// eslint-disable-next-line no-control-regex
const ATOM_SPECIALS = /[(){ \x00-\x1f\x7f%*"\\]/;

/** A cursor over one command's bytes. */
export class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  get done(): boolean {
    return this.pos >= this.buf.length || this.peekRest() === '\r\n' || this.peekRest() === '\n';
  }

  private peekRest(): string {
    return this.buf.toString('latin1', this.pos, Math.min(this.buf.length, this.pos + 2));
  }

  peek(): string {
    return this.pos < this.buf.length ? String.fromCharCode(this.buf[this.pos]!) : '';
  }

  sp(): void {
    if (this.buf[this.pos] !== 32) throw new ParseError('expected a space');
    this.pos++;
  }

  /** Consume a space if present. */
  maybeSp(): boolean {
    if (this.buf[this.pos] === 32) {
      this.pos++;
      return true;
    }
    return false;
  }

  expect(s: string): void {
    if (this.buf.toString('latin1', this.pos, this.pos + s.length).toUpperCase() !== s.toUpperCase()) {
      throw new ParseError(`expected ${s}`);
    }
    this.pos += s.length;
  }

  tryExpect(s: string): boolean {
    if (this.buf.toString('latin1', this.pos, this.pos + s.length).toUpperCase() === s.toUpperCase()) {
      this.pos += s.length;
      return true;
    }
    return false;
  }

  end(): void {
    if (!this.done) throw new ParseError('unexpected characters at end of command');
  }

  /** atom (']' allowed, as in astring, unless listed in `stops`). */
  atom(stops = ''): string {
    const start = this.pos;
    while (this.pos < this.buf.length) {
      const c = String.fromCharCode(this.buf[this.pos]!);
      if (ATOM_SPECIALS.test(c) || stops.includes(c)) break;
      this.pos++;
    }
    if (this.pos === start) throw new ParseError('expected an atom');
    return this.buf.toString('latin1', start, this.pos);
  }

  /** A list-mailbox: atom characters plus % and *, or a string. */
  listMailbox(): string {
    const c = this.peek();
    if (c === '"' || c === '{' || c === '~') return this.string().toString('utf8');
    const start = this.pos;
    while (this.pos < this.buf.length) {
      const ch = String.fromCharCode(this.buf[this.pos]!);
      // eslint-disable-next-line no-control-regex
      if (/[(){ \x00-\x1f\x7f"\\]/.test(ch)) break;
      this.pos++;
    }
    if (this.pos === start) throw new ParseError('expected a mailbox pattern');
    return this.buf.toString('latin1', start, this.pos);
  }

  number(): number {
    const m = /^\d{1,10}/.exec(this.buf.toString('latin1', this.pos, this.pos + 11));
    if (!m) throw new ParseError('expected a number');
    this.pos += m[0].length;
    const n = Number(m[0]);
    if (n > 0xffffffff) throw new ParseError('number out of range');
    return n;
  }

  bigNumber(): bigint {
    const m = /^\d{1,20}/.exec(this.buf.toString('latin1', this.pos, this.pos + 21));
    if (!m) throw new ParseError('expected a number');
    this.pos += m[0].length;
    const n = BigInt(m[0]);
    if (n >= 1n << 63n) throw new ParseError('number out of range');
    return n;
  }

  /** quoted or literal. */
  string(): Buffer {
    const c = this.peek();
    if (c === '"') {
      this.pos++;
      const out: number[] = [];
      while (this.pos < this.buf.length) {
        const b = this.buf[this.pos++]!;
        if (b === 34) return Buffer.from(out);
        if (b === 92) {
          const n = this.buf[this.pos++];
          if (n !== 34 && n !== 92) throw new ParseError('bad escape in quoted string');
          out.push(n);
        } else if (b === 13 || b === 10) {
          throw new ParseError('line break in quoted string');
        } else out.push(b);
      }
      throw new ParseError('unterminated quoted string');
    }
    if (c === '{' || (c === '~' && this.buf[this.pos + 1] === 123)) {
      if (c === '~') this.pos++;
      const m = /^\{(\d{1,20})\+?\}\r?\n/.exec(this.buf.toString('latin1', this.pos, this.pos + 28));
      if (!m) throw new ParseError('bad literal');
      this.pos += m[0].length;
      const n = Number(m[1]);
      if (this.pos + n > this.buf.length) throw new ParseError('short literal');
      const s = this.buf.subarray(this.pos, this.pos + n);
      this.pos += n;
      return s;
    }
    throw new ParseError('expected a string');
  }

  astring(): string {
    const c = this.peek();
    if (c === '"' || c === '{') return this.string().toString('utf8');
    return this.atom();
  }

  /** A sequence set: 1,3:5,7:*; `*` is returned as 0 and resolved by the caller. */
  seqSet(): [number, number][] {
    const out: [number, number][] = [];
    const one = (): number => {
      if (this.tryExpect('*')) return 0;
      const n = this.number();
      if (n === 0) throw new ParseError('sequence number 0');
      return n;
    };
    if (this.tryExpect('$')) return [[-1, -1]];
    do {
      const a = one();
      const b = this.tryExpect(':') ? one() : a;
      out.push([a, b]);
      if (out.length > 10000) throw new ParseError('sequence set too long');
    } while (this.tryExpect(','));
    return out;
  }

  /** ( item item ... ) of atoms (flags). */
  flagList(): string[] {
    const out: string[] = [];
    const paren = this.tryExpect('(');
    if (paren && this.tryExpect(')')) return out;
    for (;;) {
      const bs = this.tryExpect('\\');
      out.push((bs ? '\\' : '') + this.atom(paren ? ')' : ''));
      if (out.length > 100) throw new ParseError('too many flags');
      if (paren) {
        if (this.tryExpect(')')) return out;
        this.sp();
      } else if (this.peek() === ' ' && /^ \\?[^\s(){%*"\\\]]/.test(this.buf.toString('latin1', this.pos, this.pos + 2))) {
        // Unparenthesised list (STORE +FLAGS \Seen \Flagged).
        this.sp();
      } else return out;
    }
  }
}
