// Carrying a logged-in session: bytes both ways between client and upstream.
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { UpstreamSession } from './upstream/mail-upstream.js';

/**
 * Carries bytes both ways between client and upstream with backpressure. A side that
 * half-closes is passed on as a half-close, so the last answers still arrive; both close
 * together once either side is gone.
 *
 * Written out instead of `pipe()`: a relayed session is mostly idle, and pipe() keeps a dozen
 * closures per direction alive for its whole life (about 2 KB of heap per session); this
 * keeps a few, and moves each chunk with fewer event hops.
 */
export function splice(client: Socket, up: UpstreamSession, clientPending: Buffer, onClose: () => void, clientEnded = false): void {
  const upstream = up.socket;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    upstream.destroy();
    // What is queued for the client (the upstream's last answer) still goes out, then the
    // connection closes; a client that stops reading gets 2 s.
    client.end(() => client.destroy());
    setTimeout(() => client.destroy(), 2000).unref();
    onClose();
  };
  client.setTimeout(0);
  if (up.pending.length) client.write(up.pending);
  if (clientPending.length) upstream.write(clientPending);
  // The client half-closed already: the upstream is told once it has what was sent.
  if (clientEnded) upstream.end();
  forward(client, upstream);
  // The bulk direction (FETCH): the upstream's chunk may sit in a buffer its next read reuses,
  // so a chunk the client socket could not take at once is kept. A TLS socket handed a
  // chunk with nothing queued before it has taken it for good: Node's TLSWrap encrypts it
  // into records (or copies what OpenSSL cannot take yet) before write() returns; only the
  // write's callback is left pending. test/protocols/relay.test.ts checks this over TLS.
  const encrypts = client instanceof TLSSocket;
  up.read((chunk, keep) => {
    const queuedBefore = client.writableLength > 0;
    const more = client.write(chunk);
    if (client.writableLength > 0 && (queuedBefore || !encrypts)) keep();
    return more;
  });
  client.on('drain', () => upstream.resume());
  upstream.on('end', () => client.end());
  client.on('error', close).on('close', close);
  upstream.on('error', close).on('close', close);
}

/** `from`'s bytes to `to`: reading pauses while `to` is full, and `from`'s end ends `to`. */
function forward(from: Socket, to: Socket): void {
  from.on('data', (chunk: Buffer) => {
    if (!to.write(chunk)) from.pause();
  });
  to.on('drain', () => from.resume());
  from.on('end', () => to.end());
}

/**
 * Ends a relayed session from outside: nothing more flows either way (what still arrives is
 * dropped), the client gets the protocol's last line, then both sockets close (at the latest
 * after 5 s). Works for every relay: it takes away whatever moves bytes.
 */
export function endRelayed(client: Socket, upstream: Socket, line: string): void {
  for (const s of [client, upstream]) s.removeAllListeners('data').removeAllListeners('drain').removeAllListeners('end').pause();
  const destroy = () => {
    client.destroy();
    upstream.destroy();
  };
  setTimeout(destroy, 5000).unref();
  if (client.writable) client.end(`${line}\r\n`, destroy);
  else destroy();
}

/**
 * Stream buffer bound for proxied sockets. With Node's 16 KiB default a bulk FETCH pauses and
 * resumes the upstream after every 64 KiB read; a larger bound costs nothing on idle
 * sessions (it is a limit, not an allocation).
 */
export const PIPE_HIGH_WATER_MARK = 1024 * 1024;
