import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

/**
 * Logs in on a bare socket, selects INBOX and FETCHes BODY[] of message 1, handing every
 * chunk of the answer to `onChunk` as it arrives; resolves once the FETCH is answered. The
 * tagged answers are looked for at the tail of each chunk only, so the client is never the
 * bottleneck of a large FETCH. `onFetch` is called as the FETCH is sent (to time it).
 */
export function fetchFirstMessage(
  opts: { port: number; tls?: boolean; user: string; pass: string },
  onChunk: (chunk: Buffer, socket: Socket) => void,
  onFetch: () => void = () => {},
): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket: Socket = opts.tls ? tlsConnect({ port: opts.port, host: '127.0.0.1', rejectUnauthorized: false }) : netConnect(opts.port, '127.0.0.1');
    let stage = 0;
    let tail = '';
    socket.on('error', reject);
    socket.on('data', (d: Buffer) => {
      tail = (tail + d.subarray(Math.max(0, d.length - 128)).toString('latin1')).slice(-128);
      if (stage === 0 && tail.includes('* OK')) {
        stage = 1;
        tail = '';
        socket.write(`a LOGIN "${opts.user}" "${opts.pass}"\r\nb SELECT INBOX\r\n`);
      } else if (stage === 1 && /\r\nb OK[^\n]*\r\n$/.test(tail)) {
        stage = 2;
        tail = '';
        onFetch();
        socket.write('c FETCH 1 BODY.PEEK[]\r\n');
      } else if (stage === 2) {
        onChunk(d, socket);
        if (/\r\nc OK[^\n]*\r\n$/.test(tail)) {
          socket.destroy();
          resolve();
        }
      }
    });
  });
}
