// The waypoint's HTTP endpoints beside HBONE, split as Envoy splits them:
// readiness alone on Istio's readiness port (15021, reachable by the kubelet
// and anyone who can reach the pod), the operator's views (recent requests
// with their paths and principals, config, clusters, certificates, memory) on the
// admin port, loopback by default (15000), and Prometheus metrics on 15020.
// Readiness holds until the waypoint can serve: its own certificate held (or
// no CA configured) and the cluster read once with its Gateway in it, so the
// kubelet keeps the pod out of its Service's endpoints (and the ztunnels from
// sending to it) until then.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { memoryReport, sendJson, streamEvents } from '../lib/core/admin-http.ts';
import type { CertificateListing } from '../lib/identity/store.ts';
import type { ConfigStatus } from './config-source.ts';
import type { RecentRequests } from './telemetry/recent-requests.ts';
import type { ClusterStats } from './upstream/cluster.ts';

export interface Readiness {
  ready: boolean;
  /** What it still waits for. */
  waiting: string[];
}

export interface AdminSources {
  recent: RecentRequests;
  config(): ConfigStatus;
  clusters(): ClusterStats[];
  certs?(): CertificateListing[];
}

export interface AdminHandler {
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** Ends the follow streams (on shutdown). */
  endStreams(): void;
}

type Route = (req: IncomingMessage, res: ServerResponse, url: URL) => void;

/** GET routes by path; anything else is a 404 that lists what there is. */
function routed(routes: Record<string, Route>): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://waypoint');
    const route = Object.hasOwn(routes, url.pathname) ? routes[url.pathname] : undefined;
    if (req.method !== 'GET' || !route) return sendJson(res, 404, { error: `no such endpoint ${req.method} ${url.pathname}; try GET ${Object.keys(routes).join(', ')}` });
    route(req, res, url);
  };
}

/** GET /healthz/ready: 200 `ready`, or 503 with what it waits for. Nothing else. */
export function readinessHandler(readiness: () => Readiness): (req: IncomingMessage, res: ServerResponse) => void {
  return routed({
    '/healthz/ready': (_req, res) => {
      const r = readiness();
      if (r.ready) return void res.writeHead(200, { 'content-type': 'text/plain' }).end('ready\n');
      sendJson(res, 503, r);
    },
  });
}

/** Requests `meshlet flows` asks for at most, newest last. */
const MAX_LISTED = 2000;

export function adminHandler(sources: AdminSources): AdminHandler {
  const followers = new Set<ServerResponse>();
  const handle = routed({
    '/requests': (req, res, url) => {
      if (url.searchParams.has('follow')) return streamEvents((l) => sources.recent.subscribe(l), followers, req, res);
      const limit = Math.min(MAX_LISTED, Number(url.searchParams.get('limit') ?? MAX_LISTED) || MAX_LISTED);
      sendJson(res, 200, sources.recent.list().slice(-limit));
    },
    '/config': (_req, res) => sendJson(res, 200, sources.config()),
    '/clusters': (_req, res) => sendJson(res, 200, sources.clusters()),
    '/certs': (_req, res) => sendJson(res, 200, sources.certs?.() ?? []),
    '/memory': (_req, res) => sendJson(res, 200, memoryReport()),
  });
  return {
    handle,
    endStreams() {
      for (const res of followers) res.end();
    },
  };
}

/** Prometheus text on /metrics (and Envoy's /stats/prometheus, which Istio's scrape configs also use). */
export function metricsHandler(text: () => Promise<string>, contentType: string): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || (path !== '/metrics' && path !== '/stats/prometheus')) return void res.writeHead(404).end();
    text().then(
      (body) => res.writeHead(200, { 'content-type': contentType }).end(body),
      () => res.writeHead(500).end(),
    );
  };
}
