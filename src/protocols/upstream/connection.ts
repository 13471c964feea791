import { Socket, type SocketConstructorOpts } from 'node:net';
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
 * A plain TCP connection to the upstream with line-by-line reads, used only until the
 * session is handed over to a byte pipe. Every read is bounded by the timeout.
 */
export class UpstreamConnection {
  private reader = new LineReader(64 * 1024);
  private waiting: (() => void) | null = null;
  private failure: Error | null = null;

  private constructor(
    public socket: Socket,
    private readonly ep: Endpoint,
  ) {
    this.attach(socket);
  }

  private attach(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      this.wake();
    });
    const fail = (err: Error) => {
      this.failure ??= err;
      this.wake();
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  private detach(): void {
    for (const ev of ['data', 'error', 'close']) this.socket.removeAllListeners(ev);
  }

  get startTlsWanted(): boolean {
    return this.ep.tls?.mode === 'starttls';
  }

  static async open(ep: Endpoint): Promise<UpstreamConnection> {
    const conn = new UpstreamConnection(await UpstreamConnection.tcp(ep), ep);
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

  private static tcp(ep: Endpoint): Promise<Socket> {
    return new Promise((resolve, reject) => {
      // highWaterMark is a stream option net.Socket passes on; @types/node does not list it.
      const socket = new Socket({ highWaterMark: PIPE_HIGH_WATER_MARK } as SocketConstructorOpts).connect(ep.port, ep.host);
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

  /** Stops line reading and returns the socket with anything already buffered. */
  handOver(): { socket: Socket; pending: Buffer } {
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('error');
    this.socket.removeAllListeners('close');
    return { socket: this.socket, pending: this.reader.drain() };
  }

  /** Still open, with nothing unread: a spare that can be used for a login. */
  get usable(): boolean {
    return !this.failure && !this.socket.destroyed && this.reader.buffered === 0;
  }

  close(): void {
    this.socket.destroy();
  }
}
