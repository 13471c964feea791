import { Cluster } from 'ioredis';
import type { RedisConnection } from './redis-client.js';
import { temporary } from '../core/errors.js';
import type { CredentialEvents } from '../core/ports.js';

type Listener = (userId: string) => void;

/** Credential events with listeners: what a process holding live sessions subscribes to. */
export interface CredentialFeed extends CredentialEvents {
  subscribe(fn: Listener): () => void;
  close(): Promise<void>;
}

/** Within one process (the embedded default): listeners hear of a change at once. */
export class LocalCredentialEvents implements CredentialFeed {
  protected readonly listeners = new Set<Listener>();

  async changed(userId: string): Promise<void> {
    this.deliver(userId);
  }

  protected deliver(userId: string): void {
    for (const fn of this.listeners) fn(userId);
  }

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}

/**
 * Across every postern process sharing Redis (and the command line): a change is published
 * on a channel, and each process that holds sessions hears it. A message lost while Redis is
 * away is made up for by the periodic re-check of live sessions.
 */
export class RedisCredentialEvents extends LocalCredentialEvents {
  private subscriber: RedisConnection | null = null;

  constructor(
    private readonly redis: RedisConnection,
    private readonly channel = 'postern:credentials',
  ) {
    super();
  }

  override async changed(userId: string): Promise<void> {
    this.deliver(userId);
    try {
      await this.redis.publish(this.channel, userId);
    } catch (err) {
      throw temporary(err, 'Redis');
    }
  }

  override subscribe(fn: Listener): () => void {
    if (!this.subscriber) {
      // A connection in subscriber mode takes no other commands: one of its own, only in
      // processes that hold sessions.
      const sub: RedisConnection = this.redis instanceof Cluster ? this.redis.duplicate() : this.redis.duplicate();
      sub.on('error', () => undefined);
      sub.on('message', (channel: string, userId: string) => {
        if (channel === this.channel) this.deliver(userId);
      });
      void sub.subscribe(this.channel).catch(() => undefined);
      this.subscriber = sub;
    }
    return super.subscribe(fn);
  }

  override async close(): Promise<void> {
    this.subscriber?.disconnect();
    this.subscriber = null;
    await super.close();
  }
}
