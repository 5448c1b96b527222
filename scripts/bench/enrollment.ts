// Enrollment latency: from the label change landing in the cluster state to
// capture being active, as the agents report it. The start is the state
// file's ctime (the sandbox API server's rename of the new state); the end is
// each pod's `since`, which the agent stamps once its BPF programs are
// attached. The agents' enrolled pods are polled at a fine interval only to
// learn when to stop, on `/enrolled`, which reads no BPF maps: a poller
// spawning bpftool would compete for the CPUs with the enrollment it times.
import type { AgentEnrolled } from '../../lib/mesh/agent-status.ts';
import { getJson } from '../../cli/admin-client.ts';
import { sandboxApply, type SandboxInfo } from '../../sandbox/api.ts';
import { BenchSetupError } from './errors.ts';
import { namespace, NS_SCALE, NS_SOLO, SOLO_POD, soloPodManifest, toYaml } from './manifest.ts';

const POLL_MS = 10;
const TIMEOUT_MS = 60_000;

export interface EnrollSample {
  /** Label change to capture active, by the agent's timestamp. */
  ms: number;
  /** Label change to the poll that saw it: an upper bound, including the poll interval. */
  observedMs: number;
}

/** Enrolled pods of namespace `ns` on every node, by name, with the agent's `since` (epoch ms). */
async function enrolledIn(info: SandboxInfo, ns: string): Promise<Map<string, number>> {
  const statuses = await Promise.all(info.nodes.map((n) => getJson<AgentEnrolled>(n.agentAdminSocket, '/enrolled')));
  const found = new Map<string, number>();
  for (const s of statuses) for (const p of s.enrolledPods) if (p.namespace === ns) found.set(p.name, Date.parse(p.since));
  return found;
}

/** When the label change was sent to the API server: enrollment time includes the API server's write and watch fan-out, as a user's kubectl apply would. */
async function applyAndStamp(sandbox: string, yaml: string): Promise<number> {
  const sentAt = Date.now();
  await sandboxApply(sandbox, yaml);
  return sentAt;
}

/** Polls until `done` holds for the enrolled set; returns it and when it was seen. */
async function pollUntil(info: SandboxInfo, ns: string, done: (enrolled: Map<string, number>) => boolean, what: string): Promise<{ enrolled: Map<string, number>; seenAt: number }> {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    const enrolled = await enrolledIn(info, ns);
    const seenAt = Date.now();
    if (done(enrolled)) return { enrolled, seenAt };
    if (seenAt > deadline) throw new BenchSetupError(`timed out after ${TIMEOUT_MS} ms waiting for ${what} (${enrolled.size} enrolled in ${ns})`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** Labels namespace NS_SCALE, waits for all `pods` to be captured, then removes the label and waits for none. */
export async function enrollNamespace(sandbox: string, info: SandboxInfo, pods: number): Promise<EnrollSample> {
  const t0 = await applyAndStamp(sandbox, toYaml([namespace(NS_SCALE, true)]));
  const { enrolled, seenAt } = await pollUntil(info, NS_SCALE, (e) => e.size >= pods, `${pods} pods enrolled`);
  const last = Math.max(...enrolled.values());
  return { ms: Math.max(0, last - t0), observedMs: seenAt - t0 };
}

export async function unenrollNamespace(sandbox: string, info: SandboxInfo): Promise<void> {
  await sandboxApply(sandbox, toYaml([namespace(NS_SCALE, false)]));
  await pollUntil(info, NS_SCALE, (e) => e.size === 0, `${NS_SCALE} un-enrolled`);
}

/** Enrolls and un-enrolls the solo pod by its own label `cycles` times; one sample per enrollment. */
export async function enrollPodCycles(sandbox: string, info: SandboxInfo, cycles: number): Promise<EnrollSample[]> {
  const samples: EnrollSample[] = [];
  for (let i = 0; i < cycles; i++) {
    const t0 = await applyAndStamp(sandbox, soloPodManifest(true));
    const { enrolled, seenAt } = await pollUntil(info, NS_SOLO, (e) => e.has(SOLO_POD), 'the solo pod enrolled');
    samples.push({ ms: Math.max(0, enrolled.get(SOLO_POD)! - t0), observedMs: seenAt - t0 });
    await sandboxApply(sandbox, soloPodManifest(false));
    await pollUntil(info, NS_SOLO, (e) => !e.has(SOLO_POD), 'the solo pod un-enrolled');
  }
  return samples;
}
