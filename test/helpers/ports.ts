import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

// Ports handed out below the kernel's ephemeral range: a port taken with listen(0) and
// released lies in that range, where any outgoing connection (to Redis, Dovecot, ...) may
// grab it before the server meant for it binds. Each vitest worker gets a slice of its own,
// so parallel test files never pick the same port either.
const SLICE = 1000;

function ephemeralStart(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  } catch {
    return 32768;
  }
}

function sliceFor(worker: number): { first: number; last: number } {
  const low = 10_000;
  const slices = Math.max(1, Math.floor((ephemeralStart() - low) / SLICE));
  const first = low + (worker % slices) * SLICE;
  return { first, last: first + SLICE - 1 };
}

const worker = Number(process.env.VITEST_POOL_ID ?? process.env.VITEST_WORKER_ID ?? 0);
const slice = sliceFor(worker);
// A random start, so a file that follows another in the same worker slot does not retry
// the ports that file's servers may still be closing.
let next = slice.first + Math.floor(Math.random() * SLICE);

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A TCP port on 127.0.0.1 that is free now and that no other test worker will be given. */
export async function freePort(): Promise<number> {
  for (let tries = 0; tries < SLICE; tries++) {
    const port = next;
    next = next >= slice.last ? slice.first : next + 1;
    if (await canBind(port)) return port;
  }
  throw new Error(`no free port in ${slice.first}-${slice.last}`);
}

export async function waitFor<T>(what: string, fn: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      return await fn();
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${what} not ready after ${timeoutMs} ms: ${String(last)}`);
}
