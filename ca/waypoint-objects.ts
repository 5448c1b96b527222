// The objects a waypoint Gateway becomes, as the controller server-side
// applies them: a ServiceAccount (the waypoint's identity), a
// ClusterRoleBinding of it to the ClusterRole meshlet-waypoint (what the
// waypoint reads of the cluster, daemonset/rbac.yaml), a Service (its
// address, the one ztunnels tunnel to), a Deployment running `meshlet
// waypoint`, and the namespace's copy of the mesh root (a ConfigMap, as
// Istio's istio-ca-root-cert) that the waypoint verifies the CA and its peers
// with. Names and labels follow Istio's waypoint template, so tools and
// selectors written for Istio find them: every object is named after the
// Gateway and labelled gateway.networking.k8s.io/gateway-name; the namespaced
// ones but the shared ConfigMap are owned by the Gateway (controller: true)
// so that deleting the Gateway deletes them. The binding is cluster-scoped,
// and a namespaced owner does not garbage-collect a cluster-scoped object:
// the controller deletes it itself (waypoint-controller.ts).
import { isRecord } from '../lib/cluster/objects.ts';
import { configArgs } from '../lib/config/flags.ts';
import { WAYPOINT_FLAGS } from '../lib/config/waypoint.ts';
import { HBONE_PORT, type WaypointGateway } from './waypoint-gateway.ts';
import { CA_TOKEN_DIR, CA_TOKEN_FILE, CLUSTER_DOMAIN, PROJECTED_TOKEN_SECONDS, TRUST_BUNDLE_CONFIGMAP, TRUST_BUNDLE_DIR, TRUST_BUNDLE_KEY } from '../lib/install/names.ts';

/** What server-side apply records as the writer of every object and status the controller keeps. */
export const FIELD_MANAGER = 'meshlet-waypoint-controller';
/** Istio's label for objects a gateway controller made; the controller touches no existing object without it. */
export const MANAGED_LABEL = 'gateway.istio.io/managed';
export const MANAGED_VALUE = 'meshlet.dev-waypoint-controller';
export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';
export const GATEWAY_CLASS_LABEL = 'gateway.networking.k8s.io/gateway-class-name';
/** On the cluster-scoped binding, which has no namespace of its own to say whose it is. */
export const GATEWAY_NAMESPACE_LABEL = 'meshlet.dev/gateway-namespace';
/** What each waypoint's ServiceAccount is bound to (daemonset/rbac.yaml): list and watch of WAYPOINT_KINDS, cluster-wide. */
export const WAYPOINT_CLUSTER_ROLE = 'meshlet-waypoint';
const RBAC_GROUP = 'rbac.authorization.k8s.io';
export const CLUSTER_ROLE_BINDINGS_PATH = `/apis/${RBAC_GROUP}/v1/clusterrolebindings`;
/** The namespace's copy of the mesh root, and where the waypoint container finds it and its token for the CA: the ztunnel's names (lib/install/names.ts). */
export { TRUST_BUNDLE_CONFIGMAP, TRUST_BUNDLE_KEY, TRUST_BUNDLE_DIR, CA_TOKEN_DIR, CA_TOKEN_FILE, CLUSTER_DOMAIN };
/** Ports of the waypoint process, as Istio's waypoint has them: HBONE, Prometheus metrics, readiness. */
export const METRICS_PORT = 15020;
export const READINESS_PORT = 15021;
export const WAYPOINT_CONTAINER = 'waypoint';

export interface WaypointSettings {
  image: string;
  /** This CA as the waypoint pods reach it. */
  caUrl: string;
  trustDomain: string;
  /** The audience the CA accepts tokens for (meshlet ca --token-audience). */
  tokenAudience: string;
}

/** One object to apply: where, what, and how the operator names it. */
export interface Desired {
  /** The object's API path (no query). */
  path: string;
  /** "v1 Service demo/waypoint". */
  what: string;
  body: Record<string, unknown>;
}

export interface WaypointObjects {
  trustBundle: Desired;
  serviceAccount: Desired;
  clusterRoleBinding: Desired;
  service: Desired;
  deployment: Desired;
}

const esc = encodeURIComponent;

/**
 * The waypoint's ClusterRoleBinding: meshlet-waypoint:<namespace>:<name>. A
 * colon occurs in no namespace or Gateway name, so two waypoints never share
 * one (with "-", a-b/c and a/b-c would).
 */
export const bindingName = (namespace: string, name: string): string => `${WAYPOINT_CLUSTER_ROLE}:${namespace}:${name}`;

/** "namespace/name" of the Gateway whose binding this is, when it is one the controller made (its labels and role), else undefined. */
export function bindingGatewayKey(binding: Record<string, unknown>): string | undefined {
  const meta = isRecord(binding.metadata) ? binding.metadata : {};
  const labels = isRecord(meta.labels) ? meta.labels : {};
  const role = isRecord(binding.roleRef) ? binding.roleRef : {};
  const namespace = labels[GATEWAY_NAMESPACE_LABEL];
  const name = labels[GATEWAY_NAME_LABEL];
  if (labels[MANAGED_LABEL] !== MANAGED_VALUE || role.kind !== 'ClusterRole' || role.name !== WAYPOINT_CLUSTER_ROLE) return undefined;
  return typeof namespace === 'string' && typeof name === 'string' ? `${namespace}/${name}` : undefined;
}

/** The waypoint's DNS name, the Hostname address Istio reports. */
export const serviceHostname = (gw: Pick<WaypointGateway, 'namespace' | 'name'>): string => `${gw.name}.${gw.namespace}.svc.${CLUSTER_DOMAIN}`;

/** spec.infrastructure labels and annotations, without the Gateway API's own prefix (as Istio drops it: those keys are the controller's to set). */
function infrastructure(values: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).filter(([key]) => !key.startsWith('gateway.networking.k8s.io/') && key !== MANAGED_LABEL));
}

/** `meshlet` is on the image's PATH (as `npm run setup` puts it on the sandbox's). */
export const WAYPOINT_COMMAND: readonly string[] = ['meshlet', 'waypoint'];

/**
 * Node flags of the waypoint's process, through NODE_OPTIONS (which allows
 * this one). A 1 MB young generation a semi-space, as the ztunnel's (V8's
 * default grows to 16 MB): nearly all a proxied request allocates dies with
 * the request, so small, frequent scavenges keep the garbage between
 * collections small. 2 MB first took RssAnon under load in the in-process
 * test stack from 300-390 MiB to 170-260 MiB; once the old generation's
 * growth was held (heap-growth.ts) and malloc tuned (below), 1 MB measured
 * lower again in the bench's L7 section alone: RssAnon at 1,000 req/s
 * 51.6-52.4 MiB against 55.0-55.8 with 2 MB, CPU per request and p99 within
 * the rounds' spread. In the full bench, where the waypoint also holds the L4
 * section's pods, the two measured alike (58.1 and 58.2 MiB).
 */
export const WAYPOINT_NODE_OPTIONS = '--max-semi-space-size=1';

/**
 * glibc's malloc, tuned for one event loop relaying small requests (read
 * from GLIBC_TUNABLES as the process starts):
 * - arena_max 2: glibc makes an arena per thread that allocates (V8's
 *   workers among them), each keeping freed memory of its own. Two arenas
 *   took RssAnon under the bench's load 10-20 MiB lower.
 * - mmap_threshold 16 KiB, trim_threshold 64 KiB, top_pad 0: buffers of
 *   16-128 KiB (socket reads, TLS records) came from the main arena's brk
 *   heap, which gives memory back only from its top, so it stayed at its
 *   high-water mark (18 MiB of the 66). Mapped on their own, they go back to
 *   the kernel when freed; setting the threshold also stops glibc raising it
 *   after each such free, which moved them back into the heap. RssAnon at
 *   1,000 req/s: 64-66 MiB before, 55-56 after, about one mmap call per 20
 *   requests (strace) and no CPU cost the bench could see.
 * The cost is per 64 KiB read of a large body: its buffers are mapped and
 *   unmapped each time. The ztunnel, whose bulk throughput is a target, does
 *   not take them: with them its 1 GiB transfer fell from 238-264 MB/s to
 *   83-113 MB/s in the bench.
 */
export const WAYPOINT_GLIBC_TUNABLES = 'glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=16384:glibc.malloc.trim_threshold=65536:glibc.malloc.top_pad=0';

/**
 * The flags of `meshlet waypoint`, rendered from the waypoint's own flag
 * table (lib/config/waypoint.ts) so that the two cannot drift apart; the rest
 * of its flags keep their defaults (Istio's waypoint ports).
 */
export function waypointArgs(gw: Pick<WaypointGateway, 'namespace' | 'name'>, s: WaypointSettings): string[] {
  return configArgs(WAYPOINT_FLAGS, {
    gateway: `${gw.namespace}/${gw.name}`,
    trustDomain: s.trustDomain,
    caUrl: s.caUrl,
    caBundle: `${TRUST_BUNDLE_DIR}/${TRUST_BUNDLE_KEY}`,
    caTokenFile: `${CA_TOKEN_DIR}/${CA_TOKEN_FILE}`,
  });
}

/** A namespace's copy of the mesh root, which its waypoints (and, in the CA's own namespace, the ztunnels) mount. */
export function trustBundleConfigMap(namespace: string, rootCertPem: string): Desired {
  return {
    path: `/api/v1/namespaces/${esc(namespace)}/configmaps/${TRUST_BUNDLE_CONFIGMAP}`,
    what: `v1 ConfigMap ${namespace}/${TRUST_BUNDLE_CONFIGMAP}`,
    body: {
      apiVersion: 'v1', kind: 'ConfigMap',
      metadata: { name: TRUST_BUNDLE_CONFIGMAP, namespace, labels: { [MANAGED_LABEL]: MANAGED_VALUE } },
      data: { [TRUST_BUNDLE_KEY]: rootCertPem },
    },
  };
}

const fieldRef = (name: string, fieldPath: string) => ({ name, valueFrom: { fieldRef: { fieldPath } } });

export function waypointObjects(gw: WaypointGateway, s: WaypointSettings, rootCertPem: string): WaypointObjects {
  const { namespace, name } = gw;
  const ours = { [GATEWAY_NAME_LABEL]: name, [GATEWAY_CLASS_LABEL]: gw.className, [MANAGED_LABEL]: MANAGED_VALUE };
  const labels = { ...infrastructure(gw.labels), ...ours };
  const annotations = infrastructure(gw.annotations);
  const ownerReferences = [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name, uid: gw.uid, controller: true }];
  const metadata = { name, namespace, labels, annotations, ownerReferences };
  return {
    trustBundle: trustBundleConfigMap(namespace, rootCertPem),
    serviceAccount: {
      path: `/api/v1/namespaces/${esc(namespace)}/serviceaccounts/${esc(name)}`,
      what: `v1 ServiceAccount ${namespace}/${name}`,
      body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata },
    },
    clusterRoleBinding: {
      path: `${CLUSTER_ROLE_BINDINGS_PATH}/${esc(bindingName(namespace, name))}`,
      what: `${RBAC_GROUP}/v1 ClusterRoleBinding ${bindingName(namespace, name)}`,
      body: {
        apiVersion: `${RBAC_GROUP}/v1`, kind: 'ClusterRoleBinding',
        metadata: { name: bindingName(namespace, name), labels: { ...labels, [GATEWAY_NAMESPACE_LABEL]: namespace }, annotations },
        roleRef: { apiGroup: RBAC_GROUP, kind: 'ClusterRole', name: WAYPOINT_CLUSTER_ROLE },
        subjects: [{ kind: 'ServiceAccount', name, namespace }],
      },
    },
    service: {
      path: `/api/v1/namespaces/${esc(namespace)}/services/${esc(name)}`,
      what: `v1 Service ${namespace}/${name}`,
      body: {
        apiVersion: 'v1', kind: 'Service', metadata,
        spec: {
          type: 'ClusterIP',
          ipFamilyPolicy: 'PreferDualStack',
          selector: { [GATEWAY_NAME_LABEL]: name },
          // Istio's ports and app protocols: readiness, then the listener (its protocol, lower-cased).
          ports: [
            { name: 'status-port', port: READINESS_PORT, protocol: 'TCP', appProtocol: 'tcp' },
            { name: 'mesh', port: HBONE_PORT, protocol: 'TCP', appProtocol: 'hbone' },
          ],
        },
      },
    },
    deployment: {
      path: `/apis/apps/v1/namespaces/${esc(namespace)}/deployments/${esc(name)}`,
      what: `apps/v1 Deployment ${namespace}/${name}`,
      body: {
        apiVersion: 'apps/v1', kind: 'Deployment', metadata,
        // No replicas: one by default, and `kubectl scale` or an HPA may change it without the controller undoing it.
        spec: {
          selector: { matchLabels: { [GATEWAY_NAME_LABEL]: name } },
          template: {
            metadata: {
              annotations: { ...annotations, 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(METRICS_PORT), 'prometheus.io/path': '/metrics' },
              labels: {
                ...infrastructure(gw.labels),
                'service.istio.io/canonical-name': name,
                'service.istio.io/canonical-revision': 'latest',
                'sidecar.istio.io/inject': 'false',
                // Never captured: the waypoint speaks HBONE itself (a label from spec.infrastructure cannot change that).
                'istio.io/dataplane-mode': 'none',
                ...ours,
              },
            },
            spec: {
              serviceAccountName: name,
              containers: [{
                name: WAYPOINT_CONTAINER,
                image: s.image,
                command: [...WAYPOINT_COMMAND],
                args: waypointArgs(gw, s),
                env: [
                  fieldRef('POD_NAME', 'metadata.name'),
                  fieldRef('POD_NAMESPACE', 'metadata.namespace'),
                  fieldRef('POD_IP', 'status.podIP'),
                  fieldRef('NODE_NAME', 'spec.nodeName'),
                  fieldRef('SERVICE_ACCOUNT', 'spec.serviceAccountName'),
                  { name: 'NODE_OPTIONS', value: WAYPOINT_NODE_OPTIONS },
                  { name: 'GLIBC_TUNABLES', value: WAYPOINT_GLIBC_TUNABLES },
                ],
                ports: [
                  { name: 'mesh', containerPort: HBONE_PORT, protocol: 'TCP' },
                  { name: 'metrics', containerPort: METRICS_PORT, protocol: 'TCP' },
                  { name: 'status-port', containerPort: READINESS_PORT, protocol: 'TCP' },
                ],
                // Istio's waypoint probes: up to 30 s to start, then readiness; its resources too.
                startupProbe: { httpGet: { path: '/healthz/ready', port: READINESS_PORT, scheme: 'HTTP' }, initialDelaySeconds: 1, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 30 },
                readinessProbe: { httpGet: { path: '/healthz/ready', port: READINESS_PORT, scheme: 'HTTP' }, periodSeconds: 15, timeoutSeconds: 1, failureThreshold: 4 },
                resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '2', memory: '1Gi' } },
                securityContext: {
                  privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true,
                  runAsNonRoot: true, runAsUser: 1337, runAsGroup: 1337, capabilities: { drop: ['ALL'] },
                },
                volumeMounts: [
                  { name: 'meshlet-token', mountPath: CA_TOKEN_DIR, readOnly: true },
                  { name: 'meshlet-ca-root', mountPath: TRUST_BUNDLE_DIR, readOnly: true },
                ],
              }],
              volumes: [
                // As the kubelet mounts the ztunnel's: a pod-bound token for the CA's audience, refreshed by the kubelet.
                { name: 'meshlet-token', projected: { sources: [{ serviceAccountToken: { audience: s.tokenAudience, expirationSeconds: PROJECTED_TOKEN_SECONDS, path: CA_TOKEN_FILE } }] } },
                { name: 'meshlet-ca-root', configMap: { name: TRUST_BUNDLE_CONFIGMAP } },
              ],
            },
          },
        },
      },
    },
  };
}
