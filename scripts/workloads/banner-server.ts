// A server-first TCP protocol (like SMTP or MySQL): on connect the server
// speaks first with one greeting line, then echoes each line it receives.
// "quit" closes the connection. Proves a proxy does not wait for the client.
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.PORT ?? '2525' },
    host: { type: 'string', default: '::' },
    banner: { type: 'string' },
  },
});
const pod = process.env.POD_NAME ?? process.env.HOSTNAME ?? hostname();
const banner = values.banner ?? `220 ${pod} banner-server ready`;

const server = createServer((socket) => {
  socket.on('error', () => socket.destroy());
  socket.write(`${banner}\n`);
  const lines = createInterface({ input: socket, crlfDelay: Infinity });
  // readline re-emits the socket's errors: a peer that resets (a kubelet tcpSocket probe) must not crash the server.
  lines.on('error', () => socket.destroy());
  lines.on('line', (line) => {
    if (line.trim() === 'quit') {
      socket.end('221 bye\n');
      return;
    }
    socket.write(`${line}\n`);
  });
});

server.listen(Number(values.port), values.host, () => {
  process.stdout.write(`banner-server ${pod} listening on [${values.host}]:${values.port}\n`);
});
