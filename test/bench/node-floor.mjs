// The least a Node.js process holds per idle connection: a server that answers just enough
// IMAP for the benchmark's idle sessions (greeting, LOGIN, SELECT, IDLE) and keeps nothing
// else. The benchmark measures it beside postern, plain and over TLS, as the runtime's floor
// (postern holds two sockets per session: the client's and the upstream's).
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';

const [port, cert, key] = process.argv.slice(2);
const serve = (socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => {});
  socket.write('* OK ready\r\n');
  socket.on('data', (d) => {
    const text = d.toString('latin1');
    if (/^a /m.test(text)) socket.write('a OK logged in\r\n');
    if (/^c IDLE/m.test(text)) socket.write('+ idling\r\n');
  });
};
const server = cert ? tls.createServer({ cert: readFileSync(cert), key: readFileSync(key) }, serve) : net.createServer(serve);
server.listen(Number(port), '127.0.0.1', () => process.stdout.write('ready\n'));
