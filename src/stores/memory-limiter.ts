import type { Clock } from '../core/clock.js';
import type { RateLimiter, Reservation } from '../core/ports.js';

/** A counted failure; any other value is the number of checks of that attempt in flight. */
const FAILED = -1;

interface Window {
  endsAt: number;
  /** Fingerprint → FAILED, or how many holders of a reservation are still checking it. */
  attempts: Map<string, number>;
}

/**
 * In-process attempt windows for a single postern process (the embedded default), with the
 * same rules as the Redis script. Everything between reading a window and changing it is
 * synchronous, which is what makes a reservation atomic here.
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

  private open(key: string, now: number, windowMs: number): Window {
    this.makeRoom(now);
    const w: Window = { endsAt: now + windowMs, attempts: new Map() };
    this.windows.set(key, w);
    return w;
  }

  async reserve(key: string, fingerprint: string, limit: number, windowMs: number): Promise<Reservation> {
    const now = this.clock.now().getTime();
    const w = this.live(key, now);
    const state = w?.attempts.get(fingerprint);
    if (w && state !== undefined && state > 0) {
      // The same attempt is being checked already: it shares that reservation.
      w.attempts.set(fingerprint, state + 1);
      return { granted: true, resetInMs: w.endsAt - now };
    }
    const size = w?.attempts.size ?? 0;
    // A failure already counted is not counted again, but is not checked in a full window either.
    if (size >= limit) return { granted: false, resetInMs: w ? w.endsAt - now : 0 };
    if (state === FAILED) return { granted: true, resetInMs: w!.endsAt - now };
    const win = w ?? this.open(key, now, windowMs);
    win.attempts.set(fingerprint, 1);
    return { granted: true, resetInMs: win.endsAt - now };
  }

  async settle(key: string, fingerprint: string, outcome: 'failed' | 'refunded', windowMs: number): Promise<void> {
    const now = this.clock.now().getTime();
    const w = this.live(key, now);
    const state = w?.attempts.get(fingerprint);
    if (outcome === 'failed') {
      // A window that ended while the check ran: the failure opens the next one.
      if (state === undefined) (w ?? this.open(key, now, windowMs)).attempts.set(fingerprint, FAILED);
      else if (state > 0) w!.attempts.set(fingerprint, FAILED);
      return;
    }
    if (!w || state === undefined || state <= 0) return;
    if (state > 1) w.attempts.set(fingerprint, state - 1);
    else {
      w.attempts.delete(fingerprint);
      if (w.attempts.size === 0) this.windows.delete(key);
    }
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
