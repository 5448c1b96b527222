// The mesh root kept in a Secret (--root-secret), so that every replica and
// every restart of the CA signs under the root the ztunnels already trust,
// and its key never touches the CA's disk. On start: read the Secret; when
// there is none, create a root and the Secret; when another replica created
// it in between (409 Conflict), read theirs. A Secret that holds no usable
// root stops the start instead of being replaced: replacing it would swap
// the root every workload certificate chains to.
import type { KubeConfig } from '@kubernetes/client-node';
import { KubeApiError } from '../lib/core/errors.ts';
import type { Logger } from '../lib/core/log.ts';
import { isRecord } from '../lib/cluster/objects.ts';
import { CaStateError } from './errors.ts';
import { answerMessage, kubeRequest, type KubeAnswer } from '../lib/cluster/kube-api.ts';
import { createRoot, readRoot, type MeshRoot } from './root.ts';

/** The Secret's keys, those of a kubernetes.io/tls Secret. */
export const ROOT_CERT_KEY = 'tls.crt';
export const ROOT_KEY_KEY = 'tls.key';

const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 10_000;
const DEFAULT_PATIENCE_MS = 120_000;

export interface RootSecretOptions {
  kubeconfig: KubeConfig;
  namespace: string;
  name: string;
  trustDomain: string;
  log: Logger;
  /** Makes the root when the Secret does not exist; tests pass one that lets another CA win the race. */
  newRoot?: (trustDomain: string) => Promise<MeshRoot>;
  /** How long an unreachable or overloaded API server is retried before the start fails. */
  patienceMs?: number;
}

export async function loadOrCreateRootSecret(o: RootSecretOptions): Promise<MeshRoot> {
  const store = new RootSecret(o);
  const found = await store.read();
  if (found !== undefined) {
    o.log.info('mesh root loaded', { secret: store.where, serial: found.cert.serialNumber, notAfter: found.cert.validity.notAfter.toISOString() });
    return found;
  }
  const root = await (o.newRoot ?? createRoot)(o.trustDomain);
  if (await store.create(root)) {
    o.log.info('mesh root created', { secret: store.where, serial: root.cert.serialNumber, trustDomain: o.trustDomain });
    return root;
  }
  const theirs = await store.read();
  if (theirs === undefined) {
    throw new CaStateError(`${store.where} was created by another CA and deleted again while this CA started; start the CA again`);
  }
  o.log.info('mesh root loaded: another CA replica created it first', { secret: store.where, serial: theirs.cert.serialNumber });
  return theirs;
}

class RootSecret {
  readonly where: string;
  readonly #o: RootSecretOptions;
  readonly #collection: string;
  readonly #path: string;

  constructor(o: RootSecretOptions) {
    this.#o = o;
    this.where = `Secret ${o.namespace}/${o.name}`;
    this.#collection = `/api/v1/namespaces/${encodeURIComponent(o.namespace)}/secrets`;
    this.#path = `${this.#collection}/${encodeURIComponent(o.name)}`;
  }

  /** The root the Secret holds, or undefined when there is no Secret. */
  async read(): Promise<MeshRoot | undefined> {
    const answer = await this.#call('GET', this.#path);
    if (answer.status === 404) return undefined;
    if (answer.status !== 200) throw this.#refused('get', answer);
    const root = this.#rootIn(answer.body);
    if (typeof root !== 'string') return root;
    const { namespace, name } = this.#o;
    throw new CaStateError(`${this.where} ${root}; the CA never overwrites it. Restore the root it held, or delete it (kubectl -n ${namespace} delete secret ${name}) and the CA creates a new root on its next start: every workload identity is then re-issued under the new root, and peers trust it once they have its bundle`);
  }

  /** True once the Secret is created with `root`; false when one exists already (another replica's). */
  async create(root: MeshRoot): Promise<boolean> {
    const secret = {
      apiVersion: 'v1', kind: 'Secret', type: 'kubernetes.io/tls',
      metadata: { name: this.#o.name, namespace: this.#o.namespace, labels: { 'app.kubernetes.io/part-of': 'meshlet', 'app.kubernetes.io/component': 'ca' } },
      data: { [ROOT_CERT_KEY]: Buffer.from(root.certPem).toString('base64'), [ROOT_KEY_KEY]: Buffer.from(root.keyPem).toString('base64') },
    };
    const answer = await this.#call('POST', this.#collection, secret);
    if (answer.status === 201) return true;
    if (answer.status === 409) return false;
    throw this.#refused('create', answer);
  }

  #rootIn(body: unknown): MeshRoot | string {
    const data = isRecord(body) && isRecord(body.data) ? body.data : {};
    const pem = (key: string): string | undefined => (typeof data[key] === 'string' ? Buffer.from(data[key], 'base64').toString('utf8') : undefined);
    const cert = pem(ROOT_CERT_KEY);
    const key = pem(ROOT_KEY_KEY);
    if (cert === undefined || key === undefined) {
      const has = Object.keys(data);
      return `has no ${[[ROOT_CERT_KEY, cert], [ROOT_KEY_KEY, key]].filter(([, v]) => v === undefined).map(([k]) => k).join(' and ')} (its keys: ${has.length === 0 ? 'none' : has.join(', ')}), so it holds no mesh root`;
    }
    return readRoot(cert, key, this.#o.trustDomain);
  }

  #refused(verb: 'get' | 'create', answer: KubeAnswer): CaStateError {
    const said = answerMessage(answer) || `HTTP ${answer.status}`;
    const { namespace, name } = this.#o;
    if (answer.status === 403) {
      return new CaStateError(`the CA may not ${verb} ${this.where} (${said}); its ServiceAccount needs get (resourceNames: [${name}]) and create on secrets in namespace ${namespace}: the Role meshlet-ca in daemonset/rbac.yaml, its namespace and resourceNames adjusted if --root-secret is not the default`);
    }
    if (answer.status === 401) return new CaStateError(`the API server does not accept the CA's credentials (${said}); check the token or certificate in --kubeconfig`);
    return new CaStateError(`the API server refused to ${verb} ${this.where}: ${said}`);
  }

  /** One call, retried while the API server is unreachable or overloaded, up to the patience. */
  async #call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<KubeAnswer> {
    const patience = this.#o.patienceMs ?? DEFAULT_PATIENCE_MS;
    const giveUpAt = Date.now() + patience;
    for (let delay = RETRY_FIRST_MS; ; delay = Math.min(delay * 2, RETRY_MAX_MS)) {
      let problem: string;
      try {
        const answer = await kubeRequest(this.#o.kubeconfig, method, path, body);
        if (!isTransient(answer.status)) return answer;
        problem = `HTTP ${answer.status}${answerMessage(answer) ? `: ${answerMessage(answer)}` : ''}`;
      } catch (err) {
        if (!(err instanceof KubeApiError) || err.statusCode !== 0) throw err;
        problem = err.message;
      }
      if (Date.now() + delay > giveUpAt) {
        throw new CaStateError(`cannot read the mesh root from ${this.where}: the API server did not answer within ${Math.round(patience / 1000)} s (${problem}); check the CA's connection to the API server (--kubeconfig)`);
      }
      this.#o.log.warn('API server unavailable; retrying', { secret: this.where, error: problem, retryInMs: delay });
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

const isTransient = (status: number): boolean => status === 429 || status >= 500;
