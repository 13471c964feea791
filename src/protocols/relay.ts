// Carrying a logged-in session: bytes both ways between client and upstream.
import type { Socket } from 'node:net';
import type { UpstreamSession } from './upstream/mail-upstream.js';

/**
 * Carries bytes both ways between client and upstream with backpressure (pipe). A side that
 * half-closes is passed on as a half-close (pipe ends the other way), so the last answers
 * still arrive; both close together once either side is gone.
 */
export function splice(client: Socket, up: UpstreamSession, clientPending: Buffer, onClose: () => void, clientEnded = false): void {
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    up.socket.destroy();
    // What is queued for the client (the upstream's last answer) still goes out, then the
    // connection closes; a client that stops reading gets 2 s.
    client.end(() => client.destroy());
    setTimeout(() => client.destroy(), 2000).unref();
    onClose();
  };
  client.setTimeout(0);
  if (up.pending.length) client.write(up.pending);
  if (clientPending.length) up.socket.write(clientPending);
  // The client half-closed already: the upstream is told once it has what was sent.
  if (clientEnded) up.socket.end();
  client.pipe(up.socket);
  up.socket.pipe(client);
  for (const s of [client, up.socket]) {
    s.on('error', close);
    s.on('close', close);
  }
}

/**
 * Stream buffer bound for proxied sockets. With Node's 16 KiB default a bulk FETCH pauses and
 * resumes the upstream after every 64 KiB read; a larger bound costs nothing on idle
 * sessions (it is a limit, not an allocation).
 */
export const PIPE_HIGH_WATER_MARK = 1024 * 1024;
