import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/core/types.js';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { RawClient } from '../helpers/raw-client.js';

// A mail login's audit event is written while the upstream session opens; these hold the
// rule that goes with it: nobody is let in before the event is stored.
describe('a mail login and its audit event', () => {
  let gw: Gateway;
  type Append = (event: AuditEvent, expiresAt: Date) => Promise<void>;
  let storeAppend: { append: Append };
  let original: Append;

  beforeAll(async () => {
    gw = await startGateway();
    await gw.addUser('alice', 'Alice-pass-123');
    storeAppend = gw.app.store.audit as unknown as { append: Append };
    original = storeAppend.append.bind(storeAppend);
  });
  afterAll(async () => {
    storeAppend.append = original;
    await gw.stop();
  });

  const login = async (tag: string) => {
    const c = await RawClient.open(gw.ports.imap);
    await c.until(/^\* OK/);
    c.write(`${tag} LOGIN alice Alice-pass-123\r\n`);
    return { c, answer: await c.until(new RegExp(`^${tag} `)) };
  };

  it('answers OK only once the event is stored, however slow the store', async () => {
    storeAppend.append = async (event, expiresAt) => {
      await new Promise((r) => setTimeout(r, 400));
      await original(event, expiresAt);
    };
    try {
      const { c, answer } = await login('s1');
      // Looked up the moment OK arrives: the event is already there.
      const page = await gw.app.store.audit.query({ username: 'alice', action: 'auth', result: 'success', limit: 10 }, new Date());
      expect(answer).toMatch(/^s1 OK/m);
      expect(page.events.length).toBe(1);
      c.write('s2 LOGOUT\r\n');
      await c.until(/^s2 /);
      c.close();
    } finally {
      storeAppend.append = original;
    }
  });

  it('holds for a dozen logins at once: every OK comes after its own event is stored', async () => {
    storeAppend.append = async (event, expiresAt) => {
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 300));
      await original(event, expiresAt);
    };
    const since = new Date(Date.now() - 1);
    const stored = async () =>
      (await gw.app.store.audit.query({ username: 'alice', action: 'auth', result: 'success', since, limit: 100 }, new Date())).events.length;
    let answered = 0;
    try {
      const sessions = await Promise.all(
        Array.from({ length: 12 }, async (_, i) => {
          const { c, answer } = await login(`p${i}`);
          expect(answer).toMatch(new RegExp(`^p${i} OK`, 'm'));
          answered++;
          // However many have been answered so far, at least that many events are stored.
          expect(await stored()).toBeGreaterThanOrEqual(answered);
          return c;
        }),
      );
      expect(await stored()).toBe(12);
      for (const c of sessions) c.close();
    } finally {
      storeAppend.append = original;
    }
  });

  it('refuses as a temporary failure, and relays nothing, when the event can be neither stored nor spooled', async () => {
    const spool = (gw.app.audit as unknown as { fallback: { append: Append } }).fallback;
    const spoolAppend = spool.append;
    storeAppend.append = () => Promise.reject(new Error('audit store down'));
    // The spool's disk is full as well.
    spool.append = () => Promise.reject(new Error('ENOSPC'));
    try {
      const { c, answer } = await login('t1');
      expect(answer).toMatch(/^t1 NO \[UNAVAILABLE\]/m);
      // Still talking to postern, not to the mail server: a mailbox command needs a login.
      c.write('t2 SELECT INBOX\r\n');
      expect(await c.until(/^t2 /)).toMatch(/^t2 (NO|BAD)/m);
      c.close();
    } finally {
      storeAppend.append = original;
      spool.append = spoolAppend;
    }
    const { c, answer } = await login('u1');
    expect(answer).toMatch(/^u1 OK/m);
    c.close();
  });
});
