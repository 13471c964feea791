import { Socket, type OnReadOpts, type SocketConstructorOpts } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { PosternError, temporary } from '../../core/errors.js';
import { PIPE_HIGH_WATER_MARK } from '../relay.js';
import { LineReader } from '../line-reader.js';

export interface UpstreamTls {
  /** starttls: upgrade after the greeting; implicit: TLS from the first byte. */
  mode: 'none' | 'starttls' | 'implicit';
  /** PEM CA bundle to trust instead of the system's; null for the system's. */
  ca: Buffer | null;
  verify: boolean;
}

export interface Endpoint {
  host: string;
  port: number;
  timeoutMs: number;
  tls?: UpstreamTls;
  /** Bytes to send before anything else (a PROXY protocol header), even before TLS. */
  preamble?: Buffer;
}

export function upstreamDown(message: string, cause?: unknown): PosternError {
  return temporary(cause ?? new Error(message), `upstream mail server (${message})`);
}

/**
 * What the upstream sends, chunk by chunk, to `fn`, which returns false to pause reading
 * (`socket.resume()` goes on). A chunk is valid only during the call: it may live in a buffer
 * the next read reuses, unless `fn` calls `keep()`. Copy it to hold on to it otherwise.
 */
export type UpstreamReader = (fn: (chunk: Buffer, keep: () => void) => boolean) => void;

/** For chunks in a buffer of their own (Node's reads, or a copy): there is nothing to keep. */
const nothingToKeep = (): void => {};

/** Read sizes of a plain upstream connection: while it is quiet, and while it streams. */
const QUIET_READ = 256;
const BULK_READ = 64 * 1024;

/**
 * The buffer every quiet plain upstream socket reads into. Each read is handed on (relayed or
 * copied) before the next read into any buffer starts, so one buffer serves every session that
 * is not streaming; what it brings is copied (at most QUIET_READ bytes), since other sockets
 * have it registered for their next read. Each session holding a small buffer of its own cost
 * about 1.7 KB: its 256 bytes kept a whole 8 KB slab of Node's pool alive.
 */
const sharedQuiet = Buffer.allocUnsafeSlow(QUIET_READ);

/**
 * Where a plain upstream socket reads, the same buffer from read to read. Node's own reads
 * give each chunk a new buffer; relayed at FETCH speed those count as external memory and make
 * V8 mark its whole heap every few dozen MB, which cost postern about as much CPU as moving
 * the bytes. A quiet session reads into the shared buffer; a read that fills it switches the
 * session to a large buffer of its own, and a short read switches it back. A large buffer's
 * chunk still referenced by a pending write is kept, and the next read gets a new buffer.
 */
class ReusedReadBuffer {
  private buf = sharedQuiet;
  private kept = false;
  /** Bytes the last read brought. */
  private lastRead = 0;

  readonly next = (): Buffer => {
    const bulk = this.lastRead >= this.buf.length || (this.buf !== sharedQuiet && this.lastRead >= QUIET_READ);
    if (!bulk) this.buf = sharedQuiet;
    else if (this.kept || this.buf === sharedQuiet) this.buf = Buffer.allocUnsafeSlow(BULK_READ);
    this.kept = false;
    return this.buf;
  };

  /** The bytes of the last read, and how to keep them past the call. */
  chunk(n: number): { chunk: Buffer; keep: () => void } {
    this.lastRead = n;
    if (this.buf === sharedQuiet) return { chunk: Buffer.from(sharedQuiet.subarray(0, n)), keep: nothingToKeep };
    return { chunk: this.buf.subarray(0, n), keep: this.keep };
  }

  private readonly keep = (): void => {
    this.kept = true;
  };
}

/**
 * A TCP connection to the upstream with line-by-line reads, used until the session is handed
 * over to a byte pipe. Every read is bounded by the timeout.
 */
export class UpstreamConnection {
  private reader = new LineReader(64 * 1024);
  private waiting: (() => void) | null = null;
  private failure: Error | null = null;
  /** Where a plain socket's reads go (its onread callback); null once it is TLS or handed over. */
  private onBytes: ((chunk: Buffer, keep: () => void) => boolean) | null = null;
  private readonly reused: ReusedReadBuffer | null;

  private constructor(
    public socket: Socket,
    private readonly ep: Endpoint,
    reused: ReusedReadBuffer | null,
  ) {
    this.reused = reused;
    this.attach(socket);
  }

  /** Line reading: the chunk is copied, since a plain socket's buffer is read into again. */
  private readonly toLines = (chunk: Buffer): boolean => {
    this.reader.push(Buffer.from(chunk));
    this.wake();
    return true;
  };

  private attach(socket: Socket): void {
    if (this.reused) this.onBytes = this.toLines;
    else socket.on('data', this.toLines);
    const fail = (err: Error) => {
      this.failure ??= err;
      this.wake();
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  private detach(): void {
    this.onBytes = null;
    for (const ev of ['data', 'error', 'close']) this.socket.removeAllListeners(ev);
  }

  get startTlsWanted(): boolean {
    return this.ep.tls?.mode === 'starttls';
  }

  static async open(ep: Endpoint): Promise<UpstreamConnection> {
    // Only a socket that stays plain reads into a reused buffer: TLS reads its own.
    const reused = (ep.tls?.mode ?? 'none') === 'none' ? new ReusedReadBuffer() : null;
    let conn: UpstreamConnection | null = null;
    const socket = await UpstreamConnection.tcp(
      ep,
      reused && {
        buffer: reused.next,
        callback: (n) => {
          const { chunk, keep } = reused.chunk(n);
          return conn?.onBytes?.(chunk, keep) ?? true;
        },
      },
    );
    conn = new UpstreamConnection(socket, ep, reused);
    if (ep.tls?.mode === 'implicit') await conn.upgrade();
    return conn;
  }

  /** Wraps the connection in TLS (after STARTTLS/STLS was accepted, or at once for implicit). */
  async upgrade(): Promise<void> {
    const tls = this.ep.tls;
    if (!tls || tls.mode === 'none') throw upstreamDown('TLS upgrade without TLS settings');
    this.detach();
    // Whatever arrived before the handshake came in clear: it is not read as part of the session.
    this.reader = new LineReader(64 * 1024);
    const raw = this.socket;
    const secure = await new Promise<Socket>((resolve, reject) => {
      const t = tlsConnect(
        { socket: raw, servername: /^[\d.:]+$/.test(this.ep.host) ? undefined : this.ep.host, ca: tls.ca ?? undefined, rejectUnauthorized: tls.verify },
        () => resolve(t),
      );
      const timer = setTimeout(() => reject(upstreamDown(`TLS handshake with ${this.ep.host} timed out`)), this.ep.timeoutMs);
      t.once('secureConnect', () => clearTimeout(timer));
      t.once('error', (err) => {
        clearTimeout(timer);
        reject(upstreamDown(`TLS with ${this.ep.host}:${this.ep.port} failed: ${err.message}`, err));
      });
    });
    this.socket = secure;
    this.attach(secure);
  }

  private static tcp(ep: Endpoint, onread: OnReadOpts | null): Promise<Socket> {
    return new Promise((resolve, reject) => {
      // highWaterMark is a stream option net.Socket passes on; @types/node does not list it.
      const socket = new Socket({ highWaterMark: PIPE_HIGH_WATER_MARK, ...(onread ? { onread } : {}) } as SocketConstructorOpts).connect(ep.port, ep.host);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(upstreamDown(`${ep.host}:${ep.port} did not answer in ${ep.timeoutMs} ms`));
      }, ep.timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.setNoDelay(true);
        if (ep.preamble) socket.write(ep.preamble);
        resolve(socket);
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(upstreamDown(`${ep.host}:${ep.port} ${err.message}`, err));
      });
    });
  }

  private wake(): void {
    const w = this.waiting;
    this.waiting = null;
    w?.();
  }

  async line(): Promise<string> {
    const deadline = Date.now() + this.ep.timeoutMs;
    for (;;) {
      const l = this.reader.line();
      if (l !== null) return l;
      if (this.failure) throw upstreamDown(this.failure.message, this.failure);
      const left = deadline - Date.now();
      if (left <= 0) throw upstreamDown('no answer in time');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiting = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /**
   * Stops line reading and returns the socket, anything already buffered, and how to read on.
   * Whatever arrives before `read` is called is kept and goes first.
   */
  handOver(): { socket: Socket; pending: Buffer; read: UpstreamReader } {
    const { socket } = this;
    socket.removeAllListeners('error');
    socket.removeAllListeners('close');
    const pending = this.reader.drain();
    const read: UpstreamReader = (fn) => {
      const late = this.reader.drain();
      if (late.length && !fn(late, nothingToKeep)) socket.pause();
      if (this.onBytes) {
        this.onBytes = fn;
        return;
      }
      socket.removeListener('data', this.toLines);
      socket.on('data', (chunk: Buffer) => {
        if (!fn(chunk, nothingToKeep)) socket.pause();
      });
    };
    return { socket, pending, read };
  }

  /** Still open, with nothing unread: a spare that can be used for a login. */
  get usable(): boolean {
    return !this.failure && !this.socket.destroyed && this.reader.buffered === 0;
  }

  close(): void {
    this.socket.destroy();
  }
}
