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
    if (!Buffer.from('PROXY ').subarray(0, Math.min(b.length, 6)).equals(b.subarray(0, Math.min(b.length, 6)))) {
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
  if (parts.length !== 6 || !family || isIP(src ?? '') !== family || isIP(dst ?? '') !== family || !/^\d{1,5}$/.test(sport ?? '') || port > 65535 || !/^\d{1,5}$/.test(dport ?? '')) {
    throw new ProxyHeaderError('malformed PROXY header');
  }
  return { ip: src!, port };
}

/** The address in one normal form (IPv6 compressed, IPv4-mapped reduced), as rate windows key it. */
function canonical(peer: ProxiedPeer): ProxiedPeer {
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
