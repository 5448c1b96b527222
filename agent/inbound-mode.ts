// What the kernel's STRICT ingress hook enforces for one pod, from Istio's
// PeerAuthentication and AuthorizationPolicy. Plaintext is admitted only where
// the effective mode is PERMISSIVE and no AuthorizationPolicy selects the
// workload: a plaintext peer has no identity to authorize, so fail closed.
// A rejected policy's stand-in counts like any policy (policy/fail-closed.ts):
// a rejected AuthorizationPolicy selects what it would have, a rejected
// PeerAuthentication is STRICT, so either keeps plaintext out. A workload
// under a waypoint's L7 policy (lib/mesh/waypoints.ts) is STRICT too: its
// traffic must come from its waypoint, and plaintext proves no identity.
import type { InboundEnforcement } from './bpf/datapath.ts';
import { effectiveMtlsMode, failClosedFor, selectsWorkload, type PolicyStore } from '../lib/policy/index.ts';
import type { PeerAuthPolicy } from '../lib/policy/types.ts';
import type { Workload } from '../lib/mesh/model.ts';

/** Every port some PeerAuthentication sets a port-level mode for. */
export function portLevelPorts(peerAuthentications: readonly PeerAuthPolicy[]): number[] {
  return [...new Set(peerAuthentications.flatMap((p) => p.portLevelMtls.map((l) => l.port)))].sort((a, b) => a - b);
}

/** `waypointGuarded`: some port of the workload takes mesh traffic from its waypoint only. */
export function inboundEnforcement(workload: Workload, policies: PolicyStore, portLevel: readonly number[], waypointGuarded = false): InboundEnforcement {
  const probePorts = workload.probePorts ?? [];
  const failed = failClosedFor(policies, workload);
  const failClosed = failed.length > 0 ? { failClosed: failed } : {};
  if (waypointGuarded || selectsWorkload(policies, workload)) return { mode: 'STRICT', probePorts, ...failClosed };
  // Port 0 never carries a port-level setting: it yields the workload's default.
  const mode = effectiveMtlsMode(policies, workload, 0);
  const portModes: Record<number, 'STRICT' | 'PERMISSIVE'> = {};
  for (const port of portLevel) {
    const m = effectiveMtlsMode(policies, workload, port);
    if (m !== mode) portModes[port] = m;
  }
  return { mode, portModes, probePorts, ...failClosed };
}
