import { describe, expect, it } from 'vitest';
import { ProxyHeaderError, ProxyHeaderReader } from '../../src/protocols/proxy-protocol.js';

const V2_SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
function v2(verCmd: number, family: number, body: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(body.length);
  return Buffer.concat([V2_SIG, Buffer.from([verCmd, family]), len, body]);
}
const ipv4Body = Buffer.from([192, 0, 2, 7, 198, 51, 100, 1, 0xd4, 0x31, 0x00, 0x8f]); // ports 54321 → 143
const ipv6Body = Buffer.concat([Buffer.from('20010db8000000000000000000000042', 'hex'), Buffer.alloc(16), Buffer.from([0x01, 0xbb, 0x03, 0xe1])]);

/** Feeds `input` split at `at` (and byte by byte), expecting the same answer each way. */
function readSplit(input: Buffer) {
  const answers = [];
  for (let at = 0; at <= input.length; at++) {
    const r = new ProxyHeaderReader();
    const first = r.push(input.subarray(0, at));
    answers.push(first ? { peer: first.peer, rest: Buffer.concat([first.rest, input.subarray(at)]) } : r.push(input.subarray(at)));
  }
  // One byte at a time: what follows the header is what was not fed yet.
  const bytewise = new ProxyHeaderReader();
  let got = null;
  let i = 0;
  for (; i < input.length && !got; i++) got = bytewise.push(input.subarray(i, i + 1));
  return { answers, bytewise: got && { peer: got.peer, rest: Buffer.concat([got.rest, input.subarray(i)]) } };
}

describe('PROXY protocol header reader', () => {
  const cases: Array<[string, Buffer, string | null, number]> = [
    ['v1 TCP4', Buffer.from('PROXY TCP4 192.0.2.7 198.51.100.1 54321 143\r\na1 NOOP\r\n'), '192.0.2.7', 54321],
    ['v1 TCP6', Buffer.from('PROXY TCP6 2001:db8::42 2001:db8::1 443 993\r\na1 NOOP\r\n'), '2001:db8::42', 443],
    ['v1 UNKNOWN', Buffer.from('PROXY UNKNOWN\r\na1 NOOP\r\n'), null, 0],
    ['v2 PROXY IPv4', Buffer.concat([v2(0x21, 0x11, ipv4Body), Buffer.from('a1 NOOP\r\n')]), '192.0.2.7', 54321],
    ['v2 PROXY IPv6', Buffer.concat([v2(0x21, 0x21, ipv6Body), Buffer.from('a1 NOOP\r\n')]), '2001:db8:0:0:0:0:0:42', 443],
    [
      'v2 with TLVs',
      Buffer.concat([v2(0x21, 0x11, Buffer.concat([ipv4Body, Buffer.from([0x04, 0x00, 0x01, 0x00])])), Buffer.from('a1 NOOP\r\n')]),
      '192.0.2.7',
      54321,
    ],
    ['v2 LOCAL (health check)', Buffer.concat([v2(0x20, 0x00, Buffer.alloc(0)), Buffer.from('a1 NOOP\r\n')]), null, 0],
  ];
  for (const [name, input, ip, port] of cases) {
    it(`reads ${name} split at every byte, and leaves the client's bytes after it`, () => {
      const { answers, bytewise } = readSplit(input);
      for (const a of [...answers, bytewise]) {
        expect(a).not.toBeNull();
        expect(a!.peer).toEqual({ ip, port });
        expect(a!.rest.toString()).toBe('a1 NOOP\r\n');
      }
    });
  }

  it('refuses what is not a header, and bounds how much it reads', () => {
    const bad = [
      'a1 LOGIN alice pw\r\n',
      'PROXY TCP4 192.0.2.7 198.51.100.1 54321\r\n',
      'PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n',
      'PROXY TCP4 192.0.2.7 198.51.100.1 99999 143\r\n',
      `PROXY TCP4 ${'1'.repeat(120)}\r\n`,
    ];
    for (const text of bad) expect(() => new ProxyHeaderReader().push(Buffer.from(text)), text).toThrow(ProxyHeaderError);
    expect(() => new ProxyHeaderReader().push(Buffer.from(`PROXY ${'x'.repeat(200)}`))).toThrow(/too long/);
    const huge = Buffer.concat([V2_SIG, Buffer.from([0x21, 0x11, 0xff, 0xff])]);
    expect(() => new ProxyHeaderReader().push(huge)).toThrow(/too long/);
    expect(() => new ProxyHeaderReader().push(Buffer.concat([V2_SIG, Buffer.from([0x11, 0x11, 0, 0])]))).toThrow(/version/);
  });
});
