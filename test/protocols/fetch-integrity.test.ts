import { createHash } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ImapFlow } from 'imapflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type Gateway } from '../helpers/gateway.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * FETCH BODY[] of message 1 on a bare socket; the literal as it arrived. `stall`: the client
 * stops reading for a while in the middle, so the relay's writes back up.
 */
function fetchLiteral(port: number, tls: boolean, user: string, pass: string, stall: boolean): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s: Socket = tls ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false }) : netConnect(port, '127.0.0.1');
    let stage = 0;
    let tail = '';
    let received = 0;
    let stalled = false;
    const parts: Buffer[] = [];
    s.on('error', reject);
    s.on('data', (d: Buffer) => {
      tail = (tail + d.toString('latin1')).slice(-200);
      if (stage === 0 && tail.includes('* OK')) {
        stage = 1;
        tail = '';
        s.write(`a LOGIN "${user}" "${pass}"\r\nb SELECT INBOX\r\n`);
      } else if (stage === 1 && /\r\nb OK[^\n]*\r\n$/.test(tail)) {
        stage = 2;
        tail = '';
        s.write('c FETCH 1 BODY.PEEK[]\r\n');
      } else if (stage === 2) {
        parts.push(d);
        received += d.length;
        if (stall && !stalled && received > 4 * 1024 * 1024) {
          stalled = true;
          s.pause();
          setTimeout(() => s.resume(), 700);
        }
        if (/\r\nc OK[^\n]*\r\n$/.test(tail)) {
          s.destroy();
          const all = Buffer.concat(parts);
          const m = /\{(\d+)\}\r\n/.exec(all.subarray(0, 300).toString('latin1'));
          if (!m) return reject(new Error(`no literal in ${all.subarray(0, 300).toString('latin1')}`));
          const start = m.index + m[0].length;
          resolve(all.subarray(start, start + Number(m[1])));
        }
      }
    });
  });
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
