import { appendFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
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

  async drain(sink: (event: AuditEvent, expiresAt: Date) => Promise<void>): Promise<number> {
    if (!existsSync(this.path)) return 0;
    const draining = `${this.path}.draining`;
    renameSync(this.path, draining);
    const lines = readFileSync(draining, 'utf8').split('\n').filter(Boolean);
    let moved = 0;
    try {
      for (const line of lines) {
        const { event, expiresAt } = fromJson<{ event: AuditEvent; expiresAt: Date }>(line);
        await sink(event, expiresAt);
        moved++;
      }
    } finally {
      // Whatever the sink did not take goes back to the spool, in order.
      const rest = lines.slice(moved);
      if (rest.length) appendFileSync(this.path, `${rest.join('\n')}\n`);
      rmSync(draining);
    }
    return moved;
  }
}
