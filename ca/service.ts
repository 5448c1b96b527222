// `meshlet ca` assembled. startCa is the CA on the Kubernetes API: the mesh
// root from its Secret, and one watch of every node's pods (KubeSource with
// CA_KINDS) feeding both which identities each node hosts and the caller
// check of the TokenReview authenticator; with `waypoints`, the waypoint
// controller beside it, on its own watch, so that neither waits for the
// other. serveCa runs the same CA on parts handed to it, for tests without
// an API server. Used by the command and by tests that run the CA in process.
import { networkInterfaces } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Clock } from '../lib/core/clock.ts';
import type { Logger } from '../lib/core/log.ts';
import { DEFAULT_SIGN_BURST, DEFAULT_SIGN_RATE, DEFAULT_TOKEN_AUDIENCE } from '../lib/config/ca.ts';
import { CA_KINDS, KubeSource } from '../lib/cluster/sources/kube.ts';
import type { ClusterSource } from '../lib/cluster/sources/source.ts';
import type { CallerAuthenticator } from './caller.ts';
import { ApiPodLookup, WatchedPodLookup } from './caller-pods.ts';
import { HostedIdentities } from './hosted.ts';
import { loadKubeconfigFile } from '../lib/cluster/kubeconfig-file.ts';
import { CaMetrics } from './metrics.ts';
import { publishRootConfigMap, type RootConfigMapPublisher } from './root-configmap.ts';
import { loadOrCreateRootSecret } from './root-secret.ts';
import { writeTrustBundle, type MeshRoot } from './root.ts';
import { NodeRateLimit } from './rate-limit.ts';
import { CaServer } from './server.ts';
import { TokenReviewAuthenticator } from './token-review.ts';
import { WaypointController } from './waypoint-controller.ts';

export interface CaOptions {
  host: string;
  port: number;
  /** Where the trust bundle (root-cert.pem) is written. */
  stateDir: string;
  trustDomain: string;
  defaultTtlSeconds: number;
  maxTtlSeconds: number;
  /** Extra names/IPs for the serving certificate, besides the listen address. */
  serverNames: readonly string[];
  log: Logger;
  /** Signing requests per second per node (default DEFAULT_SIGN_RATE). */
  signRatePerSecond?: number;
  /** Signing requests a node may make at once (default DEFAULT_SIGN_BURST). */
  signBurst?: number;
  /** Refills the rate limit's buckets (default Date.now). */
  now?: Clock['now'];
}

export interface KubeCaConfig extends CaOptions {
  /** The CA's own ServiceAccount credentials: a loaded KubeConfig, or the path of a kubeconfig file. */
  kubeconfig: KubeConfig | string;
  rootSecret: { namespace: string; name: string };
  /** Default meshlet-ca. */
  tokenAudience?: string;
  /** Default the meshlet-ztunnel ServiceAccount. */
  nodeAccounts?: readonly string[];
  /** Makes a root when the Secret does not exist (tests: to lose the creation race on purpose). */
  newRoot?: (trustDomain: string) => Promise<MeshRoot>;
  /** Run the waypoint controller too (meshlet ca --waypoint-controller). */
  waypoints?: WaypointControllerConfig;
}

export interface WaypointControllerConfig {
  /** The waypoint Deployments' image. */
  image: string;
  /** This CA as the waypoint pods reach it. */
  caUrl: string;
  /** Default DEFAULT_RESYNC_MS. */
  resyncMs?: number;
}

export interface CaParts {
  root: MeshRoot;
  /** Pods on every node: which service accounts each node hosts. */
  source: ClusterSource;
  callers: CallerAuthenticator;
  /** The callers' own pods, kept current from the same source, so the CA runs one watch and not two. */
  callerPods?: WatchedPodLookup;
  metrics?: CaMetrics;
}

export interface RunningCa {
  /** https://host:port, with the bound port. */
  url: string;
  port: number;
  /** The trust bundle clients pin (the root certificate, in --state-dir). */
  bundleFile: string;
  /** The waypoint controller, when it runs. */
  waypoints?: WaypointController;
  /** The root's ConfigMap in the CA's namespace, for the ztunnels (startCa only). */
  rootConfigMap?: RootConfigMapPublisher;
  close(): Promise<void>;
}

const WILDCARD = new Set(['0.0.0.0', '::', '']);

/** The listen address, or every local address when listening on all of them. */
function servingNames(host: string, extra: readonly string[]): string[] {
  const own = WILDCARD.has(host)
    ? Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address.replace(/%.*$/, '')))
    : [host];
  return [...new Set([...own, 'localhost', ...extra])];
}

export async function startCa(config: KubeCaConfig): Promise<RunningCa> {
  const kubeconfig = typeof config.kubeconfig === 'string' ? await loadKubeconfigFile(config.kubeconfig) : config.kubeconfig;
  const metrics = new CaMetrics();
  const callerPods = new WatchedPodLookup(new ApiPodLookup(kubeconfig));
  // Built first: it checks the node accounts before anything is asked of the API server.
  const callers = new TokenReviewAuthenticator({
    kubeconfig, pods: callerPods, metrics,
    ...(config.tokenAudience === undefined ? {} : { audience: config.tokenAudience }),
    ...(config.nodeAccounts === undefined ? {} : { nodeAccounts: config.nodeAccounts }),
  });
  const root = await loadOrCreateRootSecret({
    kubeconfig, ...config.rootSecret, trustDomain: config.trustDomain, log: config.log,
    ...(config.newRoot === undefined ? {} : { newRoot: config.newRoot }),
  });
  const rootConfigMap = publishRootConfigMap({ kubeconfig, namespace: config.rootSecret.namespace, rootCertPem: root.certPem, log: config.log });
  const source = new KubeSource({ kubeconfig, kinds: CA_KINDS, log: config.log });
  const served = await serveCa(config, { root, source, callers, callerPods, metrics }).catch((err: unknown) => {
    rootConfigMap.stop();
    throw err;
  });
  const ca: RunningCa = {
    ...served,
    rootConfigMap,
    close: async () => {
      rootConfigMap.stop();
      await served.close();
    },
  };
  if (config.waypoints === undefined) return ca;
  const { image, caUrl, resyncMs } = config.waypoints;
  const waypoints = new WaypointController({
    kubeconfig, rootCertPem: root.certPem, log: config.log, metrics,
    settings: { image, caUrl, trustDomain: config.trustDomain, tokenAudience: config.tokenAudience ?? DEFAULT_TOKEN_AUDIENCE },
    ...(resyncMs === undefined ? {} : { resyncMs }),
  });
  // Signing does not wait for the controller's first list; an API server that is slow to answer is retried by its watch.
  waypoints.start().catch((err: unknown) => config.log.error('waypoint controller did not start', { error: err }));
  return {
    ...ca,
    waypoints,
    close: async () => {
      waypoints.stop();
      await ca.close();
    },
  };
}

export async function serveCa(options: CaOptions, parts: CaParts): Promise<RunningCa> {
  const { log } = options;
  const { root, source } = parts;
  const bundleFile = await writeTrustBundle(options.stateDir, root);
  const hosted = new HostedIdentities();
  await source.start((update) => {
    hosted.update(update.objects);
    parts.callerPods?.update(update.objects);
    if (update.unreadable.length > 0) {
      log.warn('cluster state has objects the CA cannot read', { unreadable: update.unreadable.map((u) => `${u.object}: ${u.reason}`) });
    }
  });
  if (!hosted.ready) log.warn('cluster state not read yet; signing waits for it', { source: source.status().name });
  const server = new CaServer({
    root, trustDomain: options.trustDomain, callers: parts.callers, hosted,
    defaultTtlSeconds: options.defaultTtlSeconds, maxTtlSeconds: options.maxTtlSeconds,
    serverNames: servingNames(options.host, options.serverNames), metrics: parts.metrics ?? new CaMetrics(), log,
    rateLimit: new NodeRateLimit({ ratePerSecond: options.signRatePerSecond ?? DEFAULT_SIGN_RATE, burst: options.signBurst ?? DEFAULT_SIGN_BURST, now: options.now ?? Date.now }),
  });
  let address;
  try {
    address = await server.listen(options.host, options.port);
  } catch (err) {
    source.stop();
    throw err;
  }
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  log.info('ca listening', { url: `https://${urlHost}:${address.port}`, trustDomain: options.trustDomain, bundleFile });
  return {
    url: `https://${urlHost}:${address.port}`,
    port: address.port,
    bundleFile,
    close: async () => {
      source.stop();
      await server.close();
    },
  };
}
