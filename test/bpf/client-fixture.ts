// Test fixture run in a pod cgroup inside the test netns: opens and drives
// connections on request. Reads JSON lines on stdin, answers each with one
// JSON line carrying the same request id; conn names a connection:
//   {op:'connect', conn, host, port, localAddress?, timeoutMs?}
//                                     → addresses as the client sees them + the server's greeting,
//                                       or {error:'timeout', localPort} when no connection came up in time
//   {op:'send', conn, text}           → the server's echo
//   {op:'close', conn}                → closed
//   {op:'ended', conn, timeoutMs?}    → {ended:true, error: the socket's error code or null} once it closed,
//                                       or {ended:false} if it is still open after timeoutMs
//   {op:'udp', host, port, text}      → the UDP reply (null after 2 s)
import { connect, type Socket } from 'node:net';
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';

interface Request {
  op: string;
  id: string;
  conn?: string;
  host?: string;
  port?: number;
  text?: string;
  localAddress?: string;
  timeoutMs?: number;
}

const sockets = new Map<string, { socket: Socket; lines: AsyncIterator<string>; closed: Promise<string | null> }>();
const reply = (id: string, body: Record<string, unknown>): void => void process.stdout.write(JSON.stringify({ id, ...body }) + '\n');

async function handle(req: Request): Promise<Record<string, unknown>> {
  switch (req.op) {
    case 'connect': {
      const socket = connect({ host: req.host ?? '', port: req.port ?? 0, ...(req.localAddress ? { localAddress: req.localAddress } : {}) });
      const connected = new Promise<boolean>((resolve, reject) => socket.once('connect', () => resolve(true)).once('error', reject));
      const timedOut = new Promise<boolean>((resolve) => setTimeout(resolve, req.timeoutMs ?? 30_000, false).unref());
      if (!(await Promise.race([connected, timedOut]))) {
        const localPort = socket.localPort;
        socket.destroy();
        return { error: 'timeout', localPort };
      }
      const lines = createInterface({ input: socket })[Symbol.asyncIterator]();
      let error: string | null = null;
      socket.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
      const closed = new Promise<string | null>((resolve) => socket.once('close', () => resolve(error)));
      sockets.set(req.conn ?? '', { socket, lines, closed });
      const greeting = JSON.parse((await lines.next()).value as string) as unknown;
      return { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, localAddress: socket.localAddress, localPort: socket.localPort, greeting };
    }
    case 'send': {
      const conn = sockets.get(req.conn ?? '');
      if (!conn) throw new Error(`no connection ${req.conn}`);
      conn.socket.write(`${req.text ?? ''}\n`);
      return { reply: JSON.parse((await conn.lines.next()).value as string) as unknown };
    }
    case 'close': {
      const conn = sockets.get(req.conn ?? '');
      sockets.delete(req.conn ?? '');
      await new Promise<void>((resolve) => (conn ? conn.socket.end(resolve) : resolve()));
      return { closed: true };
    }
    case 'ended': {
      const conn = sockets.get(req.conn ?? '');
      if (!conn) throw new Error(`no connection ${req.conn}`);
      const timedOut = new Promise<false>((resolve) => setTimeout(resolve, req.timeoutMs ?? 5000, false).unref());
      const error = await Promise.race([conn.closed, timedOut]);
      return error === false ? { ended: false } : { ended: true, error };
    }
    case 'udp': {
      const sock = createSocket((req.host ?? '').includes(':') ? 'udp6' : 'udp4');
      try {
        await new Promise<void>((resolve) => sock.connect(req.port ?? 0, req.host, resolve));
        const answer = new Promise<string>((resolve) => sock.once('message', (m) => resolve(m.toString())));
        sock.send(req.text ?? '');
        const timeout = new Promise<null>((resolve) => setTimeout(resolve, 2000, null).unref());
        const got = await Promise.race([answer, timeout]);
        return { reply: got === null ? null : (JSON.parse(got) as unknown), remoteAddress: sock.remoteAddress().address };
      } finally {
        sock.close();
      }
    }
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  const req = JSON.parse(line) as Request;
  handle(req).then(
    (body) => reply(req.id, body),
    (err: unknown) => reply(req.id, { error: err instanceof Error ? err.message : String(err) }),
  );
}
for (const { socket } of sockets.values()) socket.destroy();
