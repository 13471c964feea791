// Spare upstream connections: greeted ahead of the logins that take them, replaced when the
// upstream dropped them, and a login on a spare that died at the wrong moment is retried on a
// fresh connection instead of failing.
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpstreamConnection } from '../../src/protocols/upstream/connection.js';
import { MailUpstream } from '../../src/protocols/upstream/mail-upstream.js';
import { SpareConnections } from '../../src/protocols/upstream/spares.js';
import { startDovecot, type Dovecot } from '../helpers/dovecot.js';
import { waitFor } from '../helpers/ports.js';

let server: Server;
let port: number;
const accepted: Socket[] = [];

beforeAll(async () => {
  server = createServer((s) => {
    accepted.push(s);
    s.write('* OK ready\r\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as { port: number }).port;
});
afterAll(() => {
  accepted.forEach((s) => s.destroy());
  server.close();
});

const greetedOpen = async () => {
  const c = await UpstreamConnection.open({ host: '127.0.0.1', port, timeoutMs: 2000 });
  await c.line();
  return c;
};

describe('spare upstream connections', () => {
  it('makes spares only once a login asked, hands them out, and replaces one the upstream closed', async () => {
    const pool = new SpareConnections(greetedOpen, 2);
    try {
      expect(pool.ready).toBe(0);
      const first = await pool.take();
      expect(first.spare).toBe(false);
      expect(pool.ready).toBe(0);
      pool.topUp();
      await waitFor('spares', async () => {
        if (pool.ready !== 2) throw new Error(`ready ${pool.ready}`);
      });
      const second = await pool.take();
      expect(second.spare).toBe(true);
      pool.topUp();
      second.conn.close();
      first.conn.close();
      // The upstream drops every connection it holds: the spares are not handed out.
      await waitFor('refilled', async () => {
        if (pool.ready !== 2) throw new Error(`ready ${pool.ready}`);
      });
      accepted.splice(0).forEach((s) => s.destroy());
      await new Promise((r) => setTimeout(r, 50));
      const third = await pool.take();
      expect(third.spare).toBe(false);
      third.conn.close();
    } finally {
      pool.close();
    }
  });

  it('lets spares go when no login comes', async () => {
    const pool = new SpareConnections(greetedOpen, 2, 200);
    try {
      (await pool.take()).conn.close();
      pool.topUp();
      await waitFor('spares', async () => {
        if (pool.ready !== 2) throw new Error(`ready ${pool.ready}`);
      });
      await waitFor('expired', async () => {
        if (pool.ready !== 0) throw new Error(`ready ${pool.ready}`);
      });
    } finally {
      pool.close();
    }
  });
});

describe('logins on spares against Dovecot', () => {
  let dovecot: Dovecot;
  beforeAll(async () => {
    dovecot = await startDovecot();
    dovecot.addUser('alice', 'pw-1');
  }, 60_000);
  afterAll(async () => dovecot?.stop());

  it('logs in on a spare, and on a fresh connection when the spare died just before', async () => {
    const up = new MailUpstream({
      host: '127.0.0.1',
      smtpHost: '127.0.0.1',
      imapPort: dovecot.imapPort,
      pop3Port: dovecot.pop3Port,
      timeoutMs: 3000,
      login: 'authzid',
      masterUser: dovecot.masterUser,
      masterPassword: dovecot.masterPassword,
      separator: '*',
      tls: { mode: 'none', ca: null, verify: true },
      proxyProtocol: 'off',
      spareConnections: 2,
    });
    const client = { ip: '127.0.0.9', port: 5555, localIp: '127.0.0.1', localPort: 143, sessionId: 'spare-test' };
    try {
      const a = await up.imap('alice', client);
      a.socket.destroy();
      // Let the spares be made, then break them from our side without the pool noticing:
      // the socket still looks open, the upstream has stopped listening to it.
      await new Promise((r) => setTimeout(r, 300));
      const spares = (up as unknown as { spares: { imap: { spares: Array<{ conn: UpstreamConnection }> } } }).spares.imap.spares;
      expect(spares.length).toBe(2);
      for (const s of spares) s.conn.socket.end();
      const b = await up.imap('alice', client);
      expect(b.capabilities).toMatch(/IMAP4rev1/);
      b.socket.destroy();
      const p = await up.pop3('alice', client);
      p.socket.destroy();
    } finally {
      up.close();
    }
  });
});
