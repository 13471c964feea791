import { connect, createServer, type Server, type Socket } from 'node:net';
import { freePort } from './ports.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface LatencyProxy {
  port: number;
  close(): Promise<void>;
}

/**
 * A TCP relay that holds every chunk for `delayMs` in each direction (order kept): a server
 * on the same machine made to answer like one across a network.
 */
export async function latencyProxy(targetPort: number, delayMs: number): Promise<LatencyProxy> {
  const sockets = new Set<Socket>();
  const pipeDelayed = (from: Socket, to: Socket) => {
    let chain = Promise.resolve();
    from.on('data', (chunk: Buffer) => {
      const due = Date.now() + delayMs;
      chain = chain.then(async () => {
        await sleep(due - Date.now());
        if (!to.destroyed) to.write(chunk);
      });
    });
    from.on('end', () => void chain.then(() => to.end()));
    from.on('error', () => to.destroy());
    from.on('close', () => void chain.then(() => to.destroy()));
  };
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    pipeDelayed(client, upstream);
    pipeDelayed(upstream, client);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/**
 * Wraps every method of an object (and of the objects it holds, e.g. a Store's parts) so each
 * call waits `delayMs` before it runs and after it answers: a store reached over a network,
 * where a read and the write that follows it are far apart in time.
 */
export function withLatency<T extends object>(target: T, delayMs: number): T {
  return new Proxy(target, {
    get(obj, prop, receiver) {
      const value = Reflect.get(obj, prop, receiver) as unknown;
      if (typeof value === 'function') {
        return async (...args: unknown[]) => {
          await sleep(delayMs);
          const result = await (value as (...a: unknown[]) => unknown).apply(obj, args);
          await sleep(delayMs);
          return result;
        };
      }
      if (value && typeof value === 'object' && !(value instanceof Date) && !Buffer.isBuffer(value)) return withLatency(value, delayMs);
      return value;
    },
  });
}
