import type { Clock } from '../core/clock.js';
import type { RateLimiter, WindowState } from '../core/ports.js';

interface Window {
  count: number;
  endsAt: number;
  seen: Set<string>;
}

/**
 * In-process failure windows for a single postern process (the embedded default).
 * Bounded: past maxKeys, expired windows are swept, then the oldest dropped.
 */
export class MemoryLimiter implements RateLimiter {
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly clock: Clock,
    private readonly maxKeys = 100_000,
  ) {}

  private live(key: string, now: number): Window | undefined {
    const w = this.windows.get(key);
    if (w && w.endsAt <= now) {
      this.windows.delete(key);
      return undefined;
    }
    return w;
  }

  async peek(key: string): Promise<WindowState> {
    const now = this.clock.now().getTime();
    const w = this.live(key, now);
    return w ? { count: w.count, resetInMs: w.endsAt - now } : { count: 0, resetInMs: 0 };
  }

  async fail(key: string, fingerprint: string, windowMs: number): Promise<WindowState> {
    const now = this.clock.now().getTime();
    let w = this.live(key, now);
    if (!w) {
      this.makeRoom(now);
      w = { count: 0, endsAt: now + windowMs, seen: new Set() };
      this.windows.set(key, w);
    }
    if (!w.seen.has(fingerprint)) {
      w.seen.add(fingerprint);
      w.count++;
    }
    return { count: w.count, resetInMs: w.endsAt - now };
  }

  async clear(keys: string[]): Promise<void> {
    for (const k of keys) this.windows.delete(k);
  }

  async close(): Promise<void> {}

  private makeRoom(now: number): void {
    if (this.windows.size < this.maxKeys) return;
    for (const [k, w] of this.windows) if (w.endsAt <= now) this.windows.delete(k);
    // Map keeps insertion order: the first keys are the oldest windows.
    for (const k of this.windows.keys()) {
      if (this.windows.size < this.maxKeys) break;
      this.windows.delete(k);
    }
  }
}
