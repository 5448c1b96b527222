// The meshlet CNI plugin: a chained plugin (CNI spec 1.0.0) that the node's
// container runtime runs after the network plugin when it creates a pod's
// sandbox. For a pod of an ambient namespace it asks the node's meshlet agent
// (agent/cni-gate.ts) to enroll the pod, and fails the sandbox while the agent
// cannot answer, so the kubelet retries it: fail closed, a pod of an ambient
// namespace never runs before its node's agent has captured it (after a node
// reboot, or while the agent is down), as Istio's CNI plugin holds pods for
// its node agent. Pods of other namespaces pass without waiting for the agent.
//
// The agent copies this file alone onto the node and runs it with a copy of
// its own Node binary (agent/cni-install.ts), so it imports only node:
// builtins and uses only erasable TypeScript syntax.
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';

const VERSION_INFO = { cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] };
/** For errors printed before the config's own cniVersion is known. */
const DEFAULT_CNI_VERSION = '1.0.0';
const DEFAULT_TIMEOUT_SECONDS = 10;
// Error codes of the CNI spec; 100 and up are the plugin's own.
const INVALID_ENVIRONMENT = 4;
const IO_FAILURE = 5;
const DECODING_FAILURE = 6;
const INVALID_NETWORK_CONFIG = 7;
/** The kubelet retries the sandbox: what a pod waiting for the agent needs. */
const TRY_AGAIN_LATER = 11;
const INTERNAL_ERROR = 100;
/** The install namespace is an install option, so the hint looks in every namespace. */
const AGENT_PODS_HINT = 'kubectl get pods -A -l app.kubernetes.io/name=meshlet-node -o wide';
const ENTRY_HINT = 'the meshlet agent writes this entry into the node\'s CNI config: restart the agent to rewrite it';

interface NetConf {
  cniVersion: string;
  agentSocket: string;
  ambientNamespacesFile: string;
  excludeNamespaces: string[];
  timeoutSeconds: number;
  prevResult?: Record<string, unknown>;
}

/** The agent's POST /cni/add body (agent/cni-gate.ts parseAddRequest). */
interface AddRequest {
  uid: string;
  namespace: string;
  name: string;
  ips: string[];
  containerId: string;
  netns: string;
}

class CniError extends Error {
  readonly code: number;
  readonly details: string | undefined;

  constructor(code: number, msg: string, details?: string) {
    super(msg);
    this.code = code;
    this.details = details;
  }
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const isStringList = (value: unknown): value is string[] => Array.isArray(value) && value.every((v) => typeof v === 'string');
const print = (value: unknown): void => void process.stdout.write(`${JSON.stringify(value)}\n`);

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function decodeConf(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new CniError(DECODING_FAILURE, `the network configuration on stdin is not JSON: ${(err as Error).message}`);
  }
  if (!isRecord(value)) throw new CniError(DECODING_FAILURE, 'the network configuration on stdin is not a JSON object');
  return value;
}

function validateConf(raw: Record<string, unknown>): NetConf {
  const invalid = (problem: string): CniError => new CniError(INVALID_NETWORK_CONFIG, `meshlet CNI plugin: ${problem}; ${ENTRY_HINT}`);
  const { cniVersion, agentSocket, ambientNamespacesFile, excludeNamespaces = [], timeoutSeconds = DEFAULT_TIMEOUT_SECONDS, prevResult } = raw;
  if (typeof cniVersion !== 'string' || cniVersion === '') throw invalid('cniVersion must be set');
  if (typeof agentSocket !== 'string' || agentSocket === '') throw invalid('agentSocket must be the path of the meshlet agent\'s socket on the node');
  if (typeof ambientNamespacesFile !== 'string' || ambientNamespacesFile === '') throw invalid('ambientNamespacesFile must be the path of the agent\'s list of ambient namespaces');
  if (!isStringList(excludeNamespaces)) throw invalid('excludeNamespaces must be a list of namespace names');
  if (typeof timeoutSeconds !== 'number' || !Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) throw invalid('timeoutSeconds must be a positive number');
  if (prevResult !== undefined && !isRecord(prevResult)) throw invalid('prevResult must be the previous plugin\'s result object');
  const conf: NetConf = { cniVersion, agentSocket, ambientNamespacesFile, excludeNamespaces, timeoutSeconds };
  if (prevResult !== undefined) conf.prevResult = prevResult;
  return conf;
}

/** The pod's addresses without their prefix lengths ("10.244.1.5/24" → "10.244.1.5"). */
function podIps(prevResult: Record<string, unknown> | undefined): string[] {
  const ips = prevResult?.ips ?? [];
  if (!Array.isArray(ips) || !ips.every((ip) => isRecord(ip) && typeof ip.address === 'string')) {
    throw new CniError(INVALID_NETWORK_CONFIG, 'prevResult.ips must list {"address": "<ip>/<prefix length>"}: is the meshlet CNI plugin chained after the network plugin?');
  }
  return ips.map((ip) => (ip.address as string).split('/')[0]);
}

/** CNI_ARGS: "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=name;…". */
function cniArgs(text: string | undefined): Map<string, string> {
  const args = new Map<string, string>();
  for (const pair of (text ?? '').split(';')) {
    const eq = pair.indexOf('=');
    if (eq > 0) args.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return args;
}

/** The namespaces the agent holds pods for, or why they cannot be known. */
async function readAmbientNamespaces(file: string): Promise<{ namespaces: ReadonlySet<string> } | { unreadable: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return { unreadable: (err as Error).message };
  }
  const parsed = parseJson(text);
  if (!isRecord(parsed) || !isStringList(parsed.namespaces)) return { unreadable: `${file} is not {"namespaces": [...]}` };
  return { namespaces: new Set(parsed.namespaces) };
}

/** A chained plugin outputs the result it was given. */
function passed(conf: NetConf): Record<string, unknown> {
  return { ...conf.prevResult, cniVersion: conf.cniVersion };
}

function postAdd(socketPath: string, body: AddRequest, timeoutSeconds: number): Promise<{ status: number; body: string }> {
  const payload = JSON.stringify(body);
  const signal = AbortSignal.timeout(timeoutSeconds * 1000);
  return new Promise((resolve, reject) => {
    const fail = (err: Error): void => reject(signal.aborted ? new Error(`no answer within ${timeoutSeconds} s`) : err);
    const req = request({
      socketPath,
      path: '/cni/add',
      method: 'POST',
      headers: { host: 'localhost', 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      // No keep-alive: the process ends once the answer is read.
      agent: false,
      signal,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', fail);
    });
    req.on('error', fail);
    req.end(payload);
  });
}

async function add(conf: NetConf): Promise<Record<string, unknown>> {
  const args = cniArgs(process.env.CNI_ARGS);
  const namespace = args.get('K8S_POD_NAMESPACE');
  // Not a Kubernetes pod, or one that must never wait for the agent (meshlet's own, kube-system).
  if (!namespace || conf.excludeNamespaces.includes(namespace)) return passed(conf);
  const ambient = await readAmbientNamespaces(conf.ambientNamespacesFile);
  // A pod that opts in by its own label in another namespace is enrolled once the agent sees it.
  if ('namespaces' in ambient && !ambient.namespaces.has(namespace)) return passed(conf);

  const name = args.get('K8S_POD_NAME');
  const uid = args.get('K8S_POD_UID');
  if (!name || !uid) throw new CniError(INVALID_ENVIRONMENT, `CNI_ARGS names namespace ${namespace} but not K8S_POD_NAME and K8S_POD_UID: the container runtime must pass them`);
  const pod = `${namespace}/${name}`;
  const waiting = 'namespaces' in ambient
    ? `pods of ambient namespace ${namespace} wait until it runs`
    : `every pod outside excludeNamespaces waits until it runs, as the agent's list of ambient namespaces is unreadable (${ambient.unreadable})`;
  const body: AddRequest = { uid, namespace, name, ips: podIps(conf.prevResult), containerId: process.env.CNI_CONTAINERID ?? '', netns: process.env.CNI_NETNS ?? '' };

  let reply: { status: number; body: string };
  try {
    reply = await postAdd(conf.agentSocket, body, conf.timeoutSeconds);
  } catch (err) {
    const message = (err as Error).message;
    throw new CniError(TRY_AGAIN_LATER, `meshlet agent on this node is not reachable at ${conf.agentSocket} (${message}): ${waiting} (${AGENT_PODS_HINT})`, `pod ${pod}: ${message}`);
  }
  const answer = parseJson(reply.body);
  if (reply.status === 200 && isRecord(answer) && typeof answer.enrolled === 'boolean') return passed(conf);
  const agentError = isRecord(answer) && typeof answer.error === 'string' ? answer.error : `unexpected answer: ${reply.body.slice(0, 200)}`;
  throw new CniError(TRY_AGAIN_LATER, `meshlet agent at ${conf.agentSocket} did not enroll pod ${pod} (HTTP ${reply.status}): ${agentError}`, reply.body);
}

async function main(): Promise<void> {
  const command = process.env.CNI_COMMAND;
  if (command === 'VERSION') return print(VERSION_INFO);
  if (command === 'DEL' || command === 'CHECK' || command === 'GC' || command === 'STATUS') {
    // DEL never fails: the runtime must always be able to remove a pod.
    await readStdin().catch(() => undefined);
    return;
  }
  let cniVersion = DEFAULT_CNI_VERSION;
  try {
    if (command !== 'ADD') throw new CniError(INVALID_ENVIRONMENT, `CNI_COMMAND ${JSON.stringify(command ?? '')} is not one of ADD, DEL, CHECK, GC, STATUS, VERSION`);
    const text = await readStdin().catch((err: Error) => {
      throw new CniError(IO_FAILURE, `cannot read the network configuration from stdin: ${err.message}`);
    });
    const raw = decodeConf(text);
    if (typeof raw.cniVersion === 'string' && raw.cniVersion !== '') cniVersion = raw.cniVersion;
    print(await add(validateConf(raw)));
  } catch (err) {
    const error = err instanceof CniError ? err : new CniError(INTERNAL_ERROR, `meshlet CNI plugin failed: ${(err as Error).message}`, (err as Error).stack);
    print({ cniVersion, code: error.code, msg: error.message, ...(error.details === undefined ? {} : { details: error.details }) });
    process.exitCode = 1;
  }
}

await main();
