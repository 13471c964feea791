// What every mail front end shares: its settings and context, who the client is, STARTTLS.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Authenticator } from '../core/authenticate.js';
import type { SessionSlots } from '../core/ports.js';
import type { Logger } from '../log.js';
import type { LiveSessions } from './live-sessions.js';
import { type ByteBudget, type ConnectionCounter, peerIp } from './limits.js';
import type { ProxiedPeer } from './proxy-protocol.js';
import type { TlsManager } from './tls.js';
import type { ClientInfo, MailUpstream } from './upstream/mail-upstream.js';

export interface FrontendSettings {
  plaintextAllowed: (ip: string) => boolean;
  maxAuthFailures: number;
  preauthTimeoutMs: number;
  /** Time from connect to login, however busy the client keeps the connection. */
  preauthDeadlineMs: number;
  maxLineLength: number;
  maxLiteralSize: number;
  /** Load balancers that send a PROXY protocol header first; null: none. */
  proxyFrom: ((ip: string) => boolean) | null;
  /** Largest message an IMAP APPEND may upload when it is sealed on the way. */
  maxAppendSize: number;
  hostname: string;
}

/** What every protocol front end shares: the core, the upstream, TLS and the counters. */
export interface FrontendContext {
  auth: Authenticator;
  upstream: MailUpstream;
  tls: TlsManager;
  log: Logger;
  settings: FrontendSettings;
  preauth: ConnectionCounter;
  /** Live sessions per user and protocol (the per-user cap), shared through Redis when configured. */
  slots: SessionSlots;
  /** Bytes of IMAP uploads held for sealing across all sessions. */
  uploads: ByteBudget;
  /**
   * A message as it is stored for a user with encryption on: PGP/MIME encrypted to the
   * armored key off the main thread, or unchanged when it is already encrypted.
   */
  seal: (armoredKey: string, raw: Buffer) => Promise<Buffer>;
  /** Proxied sessions by account, ended when their credential changes. */
  live: LiveSessions;
  /** Connections not logged in yet, told to go when postern shuts down. */
  preLogin: Set<{ shutdown(): void }>;
  /** Told when a granted login could not be opened on the upstream. */
  onUpstreamError?: (protocol: string) => void;
  /** Told when a proxied session starts (+1) and ends (-1), e.g. for a metrics gauge. */
  onSession?: (protocol: string, delta: number) => void;
}

/** Who the client is: the socket's peer, or the one a trusted load balancer named for it. */
export function clientInfo(socket: Socket, sessionId: string, peer: ProxiedPeer | null = null): ClientInfo {
  return {
    ip: peer?.ip ?? peerIp(socket.remoteAddress),
    port: peer?.ip ? peer.port : (socket.remotePort ?? 0),
    localIp: peerIp(socket.localAddress),
    localPort: socket.localPort ?? 0,
    sessionId,
  };
}

export const newSessionId = () => randomBytes(9).toString('base64url');

/** Wraps an accepted plain socket in TLS (STARTTLS), with the current certificate. */
export function startTls(socket: Socket, tls: TlsManager): TLSSocket {
  return new TLSSocket(socket, { isServer: true, ...tls.serverOptions() });
}
