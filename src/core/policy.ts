import type { AuditLog } from './audit-log.js';
import type { Clock } from './clock.js';
import { PosternError } from './errors.js';
import type { PolicyStore } from './ports.js';
import type { Domain, FeatureName, FeatureSetting } from './types.js';

export type FeatureDefaults = Record<FeatureName, FeatureSetting>;

/**
 * Feature settings in two levels: the server-wide status, which a domain may
 * override only while the feature is unlocked. Values set through the API win over the
 * configuration's defaults. Read often (every login), so kept for a few seconds.
 */
export class Policy {
  private cache: { at: number; features: FeatureDefaults; domains: Map<string, Partial<Record<FeatureName, FeatureSetting['status']>>> } | null = null;

  constructor(
    private readonly store: PolicyStore,
    private readonly defaults: FeatureDefaults,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly ttlMs = 5000,
  ) {}

  private async snapshot() {
    const now = this.clock.now().getTime();
    if (!this.cache || now - this.cache.at > this.ttlMs) {
      this.cache = { at: now, features: { ...this.defaults, ...(await this.store.features()) }, domains: new Map() };
    }
    return this.cache;
  }

  /** Server-wide settings as in force now. */
  async features(): Promise<FeatureDefaults> {
    return (await this.snapshot()).features;
  }

  /** Whether a feature is on for an account of `domain` ('' for none). */
  async enabled(feature: FeatureName, domain: string): Promise<boolean> {
    const snap = await this.snapshot();
    const server = snap.features[feature];
    if (server.lock === 'locked' || !domain) return server.status === 'enabled';
    let overrides = snap.domains.get(domain);
    if (!overrides) {
      overrides = (await this.store.domain(domain))?.features ?? {};
      snap.domains.set(domain, overrides);
    }
    return (overrides[feature] ?? server.status) === 'enabled';
  }

  async setFeature(actor: string, name: FeatureName, setting: FeatureSetting): Promise<void> {
    await this.store.setFeature(name, setting);
    this.cache = null;
    await this.audit.record({ action: 'policy.update', result: 'success', actor, reason: `${name}=${setting.status},${setting.lock}` });
  }

  /** A domain's override; refused while the feature is locked server-wide. */
  async setDomainFeature(actor: string, domain: string, name: FeatureName, status: FeatureSetting['status'] | null): Promise<Domain> {
    const server = (await this.features())[name];
    if (server.lock === 'locked' && status !== null) {
      throw new PosternError('conflict', `${name} is locked server-wide: domains cannot override it`);
    }
    const d = await this.store.setDomainFeature(domain, name, status, this.clock.now());
    this.cache = null;
    await this.audit.record({ action: 'policy.update', result: 'success', actor, reason: `${domain}:${name}=${status ?? 'server'}` });
    return d;
  }
}
