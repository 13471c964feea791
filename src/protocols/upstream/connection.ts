import { Socket, type SocketConstructorOpts } from 'node:net';
import { PosternError, temporary } from '../../core/errors.js';
import { PIPE_HIGH_WATER_MARK } from '../frontend.js';
import { LineReader } from '../line-reader.js';

export interface Endpoint {
  host: string;
  port: number;
  timeoutMs: number;
}

export function upstreamDown(message: string, cause?: unknown): PosternError {
  return temporary(cause ?? new Error(message), `upstream mail server (${message})`);
}

/**
 * A plain TCP connection to the upstream with line-by-line reads, used only until the
 * session is handed over to a byte pipe. Every read is bounded by the timeout.
 */
export class UpstreamConnection {
  private readonly reader = new LineReader(64 * 1024);
  private waiting: (() => void) | null = null;
  private failure: Error | null = null;

  private constructor(
    readonly socket: Socket,
    private readonly timeoutMs: number,
  ) {
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

  static open(ep: Endpoint): Promise<UpstreamConnection> {
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
        resolve(new UpstreamConnection(socket, ep.timeoutMs));
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
    const deadline = Date.now() + this.timeoutMs;
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

  write(text: string): void {
    this.socket.write(text);
  }

  /** Stops line reading and returns the socket with anything already buffered. */
  handOver(): { socket: Socket; pending: Buffer } {
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('error');
    this.socket.removeAllListeners('close');
    return { socket: this.socket, pending: this.reader.drain() };
  }

  close(): void {
    this.socket.destroy();
  }
}
