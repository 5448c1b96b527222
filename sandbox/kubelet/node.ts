// The kubelet's Node: registered (created, or reconciled when it exists)
// with its pod CIDRs, labels, addresses, capacity and conditions, and kept
// Ready as kubelet keeps it: a Lease in kube-node-lease renewed every 10 s,
// and the status (lastHeartbeatTime) reported on a longer period. The
// scheduler binds only to a Node that is Ready and has allocatable cpu,
// memory and pods.
import { readFileSync } from 'node:fs';
import { availableParallelism, release, totalmem } from 'node:os';
import { isIP } from 'node:net';
import { V1MicroTime, type CoordinationV1Api, type CoreV1Api, type V1Lease, type V1Node, type V1NodeCondition, type V1NodeStatus } from '@kubernetes/client-node';
import type { Logger } from '../../lib/core/log.ts';
import { RetryDelay } from './backoff.ts';
import { Timer } from './clock.ts';
import { wholeSecond, type Clock } from '../../lib/core/clock.ts';
import { describeError, MERGE_PATCH, statusCodeOf } from '../../lib/cluster/sources/kube-client.ts';
import { parseQuantity } from '../../lib/cluster/quantity.ts';

export const NODE_LEASE_NAMESPACE = 'kube-node-lease';
export const LEASE_DURATION_SECONDS = 40;
export const LEASE_RENEW_INTERVAL_MS = 10_000;
/** As kubelet's nodeStatusUpdateFrequency: how often the Node is read back and its status reported if it drifted (e.g. the node controller set Ready Unknown). */
export const NODE_STATUS_CHECK_INTERVAL_MS = 10_000;
/** kubelet reports an unchanged status every 5 min; the sandbox every minute, so `kubectl describe node` stays fresh. */
export const NODE_STATUS_REPORT_INTERVAL_MS = 60_000;
/** The version the Node reports: the control plane's (scripts/controlplane/versions.env); components parse it as semver. */
export const KUBELET_VERSION = 'v1.37.2';
const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 7000;

export interface NodeConfig {
  name: string;
  /** InternalIP addresses, IPv4 first: hostIPs of every pod, podIPs of hostNetwork pods. */
  addresses: string[];
  /** The node's pod CIDRs, IPv4 first (spec.podCIDRs). */
  podCIDRs: string[];
  /** Defaults to the node name. */
  hostname?: string;
  /** Defaults: the host's CPUs and memory, 110 pods. Allocatable is the same (nothing reserved). */
  capacity?: Partial<Record<'cpu' | 'memory' | 'pods', string>>;
  /** Labels besides kubernetes.io/hostname, kubernetes.io/os and kubernetes.io/arch. */
  labels?: Record<string, string>;
  /** Reported in nodeInfo.containerRuntimeVersion. */
  runtimeVersion?: string;
  /** The port of the kubelet's API (kubelet-server.ts), reported in daemonEndpoints: where the API server fetches `kubectl logs`. */
  kubeletPort?: number;
}

const ARCH: Readonly<Record<string, string>> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

const readTrimmed = (path: string): string => {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
};

function osImage(): string {
  const match = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readTrimmed('/etc/os-release'));
  return match?.[1] ?? 'Linux';
}

function nodeLabels(config: NodeConfig): Record<string, string> {
  const arch = ARCH[process.arch] ?? process.arch;
  return {
    ...config.labels,
    'kubernetes.io/hostname': config.hostname ?? config.name,
    'kubernetes.io/os': 'linux',
    'kubernetes.io/arch': arch,
    'beta.kubernetes.io/os': 'linux',
    'beta.kubernetes.io/arch': arch,
  };
}

function capacity(config: NodeConfig): Record<string, string> {
  return {
    cpu: config.capacity?.cpu ?? String(availableParallelism()),
    memory: config.capacity?.memory ?? `${Math.floor(totalmem() / 1024)}Ki`,
    pods: config.capacity?.pods ?? '110',
  };
}

const KUBELET_CONDITIONS: readonly { type: string; status: string; reason: string; message: string }[] = [
  { type: 'MemoryPressure', status: 'False', reason: 'KubeletHasSufficientMemory', message: 'kubelet has sufficient memory available' },
  { type: 'DiskPressure', status: 'False', reason: 'KubeletHasNoDiskPressure', message: 'kubelet has no disk pressure' },
  { type: 'PIDPressure', status: 'False', reason: 'KubeletHasSufficientPID', message: 'kubelet has sufficient PID available' },
  { type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' },
];

/** The status the kubelet reports; conditions keep their transition time while unchanged, and others' conditions are kept. */
export function nodeStatus(config: NodeConfig, now: number, previous: readonly V1NodeCondition[] = []): V1NodeStatus {
  const heartbeat = wholeSecond(now);
  const conditions: V1NodeCondition[] = previous.filter((c) => !KUBELET_CONDITIONS.some((k) => k.type === c.type));
  for (const k of KUBELET_CONDITIONS) {
    const before = previous.find((c) => c.type === k.type);
    const since = before?.status === k.status && before.lastTransitionTime ? before.lastTransitionTime : heartbeat;
    conditions.push({ ...k, lastHeartbeatTime: heartbeat, lastTransitionTime: since });
  }
  const resources = capacity(config);
  return {
    addresses: [
      ...config.addresses.map((address) => ({ type: 'InternalIP', address })),
      { type: 'Hostname', address: config.hostname ?? config.name },
    ],
    capacity: resources,
    allocatable: resources,
    conditions,
    ...(config.kubeletPort === undefined ? {} : { daemonEndpoints: { kubeletEndpoint: { Port: config.kubeletPort } } }),
    nodeInfo: {
      architecture: ARCH[process.arch] ?? process.arch,
      bootID: readTrimmed('/proc/sys/kernel/random/boot_id'),
      containerRuntimeVersion: config.runtimeVersion ?? 'meshlet://0.1.0',
      kernelVersion: release(),
      kubeProxyVersion: '',
      kubeletVersion: KUBELET_VERSION,
      machineID: readTrimmed('/etc/machine-id'),
      operatingSystem: 'linux',
      osImage: osImage(),
      systemUUID: readTrimmed('/sys/class/dmi/id/product_uuid'),
    },
  };
}

/** The Node to create. */
export function nodeObject(config: NodeConfig, now: number): V1Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: config.name, labels: nodeLabels(config) },
    spec: { podCIDR: config.podCIDRs[0], podCIDRs: config.podCIDRs },
    status: nodeStatus(config, now),
  };
}

export function checkNodeConfig(config: NodeConfig): string | undefined {
  if (!config.name) return 'the node has no name';
  if (config.addresses.length === 0) return `node ${config.name} has no address`;
  const bad = config.addresses.find((a) => isIP(a) === 0);
  if (bad) return `node ${config.name}: ${JSON.stringify(bad)} is not an IP address`;
  return undefined;
}

export interface NodeHealth {
  registered: boolean;
  lastLeaseRenewal?: number;
  lastStatusReport?: number;
  lastError?: string;
}

export interface NodeRegistrarOptions {
  core: CoreV1Api;
  coordination: CoordinationV1Api;
  config: NodeConfig;
  clock: Clock;
  log: Logger;
  leaseRenewIntervalMs?: number;
  statusCheckIntervalMs?: number;
  statusReportIntervalMs?: number;
}

/** Registers the Node, then renews its Lease and reports its status until stopped. */
export class NodeRegistrar {
  readonly #o: NodeRegistrarOptions;
  readonly #leaseTimer: Timer;
  readonly #statusTimer: Timer;
  #node: V1Node | undefined;
  #lease: V1Lease | undefined;
  readonly #leaseRetry = new RetryDelay(RETRY_MIN_MS, RETRY_MAX_MS);
  readonly #statusRetry = new RetryDelay(RETRY_MIN_MS, RETRY_MAX_MS);
  #stopped = false;
  #wake: (() => void) | undefined;
  readonly health: NodeHealth = { registered: false };

  constructor(options: NodeRegistrarOptions) {
    this.#o = options;
    this.#leaseTimer = new Timer(options.clock);
    this.#statusTimer = new Timer(options.clock);
  }

  /** Registers (retrying with backoff until it succeeds or stop()), then starts the heartbeats. */
  async start(): Promise<void> {
    const delay = new RetryDelay(RETRY_MIN_MS, RETRY_MAX_MS);
    while (!this.#stopped) {
      try {
        await this.#register();
        break;
      } catch (err) {
        this.#failed('node_register_failed', err);
        await this.#sleep(delay.next());
      }
    }
    if (this.#stopped) return;
    this.health.registered = true;
    this.#o.log.info('node_registered', { node: this.#o.config.name });
    await this.#renewLease();
    this.#statusTimer.arm(() => void this.#checkStatus(), this.#checkIntervalMs());
  }

  stop(): void {
    this.#stopped = true;
    this.#leaseTimer.cancel();
    this.#statusTimer.cancel();
    this.#wake?.();
  }

  /** Waits on the clock; stop() ends the wait early. */
  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
      this.#leaseTimer.arm(resolve, ms);
    });
  }

  #failed(event: string, err: unknown): void {
    this.health.lastError = `${event}: ${describeError(err)}`;
    this.#o.log.warn(event, { node: this.#o.config.name, error: describeError(err) });
  }

  async #register(): Promise<void> {
    const { core, config, clock } = this.#o;
    try {
      this.#node = await core.createNode({ body: nodeObject(config, clock.now()) });
    } catch (err) {
      if (statusCodeOf(err) !== 409) throw err;
      // It exists (a kubelet restart, or registered before): reconcile our labels and an unset pod CIDR.
      const existing = await core.readNode({ name: config.name });
      const spec = existing.spec?.podCIDRs?.length ? {} : { spec: { podCIDR: config.podCIDRs[0], podCIDRs: config.podCIDRs } };
      if (existing.spec?.podCIDRs?.length && existing.spec.podCIDRs.join(',') !== config.podCIDRs.join(',')) {
        this.#o.log.warn('node_pod_cidr_differs', { node: config.name, registered: existing.spec.podCIDRs, configured: config.podCIDRs });
      }
      this.#node = await core.patchNode({ name: config.name, body: { metadata: { labels: nodeLabels(config) }, ...spec } }, MERGE_PATCH);
    }
    // The create may have dropped status, and an existing Node carries the last kubelet's: report ours now.
    await this.#patchStatus();
  }

  async #patchStatus(): Promise<void> {
    const { core, config, clock } = this.#o;
    const status = nodeStatus(config, clock.now(), this.#node?.status?.conditions ?? []);
    this.#node = await core.patchNodeStatus({ name: config.name, body: { status } }, MERGE_PATCH);
    this.health.lastStatusReport = clock.now();
  }

  #checkIntervalMs(): number {
    return this.#o.statusCheckIntervalMs ?? NODE_STATUS_CHECK_INTERVAL_MS;
  }

  /** Reads the Node back; reports the status when the report is due or what the API holds differs from what this kubelet reports. */
  async #checkStatus(): Promise<void> {
    if (this.#stopped) return;
    let next = this.#checkIntervalMs();
    try {
      const node = await this.#readNode();
      if (!node) {
        // Deleted behind its back (`kubectl delete node`): register again, as a restarted kubelet would.
        this.#o.log.warn('node_reregistering', { node: this.#o.config.name });
        this.#lease = undefined;
        await this.#register();
      } else {
        this.#node = node;
        const due = this.#o.clock.now() - (this.health.lastStatusReport ?? 0) >= (this.#o.statusReportIntervalMs ?? NODE_STATUS_REPORT_INTERVAL_MS);
        if (due || this.#drifted(node)) await this.#patchStatus();
      }
      this.#statusRetry.reset();
    } catch (err) {
      this.#failed('node_status_failed', err);
      next = this.#statusRetry.next();
    }
    if (!this.#stopped) this.#statusTimer.arm(() => void this.#checkStatus(), next);
  }

  /** The Node as the API holds it, or undefined when it is gone. */
  async #readNode(): Promise<V1Node | undefined> {
    try {
      return await this.#o.core.readNode({ name: this.#o.config.name });
    } catch (err) {
      if (statusCodeOf(err) === 404) return undefined;
      throw err;
    }
  }

  #drifted(node: V1Node): boolean {
    const want = nodeStatus(this.#o.config, this.#o.clock.now());
    const conditions = node.status?.conditions ?? [];
    const conditionsDiffer = KUBELET_CONDITIONS.some((k) => conditions.find((c) => c.type === k.type)?.status !== k.status);
    const addresses = (list: V1NodeStatus['addresses']) => JSON.stringify((list ?? []).map((a) => [a.type, a.address]));
    // The API server canonicalizes quantities ("16384000Ki" comes back "16000Mi"): compare values.
    const have = node.status?.allocatable ?? {};
    const allocatableDiffers = Object.entries(want.allocatable ?? {}).some(([k, v]) => have[k] === undefined || parseQuantity(have[k]!) !== parseQuantity(v));
    const portDiffers = node.status?.daemonEndpoints?.kubeletEndpoint?.Port !== want.daemonEndpoints?.kubeletEndpoint?.Port;
    return conditionsDiffer || allocatableDiffers || portDiffers || addresses(node.status?.addresses) !== addresses(want.addresses);
  }

  #leaseObject(): V1Lease {
    const { config, clock } = this.#o;
    const owner = this.#node?.metadata?.uid ? [{ apiVersion: 'v1', kind: 'Node', name: config.name, uid: this.#node.metadata.uid }] : undefined;
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: config.name, namespace: NODE_LEASE_NAMESPACE, ...(owner ? { ownerReferences: owner } : {}) },
      spec: { holderIdentity: config.name, leaseDurationSeconds: LEASE_DURATION_SECONDS, renewTime: new V1MicroTime(clock.now()) },
    };
  }

  async #renewLease(): Promise<void> {
    if (this.#stopped) return;
    const { coordination, config, clock } = this.#o;
    let next = this.#o.leaseRenewIntervalMs ?? LEASE_RENEW_INTERVAL_MS;
    try {
      if (!this.#lease) {
        try {
          this.#lease = await coordination.readNamespacedLease({ name: config.name, namespace: NODE_LEASE_NAMESPACE });
        } catch (err) {
          if (statusCodeOf(err) !== 404) throw err;
        }
      }
      if (this.#lease) {
        const body = this.#leaseObject();
        body.metadata!.resourceVersion = this.#lease.metadata?.resourceVersion;
        this.#lease = await coordination.replaceNamespacedLease({ name: config.name, namespace: NODE_LEASE_NAMESPACE, body });
      } else {
        this.#lease = await coordination.createNamespacedLease({ namespace: NODE_LEASE_NAMESPACE, body: this.#leaseObject() });
      }
      this.health.lastLeaseRenewal = clock.now();
      this.#leaseRetry.reset();
    } catch (err) {
      // A conflict or a vanished lease: read it afresh on the retry.
      this.#lease = undefined;
      this.#failed('node_lease_failed', err);
      next = this.#leaseRetry.next();
    }
    if (!this.#stopped) this.#leaseTimer.arm(() => void this.#renewLease(), next);
  }
}
