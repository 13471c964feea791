import { createHash } from 'node:crypto';
import { ImapFlow } from 'imapflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { fetchFirstMessage } from '../helpers/imap-fetch.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * The literal of FETCH BODY[] of message 1, as it arrived. `stall`: the client stops reading
 * for a while in the middle, so the relay's writes back up.
 */
async function fetchLiteral(port: number, tls: boolean, user: string, pass: string, stall: boolean): Promise<Buffer> {
  const parts: Buffer[] = [];
  let received = 0;
  let stalled = false;
  await fetchFirstMessage({ port, tls, user, pass }, (d, socket) => {
    parts.push(d);
    received += d.length;
    if (stall && !stalled && received > 4 * 1024 * 1024) {
      stalled = true;
      socket.pause();
      setTimeout(() => socket.resume(), 700);
    }
  });
  const all = Buffer.concat(parts);
  const m = /\{(\d+)\}\r\n/.exec(all.subarray(0, 300).toString('latin1'));
  if (!m) throw new Error(`no literal in ${all.subarray(0, 300).toString('latin1')}`);
  const start = m.index + m[0].length;
  return all.subarray(start, start + Number(m[1]));
}

// The relay reuses its read buffer from read to read: a large message must still come out
// byte for byte as it was stored, over plain and TLS, read at full speed or with a stall.
describe('a large FETCH through postern', () => {
  let gw: Gateway;
  let message: Buffer;

  beforeAll(async () => {
    gw = await startGateway();
    await gw.addUser('alice', 'Alice-pass-123');
    // Numbered lines, so that a chunk repeated or swapped would show.
    const lines: string[] = [];
    for (let i = 0; i < 24 * 1024; i++) lines.push(`${String(i).padStart(10, '0')} ${'x'.repeat(985)}\r\n`);
    message = Buffer.from(`Subject: big\r\n\r\n${lines.join('')}`);
    const c = new ImapFlow({
      host: '127.0.0.1',
      port: gw.dovecot.imapPort,
      secure: false,
      auth: { user: 'alice', pass: 'upstream-Alice-pass-123' },
      logger: false,
    });
    await c.connect();
    await c.append('INBOX', message);
    await c.logout();
  });
  afterAll(() => gw.stop());

  for (const tls of [false, true])
    for (const stall of [false, true])
      it(`arrives intact${tls ? ' over TLS' : ''}${stall ? ', the client stalling halfway' : ''}`, async () => {
        const literal = await fetchLiteral(tls ? gw.ports.imaps : gw.ports.imap, tls, 'alice', 'Alice-pass-123', stall);
        expect(literal.length).toBe(message.length);
        expect(sha(literal)).toBe(sha(message));
      });
});
