// Binding a protocol's listeners (plain and implicit TLS, optionally behind a PROXY-protocol
// balancer), and closing them with a drain.
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, TLSSocket } from 'node:tls';
import { peerIp } from './limits.js';
import { readProxyHeader, type ProxiedPeer } from './proxy-protocol.js';
import { PIPE_HIGH_WATER_MARK } from './relay.js';
import type { TlsManager } from './tls.js';

export interface Listening {
  /**
   * Stops accepting at once, then waits up to `graceMs` for the connections to end on their
   * own (after they were told to go) and destroys what is left.
   */
  close(graceMs: number): Promise<void>;
  ports: number[];
}

/** Servers of one protocol, bound one after the other; closing stops them and drains `open`. */
class BoundServers {
  private readonly servers: Server[] = [];
  readonly ports: number[] = [];

  constructor(
    private readonly host: string,
    private readonly open: Set<Socket>,
  ) {}

  bind(server: Server, port: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      server.once('error', (err) => {
        // The ports bound before this one must not keep the process alive after a failed start.
        for (const s of this.servers) s.close();
        reject(err);
      });
      server.listen(port, this.host, () => {
        // After binding, errors (e.g. EMFILE on accept) are logged by the caller's process
        // handlers instead of crashing the gateway.
        server.removeAllListeners('error');
        server.on('error', (err) => process.emitWarning(`listener ${this.host}:${port}: ${err.message}`));
        const a = server.address();
        this.ports.push(typeof a === 'object' && a ? a.port : port);
        this.servers.push(server);
        resolve();
      });
    });
  }

  listening(): Listening {
    return {
      ports: this.ports,
      close: async (graceMs) => {
        for (const s of this.servers) s.close();
        await drained(this.open, graceMs);
      },
    };
  }
}

/** How long a balancer's connection may take to send its PROXY header, and a client its TLS handshake. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * The listeners when a load balancer may stand in front: plain TCP on both ports, so that a
 * PROXY header (from the listed peers only, and required from them) is read before anything
 * else, then TLS on the implicit-TLS port.
 */
async function listenBehindProxy(
  host: string,
  ports: { plain: number; tls: number },
  tls: TlsManager,
  proxyFrom: (ip: string) => boolean,
  track: (s: Socket, secure: boolean, peer: ProxiedPeer | null) => void,
  open: Set<Socket>,
): Promise<Listening> {
  const bound = new BoundServers(host, open);
  const accept = async (raw: Socket, secure: boolean) => {
    raw.on('error', () => raw.destroy());
    let peer: ProxiedPeer | null = null;
    if (proxyFrom(peerIp(raw.remoteAddress))) {
      try {
        peer = await readProxyHeader(raw, HANDSHAKE_TIMEOUT_MS);
      } catch {
        return raw.destroy();
      }
    }
    // The header reader left the socket paused, the client's first bytes put back.
    if (!secure) {
      track(raw, false, peer);
      return void raw.resume();
    }
    const wrapped = new TLSSocket(raw, { isServer: true, ...tls.serverOptions() });
    const timer = setTimeout(() => wrapped.destroy(), HANDSHAKE_TIMEOUT_MS);
    wrapped.on('error', () => wrapped.destroy());
    wrapped.once('close', () => clearTimeout(timer));
    wrapped.once('secure', () => {
      clearTimeout(timer);
      track(wrapped, true, peer);
    });
    raw.resume();
  };
  for (const [port, secure] of [
    [ports.plain, false],
    [ports.tls, true],
  ] as const) {
    if (port >= 0)
      await bound.bind(
        createServer({ highWaterMark: PIPE_HIGH_WATER_MARK, allowHalfOpen: true }, (s) => void accept(s, secure)),
        port,
      );
  }
  return bound.listening();
}

/** Waits until every socket of `open` has closed, or `graceMs` passed; then destroys the rest. */
export async function drained(open: Set<Socket>, graceMs: number): Promise<void> {
  const end = Date.now() + graceMs;
  while (open.size && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  for (const s of open) s.destroy();
}

/** Plain (STARTTLS) and implicit-TLS listeners for one protocol; port 0 in config means off. */
export async function listen(
  host: string,
  ports: { plain: number; tls: number },
  tls: TlsManager,
  onConnection: (socket: Socket, secure: boolean, peer: ProxiedPeer | null) => void,
  /** Peers (load balancers) that send a PROXY protocol header first; null: nobody does. */
  proxyFrom: ((ip: string) => boolean) | null = null,
): Promise<Listening> {
  const open = new Set<Socket>();
  const track = (s: Socket, secure: boolean, peer: ProxiedPeer | null = null) => {
    // Answers go out as they are written: with Nagle's algorithm a reply written while the
    // last one is unacknowledged waits for the client's delayed ACK (up to 40 ms).
    s.setNoDelay(true);
    open.add(s);
    s.once('close', () => open.delete(s));
    onConnection(s, secure, peer);
  };
  if (proxyFrom) return listenBehindProxy(host, ports, tls, proxyFrom, track, open);
  const bound = new BoundServers(host, open);
  // Half-open sockets allowed: a client's FIN after its last command must not cut off the answers.
  if (ports.plain >= 0)
    await bound.bind(
      createServer({ highWaterMark: PIPE_HIGH_WATER_MARK, allowHalfOpen: true }, (s) => track(s, false)),
      ports.plain,
    );
  if (ports.tls >= 0) {
    const server = createTlsServer({ ...tls.serverOptions(), highWaterMark: PIPE_HIGH_WATER_MARK, allowHalfOpen: true }, (s) => track(s, true));
    // A failed handshake is the client's problem, not the process's.
    server.on('tlsClientError', () => {});
    tls.onReload((pem) => server.setSecureContext({ ...pem, minVersion: 'TLSv1.2' }));
    await bound.bind(server, ports.tls);
  }
  return bound.listening();
}
