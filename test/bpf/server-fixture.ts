// Test fixture run inside the test netns: TCP listeners that greet each
// connection with what they see (local and peer address), then echo lines;
// plus UDP echo. Args: name@host:port for TCP, udp:name@host:port for UDP.
// Prints {"ready":true} once everything listens.
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';

function parse(spec: string): { name: string; host: string; port: number } {
  const at = spec.indexOf('@');
  const colon = spec.lastIndexOf(':');
  return { name: spec.slice(0, at), host: spec.slice(at + 1, colon).replace(/^\[|\]$/g, ''), port: Number(spec.slice(colon + 1)) };
}

const listening = process.argv.slice(2).map((arg) => {
  if (arg.startsWith('udp:')) {
    const { name, host, port } = parse(arg.slice(4));
    const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4');
    sock.on('message', (msg, rinfo) => sock.send(JSON.stringify({ server: name, text: msg.toString() }), rinfo.port, rinfo.address));
    return new Promise<void>((resolve) => sock.bind(port, host, resolve));
  }
  const { name, host, port } = parse(arg);
  const server = createServer((socket) => {
    // Read the local address first, as the ztunnel does: it is the original destination.
    const seen = { server: name, localAddress: socket.localAddress, localPort: socket.localPort, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort };
    socket.write(JSON.stringify(seen) + '\n');
    socket.on('error', () => socket.destroy());
    // readline passes the socket's errors on (a connection the kernel aborted): this fixture outlives them.
    createInterface({ input: socket })
      .on('error', () => undefined)
      .on('line', (line) => socket.write(JSON.stringify({ server: name, echo: line }) + '\n'));
  });
  return new Promise<void>((resolve) => server.listen({ host, port, ipv6Only: host.includes(':') }, resolve));
});

await Promise.all(listening);
process.stdout.write(JSON.stringify({ ready: true }) + '\n');
