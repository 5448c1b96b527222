// The CA's HTTPS API:
//   POST /v1/sign   {csr, ttlSeconds?} → {certChain, trustBundle}
//                   (bearer: the ztunnel pod's token, the authenticator says which node it speaks
//                   for; or a waypoint pod's, which may hold its own identity and no other)
//   GET  /v1/bundle → {trustDomain, trustBundle}
//   GET  /metrics   Prometheus text
// Errors are {error: <reason>, message} with 400/401/403/404/405/413/429/503.
// A signing request is checked cheapest first, and nothing is done with the
// CSR's key before the caller may hold the identity it asks for: the token
// (who asks), the caller's rate, the body size, the CSR's structure and SAN,
// the hosting rule (a waypoint's: its own identity), and only then the key
// policy and the signature.
// The serving certificate is a leaf under the mesh root, so clients verify it
// with the same bundle they verify workloads with.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import forge from 'node-forge';
import { generateKeyPair } from '../lib/identity/csr.ts';
import { formatSpiffeId, type SpiffeId } from '../lib/identity/spiffe.ts';
import type { Logger } from '../lib/core/log.ts';
import { isRecord } from '../lib/cluster/objects.ts';
import { callerFields, callerName, isRefusal, rateKey, refusal, refusalError, type Caller, type CallerAuthenticator, type WaypointPod } from './caller.ts';
import { SignRefusal } from './errors.ts';
import type { HostedIdentities } from './hosted.ts';
import type { CaMetrics } from './metrics.ts';
import type { MeshRoot } from './root.ts';
import type { NodeRateLimit } from './rate-limit.ts';
import { proveCsr, readCsr, signLeaf } from './signer.ts';

export interface CaServerOptions {
  root: MeshRoot;
  trustDomain: string;
  /** Which node (or waypoint pod) a bearer token speaks for, or why it speaks for none. */
  callers: CallerAuthenticator;
  hosted: HostedIdentities;
  defaultTtlSeconds: number;
  maxTtlSeconds: number;
  /** DNS names and IPs clients reach the CA by (SANs of its serving certificate). */
  serverNames: readonly string[];
  metrics: CaMetrics;
  log: Logger;
  /** Signing requests per node (and per waypoint). */
  rateLimit: NodeRateLimit;
}

/** A request with a 4096-bit key's CSR is under 2 KiB; anything much larger is not one. */
const MAX_BODY = 16 * 1024;
/** Bounds on a slow client (Envoy's transport_socket_connect_timeout for the handshake; Node's own defaults are 120 s and 300 s). */
const HANDSHAKE_TIMEOUT_MS = 10_000;
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;
const SERVING_TTL_SECONDS = 90 * 86_400;
const SERVING_CHECK_MS = 3_600_000;

export class CaServer {
  readonly #o: CaServerOptions;
  #server: Server | undefined;
  #renewAt = 0;
  #renewTimer: NodeJS.Timeout | undefined;

  constructor(options: CaServerOptions) {
    this.#o = options;
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    const server = createServer({
      ...(await this.#servingCredentials()), minVersion: 'TLSv1.3',
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS, headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS,
    }, (req, res) => void this.#handle(req, res));
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Renew the serving certificate at half life without a restart.
    this.#renewTimer = setInterval(() => {
      if (Date.now() < this.#renewAt) return;
      this.#servingCredentials().then((creds) => server.setSecureContext(creds), (err: unknown) => {
        this.#o.log.error('serving certificate renewal failed', { error: (err as Error).message });
      });
    }, SERVING_CHECK_MS).unref();
    return server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    clearInterval(this.#renewTimer);
    const server = this.#server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  async #servingCredentials(): Promise<{ key: string; cert: string }> {
    const keys = await generateKeyPair();
    const leaf = signLeaf(this.#o.root, { publicKey: keys.publicKey, hosts: this.#o.serverNames, ttlSeconds: SERVING_TTL_SECONDS });
    this.#renewAt = leaf.notBefore.getTime() + (leaf.notAfter.getTime() - leaf.notBefore.getTime()) / 2;
    return { key: forge.pki.privateKeyToPem(keys.privateKey), cert: leaf.pem };
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    let caller: Caller | undefined;
    try {
      if (path === '/v1/sign') {
        if (req.method !== 'POST') throw new SignRefusal(405, 'method', 'use POST /v1/sign');
        caller = await this.#authenticate(req);
        const waitMs = this.#o.rateLimit.take(rateKey(caller));
        if (waitMs !== undefined) throw new SignRefusal(429, 'rate-limited', `${callerName(caller)} sends signing requests faster than the CA allows (--sign-rate, --sign-burst); retry in ${Math.ceil(waitMs / 1000)} s`, { 'retry-after': String(Math.ceil(waitMs / 1000)) });
        const body = await readJson(req);
        const answer = this.#sign(caller, body);
        send(res, 200, answer);
      } else if (path === '/v1/bundle') {
        if (req.method !== 'GET') throw new SignRefusal(405, 'method', 'use GET /v1/bundle');
        send(res, 200, { trustDomain: this.#o.trustDomain, trustBundle: this.#o.root.certPem });
      } else if (path === '/metrics' && req.method === 'GET') {
        const text = await this.#o.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.#o.metrics.registry.contentType }).end(text);
      } else {
        throw new SignRefusal(404, 'not-found', `no such endpoint ${req.method} ${path}; the CA serves POST /v1/sign, GET /v1/bundle and GET /metrics`);
      }
    } catch (err) {
      if (!(err instanceof SignRefusal)) {
        this.#o.log.error('request failed', { path, error: (err as Error).message });
        send(res, 500, { error: 'internal', message: 'the CA failed to handle the request; see its log' });
        return;
      }
      if (path === '/v1/sign') {
        this.#o.metrics.refusals.inc({ reason: err.reason });
        this.#o.log.warn('signing refused', { ...callerFields(caller), reason: err.reason, message: err.message, remote: req.socket.remoteAddress });
      }
      const headers: Record<string, string> = err.status === 401 ? { 'www-authenticate': 'Bearer realm="meshlet-ca"' } : err.status === 413 ? { connection: 'close' } : {};
      send(res, err.status, { error: err.reason, message: err.message }, { ...headers, ...err.headers });
    }
  }

  async #authenticate(req: IncomingMessage): Promise<Caller> {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!match) throw new SignRefusal(401, 'unauthenticated', 'no bearer token; send "authorization: Bearer <the ztunnel pod\'s projected ServiceAccount token>"');
    const caller = await this.#o.callers.authenticate(match[1]!);
    if (isRefusal(caller)) throw refusalError(caller);
    return caller;
  }

  #sign(caller: Caller, body: unknown): { certChain: string[]; trustBundle: string } {
    if (!isRecord(body) || typeof body.csr !== 'string') throw new SignRefusal(400, 'bad-request', 'the body must be JSON {"csr": "<PEM>", "ttlSeconds"?: <positive integer>}');
    const ttl = body.ttlSeconds;
    if (ttl !== undefined && (typeof ttl !== 'number' || !Number.isSafeInteger(ttl) || ttl <= 0)) {
      throw new SignRefusal(400, 'bad-request', 'ttlSeconds must be a positive integer');
    }
    const { id, csr } = readCsr(body.csr, this.#o.trustDomain);
    const uri = formatSpiffeId(id);
    if (caller.waypoint !== undefined) this.#ownIdentity(caller.waypoint, id, uri);
    else this.#hostedOnNode(caller.node, id, uri);
    const publicKey = proveCsr(csr);
    const leaf = signLeaf(this.#o.root, { publicKey, uris: [uri], ttlSeconds: Math.min(ttl ?? this.#o.defaultTtlSeconds, this.#o.maxTtlSeconds) });
    this.#o.metrics.issued.inc();
    this.#o.log.info('certificate issued', { ...callerFields(caller), identity: uri, serial: leaf.serial, notAfter: leaf.notAfter.toISOString() });
    return { certChain: [leaf.pem], trustBundle: this.#o.root.certPem };
  }

  /** A node may hold the identities of the pods it runs. */
  #hostedOnNode(node: string, id: SpiffeId, uri: string): void {
    if (!this.#o.hosted.ready) throw new SignRefusal(503, 'state-not-ready', 'the CA has not listed the cluster\'s pods yet; check its log and its connection to the API server');
    if (!this.#o.hosted.hosts(node, id.namespace, id.serviceAccount)) {
      throw new SignRefusal(403, 'not-hosted',
        `node ${node} runs no pod in namespace ${id.namespace} with service account ${id.serviceAccount}, so it may not hold ${uri}; check the pod's spec.nodeName and spec.serviceAccountName`);
    }
  }

  /** A waypoint may hold its own identity (its pod's namespace and ServiceAccount), and no other. */
  #ownIdentity(w: WaypointPod, id: SpiffeId, uri: string): void {
    if (id.namespace === w.namespace && id.serviceAccount === w.serviceAccount) return;
    const own = formatSpiffeId({ trustDomain: id.trustDomain, namespace: w.namespace, serviceAccount: w.serviceAccount });
    throw refusalError(refusal('not-own-identity',
      `waypoint pod ${w.namespace}/${w.pod} asks for ${uri}, but a waypoint may hold only its own identity ${own}; check the waypoint's --gateway namespace and --service-account (the CSR's identity is built from them) against its pod's namespace and spec.serviceAccountName`));
  }
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY) {
        chunks.push(chunk);
        return;
      }
      // Stop buffering but keep draining, so the 413 reaches the client.
      req.off('data', onData);
      req.resume();
      reject(new SignRefusal(413, 'too-large', `the request body exceeds ${MAX_BODY} bytes`));
    };
    req.on('data', onData);
    req.once('error', reject);
    req.once('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new SignRefusal(400, 'bad-request', 'the body is not JSON; send {"csr": "<PEM>"}'));
      }
    });
  });
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(`${JSON.stringify(body)}\n`);
}
