import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Decision } from './core/authenticate.js';
import type { AuditEvent } from './core/types.js';

const VERSION = (JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'package.json'), 'utf8')) as { version: string }).version;

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

  readonly decisions = new Histogram({
    name: 'postern_auth_decision_seconds',
    help: 'Time from a login arriving at the core to its answer',
    labelNames: ['protocol', 'result'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });

  readonly upstreamErrors = new Counter({
    name: 'postern_upstream_errors_total',
    help: 'Logins postern granted that the upstream could not open (down, refused the master login, TLS)',
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
      name: 'postern_build_info',
      help: 'Version of postern and Node.js running',
      labelNames: ['version', 'node'] as const,
      registers: [this.registry],
    })
      .labels(VERSION, process.versions.node)
      .set(1);
    new Gauge({
      name: 'postern_hash_queue',
      help: 'Password checks waiting for a worker thread',
      registers: [this.registry],
      collect() {
        this.set(hashQueue());
      },
    });
  }

  decided(d: Decision): void {
    this.decisions.observe({ protocol: d.protocol, result: d.result }, d.ms / 1000);
  }

  /** Counts each event as it is written, whatever store holds it. */
  /** Counts a stored audit event (an audit observer). */
  audited(event: AuditEvent): void {
    // Only the reasons of logins form a closed set; others carry ids (of ASPs, devices,
    // tokens) that would make a new series each.
    this.events.inc({
      action: event.action,
      result: event.result,
      reason: event.action === 'auth' ? (event.reason ?? '') : '',
      protocol: event.protocol ?? '',
    });
  }
}
