// A tiny HTTP echo server for sandbox pods: answers every request with JSON
// describing it (pod, method, path, headers, peer). /status/<code> answers
// with that status and /delay/<ms> answers late, for retry and timeout tests.
import { createServer } from 'node:http';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.PORT ?? '8080' },
    host: { type: 'string', default: '::' },
  },
});
const pod = process.env.POD_NAME ?? process.env.HOSTNAME ?? hostname();

const server = createServer((req, res) => {
  const body: Buffer[] = [];
  req.on('data', (c: Buffer) => body.push(c));
  req.on('end', () => {
    const path = req.url ?? '/';
    const status = /^\/status\/(\d{3})\b/.exec(path);
    const delay = /^\/delay\/(\d+)\b/.exec(path);
    const answer = (): void => {
      const text = `${JSON.stringify({
        pod,
        method: req.method,
        path,
        headers: req.headers,
        peer: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
        local: `${req.socket.localAddress}:${req.socket.localPort}`,
        body: Buffer.concat(body).toString(),
      })}\n`;
      res.writeHead(status ? Number(status[1]) : 200, { 'content-type': 'application/json', 'x-served-by': pod });
      res.end(text);
    };
    if (delay) setTimeout(answer, Number(delay[1]));
    else answer();
  });
});

// `::` is dual-stack: IPv4 clients arrive as ::ffff:a.b.c.d.
server.listen(Number(values.port), values.host, () => {
  process.stdout.write(`http-echo ${pod} listening on [${values.host}]:${values.port}\n`);
});
