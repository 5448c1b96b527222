// Admin API (Unix socket and 127.0.0.1:15000): flows, follow stream, state,
// health. Readiness (15021) answers /healthz/ready alone. JSON throughout,
// NDJSON for the follow stream.
import type { RequestListener, ServerResponse } from 'node:http';
import { memoryReport, sendJson, streamEvents } from '../lib/core/admin-http.ts';
import type { FlowTable } from '../lib/telemetry/flow-table.ts';
import type { CertificateListing } from '../lib/identity/store.ts';
import type { StateStore } from '../lib/mesh/state.ts';

/**
 * Ready once the ztunnel holds the agent's state (the agent attaches the
 * ztunnel's hooks before it sends any) and, with mutual TLS, a valid
 * certificate for every identity its node hosts, and listening for traffic:
 * a new ztunnel that could not serve its pods yet keeps a rolling update
 * waiting.
 */
function health(store: StateStore, extras: AdminExtras, res: ServerResponse): void {
  const { certs } = extras;
  const unserved = extras.notServing?.();
  if (unserved) return sendJson(res, 503, { status: unserved });
  const view = store.view;
  if (!view) return sendJson(res, 503, { status: 'waiting for the first snapshot from the agent' });
  const missing = (certs?.() ?? []).filter((c) => c.state !== 'valid');
  if (missing.length > 0) {
    return sendJson(res, 503, {
      status: `waiting for certificates of ${missing.length} ${missing.length === 1 ? 'identity' : 'identities'} this node hosts`,
      version: view.version,
      missing: missing.map((c) => ({ identity: c.identity, state: c.state, lastError: c.lastError })),
    });
  }
  sendJson(res, 200, { status: 'ready', version: view.version });
}

export interface Admin {
  handler: RequestListener;
  /** Ends follow streams cleanly, so followers see the end of the stream rather than an abort. */
  endStreams(): void;
}

/** Optional parts: present when the ztunnel has them. */
export interface AdminExtras {
  metrics?: () => Promise<string>;
  certs?: () => CertificateListing[];
  /** Why the ztunnel serves no traffic though it may hold state (not listening yet, or superseded); undefined when it does. */
  notServing?: () => string | undefined;
}

export function createAdmin(store: StateStore, flows: FlowTable, extras: AdminExtras = {}): Admin {
  const followers = new Set<ServerResponse>();
  const handler: RequestListener = (req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    if (req.method !== 'GET') return sendJson(res, 405, { error: 'only GET' });
    switch (url.pathname) {
      case '/flows':
        if (url.searchParams.get('follow') === '1') return streamEvents((l) => flows.subscribe(l), followers, req, res);
        return sendJson(res, 200, { flows: flows.list() });
      case '/state': {
        const view = store.view;
        if (!view) return sendJson(res, 503, { error: 'no snapshot from the agent yet' });
        return sendJson(res, 200, { version: view.version, state: view.state });
      }
      case '/healthz':
      case '/healthz/ready':
        return health(store, extras, res);
      case '/certs':
        return sendJson(res, 200, { certificates: extras.certs?.() ?? [] });
      case '/memory':
        return sendJson(res, 200, memoryReport());
      case '/metrics':
        if (!extras.metrics) return sendJson(res, 404, { error: 'metrics are off' });
        return void extras.metrics().then((text) => {
          res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
          res.end(text);
        });
      default:
        return sendJson(res, 404, { error: `no such path: ${url.pathname}`, paths: ['/flows', '/flows?follow=1', '/state', '/healthz', '/certs', '/metrics', '/memory'] });
    }
  };
  return {
    handler,
    endStreams: () => {
      for (const res of followers) res.end();
    },
  };
}

export function readinessHandler(store: StateStore, extras: AdminExtras): RequestListener {
  return (req, res) => {
    if (req.method === 'GET' && req.url === '/healthz/ready') return health(store, extras, res);
    sendJson(res, 404, { error: 'only GET /healthz/ready' });
  };
}
