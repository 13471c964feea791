import { createServer, connect, type Server, type Socket } from 'node:net';
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

/**
 * The client's and the upstream's sides, spliced by postern's relay; the upstream side is a
 * real upstream connection (its reads land in a reused buffer) handed over after a greeting.
 */
async function relayed(servers: Server[], clientHalfOpen = true) {
  const [clientNear, client] = await socketPair(servers, { nearHalfOpen: true, farHalfOpen: clientHalfOpen });
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
  const up = { ...conn.handOver(), capabilities: '' };
  let closed = 0;
  splice(clientNear, up, Buffer.alloc(0), () => closed++);
  return { client, upstream, clientNear, upstreamNear: up.socket, closed: () => closed };
}

const collect = (s: Socket) => {
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  return () => Buffer.concat(parts);
};

describe('the byte relay of a logged-in session', () => {
  const servers: Server[] = [];
  afterEach(() => {
    for (const s of servers.splice(0)) s.close();
  });

  it('stops reading the upstream while the client does not read, and then delivers every byte in order', async () => {
    const r = await relayed(servers);
    r.client.pause();
    const body = Buffer.alloc(48 * 1024 * 1024);
    for (let i = 0; i < body.length; i += 4) body.writeUInt32BE(i, i);
    r.upstream.write(body);
    await new Promise((res) => setTimeout(res, 500));
    // What postern holds for the client stays near one buffer bound (the kernel's socket
    // buffers take a few MB more); the rest waits at the upstream, whose writes back up.
    expect(r.clientNear.writableLength).toBeLessThanOrEqual(PIPE_HIGH_WATER_MARK + 256 * 1024);
    expect(r.upstream.writableLength).toBeGreaterThan(16 * 1024 * 1024);
    const got = collect(r.client);
    r.client.resume();
    await new Promise<void>((res) => {
      const tick = setInterval(() => got().length >= body.length && (clearInterval(tick), res()), 20);
    });
    expect(got().equals(body)).toBe(true);
    r.client.destroy();
    r.upstream.destroy();
  });

  it('delivers a bulk download intact while the client reads along, the read buffer reused', async () => {
    const r = await relayed(servers);
    const got = collect(r.client);
    const body = Buffer.alloc(64 * 1024 * 1024);
    for (let i = 0; i < body.length; i += 4) body.writeUInt32BE(i, i);
    // Written in pieces of odd sizes, so reads end anywhere.
    for (let i = 0, n = 1; i < body.length; i += n, n = (n * 7 + 13) % 300_000) r.upstream.write(body.subarray(i, i + n));
    await new Promise<void>((res) => {
      const tick = setInterval(() => got().length >= body.length && (clearInterval(tick), res()), 20);
    });
    expect(got().equals(body)).toBe(true);
    r.client.destroy();
    r.upstream.destroy();
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
