// Runs inside a client pod: opens COUNT connections to HOST:PORT, completes
// one HTTP request on each (so a proxied connection is established end to
// end, not just accepted by the local proxy), prints "ready COUNT", then
// holds them idle until its stdin closes. Usage: hold-connections.ts HOST PORT COUNT
import { connect, type Socket } from 'node:net';
import { SMALL_PATH } from './www.ts';

const [host, portText, countText] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
if (!host || !Number.isInteger(port) || !Number.isInteger(count) || count < 1) {
  process.stderr.write('usage: hold-connections.ts HOST PORT COUNT\n');
  process.exit(2);
}

/** Connections in flight at once: enough to be quick, few enough not to overrun an accept backlog. */
const PARALLEL = 50;
const sockets: Socket[] = [];

function fail(message: string): never {
  process.stdout.write(`error after ${sockets.length} of ${count} connections: ${message}\n`);
  process.exit(1);
}

function openOne(): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    let head = '';
    const timer = setTimeout(() => reject(new Error('no response within 20 s')), 20_000);
    socket.once('error', reject);
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      clearTimeout(timer);
      socket.removeAllListeners('data');
      if (!head.startsWith('HTTP/1.1 200')) return reject(new Error(`answered ${head.split('\r\n')[0]}`));
      // From now on a close is a failure of the held connection.
      socket.once('close', () => fail('a held connection closed'));
      sockets.push(socket);
      resolve();
    });
    socket.write(`HEAD ${SMALL_PATH} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  });
}

let next = 0;
async function worker(): Promise<void> {
  while (next < count) {
    next++;
    await openOne();
  }
}

try {
  await Promise.all(Array.from({ length: Math.min(PARALLEL, count) }, worker));
} catch (err) {
  fail((err as Error).message);
}
process.stdout.write(`ready ${sockets.length}\n`);
process.stdin.resume();
process.stdin.once('end', () => {
  for (const s of sockets) {
    s.removeAllListeners('close');
    s.destroy();
  }
  process.exit(0);
});
