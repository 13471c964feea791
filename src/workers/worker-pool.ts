import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { temporary } from '../core/errors.js';
import { parseStoredHash } from '../core/password-schemes.js';
import type { Hasher } from '../core/ports.js';

export interface WorkerPoolOptions {
  cost: number;
  /** Worker threads; defaults to the number of cores. */
  threads?: number;
  /** Checks allowed to wait for a thread; beyond it logins get a temporary failure. */
  maxQueue: number;
}

/**
 * bcrypt (and PGP encryption) in a bounded pool of worker threads, using the native `bcrypt` package (measured
 * 1.3–1.5× bcryptjs per check here, same standard $2b$ hashes; it ships its Linux binary, so
 * installs need no compiler and no per-platform optional packages). A full queue answers
 * "try again later" instead of letting a login storm pile up memory and latency.
 */
export class WorkerPool implements Hasher {
  private readonly pool: Piscina;

  constructor(private readonly o: WorkerPoolOptions) {
    const threads = o.threads ?? availableParallelism();
    this.pool = new Piscina({
      filename: new URL('./crypto-worker.js', import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      maxQueue: o.maxQueue,
      idleTimeout: 60_000,
    });
  }

  private async run<T>(task: object): Promise<T> {
    try {
      return (await this.pool.run(task)) as T;
    } catch (err) {
      throw temporary(err, 'password checking (worker pool busy)');
    }
  }

  hash(secret: string): Promise<string> {
    return this.run({ op: 'hash', secret, cost: this.o.cost });
  }

  /** Checks bcrypt and the imported schemes of core/password-schemes; unknown forms never match. */
  async verify(secret: string, stored: string): Promise<boolean> {
    const parsed = parseStoredHash(stored);
    if (!parsed) return false;
    return this.run<boolean>({ op: 'verify', secret, ...parsed });
  }

  /** PGP-encrypts `data` to an armored public key (for mail stored encrypted). */
  encryptPgp(armoredKey: string, data: Uint8Array): Promise<string> {
    return this.run({ op: 'encrypt', armoredKey, data });
  }

  get queued(): number {
    return this.pool.queueSize;
  }

  close(): Promise<void> {
    return this.pool.destroy();
  }
}
