// What every message passes through between the SMTP DATA stream and the disk: a byte bound (the
// SIZE limit, enforced on what arrives, not on what the client declared), a check for bare CR and
// bare LF (RFC 5321 2.3.8: lines end in CRLF only; a lone LF or CR is what SMTP smuggling rides on,
// so a message holding one is refused whole, never split or passed on), and the header block, kept
// up to a bound so that the submission server can read From.
import { Transform, type TransformCallback } from 'node:stream';

export const MAX_HEADER_BYTES = 256 * 1024;

export class MessageGuard extends Transform {
  bytes = 0;
  oversized = false;
  /** The first bare LF or bare CR seen, as a byte offset; -1 when the message is clean. */
  bareAt = -1;
  private prev = 0; // last byte of the previous chunk
  private header: Buffer[] = [];
  private headerBytes = 0;
  private headerDone = false;
  headerTooLarge = false;

  constructor(private readonly maxBytes: number) {
    super();
  }

  /** The header block (without the blank line), or undefined if it ended past MAX_HEADER_BYTES. */
  headerBlock(): Buffer | undefined {
    if (this.headerTooLarge) return undefined;
    const all = Buffer.concat(this.header);
    const end = all.indexOf('\r\n\r\n');
    return end >= 0 ? all.subarray(0, end + 2) : all;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.bareAt < 0) {
      for (let i = 0; i < chunk.length; i++) {
        const c = chunk[i]!;
        const before = i > 0 ? chunk[i - 1]! : this.prev;
        if (c === 0x0a && before !== 0x0d) {
          this.bareAt = this.bytes + i;
          break;
        }
        // A CR must be followed by LF: checked when the next byte arrives (or at the end).
        if (before === 0x0d && c !== 0x0a && (i > 0 || this.bytes > 0)) {
          this.bareAt = this.bytes + i - 1;
          break;
        }
      }
    }
    if (chunk.length > 0) this.prev = chunk[chunk.length - 1]!;
    if (!this.headerDone) {
      this.header.push(chunk);
      this.headerBytes += chunk.length;
      const joined = Buffer.concat(this.header);
      this.header = [joined];
      const end = joined.subarray(0, 2).equals(Buffer.from('\r\n')) ? 0 : joined.indexOf('\r\n\r\n');
      if (end >= 0 && end <= MAX_HEADER_BYTES) {
        this.headerDone = true;
        this.header = [joined.subarray(0, end + 4)];
      } else if (end > MAX_HEADER_BYTES || this.headerBytes > MAX_HEADER_BYTES) {
        this.headerDone = true;
        this.headerTooLarge = true;
        this.header = [];
      }
    }
    this.bytes += chunk.length;
    if (this.bytes > this.maxBytes) this.oversized = true;
    // Past the limit, or once the message is known to be refused, nothing more is kept.
    if (this.oversized || this.bareAt >= 0) return cb();
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.bareAt < 0 && this.prev === 0x0d) this.bareAt = this.bytes - 1;
    cb();
  }
}
