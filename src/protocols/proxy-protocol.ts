// The HAProxy PROXY protocol (versions 1 and 2), as sent by a load balancer in front of
// postern so that the client's own address reaches the rate windows and the audit trail.
// Hand-written because it is a header of a few dozen bytes read before anything else on the
// socket, and smtp-server's own reader (used for submission) serves only its own sockets.
import { SocketAddress, isIP, type Socket } from 'node:net';

export interface ProxiedPeer {
  /** The client's address, or null when the balancer speaks for itself (LOCAL, UNKNOWN). */
  ip: string | null;
  port: number;
}

export class ProxyHeaderError extends Error {}

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** Version 1 lines are at most 107 bytes (the specification's own bound). */
const V1_MAX = 107;
/** Version 2 address blocks with TLVs: more than any balancer sends, bounded all the same. */
const V2_MAX_BODY = 4096;

/**
 * Reads one header from bytes as they arrive, split anywhere. `push` answers null while more
 * bytes are needed, else the peer and whatever followed the header (the client's own bytes).
 */
export class ProxyHeaderReader {
  private buf = Buffer.alloc(0);

  push(chunk: Buffer): { peer: ProxiedPeer; rest: Buffer } | null {
    this.buf = Buffer.concat([this.buf, chunk]);
    const b = this.buf;
    const sig = Math.min(b.length, V2_SIGNATURE.length);
    if (b.subarray(0, sig).equals(V2_SIGNATURE.subarray(0, sig))) {
      if (b.length < 16) return null;
      return this.v2();
    }
    if (
      !Buffer.from('PROXY ')
        .subarray(0, Math.min(b.length, 6))
        .equals(b.subarray(0, Math.min(b.length, 6)))
    ) {
      throw new ProxyHeaderError('the connection did not start with a PROXY protocol header');
    }
    const end = b.indexOf('\r\n');
    if (end < 0) {
      if (b.length > V1_MAX) throw new ProxyHeaderError('PROXY header line too long');
      return null;
    }
    if (end + 2 > V1_MAX) throw new ProxyHeaderError('PROXY header line too long');
    return { peer: v1(b.subarray(0, end).toString('latin1')), rest: b.subarray(end + 2) };
  }

  private v2(): { peer: ProxiedPeer; rest: Buffer } | null {
    const b = this.buf;
    const verCmd = b[12]!;
    const family = b[13]!;
    const len = b.readUInt16BE(14);
    if (verCmd >> 4 !== 2) throw new ProxyHeaderError('PROXY protocol version is not 2');
    if (len > V2_MAX_BODY) throw new ProxyHeaderError('PROXY header too long');
    if (b.length < 16 + len) return null;
    const body = b.subarray(16, 16 + len);
    const rest = b.subarray(16 + len);
    const command = verCmd & 0x0f;
    if (command === 0) return { peer: { ip: null, port: 0 }, rest };
    if (command !== 1) throw new ProxyHeaderError('unknown PROXY protocol command');
    if (family === 0x11 && body.length >= 12) {
      return { peer: { ip: [...body.subarray(0, 4)].join('.'), port: body.readUInt16BE(8) }, rest };
    }
    if (family === 0x21 && body.length >= 36) {
      const words = Array.from({ length: 8 }, (_, i) => body.readUInt16BE(i * 2).toString(16));
      return { peer: { ip: words.join(':'), port: body.readUInt16BE(32) }, rest };
    }
    // Other families (UNIX sockets, UDP): nothing postern can use as an address.
    return { peer: { ip: null, port: 0 }, rest };
  }
}

function v1(line: string): ProxiedPeer {
  const parts = line.split(' ');
  if (parts[1] === 'UNKNOWN') return { ip: null, port: 0 };
  const [, proto, src, dst, sport, dport] = parts;
  const family = proto === 'TCP4' ? 4 : proto === 'TCP6' ? 6 : 0;
  const port = Number(sport);
  if (
    parts.length !== 6 ||
    !family ||
    isIP(src ?? '') !== family ||
    isIP(dst ?? '') !== family ||
    !/^\d{1,5}$/.test(sport ?? '') ||
    port > 65535 ||
    !/^\d{1,5}$/.test(dport ?? '')
  ) {
    throw new ProxyHeaderError('malformed PROXY header');
  }
  return { ip: src!, port };
}

/** The address in one normal form (IPv6 compressed, IPv4-mapped reduced), as rate windows key it. */
export function canonical(peer: ProxiedPeer): ProxiedPeer {
  if (!peer.ip) return peer;
  const family = isIP(peer.ip) === 6 ? 'ipv6' : 'ipv4';
  const ip = new SocketAddress({ address: peer.ip, family }).address;
  return { ip: ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip, port: peer.port };
}

/**
 * Reads the PROXY header off a fresh socket, within `timeoutMs`. The socket is left paused,
 * with the bytes that followed the header put back, ready for whoever reads it next.
 */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxiedPeer> {
  return new Promise((resolve, reject) => {
    const reader = new ProxyHeaderReader();
    const stop = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onGone);
      socket.off('error', onGone);
      socket.pause();
    };
    const timer = setTimeout(() => {
      stop();
      reject(new ProxyHeaderError('no PROXY header in time'));
    }, timeoutMs);
    const onGone = () => {
      stop();
      reject(new ProxyHeaderError('closed before the PROXY header'));
    };
    const onData = (chunk: Buffer) => {
      let got: { peer: ProxiedPeer; rest: Buffer } | null;
      try {
        got = reader.push(chunk);
      } catch (err) {
        stop();
        return reject(err);
      }
      if (!got) return;
      stop();
      if (got.rest.length) socket.unshift(got.rest);
      resolve(canonical(got.peer));
    };
    socket.on('data', onData);
    socket.once('end', onGone);
    socket.once('error', onGone);
  });
}

/** The two ends of a client's connection, as a PROXY header towards the upstream names them. */
export interface ProxiedConnection {
  ip: string;
  port: number;
  localIp: string;
  localPort: number;
}

const unmapped = (ip: string) => (/^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(ip) ? ip.slice(7) : ip);
const mapped = (ip: string) => (isIP(ip) === 4 ? `::ffff:${ip}` : ip);

/** The 16 bytes of a valid IPv6 address (with an embedded IPv4 tail where it has one). */
function v6Bytes(ip: string): Buffer {
  let text = ip;
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)?.[1];
  if (tail) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, -tail.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', rest] = text.split('::');
  const groups = (s: string) => (s ? s.split(':') : []);
  const h = groups(head);
  const r = rest === undefined ? [] : groups(rest);
  const all = rest === undefined ? h : [...h, ...Array<string>(8 - h.length - r.length).fill('0'), ...r];
  return Buffer.from(
    all.flatMap((g) => {
      const n = parseInt(g, 16);
      return [n >> 8, n & 0xff];
    }),
  );
}

/**
 * The header postern sends first on a connection to an upstream listener that expects one
 * (Dovecot's `haproxy = yes`): the client's address and port, and the address it reached.
 * Both ends in one family: an IPv4 end beside an IPv6 one is written IPv4-mapped. Without a
 * client (a connection postern makes for itself), the header says so (LOCAL, UNKNOWN).
 */
export function proxyHeader(version: 1 | 2, conn: ProxiedConnection | null): Buffer {
  const src = conn ? unmapped(conn.ip) : '';
  const dst = conn ? unmapped(conn.localIp) : '';
  const known = conn !== null && isIP(src) !== 0 && isIP(dst) !== 0;
  const v4 = known && isIP(src) === 4 && isIP(dst) === 4;
  if (version === 1) {
    if (!known) return Buffer.from('PROXY UNKNOWN\r\n');
    const [s, d] = v4 ? [src, dst] : [mapped(src), mapped(dst)];
    return Buffer.from(`PROXY ${v4 ? 'TCP4' : 'TCP6'} ${s} ${d} ${conn.port} ${conn.localPort}\r\n`);
  }
  if (!known) return Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  const addresses = v4
    ? Buffer.from([...src.split('.').map(Number), ...dst.split('.').map(Number)])
    : Buffer.concat([v6Bytes(mapped(src)), v6Bytes(mapped(dst))]);
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(conn.port, 0);
  ports.writeUInt16BE(conn.localPort, 2);
  const body = Buffer.concat([addresses, ports]);
  const head = Buffer.from([0x21, v4 ? 0x11 : 0x21, 0, 0]);
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([V2_SIGNATURE, head, body]);
}
