// The server side of every path: nginx serving a 1 KiB file and a large
// one, so the server is never the bottleneck (sendfile, no logging). Its
// config skeleton is the L7 section's backends' and reverse proxy's too.
// Everything lives in the sandbox's run dir, so `sandbox down` removes it.
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const SERVER_PORT = 8080;
export const SMALL_PATH = '/1k';
export const BLOB_PATH = '/blob';

export interface WwwLayout {
  dir: string;
  root: string;
  /** nginx.conf for the server pod of namespace `ns`. */
  confFor(ns: string): string;
}

export function wwwLayout(benchDir: string): WwwLayout {
  const dir = join(benchDir, 'www');
  return { dir, root: join(dir, 'root'), confFor: (ns) => join(dir, `nginx-${ns}.conf`) };
}

/**
 * Writes the content and one config per server pod. The blob is written out,
 * not left sparse: the first sendfile of a hole fills the page cache at a
 * fraction of line rate, which would slow whichever path happened to read it first.
 */
export async function writeWww(layout: WwwLayout, namespaces: readonly string[], blobBytes: number): Promise<void> {
  await mkdir(layout.root, { recursive: true });
  await writeFile(join(layout.root, SMALL_PATH.slice(1)), Buffer.alloc(1024, 'x'));
  const blob = await open(join(layout.root, BLOB_PATH.slice(1)), 'w');
  try {
    const chunk = Buffer.alloc(4 * 1024 * 1024);
    for (let at = 0; at < blobBytes; at += chunk.length) await blob.write(chunk, 0, Math.min(chunk.length, blobBytes - at));
  } finally {
    await blob.close();
  }
  for (const ns of namespaces) {
    const temp = join(layout.dir, `tmp-${ns}`);
    await mkdir(temp, { recursive: true });
    await writeFile(layout.confFor(ns), nginxConf('server', { temp, pidFile: join(layout.dir, `nginx-${ns}.pid`), workers: 2, servers: staticServer(SERVER_PORT, layout.root) }));
  }
}

export interface NginxConfOptions {
  /** Directory for nginx's temp files (it must not write beside the Debian defaults). */
  temp: string;
  pidFile: string;
  workers: number;
  /** server (and upstream) blocks of the http context. */
  servers: string;
}

// Keep-alive without limits: nginx's default of 1,000 requests per connection
// would turn the keep-alive workload into a slow trickle of new connections.
/** An nginx config run in the foreground as a pod's command, quiet, with keep-alive unbounded. */
export function nginxConf(role: string, o: NginxConfOptions): string {
  return `# meshlet bench ${role} (generated)
user root;
worker_processes ${o.workers};
worker_rlimit_nofile 16384;
daemon off;
pid ${o.pidFile};
error_log stderr warn;
events { worker_connections 8192; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 900s;
  keepalive_requests 1000000000;
  default_type application/octet-stream;
  client_body_temp_path ${o.temp}/body;
  proxy_temp_path ${o.temp}/proxy;
  fastcgi_temp_path ${o.temp}/fastcgi;
  uwsgi_temp_path ${o.temp}/uwsgi;
  scgi_temp_path ${o.temp}/scgi;
${o.servers}}
`;
}

const staticServer = (port: number, root: string): string => `  server {
    listen ${port} backlog=4096;
    root ${root};
  }
`;
