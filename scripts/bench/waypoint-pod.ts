// The waypoint as a real sandbox pod: the Gateway is applied, the CA's
// waypoint controller makes its Deployment, the scheduler places the pod and
// the sandbox kubelet runs `meshlet waypoint`. The bench places it on the
// node nginx runs on (every other node cordoned until the pod is bound, as
// the controller's Deployment takes no node selector), then waits for the
// Gateway's Programmed condition and the pod's Ready one. When either never
// comes, the error says which, with the Gateway's conditions, the pod's
// container state and the tail of its log.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sandboxApply, sandboxKubectl, sandboxStatus } from '../../sandbox/api.ts';
import { WAYPOINT_INSTANCE_LABEL } from '../../lib/mesh/waypoints.ts';
import { BenchSetupError } from './errors.ts';
import { gatewayManifest, NS_L7_MESH, WAYPOINT_NAME } from './l7-manifest.ts';

/** The controller makes the Deployment and the scheduler binds its pod within seconds; past this, nothing is coming. */
const PLACE_TIMEOUT_MS = 45_000;
/** Its startup probe allows 30 s; the rest is the kubelet starting Node. */
const READY_TIMEOUT_MS = 90_000;
const POLL_MS = 500;

interface Condition { type: string; status: string; reason?: string; message?: string }
interface ContainerState { waiting?: { reason?: string; message?: string }; terminated?: { reason?: string; exitCode?: number; message?: string }; running?: unknown }
interface PodJson {
  metadata: { name: string };
  spec: { nodeName?: string };
  status?: { phase?: string; conditions?: Condition[]; containerStatuses?: { name: string; ready: boolean; restartCount: number; state?: ContainerState; lastState?: ContainerState }[] };
}
interface GatewayJson { status?: { conditions?: Condition[] } }

export interface WaypointPod {
  name: string;
  node: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function kubectlJson<T>(sandbox: string, args: readonly string[]): Promise<T | undefined> {
  const r = await sandboxKubectl(sandbox, [...args, '-o', 'json']);
  if (r.exitCode !== 0) return undefined;
  return JSON.parse(r.stdout) as T;
}

const waypointPods = async (sandbox: string): Promise<PodJson[]> =>
  (await kubectlJson<{ items: PodJson[] }>(sandbox, ['get', 'pods', '-n', NS_L7_MESH, '-l', `${WAYPOINT_INSTANCE_LABEL}=${WAYPOINT_NAME}`]))?.items ?? [];

const gatewayConditions = async (sandbox: string): Promise<Condition[]> =>
  (await kubectlJson<GatewayJson>(sandbox, ['get', 'gateways.gateway.networking.k8s.io', '-n', NS_L7_MESH, WAYPOINT_NAME]))?.status?.conditions ?? [];

const conditionText = (cs: readonly Condition[]): string =>
  cs.length === 0 ? 'none' : cs.map((c) => `${c.type}=${c.status}${c.reason ? ` (${c.reason}${c.message ? `: ${c.message}` : ''})` : ''}`).join('; ');

const isTrue = (cs: readonly Condition[] | undefined, type: string): boolean => cs?.some((c) => c.type === type && c.status === 'True') ?? false;

/** Applies the Gateway with every node but `node` cordoned; returns once its pod is bound to `node`. */
export async function placeWaypoint(sandbox: string, nodes: readonly string[], node: string): Promise<void> {
  const others = nodes.filter((n) => n !== node);
  const cordon = async (verb: 'cordon' | 'uncordon') => {
    for (const n of others) {
      const r = await sandboxKubectl(sandbox, [verb, n]);
      if (r.exitCode !== 0) throw new BenchSetupError(`kubectl ${verb} ${n} failed: ${r.stderr.trim()}`);
    }
  };
  await cordon('cordon');
  try {
    await sandboxApply(sandbox, gatewayManifest());
    const deadline = Date.now() + PLACE_TIMEOUT_MS;
    for (;;) {
      const bound = (await waypointPods(sandbox)).find((p) => p.spec.nodeName !== undefined);
      if (bound) {
        if (bound.spec.nodeName !== node) throw new BenchSetupError(`the waypoint pod ${NS_L7_MESH}/${bound.metadata.name} was bound to ${bound.spec.nodeName}, not ${node} where nginx runs, though the other nodes were cordoned`);
        return;
      }
      if (Date.now() > deadline) break;
      await sleep(POLL_MS);
    }
    const deployment = await sandboxKubectl(sandbox, ['get', 'deployment', '-n', NS_L7_MESH, WAYPOINT_NAME]);
    throw new BenchSetupError(
      `no waypoint pod was scheduled within ${PLACE_TIMEOUT_MS / 1000} s of applying Gateway ${NS_L7_MESH}/${WAYPOINT_NAME}: ` +
      (deployment.exitCode === 0
        ? `its Deployment exists but has no pod bound to a node (see \`kubectl -n ${NS_L7_MESH} describe deployment ${WAYPOINT_NAME}\`)`
        : `there is no Deployment ${NS_L7_MESH}/${WAYPOINT_NAME}, so the waypoint controller did not act; is the sandbox CA running with --waypoint-controller?`) +
      `; the Gateway's conditions: ${conditionText(await gatewayConditions(sandbox))}`,
    );
  } finally {
    await cordon('uncordon');
  }
}

function containerText(p: PodJson): string {
  const statuses = p.status?.containerStatuses ?? [];
  if (statuses.length === 0) return 'no container status yet';
  return statuses.map((c) => {
    const s = c.state ?? {};
    const state = s.waiting ? `waiting (${s.waiting.reason ?? ''}${s.waiting.message ? `: ${s.waiting.message}` : ''})`
      : s.terminated ? `terminated (${s.terminated.reason ?? ''}, exit ${s.terminated.exitCode ?? '?'}${s.terminated.message ? `: ${s.terminated.message}` : ''})`
        : s.running ? 'running' : 'unknown';
    const t = c.lastState?.terminated;
    const last = t ? `, last exit ${t.exitCode ?? '?'} (${t.reason ?? ''}${t.message ? `: ${t.message.trim().split('\n').slice(-3).join(' / ')}` : ''})` : '';
    return `${c.name} ${state}, ready ${c.ready}, ${c.restartCount} restart(s)${last}`;
  }).join('; ');
}

/** The last lines matching `interesting` the pod's containers logged (sandbox logs: <container>/<restart>.log below its logDir). */
export async function podLogTail(logDir: string | undefined, interesting = /./, lines = 8): Promise<string> {
  if (!logDir) return '';
  const parts: string[] = [];
  for (const container of await readdir(logDir).catch(() => [] as string[])) {
    const files = (await readdir(join(logDir, container)).catch(() => [] as string[])).filter((f) => /^\d+\.log$/.test(f));
    const latest = files.sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10)).at(-1);
    if (latest === undefined) continue;
    const file = join(logDir, container, latest);
    const text = (await readFile(file, 'utf8').catch(() => '')).trim();
    const tail = text.split('\n').filter((l) => l.trim() !== '' && interesting.test(l)).slice(-lines);
    if (tail.length > 0) parts.push(`${file}:\n${tail.map((l) => `  ${l.slice(0, 400)}`).join('\n')}`);
  }
  return parts.join('\n');
}

/** Waits for Programmed on the Gateway and Ready on its pod; the pod, or an error naming what is missing. */
export async function waitWaypointReady(sandbox: string): Promise<WaypointPod> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const conditions = await gatewayConditions(sandbox);
    const pods = await waypointPods(sandbox);
    const ready = pods.find((p) => isTrue(p.status?.conditions, 'Ready'));
    if (ready && isTrue(conditions, 'Programmed')) return { name: ready.metadata.name, node: ready.spec.nodeName ?? '' };
    if (Date.now() > deadline) {
      const missing = [
        ...(isTrue(conditions, 'Programmed') ? [] : [`the Gateway is not Programmed (conditions: ${conditionText(conditions)})`]),
        ...(ready ? [] : [`no waypoint pod is Ready (${pods.length === 0 ? 'there is none' : pods.map((p) => `${p.metadata.name} on ${p.spec.nodeName ?? 'no node'}: phase ${p.status?.phase ?? '?'}, ${containerText(p)}`).join('; ')})`]),
      ];
      const info = await sandboxStatus(sandbox).catch(() => undefined);
      const logs = (await Promise.all(pods.map((p) => podLogTail(info?.pods.find((q) => q.namespace === NS_L7_MESH && q.name === p.metadata.name)?.logDir)))).filter(Boolean).join('\n');
      // The log's last line is usually the reason (a crash's message): on the first line too, which the report quotes.
      const lastLine = logs.split('\n').map((l) => l.trim()).filter((l) => l !== '').at(-1);
      throw new BenchSetupError(`waypoint ${NS_L7_MESH}/${WAYPOINT_NAME} not ready within ${READY_TIMEOUT_MS / 1000} s: ${missing.join('; ')}${lastLine ? `; its log ends: ${lastLine}` : ''}${logs ? `\n${logs}` : ''}`);
    }
    await sleep(POLL_MS);
  }
}
