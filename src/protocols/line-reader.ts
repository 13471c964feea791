/**
 * Buffers bytes from a client and hands out CRLF-terminated lines or fixed byte counts,
 * refusing anything longer than its bound so a client cannot grow memory without limit.
 */
export class LineReader {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly maxLine: number) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
  }

  /** The next line without its line ending; null if incomplete; throws if over the bound. */
  line(): string | null {
    const end = this.buf.indexOf('\n');
    if (end < 0) {
      if (this.buf.length > this.maxLine) throw new LineTooLong();
      return null;
    }
    if (end > this.maxLine) throw new LineTooLong();
    const line = this.buf.subarray(0, end > 0 && this.buf[end - 1] === 0x0d ? end - 1 : end).toString('utf8');
    this.buf = this.buf.subarray(end + 1);
    return line;
  }

  bytes(n: number): Buffer | null {
    if (this.buf.length < n) return null;
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Whatever is buffered (e.g. pipelined after login), removing it. */
  drain(): Buffer {
    const out = this.buf;
    this.buf = Buffer.alloc(0);
    return out;
  }

  get buffered(): number {
    return this.buf.length;
  }
}

export class LineTooLong extends Error {
  constructor() {
    super('line too long');
  }
}
