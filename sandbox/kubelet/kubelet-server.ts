// The kubelet's own API, the part the API server calls for `kubectl logs`:
// GET /containerLogs/<namespace>/<pod>/<container> over TLS on the node's
// addresses (the port the Node reports in daemonEndpoints). As kubelet runs
// with x509 authentication and Webhook authorization: the client certificate,
// from the cluster CA, names the user and groups, and a SubjectAccessReview
// on nodes/proxy (kubelet's resource for this path) decides. Reviews are not
// cached: logs are fetched rarely, and a cache would keep revoked access.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { AuthorizationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { MeshletError } from '../../lib/core/errors.ts';
import type { Logger } from '../../lib/core/log.ts';
import { ContainerLogError, streamLog, type ContainerLog, type LogRequest } from './container-log.ts';

/** kubelet's default --port. */
export const KUBELET_PORT = 10250;
/** Connections at once (the API server opens one per `kubectl logs`). */
const MAX_CONNECTIONS = 64;
/** Logs streamed at once; more are refused with 429 rather than queued. */
const MAX_STREAMS = 32;
const HEADERS_TIMEOUT_MS = 10_000;

export interface Requester {
  user: string;
  groups: string[];
}

/** Finds the log of a container of a pod on this node (the runtime's). */
export type ContainerLogs = (namespace: string, pod: string, container: string, previous: boolean) => Promise<ContainerLog>;

export interface KubeletServerOptions {
  nodeName: string;
  /** PEM: the kubelet's serving certificate and key, and the CA its clients' certificates must chain to. */
  tls: { cert: string; key: string; ca: string };
  logs: ContainerLogs;
  authorize: (requester: Requester) => Promise<boolean>;
  log: Logger;
}

/** A request the kubelet API refuses: its HTTP status, and what to change. */
class KubeletRequestError extends MeshletError {
  readonly status: number;

  constructor(status: number, message: string) {
    super('MESHLET_KUBELET_REQUEST', message);
    this.status = status;
  }
}

const CONTAINER_LOGS = /^\/containerLogs\/([^/]+)\/([^/]+)\/([^/]+)$/;

/** Asks the API server, with the kubelet's own credentials (system:node may create reviews), whether `requester` may get this node's proxy subresource. */
export function subjectAccessReviewer(kubeConfig: KubeConfig, nodeName: string): (requester: Requester) => Promise<boolean> {
  const api = kubeConfig.makeApiClient(AuthorizationV1Api);
  return async ({ user, groups }) => {
    const review = await api.createSubjectAccessReview({
      body: { spec: { user, groups, resourceAttributes: { verb: 'get', resource: 'nodes', subresource: 'proxy', name: nodeName } } },
    });
    return review.status?.allowed === true;
  };
}

/** The user (CN) and groups (O) of the client's verified certificate. */
function requesterOf(req: IncomingMessage): Requester | undefined {
  const subject = (req.socket as TLSSocket).getPeerCertificate().subject as Record<string, string | string[] | undefined> | undefined;
  const cn = subject?.CN;
  if (typeof cn !== 'string' || cn === '') return undefined;
  const o = subject?.O;
  return { user: cn, groups: o === undefined ? [] : Array.isArray(o) ? o : [o] };
}

const whole = (name: string, value: string | null, min: number): number | undefined => {
  if (value === null) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min) throw new KubeletRequestError(400, `${name} must be a whole number of at least ${min}, not ${JSON.stringify(value)}`);
  return n;
};

/** The query of /containerLogs as kubectl sends it; what this runtime cannot honour is refused, not ignored. */
function logRequest(query: URLSearchParams): LogRequest & { previous: boolean } {
  for (const unkept of ['timestamps', 'sinceSeconds', 'sinceTime']) {
    if (query.has(unkept) && query.get(unkept) !== 'false') {
      throw new KubeletRequestError(400, `${unkept}: the sandbox runtime keeps no timestamps in its container logs; leave out --timestamps, --since and --since-time (--tail and --limit-bytes work)`);
    }
  }
  const tailLines = whole('tailLines', query.get('tailLines'), 0);
  const limitBytes = whole('limitBytes', query.get('limitBytes'), 1);
  return { follow: query.get('follow') === 'true', previous: query.get('previous') === 'true', ...(tailLines === undefined ? {} : { tailLines }), ...(limitBytes === undefined ? {} : { limitBytes }) };
}

/** A percent-encoded path segment, decoded; a malformed escape is the client's error (400), not the server's. */
function decodePathPart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new KubeletRequestError(400, `path segment ${JSON.stringify(part)} is not valid percent-encoding`);
  }
}

export class KubeletServer {
  readonly #o: KubeletServerOptions;
  readonly #servers: Server[] = [];
  #streams = 0;

  constructor(options: KubeletServerOptions) {
    this.#o = options;
  }

  /** Listens on `port` of each address; resolves once all listen. */
  async listen(addresses: readonly string[], port: number): Promise<void> {
    for (const host of addresses) {
      const { cert, key, ca } = this.#o.tls;
      const server = createServer({ cert, key, ca, requestCert: true, rejectUnauthorized: true }, (req, res) => void this.#handle(req, res));
      server.maxConnections = MAX_CONNECTIONS;
      server.headersTimeout = HEADERS_TIMEOUT_MS;
      // A follow lasts as long as the container: no whole-request timeout.
      server.requestTimeout = 0;
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host, port }, () => resolve());
      });
      this.#servers.push(server);
    }
  }

  close(): void {
    for (const server of this.#servers) {
      server.close();
      server.closeAllConnections();
    }
    this.#servers.length = 0;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const reply = (status: number, message: string): void => {
      if (res.headersSent) return void res.destroy();
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`${message}\n`);
    };
    let streaming = false;
    try {
      const url = new URL(req.url ?? '/', 'https://kubelet');
      const requester = requesterOf(req);
      if (!requester) throw new KubeletRequestError(401, 'a client certificate with a common name (the user) is required');
      const match = CONTAINER_LOGS.exec(url.pathname);
      if (!match) throw new KubeletRequestError(404, `${url.pathname}: this kubelet serves /containerLogs/<namespace>/<pod>/<container> only`);
      if (req.method !== 'GET') throw new KubeletRequestError(405, `${req.method} ${url.pathname}: only GET`);
      if (!(await this.#o.authorize(requester))) {
        throw new KubeletRequestError(403, `user ${requester.user} may not read logs on node ${this.#o.nodeName}: grant get on nodes/proxy (ClusterRole system:kubelet-api-admin)`);
      }
      const [namespace, pod, container] = match.slice(1).map((part) => decodePathPart(part!)) as [string, string, string];
      const request = logRequest(url.searchParams);
      if (this.#streams >= MAX_STREAMS) throw new KubeletRequestError(429, `${MAX_STREAMS} logs are being streamed from node ${this.#o.nodeName} already; try again`);
      const log = await this.#o.logs(namespace, pod, container, request.previous);
      this.#streams++;
      streaming = true;
      const left = new AbortController();
      res.once('close', () => left.abort());
      await streamLog(log, request, res, left.signal, () => {
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
        res.flushHeaders();
      });
      res.end();
    } catch (err) {
      if (err instanceof KubeletRequestError) return reply(err.status, err.message);
      // As kubelet answers what its runtime cannot find: the API server hides a 404's body, and passes a 400's on to kubectl.
      if (err instanceof ContainerLogError) return reply(400, err.message);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return reply(400, 'the container has written no log yet');
      this.#o.log.warn('kubelet API request failed', { path: req.url, error: (err as Error).message });
      reply(500, (err as Error).message);
    } finally {
      if (streaming) this.#streams--;
    }
  }
}
