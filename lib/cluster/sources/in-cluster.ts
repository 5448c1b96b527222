// The pod's own credentials (its ServiceAccount token and the cluster's CA),
// read as client-node's KubeConfig.loadFromCluster reads them: server from
// KUBERNETES_SERVICE_HOST/PORT, the CA file, the token file re-read when a
// minute old (the kubelet rotates it). Ours, not client-node's, because
// importing KubeConfig (dist/config.js loads the generated API code) costs
// 73 MiB of anonymous RSS in the process, more than the waypoint's whole budget.
import { readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { Agent } from 'undici';
import type { Cluster } from '@kubernetes/client-node';
import type { RequestContext } from '@kubernetes/client-node/dist/gen/http/http.js';
import { ConfigError } from '../../core/errors.ts';
import type { KubeCredentials } from './kube-credentials.ts';

const SERVICEACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
/** client-node's FileAuth re-reads the token after this long. */
const TOKEN_REFRESH_MS = 60_000;

export interface InClusterOptions {
  env?: NodeJS.ProcessEnv;
  /** Where the ServiceAccount's token and ca.crt are; default the kubelet's mount. */
  dir?: string;
  now?: () => number;
}

export class InClusterCredentials implements KubeCredentials {
  readonly #cluster: Cluster;
  readonly #tokenFile: string;
  readonly #now: () => number;
  #token: string | undefined;
  #readAt = 0;

  /** Throws ConfigError outside a pod (KUBERNETES_SERVICE_HOST or _PORT unset). */
  constructor(options: InClusterOptions = {}) {
    const env = options.env ?? process.env;
    const dir = options.dir ?? SERVICEACCOUNT_DIR;
    const host = env.KUBERNETES_SERVICE_HOST;
    const port = env.KUBERNETES_SERVICE_PORT;
    if (!host || !port) throw new ConfigError('no --kubeconfig and no in-cluster configuration (KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT is unset): run in a pod, or pass --kubeconfig');
    const serverHost = isIPv6(host) ? `[${host}]` : host;
    // client-node's rule: these ports are plain HTTP (a local proxy).
    const scheme = port === '80' || port === '8080' || port === '8001' ? 'http' : 'https';
    this.#cluster = { name: 'inCluster', server: `${scheme}://${serverHost}:${port}`, caFile: `${dir}/ca.crt`, skipTLSVerify: false };
    this.#tokenFile = `${dir}/token`;
    this.#now = options.now ?? Date.now;
  }

  getCurrentCluster(): Cluster {
    return this.#cluster;
  }

  /** A bearer token and a dispatcher trusting the cluster's CA, read fresh when due (a file error rejects, as client-node's does). */
  async applySecurityAuthentication(context: RequestContext): Promise<void> {
    const now = this.#now();
    if (this.#token === undefined || now - this.#readAt > TOKEN_REFRESH_MS) {
      this.#token = readFileSync(this.#tokenFile, 'utf8');
      this.#readAt = now;
    }
    context.setHeaderParam('Authorization', `Bearer ${this.#token}`);
    const ca = readFileSync(this.#cluster.caFile ?? '');
    context.setDispatcher(new Agent({ connect: { ca } }));
  }
}
