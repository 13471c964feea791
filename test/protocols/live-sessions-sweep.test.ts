import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { LiveSessions } from '../../src/protocols/live-sessions.js';
import type { Grant } from '../../src/core/types.js';
import { PASSWORD, actor, req, testCore } from '../helpers/core.js';

describe('the periodic check of live sessions', () => {
  it('asks the store about a bounded batch of accounts at a time, and ends only what no longer holds', async () => {
    const c = await testCore();
    const grants: Grant[] = [];
    for (let i = 0; i < 250; i++) {
      await c.accounts.createUser(actor, { username: `u${i}`, password: PASSWORD });
      const r = await c.auth.authenticate(req(`u${i}`, PASSWORD, 'imap', `192.0.2.${i % 200}`));
      if (!r.ok) throw new Error(r.reason);
      grants.push(r.grant);
    }
    const batches: number[] = [];
    const auth = Object.assign(Object.create(c.auth) as typeof c.auth, {
      stillGranted: (g: Grant[]) => {
        batches.push(new Set(g.map((x) => x.userId)).size);
        return c.auth.stillGranted(g);
      },
    });
    const live = new LiveSessions(auth, pino({ level: 'silent' }), 3_600_000);
    const ended: string[] = [];
    grants.forEach((g, i) => live.add(g, `u${i}`, `s${i}`, () => ended.push(`u${i}`)));
    await c.accounts.setStatus(actor, 'u7', 'disabled');
    await live.recheckAll();
    live.close();
    expect(Math.max(...batches)).toBeLessThanOrEqual(100);
    expect(batches.reduce((a, b) => a + b, 0)).toBe(250);
    expect(ended).toEqual(['u7']);
    expect(live.size).toBe(249);
  }, 60_000);
});
