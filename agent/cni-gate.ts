// The agent's side of the CNI plugin (cni/plugin.ts): the container runtime
// creates a pod's sandbox, the plugin asks the agent to enroll the pod, and
// the pod's containers start only once the agent answers. A pod of an
// ambient namespace so never runs before its node captures it, after a node
// reboot or while the agent is down (the plugin then fails the sandbox and
// the kubelet retries it), as Istio's CNI plugin holds pods for its node
// agent.
//
// The pod's address is not in its API object yet (the kubelet writes it once
// the sandbox exists), so the plugin passes the addresses the network plugin
// gave it, and the agent uses them for the pod until the object has its own.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import { podUidProblem } from '../lib/cluster/cgroup-layout.ts';
import { DATAPLANE_MODE_LABEL } from '../lib/cluster/convert.ts';
import { isRecord, type KubeObject } from '../lib/cluster/objects.ts';
import { sendJson } from '../lib/core/admin-http.ts';
import { canonicalIp } from '../lib/core/ip.ts';
import type { Rejection } from '../lib/cluster/cluster-state.ts';
import type { MeshState } from '../lib/mesh/kinds.ts';

/** The plugin's request (cni/plugin.ts AddRequest). */
export interface CniAddRequest {
  uid: string;
  namespace: string;
  name: string;
  ips: string[];
}

/** Pods waiting for their sandbox at once, and addresses held for pods whose objects lack them: a node runs ~110 pods. */
const MAX_PENDING = 512;
/** Under the plugin's own timeout (10 s), so the plugin relays the agent's reason rather than a timeout. */
const ANSWER_TIMEOUT_MS = 8000;
/** An address held for a pod the agent never saw (or saw deleted) goes after this. */
const ADDRESS_HOLD_MS = 120_000;
const BODY_LIMIT = 16 * 1024;
/** How soon a pod still waiting is looked for again (its object or cgroup may come a little after the plugin's call). */
const RETRY_MS = 250;

interface Waiter {
  uid: string;
  namespace: string;
  name: string;
  answer: (status: number, body: Record<string, unknown>) => void;
}

/** What one reconcile decided, for the pods waiting on it. */
export interface ReconcileOutcome {
  state: MeshState;
  enrolledUids: ReadonlySet<string>;
  rejected: readonly Rejection[];
  /** Whether the agent is ready to enroll at all (its first reconcile finished). */
  ready: boolean;
}

export class CniGate {
  readonly #addresses = new Map<string, { ips: string[]; at: number }>();
  readonly #waiters = new Set<Waiter>();
  readonly #reconcile: () => void;
  #ready = false;
  #retry: NodeJS.Timeout | undefined;

  /** `reconcile` runs a reconcile with the newest cluster state (the addresses just learnt change it). */
  constructor(reconcile: () => void) {
    this.#reconcile = reconcile;
  }

  /** The namespaces whose pods the plugin must hold for the agent, from the Namespace objects. */
  static ambientNamespaces(objects: readonly KubeObject[]): string[] {
    const names: string[] = [];
    for (const o of objects) {
      if (o.kind !== 'Namespace' || !isRecord(o.metadata)) continue;
      const labels = isRecord(o.metadata.labels) ? o.metadata.labels : {};
      if (labels[DATAPLANE_MODE_LABEL] === 'ambient' && typeof o.metadata.name === 'string') names.push(o.metadata.name);
    }
    return names.sort();
  }

  /** The objects with the plugin's addresses in pods whose objects carry none yet. */
  withAddresses(objects: readonly KubeObject[]): KubeObject[] {
    if (this.#addresses.size === 0) return [...objects];
    return objects.map((o) => {
      const uid = o.kind === 'Pod' && isRecord(o.metadata) ? o.metadata.uid : undefined;
      const held = typeof uid === 'string' ? this.#addresses.get(uid) : undefined;
      if (!held) return o;
      const status = isRecord(o.status) ? o.status : {};
      if (typeof status.podIP === 'string' && status.podIP !== '') {
        this.#addresses.delete(uid as string);
        return o;
      }
      return { ...o, status: { ...status, podIP: held.ips[0], podIPs: held.ips.map((ip) => ({ ip })) } };
    });
  }

  /** After each reconcile: answers the pods it decided, and lets go of addresses nobody needs. */
  settled(outcome: ReconcileOutcome): void {
    this.#ready = outcome.ready;
    const now = Date.now();
    for (const [uid, held] of this.#addresses) if (now - held.at > ADDRESS_HOLD_MS && !outcome.state.workloads.some((w) => w.uid === uid)) this.#addresses.delete(uid);
    for (const waiter of this.#waiters) {
      const object = `Pod ${waiter.namespace}/${waiter.name}`;
      const refusal = outcome.rejected.find((r) => r.object === object);
      if (refusal) {
        waiter.answer(403, { error: `meshlet refuses ${object}: ${refusal.reason}; it does not start until that is fixed (meshlet status shows it)` });
        continue;
      }
      const workload = outcome.state.workloads.find((w) => w.uid === waiter.uid);
      if (!workload) continue;
      if (!workload.enrolled) waiter.answer(200, { enrolled: false });
      else if (outcome.enrolledUids.has(waiter.uid)) waiter.answer(200, { enrolled: true });
    }
    if (this.#waiters.size > 0 && this.#retry === undefined) {
      this.#retry = setTimeout(() => {
        this.#retry = undefined;
        if (this.#waiters.size > 0) this.#reconcile();
      }, RETRY_MS).unref();
    }
  }

  /** POST /cni/add: answers once the pod is enrolled, or known not to be meshed; 503 while that cannot be told. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'POST') return sendJson(res, 405, { error: 'POST the pod (uid, namespace, name, ips) to /cni/add' });
    void readJson(req).then((body) => {
      const parsed = parseAddRequest(body);
      if (typeof parsed === 'string') return sendJson(res, 400, { error: parsed });
      this.#add(parsed, res);
    }, (err: Error) => sendJson(res, 400, { error: err.message }));
  }

  #add(request: CniAddRequest, res: ServerResponse): void {
    const pod = `${request.namespace}/${request.name}`;
    if (!this.#ready) return sendJson(res, 503, { error: `the meshlet agent is starting (it has not applied the cluster state yet); pod ${pod} waits` });
    if (this.#waiters.size >= MAX_PENDING) return sendJson(res, 503, { error: `the meshlet agent holds ${MAX_PENDING} pods waiting for enrollment already; pod ${pod} is retried` });
    if (!this.#addresses.has(request.uid) && this.#addresses.size >= MAX_PENDING) this.#addresses.delete(this.#addresses.keys().next().value as string);
    if (request.ips.length > 0) this.#addresses.set(request.uid, { ips: request.ips, at: Date.now() });
    let timer: NodeJS.Timeout | undefined;
    const waiter: Waiter = {
      ...request,
      answer: (status, body) => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        sendJson(res, status, body);
      },
    };
    timer = setTimeout(() => waiter.answer(503, {
      error: `the meshlet agent has not seen pod ${pod} (uid ${request.uid}) on this node within ${ANSWER_TIMEOUT_MS / 1000} s, or could not find its cgroup; it is retried (the agent's log says why)`,
    }), ANSWER_TIMEOUT_MS);
    timer.unref();
    this.#waiters.add(waiter);
    res.once('close', () => {
      clearTimeout(timer);
      this.#waiters.delete(waiter);
    });
    this.#reconcile();
  }
}

/** The plugin's request, or what is wrong with it. */
export function parseAddRequest(body: unknown): CniAddRequest | string {
  if (!isRecord(body)) return 'the body must be a JSON object: {"uid", "namespace", "name", "ips"}';
  const { uid, namespace, name, ips } = body;
  if (typeof uid !== 'string') return 'uid must be the pod\'s UID';
  const problem = podUidProblem(uid);
  if (problem) return `uid: ${problem}`;
  if (typeof namespace !== 'string' || namespace === '' || typeof name !== 'string' || name === '') return 'namespace and name must be the pod\'s';
  if (!Array.isArray(ips) || ips.length > 2 || !ips.every((ip) => typeof ip === 'string' && isIP(ip) !== 0)) return 'ips must list the pod\'s addresses (one per family at most)';
  return { uid, namespace, name, ips: (ips as string[]).map((ip) => canonicalIp(ip)!) };
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > BODY_LIMIT) return void req.destroy(new Error(`the body is over ${BODY_LIMIT} bytes`));
      chunks.push(c);
    });
    req.on('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString()));
      } catch {
        reject(new Error('the body is not JSON'));
      }
    });
    req.on('error', reject);
  });
}
