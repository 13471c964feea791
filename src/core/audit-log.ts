import { randomBytes } from 'node:crypto';
import type { Clock } from './clock.js';
import type { AuditStore } from './ports.js';
import type { AuditEvent } from './types.js';

export type AuditInput = Partial<AuditEvent> & Pick<AuditEvent, 'action' | 'result'>;

/** Where events go while the main audit store is down, so none is lost. */
export interface AuditFallback {
  append(event: AuditEvent, expiresAt: Date): Promise<void>;
  /** Hands spooled events to `sink` in order, dropping each once sink accepted it. */
  drain(sink: (event: AuditEvent, expiresAt: Date) => Promise<void>): Promise<number>;
}

export interface AuditErrorSink {
  (err: unknown, event: AuditEvent): void;
}

/** Told of every event once it is stored (metrics, security notices, plugins). */
export type AuditObserver = (event: AuditEvent) => void | Promise<void>;

/** An observer that threw, by the name it subscribed with. */
export type ObserverErrorSink = (name: string, err: unknown, event: AuditEvent) => void;

/**
 * Fills in defaults and retention, never loses an event to a store outage, and is the one
 * place that tells observers of each stored event: they are not awaited, and one that fails
 * neither delays a decision nor keeps the others from hearing.
 */
export class AuditLog {
  private readonly observers: Array<{ name: string; fn: AuditObserver }> = [];

  constructor(
    private readonly store: AuditStore,
    private readonly clock: Clock,
    private readonly retentionMs: number,
    private readonly fallback: AuditFallback | null = null,
    private readonly onError: AuditErrorSink = () => {},
    private readonly onObserverError: ObserverErrorSink = () => {},
  ) {}

  subscribe(name: string, fn: AuditObserver): void {
    this.observers.push({ name, fn });
  }

  private tell(event: AuditEvent): void {
    for (const { name, fn } of this.observers) {
      Promise.resolve()
        .then(() => fn(event))
        .catch((err: unknown) => this.onObserverError(name, err, event));
    }
  }

  async record(input: AuditInput): Promise<void> {
    const event: AuditEvent = {
      // Made here, before the first write, so a write that is tried again (after a timeout
      // that may have stored it after all) is recognised and kept once.
      id: randomBytes(12).toString('hex'),
      time: this.clock.now(),
      reason: null,
      userId: null,
      username: null,
      ip: null,
      protocol: null,
      scope: null,
      aspId: null,
      sessionId: null,
      userAgent: null,
      actor: null,
      ...input,
    };
    const expiresAt = new Date(event.time.getTime() + this.retentionMs);
    try {
      await this.store.append(event, expiresAt);
    } catch (err) {
      this.onError(err, event);
      if (!this.fallback) throw err;
      // Observers hear of it once it reaches the store, when the spool is written back.
      await this.fallback.append(event, expiresAt);
      return;
    }
    this.tell(event);
  }

  /** Moves spooled events into the store once it is back; returns how many moved. */
  async flushFallback(): Promise<number> {
    if (!this.fallback) return 0;
    return this.fallback.drain(async (e, exp) => {
      await this.store.append(e, exp);
      this.tell(e);
    });
  }
}
