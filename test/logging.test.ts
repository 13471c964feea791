import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { createApp } from '../src/app.js';
import { loadConfig } from '../src/config/load.js';

describe('the log', () => {
  it('has one line per authentication decision, with who, where, the answer and its time, and never the secret', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) });
    const env = { POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-log-')), POSTERN_AUTH__BCRYPT_ROUNDS: '10' };
    const app = await createApp(loadConfig({ env }), { log });
    try {
      await app.accounts.createUser({ name: 'admin' }, { username: 'alice', password: 'Account-pass-1' });
      const { password: asp, asp: rec } = await app.accounts.createAsp({ name: 'admin' }, 'alice', { description: '', scopes: ['imap'] });
      await app.auth.authenticate({ username: 'alice', secret: asp, scope: 'imap', ip: '192.0.2.8', protocol: 'imap', sessionId: 's1' });
      await app.auth.authenticate({ username: 'alice', secret: 'Wrong-secret-77', scope: 'pop3', ip: '203.0.113.66', protocol: 'pop3' });
      const decisions = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'auth decision');
      expect(decisions).toHaveLength(2);
      expect(decisions[0]).toMatchObject({
        level: 30,
        user: 'alice',
        protocol: 'imap',
        ip: '192.0.2.8',
        result: 'success',
        reason: 'asp',
        asp: rec.id,
        session: 's1',
      });
      expect(decisions[1]).toMatchObject({ level: 40, user: 'alice', protocol: 'pop3', ip: '203.0.113.66', result: 'failure', reason: 'invalid_credentials' });
      expect(typeof decisions[1]!.ms).toBe('number');
      // The fail2ban filter in the README matches the failure and finds its address.
      const failregex = /"ip":"([0-9a-f.:]+)","result":"failure"/;
      expect(failregex.exec(lines.find((l) => l.includes('"result":"failure"'))!)?.[1]).toBe('203.0.113.66');
      const all = lines.join('');
      expect(all).not.toContain('Wrong-secret-77');
      expect(all).not.toContain(asp);
    } finally {
      await app.close();
    }
  });
});
