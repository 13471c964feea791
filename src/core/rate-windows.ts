import { BlockList, isIP } from 'node:net';
import { invalid } from './errors.js';
import type { RateLimiter } from './ports.js';

export interface LimitSettings {
  passwordFailures: number;
  passwordWindowMs: number;
  totpFailures: number;
  totpWindowMs: number;
  ipFailures: number;
  ipWindowMs: number;
  /** Addresses and CIDRs (monitoring, webmail hosts) exempt from the per-IP window. */
  allowList: string[];
}

export function buildAllowList(entries: string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [addr = '', bits] = entry.split('/');
    const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr, family);
    else list.addSubnet(addr, Number(bits), family);
  }
  return list;
}

/** Whether an address is in a list of addresses and CIDRs (plaintext networks, nginx hosts, an ASP's networks). */
export function networkMatcher(networks: string[]): (ip: string) => boolean {
  const list = buildAllowList(networks);
  return (ip) => {
    const v = isIP(ip);
    return v !== 0 && list.check(ip, v === 6 ? 'ipv6' : 'ipv4');
  };
}

/** A list of addresses and CIDRs from user input, in normal form; throws on a bad entry. */
export function parseNetworks(entries: string[]): string[] {
  return entries.map((raw) => {
    const entry = raw.trim();
    const [addr = '', bits, extra] = entry.split('/');
    const v = isIP(addr);
    const max = v === 6 ? 128 : 32;
    if (!v || extra !== undefined || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max))) {
      throw invalid(`"${raw}" is not an address or CIDR such as 203.0.113.0/24 or 2001:db8::/32`);
    }
    return bits === undefined ? addr : `${addr}/${Number(bits)}`;
  });
}

/** An attempt counted before its check: settle it once the answer is known. */
export interface Attempt {
  /** 'failed' keeps it counted; 'refunded' gives the reservation back. Never throws. */
  settle(outcome: 'failed' | 'refunded'): Promise<void>;
}

export type Gate = { granted: true; attempt: Attempt } | { granted: false; retryAfterSec: number };

interface Window {
  key: string;
  fingerprint: string;
  limit: number;
  windowMs: number;
}

/**
 * The guessing limits: per account (passwords, and second factors apart), per address
 * across accounts, and the narrow way in for an account's own clients during a lockout.
 *
 * The rule they keep, whatever the concurrency: an attempt is reserved in every window that
 * guards it before any hash or code is checked, so at most `limit` distinct wrong attempts
 * are ever checked per window. A success gives back only its own reservation; it never
 * clears anyone else's failures, so the owner logging in cannot reopen the window for a
 * stranger.
 */
export class RateWindows {
  private allow: BlockList;

  constructor(
    private readonly limiter: RateLimiter,
    private s: LimitSettings,
  ) {
    this.allow = buildAllowList(s.allowList);
  }

  /** New limits for the attempts from now on; windows already open keep what they counted. */
  update(s: LimitSettings): void {
    this.allow = buildAllowList(s.allowList);
    this.s = s;
  }

  private ipKey(ip: string | null): string | null {
    if (!ip || !isIP(ip)) return null;
    return this.allow.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4') ? null : `ip:${ip}`;
  }

  /** A password (or ASP) check: the account window and the address window. */
  password(username: string, ip: string | null, fingerprint: string): Promise<Gate> {
    const windows: Window[] = [{ key: `pw:${username}`, fingerprint, limit: this.s.passwordFailures, windowMs: this.s.passwordWindowMs }];
    const ipKey = this.ipKey(ip);
    if (ipKey) windows.push({ key: ipKey, fingerprint: `${username}:${fingerprint}`, limit: this.s.ipFailures, windowMs: this.s.ipWindowMs });
    return this.gate(windows);
  }

  /**
   * During a lockout, an address the account's secret was verified from moments ago may still
   * present recently verified secrets; its misses are counted here, so even a stranger behind
   * the owner's address gets no more than the password limit of guesses at the cache.
   */
  lockoutBypass(username: string, ip: string, fingerprint: string): Promise<Gate> {
    return this.gate([{ key: `pwb:${username}:${ip}`, fingerprint, limit: this.s.passwordFailures, windowMs: this.s.passwordWindowMs }]);
  }

  /** A second-factor check (TOTP, recovery code, security key), counted apart from passwords. */
  secondFactor(username: string, fingerprint: string): Promise<Gate> {
    return this.gate([{ key: `totp:${username}`, fingerprint, limit: this.s.totpFailures, windowMs: this.s.totpWindowMs }]);
  }

  /**
   * Reserves in every window at once; if any is full, the others are given back. A reservation
   * that fails to settle stays counted until its window ends: a fault never gives a guess away.
   */
  private async gate(windows: Window[]): Promise<Gate> {
    const settled = await Promise.allSettled(windows.map((w) => this.limiter.reserve(w.key, w.fingerprint, w.limit, w.windowMs)));
    const held = windows.filter((_, i) => {
      const r = settled[i]!;
      return r.status === 'fulfilled' && r.value.granted;
    });
    const settleAll = async (outcome: 'failed' | 'refunded', which: Window[]) => {
      await Promise.all(which.map((w) => this.limiter.settle(w.key, w.fingerprint, outcome, w.windowMs).catch(() => undefined)));
    };
    const fault = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (fault || held.length < windows.length) {
      await settleAll('refunded', held);
      if (fault) throw fault.reason;
      const wait = Math.max(...settled.map((r) => (r.status === 'fulfilled' && !r.value.granted ? r.value.resetInMs : 0)));
      return { granted: false, retryAfterSec: Math.max(1, Math.ceil(wait / 1000)) };
    }
    let done = false;
    return {
      granted: true,
      attempt: {
        settle: async (outcome) => {
          if (done) return;
          done = true;
          await settleAll(outcome, windows);
        },
      },
    };
  }
}
