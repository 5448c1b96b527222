// The L7 section's nginx configs: the backends (each names its version in a
// response header; those outside the mesh also serve mutual TLS 1.3) and the
// reverse proxy in the waypoint's place, which splits 90/10 over them by
// upstream weights, retries like the waypoint's route and talks mutual TLS
// 1.3 to them over kept-alive connections. Certificates are issued per run
// from the sandbox CA's root, RSA 2048 like the workload certificates the
// waypoint's tunnels use (certs.ts).
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { issueLeaf, type CaRoot } from './certs.ts';
import { BACKEND_HEADER, BACKEND_TLS_PORT, NS_L7_DIRECT, ROUTE_HEADER, SCHEME_HEADER, SPLIT, VERSIONS, type Version } from './l7-manifest.ts';
import { nginxConf, SERVER_PORT } from './www.ts';

/** The name nginx checks the backends' certificate for. */
export const BACKEND_TLS_NAME = `web.${NS_L7_DIRECT}.bench`;
const PROXY_TLS_NAME = `proxy.${NS_L7_DIRECT}.bench`;

export interface L7Files {
  dir: string;
  backendConf(ns: string, version: Version): string;
  proxyConf: string;
}

export function l7Layout(benchDir: string): L7Files {
  const dir = join(benchDir, 'l7');
  return { dir, backendConf: (ns, v) => join(dir, `nginx-${ns}-${v}.conf`), proxyConf: join(dir, 'nginx-proxy.conf') };
}

interface TlsFiles {
  ca: string;
  backendCert: string;
  backendKey: string;
  proxyCert: string;
  proxyKey: string;
}

const tlsFilesOf = (dir: string): TlsFiles => ({
  ca: join(dir, 'root-cert.pem'),
  backendCert: join(dir, 'backend-cert.pem'),
  backendKey: join(dir, 'backend-key.pem'),
  proxyCert: join(dir, 'proxy-cert.pem'),
  proxyKey: join(dir, 'proxy-key.pem'),
});

function backendServer(version: Version, root: string, tls: TlsFiles | undefined): string {
  const tlsLines = tls ? `    listen ${BACKEND_TLS_PORT} ssl backlog=4096;
    ssl_protocols TLSv1.3;
    ssl_certificate ${tls.backendCert};
    ssl_certificate_key ${tls.backendKey};
    ssl_client_certificate ${tls.ca};
    ssl_verify_client on;
` : '';
  return `  server {
    listen ${SERVER_PORT} backlog=4096;
${tlsLines}    root ${root};
    add_header ${BACKEND_HEADER} ${version} always;
    add_header ${SCHEME_HEADER} $scheme always;
  }
`;
}

/**
 * Certificates and the backends' configs under `files.dir`; `root` is the
 * served content (www.ts) and `tlsNamespace` the namespace whose backends
 * serve TLS too.
 */
export async function writeL7Backends(files: L7Files, caRoot: CaRoot, root: string, namespaces: readonly string[], tlsNamespace: string): Promise<void> {
  await mkdir(files.dir, { recursive: true });
  const tls = tlsFilesOf(files.dir);
  const backend = await issueLeaf(caRoot, BACKEND_TLS_NAME, `spiffe://cluster.local/ns/${NS_L7_DIRECT}/sa/web`);
  const proxy = await issueLeaf(caRoot, PROXY_TLS_NAME, `spiffe://cluster.local/ns/${NS_L7_DIRECT}/sa/proxy`);
  await writeFile(tls.ca, caRoot.certPem);
  await writeFile(tls.backendCert, backend.certPem);
  await writeFile(tls.backendKey, backend.keyPem, { mode: 0o600 });
  await writeFile(tls.proxyCert, proxy.certPem);
  await writeFile(tls.proxyKey, proxy.keyPem, { mode: 0o600 });
  for (const ns of namespaces) {
    for (const v of VERSIONS) {
      const temp = join(files.dir, `tmp-${ns}-${v}`);
      await mkdir(temp, { recursive: true });
      const servers = backendServer(v, root, ns === tlsNamespace ? tls : undefined);
      await writeFile(files.backendConf(ns, v), nginxConf(`L7 backend ${ns}/${v}`, { temp, pidFile: join(files.dir, `nginx-${ns}-${v}.pid`), workers: 2, servers }));
    }
  }
}

/**
 * The reverse proxy: `backends` are the TLS backends' pod addresses by
 * version, `workers` the CPUs it is pinned to (worker_processes auto on a
 * host of that size). Upstream connections are kept alive, as the waypoint
 * keeps its tunnels: the figures are of requests, not of TLS handshakes.
 */
export async function writeProxyConf(files: L7Files, backends: Record<Version, string>, workers: number): Promise<void> {
  const tls = tlsFilesOf(files.dir);
  const temp = join(files.dir, 'tmp-proxy');
  await mkdir(temp, { recursive: true });
  const upstreams = VERSIONS.map((v) => `    server ${backends[v]}:${BACKEND_TLS_PORT} weight=${SPLIT[v]};`).join('\n');
  const servers = `  upstream web {
${upstreams}
    keepalive 64;
    keepalive_requests 1000000000;
    keepalive_timeout 900s;
  }
  server {
    listen ${SERVER_PORT} backlog=4096;
    location / {
      proxy_pass https://web;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_certificate ${tls.proxyCert};
      proxy_ssl_certificate_key ${tls.proxyKey};
      proxy_ssl_trusted_certificate ${tls.ca};
      proxy_ssl_verify on;
      proxy_ssl_name ${BACKEND_TLS_NAME};
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
      proxy_next_upstream error timeout http_503;
      proxy_next_upstream_tries 3;
      add_header ${ROUTE_HEADER} nginx always;
    }
  }
`;
  await writeFile(files.proxyConf, nginxConf('L7 reverse proxy', { temp, pidFile: join(files.dir, 'nginx-proxy.pid'), workers, servers }));
}
