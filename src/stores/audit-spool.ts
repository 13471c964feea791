import { appendFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { AuditFallback } from '../core/audit-log.js';
import type { AuditEvent } from '../core/types.js';
import { fromJson, toJson } from './documents.js';

/**
 * Local append-only file for audit events written while the audit store is down. Sync
 * writes on purpose: an event must be on disk before the decision it records is answered.
 */
export class AuditSpool implements AuditFallback {
  constructor(private readonly path: string) {
    mkdirSync(dirname(path), { recursive: true });
  }

  async append(event: AuditEvent, expiresAt: Date): Promise<void> {
    appendFileSync(this.path, `${toJson({ event, expiresAt })}\n`);
  }

  /**
   * Each draining process renames the spool to a file of its own (processes sharing one data
   * directory must not read each other's half-drained batch), and adopts the batch of a
   * process that died while draining.
   */
  async drain(sink: (event: AuditEvent, expiresAt: Date) => Promise<void>): Promise<number> {
    const mine = `${this.path}.${process.pid}.draining`;
    try {
      renameSync(this.path, mine);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    let moved = 0;
    for (const batch of this.batches(mine)) {
      const lines = readFileSync(batch, 'utf8').split('\n').filter(Boolean);
      let done = 0;
      try {
        for (const line of lines) {
          const { event, expiresAt } = fromJson<{ event: AuditEvent; expiresAt: Date }>(line);
          await sink(event, expiresAt);
          done++;
        }
      } finally {
        // Whatever the sink did not take goes back to the spool, in order.
        const rest = lines.slice(done);
        if (rest.length) appendFileSync(this.path, `${rest.join('\n')}\n`);
        rmSync(batch);
        moved += done;
      }
    }
    return moved;
  }

  /** This process's batch, and those of draining processes that no longer run. */
  private batches(mine: string): string[] {
    const prefix = `${basename(this.path)}.`;
    const found: string[] = [];
    for (const name of readdirSync(dirname(this.path))) {
      const m = name.startsWith(prefix) ? /^(\d+)\.draining$/.exec(name.slice(prefix.length)) : null;
      if (!m) continue;
      const path = join(dirname(this.path), name);
      if (path === mine || !alive(Number(m[1]))) found.push(path);
    }
    return found;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
