import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';

/** A line-oriented raw TCP/TLS client for protocol edge cases no library would send. */
export class RawClient {
  private buf = '';
  private waiters: Array<() => void> = [];
  closed = false;

  private constructor(public socket: Socket) {
    this.wire(socket);
  }

  private wire(socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buf += d;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  private wake() {
    const w = this.waiters;
    this.waiters = [];
    w.forEach((f) => f());
  }

  /** `from`: the local address to connect from (any 127.x.y.z on Linux), to look like another client. */
  static open(port: number, tls = false, from?: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = tls
        ? // tls.connect hands socket options such as localAddress on to net.connect.
          tlsConnect({ port, host: '127.0.0.1', localAddress: from, rejectUnauthorized: false } as ConnectionOptions, () => resolve(new RawClient(s)))
        : netConnect({ port, host: '127.0.0.1', localAddress: from }, () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  write(s: string) {
    this.socket.write(s);
  }

  /** Resolves with everything received once a line matches, failing after timeoutMs. */
  async until(re: RegExp, timeoutMs = 8000): Promise<string> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const m = this.buf.split('\r\n').findIndex((l) => re.test(l));
      if (m >= 0) {
        const lines = this.buf.split('\r\n');
        const out = lines.slice(0, m + 1).join('\r\n');
        this.buf = lines.slice(m + 1).join('\r\n');
        return out;
      }
      if (this.closed) throw new Error(`closed before ${re}: ${this.buf}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`timeout waiting for ${re}: ${this.buf}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Waits for the server to close the connection; returns what it sent last. */
  async closedWithin(timeoutMs = 8000): Promise<string> {
    const end = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    if (!this.closed) throw new Error('still open');
    return this.buf;
  }

  /** Upgrades this connection to TLS (after STARTTLS/STLS was accepted). */
  upgrade(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.removeAllListeners('data');
      this.socket.removeAllListeners('close');
      const t = tlsConnect({ socket: this.socket, rejectUnauthorized: false }, () => resolve());
      t.once('error', reject);
      this.socket = t;
      this.buf = '';
      this.wire(t);
    });
  }

  close() {
    this.socket.destroy();
  }
}

/** Sends `input`, half-closes (as `printf … | nc -N` does), and returns all the server said until it closed. */
export function sendAndHalfClose(port: number, input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.on('connect', () => s.end(input));
    s.on('close', () => resolve(out));
    s.on('error', reject);
    setTimeout(() => reject(new Error(`no close; got: ${out}`)), 8000).unref();
  });
}
