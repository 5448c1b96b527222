// security.istio.io PeerAuthentication: conversion, and the effective mTLS
// mode of a workload port. Most specific level wins (workload > namespace >
// mesh), a port setting overrides its workload's, UNSET inherits, the oldest
// policy wins within a level, and with nothing set the mode is PERMISSIVE.
import { InvalidObjectError } from '../core/errors.ts';
import { objectRef, type KubeObject } from '../cluster/objects.ts';
import { checkApiVersion, metaOf, onlyKeys, parsePort, record, selectorOf, specOf, type Fail } from './fields.ts';
import type { PolicyStore } from './store.ts';
import { DEFAULT_ROOT_NAMESPACE, type MtlsMode, type MtlsSetting, type PeerAuthPolicy, type PolicyOptions, type WorkloadRef } from './types.ts';

/** Throws InvalidObjectError naming the field and the fix. */
export function convertPeerAuthentication(obj: KubeObject, options: PolicyOptions = {}): PeerAuthPolicy {
  const fail: Fail = (reason) => {
    throw new InvalidObjectError(objectRef(obj), reason);
  };
  checkApiVersion(obj, fail);
  const { name, namespace, createdAt } = metaOf(obj, fail);
  const spec = specOf(obj, fail);
  onlyKeys(spec, ['selector', 'mtls', 'portLevelMtls'], 'spec', fail);
  const root = options.rootNamespace ?? DEFAULT_ROOT_NAMESPACE;
  const matchLabels = selectorOf(spec.selector, 'spec.selector', fail);
  if (matchLabels && namespace === root) {
    fail(`a selector in the root namespace ${root} has no effect (Istio ignores it too); move the policy to the workload's namespace, or drop the selector to make it mesh-wide`);
  }

  let mode: MtlsSetting = 'UNSET';
  if (spec.mtls !== undefined && spec.mtls !== null) {
    const mtls = record(spec.mtls, 'spec.mtls', fail);
    onlyKeys(mtls, ['mode'], 'spec.mtls', fail);
    mode = modeOf(mtls.mode, 'spec.mtls.mode', fail);
  }

  const portLevelMtls: PeerAuthPolicy['portLevelMtls'] = [];
  if (spec.portLevelMtls !== undefined && spec.portLevelMtls !== null) {
    if (!matchLabels) fail('spec.portLevelMtls needs spec.selector.matchLabels: ports are per workload, so mesh and namespace policies cannot set them');
    const ports = record(spec.portLevelMtls, 'spec.portLevelMtls', fail);
    if (Object.keys(ports).length === 0) fail('spec.portLevelMtls is empty; list at least one port or remove it');
    for (const [key, value] of Object.entries(ports)) {
      const field = `spec.portLevelMtls["${key}"]`;
      const port = parsePort(key) ?? fail(`${field}: "${key}" is not a port; use a number from 1 to 65535`);
      const setting = record(value, field, fail);
      onlyKeys(setting, ['mode'], field, fail);
      portLevelMtls.push({ port, mode: modeOf(setting.mode, `${field}.mode`, fail) });
    }
    portLevelMtls.sort((a, b) => a.port - b.port);
  }

  const level = matchLabels ? 'workload' : namespace === root ? 'mesh' : 'namespace';
  return { key: `${namespace}/${name}`, namespace, name, level, matchLabels, mode, portLevelMtls, createdAt };
}

function modeOf(value: unknown, field: string, fail: Fail): MtlsSetting {
  const mode = value ?? 'UNSET';
  if (mode === 'STRICT' || mode === 'PERMISSIVE' || mode === 'UNSET') return mode;
  if (mode === 'DISABLE') {
    return fail(`${field} DISABLE is not supported: meshlet ambient always carries mesh traffic over mTLS; use PERMISSIVE to also accept plaintext, or take the workload out of the mesh with label istio.io/dataplane-mode=none`);
  }
  return fail(`${field} ${JSON.stringify(mode)} is not a mode; use STRICT, PERMISSIVE or UNSET`);
}

/** Istio's order among equals: oldest first, then by name so the choice is stable. */
export function effectiveMtlsMode(store: PolicyStore, workload: WorkloadRef, port: number): MtlsMode {
  const { mesh, namespace, workloads } = store.peerAuthFor(workload.namespace);
  let mode: MtlsMode = 'PERMISSIVE';
  for (const level of [mesh, namespace]) if (level && level.mode !== 'UNSET') mode = level.mode;
  const selected = workloads.find((p) => p.selects(workload.labels));
  if (selected) {
    if (selected.mode !== 'UNSET') mode = selected.mode;
    const portMode = selected.ports.get(port);
    if (portMode && portMode !== 'UNSET') mode = portMode;
  }
  return mode;
}
