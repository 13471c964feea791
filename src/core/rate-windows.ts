import { BlockList, isIP } from 'node:net';
import type { RateLimiter, WindowState } from './ports.js';

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

export interface Lock {
  locked: boolean;
  retryAfterSec: number;
}

const lockOf = (states: Array<[WindowState, number]>): Lock => {
  let retry = 0;
  for (const [s, limit] of states) if (s.count >= limit) retry = Math.max(retry, s.resetInMs);
  return { locked: retry > 0, retryAfterSec: Math.ceil(retry / 1000) };
};

/** The account and per-IP failure windows of MISSION A7, over any RateLimiter. */
export class RateWindows {
  private readonly allow: BlockList;

  constructor(
    private readonly limiter: RateLimiter,
    private readonly s: LimitSettings,
  ) {
    this.allow = buildAllowList(s.allowList);
  }

  private ipKey(ip: string | null): string | null {
    if (!ip || !isIP(ip)) return null;
    return this.allow.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4') ? null : `ip:${ip}`;
  }

  async passwordLock(username: string, ip: string | null): Promise<Lock> {
    const ipKey = this.ipKey(ip);
    const [acct, byIp] = await Promise.all([
      this.limiter.peek(`pw:${username}`),
      ipKey ? this.limiter.peek(ipKey) : Promise.resolve({ count: 0, resetInMs: 0 }),
    ]);
    return lockOf([
      [acct, this.s.passwordFailures],
      [byIp, this.s.ipFailures],
    ]);
  }

  async totpLock(username: string): Promise<Lock> {
    return lockOf([[await this.limiter.peek(`totp:${username}`), this.s.totpFailures]]);
  }

  /** Counts a wrong secret once per distinct fingerprint, against the account and the IP. */
  async passwordFailed(username: string, ip: string | null, fingerprint: string): Promise<void> {
    const ipKey = this.ipKey(ip);
    await Promise.all([
      this.limiter.fail(`pw:${username}`, fingerprint, this.s.passwordWindowMs),
      ipKey ? this.limiter.fail(ipKey, `${username}:${fingerprint}`, this.s.ipWindowMs) : null,
    ]);
  }

  async totpFailed(username: string, fingerprint: string): Promise<void> {
    await this.limiter.fail(`totp:${username}`, fingerprint, this.s.totpWindowMs);
  }

  /** A success clears the account's windows; the IP window stays, or one good account would reset a spray. */
  async succeeded(username: string): Promise<void> {
    await this.limiter.clear([`pw:${username}`, `totp:${username}`]);
  }
}
