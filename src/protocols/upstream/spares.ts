import type { UpstreamConnection } from './connection.js';

/**
 * Upstream connections opened and greeted (and upgraded to TLS) ahead of the logins that will
 * use them. Dovecot takes a few milliseconds to greet a new connection; a spare moves that out
 * of the time a user waits for LOGIN. Spares are made only after a login asked for one, and
 * go after `maxAgeMs` unused, so an idle gateway holds none.
 */
export class SpareConnections {
  private spares: Array<{ conn: UpstreamConnection; at: number }> = [];
  private opening = 0;
  private closed = false;
  private readonly sweep: NodeJS.Timeout;

  constructor(
    private readonly open: () => Promise<UpstreamConnection>,
    private readonly size: number,
    private readonly maxAgeMs = 20_000,
  ) {
    this.sweep = setInterval(() => this.expire(Date.now()), maxAgeMs / 2);
    this.sweep.unref();
  }

  /** A greeted connection: a spare when one is ready, else a new one. Call `topUp` once the login on it is done. */
  async take(): Promise<{ conn: UpstreamConnection; spare: boolean }> {
    this.expire(Date.now());
    let spare: UpstreamConnection | null = null;
    while (!spare && this.spares.length) {
      const s = this.spares.shift()!;
      if (s.conn.usable) spare = s.conn;
      else s.conn.close();
    }
    return spare ? { conn: spare, spare: true } : { conn: await this.open(), spare: false };
  }

  get ready(): number {
    return this.spares.length;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweep);
    for (const s of this.spares) s.conn.close();
    this.spares = [];
  }

  /**
   * Opens what is missing. Called after a login rather than when it takes its connection: a
   * new connection greeted by the upstream meanwhile would slow that very login down.
   */
  topUp(): void {
    while (!this.closed && this.spares.length + this.opening < this.size) {
      this.opening++;
      this.open().then(
        (conn) => {
          this.opening--;
          if (this.closed) return conn.close();
          this.spares.push({ conn, at: Date.now() });
        },
        () => {
          // The upstream is down: the next login finds out itself, with its own answer.
          this.opening--;
        },
      );
    }
  }

  private expire(now: number): void {
    this.spares = this.spares.filter((s) => {
      if (now - s.at < this.maxAgeMs && s.conn.usable) return true;
      s.conn.close();
      return false;
    });
  }
}
