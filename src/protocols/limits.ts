import { isIP } from 'node:net';

/** In-process counters for connections not yet logged in (per IP) and live sessions (per user). */
export class ConnectionCounter {
  private readonly counts = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** Takes a slot; false when the key is at its maximum. */
  acquire(key: string): boolean {
    const n = this.counts.get(key) ?? 0;
    if (n >= this.max) return false;
    this.counts.set(key, n + 1);
    return true;
  }

  release(key: string): void {
    const n = (this.counts.get(key) ?? 1) - 1;
    if (n <= 0) this.counts.delete(key);
    else this.counts.set(key, n);
  }

  count(key: string): number {
    return this.counts.get(key) ?? 0;
  }
}

/**
 * Bytes held at once across all sessions (uploads waiting to be sealed), so that many
 * large uploads together cannot exhaust memory; each session has its own bound as well.
 */
export class ByteBudget {
  private used = 0;

  constructor(private readonly max: number) {}

  /** Reserves n bytes; false when that would pass the bound. */
  take(n: number): boolean {
    if (this.used + n > this.max) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used = Math.max(0, this.used - n);
  }
}

/** A socket's peer address with IPv4-mapped IPv6 (::ffff:1.2.3.4) reduced to IPv4. */
export function peerIp(addr: string | undefined): string {
  const a = addr ?? '';
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}
