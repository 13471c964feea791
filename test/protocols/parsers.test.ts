// The hand-written parsers, fed their input split at every byte (and one byte at a time):
// TCP may cut a client's bytes anywhere, and each must answer exactly as for the whole.
import { describe, expect, it } from 'vitest';
import { ImapCommandAssembler, ImapSyntaxError, type ImapCommand } from '../../src/protocols/imap/imap-command.js';
import { LineReader, LineTooLong } from '../../src/protocols/line-reader.js';
import { SaslExchange, decodePlain } from '../../src/protocols/sasl.js';
import { dotStuff } from '../../src/protocols/upstream/smtp-client.js';
import { feeds } from '../helpers/feeds.js';

describe('LineReader', () => {
  const input = Buffer.from('a1 NOOP\r\nbare LF line\n\r\nwith \u00e9 utf-8\r\npartial');

  it('hands out the same lines however the bytes arrive, CRLF or LF, keeping what is incomplete', () => {
    for (const chunks of feeds(input)) {
      const r = new LineReader(100);
      const lines: string[] = [];
      for (const c of chunks) {
        r.push(c);
        for (let l = r.line(); l !== null; l = r.line()) lines.push(l);
      }
      expect(lines).toEqual(['a1 NOOP', 'bare LF line', '', 'with \u00e9 utf-8']);
      expect(r.drain().toString()).toBe('partial');
    }
  });

  it('refuses a line past its bound wherever the bytes were cut, before buffering more', () => {
    const long = Buffer.from(`${'x'.repeat(40)}\r\n`);
    for (const chunks of feeds(long)) {
      const r = new LineReader(20);
      let thrown: unknown = null;
      for (const c of chunks) {
        r.push(c);
        try {
          r.line();
        } catch (err) {
          thrown = err;
          break;
        }
      }
      expect(thrown).toBeInstanceOf(LineTooLong);
    }
  });
});

describe('IMAP command assembly before login', () => {
  const run = (input: Buffer) => {
    const outcomes: Array<string | ImapCommand> = [];
    for (const chunks of feeds(input)) {
      const reader = new LineReader(8192);
      const asm = new ImapCommandAssembler(reader, 4096, 8192);
      const got: Array<string | ImapCommand> = [];
      for (const c of chunks) {
        reader.push(c);
        for (;;) {
          let step;
          try {
            step = asm.next();
          } catch (err) {
            got.push(`error: ${(err as Error).message}${err instanceof ImapSyntaxError ? ` (${err.tag})` : ''}`);
            break;
          }
          if (step.kind === 'need-more') break;
          got.push(step.kind === 'continue' ? 'continue' : step.command);
        }
      }
      outcomes.push(JSON.stringify(got));
    }
    // Every feed gave the same answer as the first (the whole input in one go).
    expect(new Set(outcomes).size).toBe(1);
    return JSON.parse(outcomes[0] as string) as Array<string | ImapCommand>;
  };

  it('reads quoted strings with escapes, synchronizing literals and LITERAL+ the same, however cut', () => {
    const got = run(Buffer.from('a LOGIN "al\\"ice" {5}\r\npa\r\ns\r\nb LOGIN {3+}\r\nbob "x y"\r\nc ID ("name" "mutt" "version" NIL)\r\n'));
    expect(got).toEqual([
      'continue',
      { tag: 'a', name: 'LOGIN', args: ['al"ice', 'pa\r\ns'] },
      { tag: 'b', name: 'LOGIN', args: ['bob', 'x y'] },
      { tag: 'c', name: 'ID', args: [['name', 'mutt', 'version', null]] },
    ]);
  });

  it("refuses a literal over the bound with the command's tag, wherever the bytes were cut", () => {
    const got = run(Buffer.from('t9 LOGIN {999999}\r\n'));
    expect(got).toEqual([expect.stringMatching(/^error: literal too large .*\(t9\)$/)]);
  });
});

describe('SASL', () => {
  it('takes PLAIN with and without an authorization id, and refuses what is not PLAIN', () => {
    const enc = (s: string) => Buffer.from(s).toString('base64');
    expect(decodePlain(enc('\0alice\0pw'))).toEqual({ username: 'alice', password: 'pw' });
    expect(decodePlain(enc('alice\0alice\0pw'))).toEqual({ username: 'alice', password: 'pw' });
    expect(decodePlain(enc('no separators'))).toBeNull();
    expect(decodePlain('!!not base64!!')).toBeNull();
  });

  it('runs LOGIN as two steps, and a "*" cancels at any step', () => {
    const login = new SaslExchange('LOGIN');
    expect(Buffer.from(login.first(), 'base64').toString()).toBe('Username:');
    expect(login.step(Buffer.from('alice').toString('base64'))).toMatchObject({ kind: 'challenge' });
    expect(login.step(Buffer.from('pw').toString('base64'))).toEqual({ kind: 'done', username: 'alice', password: 'pw' });
    expect(new SaslExchange('LOGIN').step('*')).toEqual({ kind: 'canceled' });
    expect(new SaslExchange('PLAIN').step(' * ')).toEqual({ kind: 'canceled' });
  });
});

describe('dot-stuffing towards the relay', () => {
  const message = Buffer.from('.first line starts with a dot\r\nmiddle\r\n..two dots\r\n.\r\nend.\r\n.');
  const whole = dotStuff(message, true).out.toString();

  it('doubles every dot that starts a line, and only those', () => {
    expect(whole).toBe('..first line starts with a dot\r\nmiddle\r\n...two dots\r\n..\r\nend.\r\n..');
  });

  it('gives the same bytes however the message is cut into chunks', () => {
    for (const chunks of feeds(message)) {
      let atLineStart = true;
      let out = '';
      for (const c of chunks) {
        const r = dotStuff(c, atLineStart);
        atLineStart = r.atLineStart;
        out += r.out.toString();
      }
      expect(out).toBe(whole);
    }
  });
});
