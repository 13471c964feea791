import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { AuditStore } from './core/ports.js';

/** Prometheus metrics of one postern process, served at /metrics on the API listener. */
export class Metrics {
  readonly registry = new Registry();
  readonly events = new Counter({
    name: 'postern_audit_events_total',
    help: 'Audit events: every authentication decision and every change of authentication data',
    labelNames: ['action', 'result', 'reason', 'protocol'] as const,
    registers: [this.registry],
  });
  readonly sessions = new Gauge({
    name: 'postern_proxied_sessions',
    help: 'Sessions currently carried to the upstream',
    labelNames: ['protocol'] as const,
    registers: [this.registry],
  });

  readonly encryptions = new Counter({
    name: 'postern_pgp_encryptions_total',
    help: 'Messages encrypted to a user key before they are stored (LMTP delivery, IMAP uploads, Sent copies)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  constructor(hashQueue: () => number) {
    collectDefaultMetrics({ register: this.registry, prefix: 'postern_' });
    new Gauge({
      name: 'postern_hash_queue',
      help: 'Password checks waiting for a worker thread',
      registers: [this.registry],
      collect() {
        this.set(hashQueue());
      },
    });
  }

  /** Counts each event as it is written, whatever store holds it. */
  countingAudit(store: AuditStore): AuditStore {
    return {
      append: async (event, expiresAt) => {
        await store.append(event, expiresAt);
        this.events.inc({ action: event.action, result: event.result, reason: event.reason ?? '', protocol: event.protocol ?? '' });
      },
      query: (q, now) => store.query(q, now),
      purgeExpired: (now) => store.purgeExpired(now),
    };
  }
}
