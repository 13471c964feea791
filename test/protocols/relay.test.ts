import { createServer, connect, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type TlsOptions } from 'node:tls';
import { generate } from 'selfsigned';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { endRelayed, PIPE_HIGH_WATER_MARK, splice } from '../../src/protocols/relay.js';
import { UpstreamConnection } from '../../src/protocols/upstream/connection.js';

/**
 * A connected pair of real TCP sockets: [the side postern holds, the far end]. postern's
 * listeners allow half-open client sockets; its upstream sockets close once both ways ended.
 */
async function socketPair(servers: Server[], opts: { nearHalfOpen: boolean; farHalfOpen: boolean }): Promise<[Socket, Socket]> {
  const server = createServer({ allowHalfOpen: opts.nearHalfOpen, highWaterMark: PIPE_HIGH_WATER_MARK });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const far = connect({ port: (server.address() as { port: number }).port, host: '127.0.0.1', allowHalfOpen: opts.farHalfOpen });
  await once(far, 'connect');
  // The far ends are torn down under writes on purpose here.
  far.on('error', () => {});
  const [near] = await accepted;
  return [near, far];
}

let pems: { cert: string; private: string } | null = null;

/** A TLS connection as postern's TLS listeners hold it: [postern's side, the client]. */
async function tlsPair(servers: Server[]): Promise<[Socket, Socket]> {
  pems ??= await generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', algorithm: 'sha256' });
  const server = createTlsServer({ cert: pems.cert, key: pems.private, allowHalfOpen: true, highWaterMark: PIPE_HIGH_WATER_MARK } as TlsOptions);
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'secureConnection') as Promise<[Socket]>;
  const far = tlsConnect({ port: (server.address() as { port: number }).port, host: '127.0.0.1', rejectUnauthorized: false });
  far.on('error', () => {});
  await once(far, 'secureConnect');
  const [near] = await accepted;
  return [near, far];
}

/** A real upstream connection (plain: its reads land in a reused buffer) handed over after a greeting, and the far end. */
async function handedOver(servers: Server[]) {
  const server = createServer({ allowHalfOpen: true });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const conn = await UpstreamConnection.open({ host: '127.0.0.1', port: (server.address() as { port: number }).port, timeoutMs: 2000 });
  const [upstream] = await accepted;
  upstream.on('error', () => {});
  upstream.write('* OK ready\r\n');
  expect(await conn.line()).toBe('* OK ready');
  return { upstream, up: { ...conn.handOver(), capabilities: '' } };
}

/** The client's and the upstream's sides, spliced by postern's relay. */
async function relayed(servers: Server[], clientHalfOpen = true, tls = false) {
  const [clientNear, client] = tls ? await tlsPair(servers) : await socketPair(servers, { nearHalfOpen: true, farHalfOpen: clientHalfOpen });
  const { upstream, up } = await handedOver(servers);
  let closed = 0;
  splice(clientNear, up, Buffer.alloc(0), () => closed++);
  return { client, upstream, clientNear, upstreamNear: up.socket, closed: () => closed };
}

const patterned = (size: number) => {
  const body = Buffer.alloc(size);
  for (let i = 0; i < body.length; i += 4) body.writeUInt32BE(i, i);
  return body;
};

/** Everything `s` receives; `.received` counts it without joining the parts. */
const collect = (s: Socket) => {
  const parts: Buffer[] = [];
  let received = 0;
  s.on('data', (d: Buffer) => {
    parts.push(d);
    received += d.length;
  });
  return Object.assign(() => Buffer.concat(parts), { received: () => received });
};

const arrived = (got: ReturnType<typeof collect>, length: number) =>
  new Promise<void>((res) => {
    const tick = setInterval(() => got.received() >= length && (clearInterval(tick), res()), 20);
  });

describe('the byte relay of a logged-in session', () => {
  const servers: Server[] = [];
  afterEach(() => {
    for (const s of servers.splice(0)) s.close();
  });

  for (const tls of [false, true])
    it(`stops reading the upstream while a client${tls ? ' over TLS' : ''} does not read, then delivers every byte in order`, async () => {
      const r = await relayed(servers, true, tls);
      r.client.pause();
      const body = patterned(48 * 1024 * 1024);
      r.upstream.write(body);
      await new Promise((res) => setTimeout(res, 500));
      // What postern holds for the client stays near one buffer bound (the kernel's socket
      // buffers take a few MB more); the rest waits at the upstream, whose writes back up.
      expect(r.clientNear.writableLength).toBeLessThanOrEqual(PIPE_HIGH_WATER_MARK + 256 * 1024);
      expect(r.upstream.writableLength).toBeGreaterThan(16 * 1024 * 1024);
      const got = collect(r.client);
      r.client.resume();
      await arrived(got, body.length);
      expect(got().equals(body)).toBe(true);
      r.client.destroy();
      r.upstream.destroy();
    });

  for (const tls of [false, true])
    it(`delivers a bulk download intact while a client${tls ? ' over TLS' : ''} reads along, the read buffer reused`, async () => {
      const r = await relayed(servers, true, tls);
      const got = collect(r.client);
      const body = patterned(64 * 1024 * 1024);
      // Written in pieces of odd sizes, so reads end anywhere.
      for (let i = 0, n = 1; i < body.length; i += n, n = (n * 7 + 13) % 300_000) r.upstream.write(body.subarray(i, i + n));
      await arrived(got, body.length);
      expect(got().equals(body)).toBe(true);
      r.client.destroy();
      r.upstream.destroy();
    });

  // Quiet connections all read into one shared buffer: what a reader keeps must be its own.
  it('a kept chunk of a quiet connection stays as it arrived while other connections read on', async () => {
    const conns = [await handedOver(servers), await handedOver(servers), await handedOver(servers)];
    const kept: Buffer[] = [];
    for (const c of conns)
      c.up.read((chunk, keep) => {
        keep();
        kept.push(chunk);
        return true;
      });
    const sent: string[] = [];
    for (let k = 0; k < 10; k++)
      for (const [i, c] of conns.entries()) {
        const line = `connection ${i}, line ${k}\r\n`;
        sent.push(line);
        c.upstream.write(line);
        await new Promise<void>((res) => {
          const tick = setInterval(() => kept.length === sent.length && (clearInterval(tick), res()), 2);
        });
      }
    expect(kept.map((b) => b.toString())).toEqual(sent);
    for (const c of conns) c.upstream.destroy();
  });

  // What the relay's reuse of its read buffer over TLS rests on, in Node itself: a chunk
  // written with nothing queued is encrypted before write() returns, while one written behind
  // another is read again later (so the relay keeps that one's buffer).
  it('a TLS socket takes a chunk written with nothing queued at once, and a queued one only later', async () => {
    const [near, far] = await tlsPair(servers);
    const got = collect(far);
    const chunk = Buffer.alloc(64 * 1024, 'A');
    expect(near.writableLength).toBe(0);
    near.write(chunk);
    chunk.fill('B');
    expect(near.writableLength).toBeGreaterThan(0);
    near.write(chunk);
    chunk.fill('C');
    near.end();
    await once(far, 'end');
    const text = got().toString('latin1');
    expect(text.length).toBe(128 * 1024);
    expect(text.slice(0, 64 * 1024)).toBe('A'.repeat(64 * 1024));
    expect(text.slice(64 * 1024)).toBe('C'.repeat(64 * 1024));
  });

  it('passes a half-close on, and the answers sent after it still reach the client', async () => {
    const r = await relayed(servers);
    const got = collect(r.client);
    const seen = collect(r.upstream);
    r.client.end('a LOGOUT\r\n');
    await once(r.upstream, 'end');
    expect(seen().toString()).toBe('a LOGOUT\r\n');
    r.upstream.end('* BYE\r\na OK bye\r\n');
    await once(r.client, 'end');
    expect(got().toString()).toBe('* BYE\r\na OK bye\r\n');
    await new Promise((res) => setTimeout(res, 50));
    expect(r.closed()).toBe(1);
  });

  it('closes both sides once either is gone, and says so once', async () => {
    const r = await relayed(servers, false);
    const clientClosed = once(r.client, 'close');
    r.upstream.destroy();
    await clientClosed;
    await new Promise((res) => setTimeout(res, 50));
    expect(r.closed()).toBe(1);
    expect(r.upstreamNear.destroyed && r.clientNear.destroyed).toBe(true);
  });

  it('ended from outside: nothing more flows either way, the client gets the last line, both close', async () => {
    const r = await relayed(servers, false);
    const got = collect(r.client);
    const seen = collect(r.upstream);
    endRelayed(r.clientNear, r.upstreamNear, '* BYE Your password was changed');
    r.upstream.write('* 1 EXISTS\r\n');
    r.client.write('b SELECT INBOX\r\n');
    await once(r.client, 'close');
    await new Promise((res) => setTimeout(res, 100));
    expect(got().toString()).toBe('* BYE Your password was changed\r\n');
    expect(seen().length).toBe(0);
  });
});
