// The encrypting relay's two parsers on their own, fed split at every byte: what the client
// sends (commands, literals, APPEND) and what the upstream answers (lines and literals, with
// postern's own lines put only between responses).
import { describe, expect, it } from 'vitest';
import { CommandStream, ResponseStream } from '../../src/protocols/imap/encrypting-relay.js';
import { ByteBudget } from '../../src/protocols/limits.js';
import { feeds } from '../helpers/feeds.js';

const ticks = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe('upstream responses', () => {
  // A FETCH literal whose bytes look like responses, then two ordinary responses.
  const body = 'a OK looks like a reply\r\n* BYE not one\r\n';
  const input = Buffer.from(`* 1 FETCH (BODY[] {${body.length}}\r\n${body})\r\n* 2 EXISTS\r\nt1 OK done\r\n`);
  const boundaries = [0, input.indexOf(')\r\n') + 3, input.indexOf('t1 OK'), input.length];

  it('passes every byte on, and puts a line of its own only between two responses', () => {
    for (const chunks of feeds(input)) {
      let out = '';
      const r = new ResponseStream(
        (b) => (out += b.toString('latin1')),
        () => {},
      );
      r.push(chunks[0]!);
      r.inject('+ Ready for literal data');
      for (const c of chunks.slice(1)) r.push(c);
      const at = out.indexOf('+ Ready for literal data\r\n');
      expect(out.replace('+ Ready for literal data\r\n', '')).toBe(input.toString('latin1'));
      expect(boundaries).toContain(at);
    }
  });
});

describe('client commands', () => {
  const settings = (sealed: string[]) => ({
    maxMessageSize: 10_000,
    budget: new ByteBudget(1_000_000),
    seal: async (raw: Buffer) => {
      sealed.push(raw.toString());
      return Buffer.from(`SEALED<${raw.toString()}>`);
    },
  });

  async function run(chunks: Buffer[]): Promise<{ upstream: string; client: string; sealed: string[] }> {
    let upstream = '';
    let client = '';
    const sealed: string[] = [];
    const responses = new ResponseStream(
      (b) => (client += b.toString('latin1')),
      () => {},
    );
    const commands = new CommandStream(
      settings(sealed),
      responses,
      (b) => {
        upstream += typeof b === 'string' ? b : b.toString('latin1');
        // The upstream says go ahead to each synchronizing literal postern sends it.
        if (/\{\d+\}\r\n$/.test(upstream)) setImmediate(() => responses.push(Buffer.from('+ go ahead\r\n')));
      },
      () => {},
      (line) => (client += `${line}\r\n`),
      'IMAP4rev1 IDLE',
    );
    for (const c of chunks) {
      commands.push(c);
      await ticks(2);
    }
    await ticks();
    return { upstream, client, sealed };
  }

  it('passes commands and their LITERAL+ literals on unchanged, and refuses one that would store in clear', async () => {
    const input = Buffer.from('a SELECT INBOX\r\nb SEARCH TEXT {5+}\r\nhello\r\nc REPLACE 1 INBOX {3+}\r\nabc\r\nd NOOP\r\n');
    for (const chunks of feeds(input)) {
      const { upstream, client } = await run(chunks);
      expect(upstream).toBe('a SELECT INBOX\r\nb SEARCH TEXT {5+}\r\nhello\r\nd NOOP\r\n');
      expect(client).toBe('c NO [CANNOT] REPLACE is not available while stored mail is encrypted.\r\n');
    }
  });

  it('seals an APPEND however its bytes arrive, and sends the commands after it in order', async () => {
    const input = Buffer.from('a APPEND Drafts (\\Seen) {11+}\r\nhello world\r\nb NOOP\r\n');
    for (const chunks of feeds(input)) {
      const { upstream, sealed } = await run(chunks);
      expect(sealed).toEqual(['hello world']);
      const message = 'SEALED<hello world>';
      expect(upstream).toBe(`a APPEND Drafts (\\Seen) {${message.length}}\r\n${message}\r\nb NOOP\r\n`);
    }
  });
});
