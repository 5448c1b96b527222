// The L7 section's cluster objects. An enrolled namespace (NS_L7_MESH) with a
// client (node-1), two backends v1 and v2 (node-2), the Service `web` over
// both, bound to the waypoint Gateway and routed 90/10 with a retry policy by
// a VirtualService over DestinationRule subsets, and the Service `web-v1`
// that no waypoint takes (the L4-only path). A namespace outside the mesh
// (NS_L7_DIRECT) with the same client and backends, serving TLS as well, and
// the nginx reverse proxy in the waypoint's place. Built as objects, like
// manifest.ts's.
import { HBONE_PORT, ISTIO_WAYPOINT_CLASS } from '../../ca/waypoint-gateway.ts';
import { USE_WAYPOINT_LABEL } from '../../lib/cluster/convert.ts';
import { namespace, pod, serviceAccount, toYaml, type Obj } from './manifest.ts';
import { SERVER_PORT } from './www.ts';

export const NS_L7_MESH = 'bench-l7';
export const NS_L7_DIRECT = 'bench-l7-direct';
export const WAYPOINT_NAME = 'waypoint';
/** The Service the waypoint takes, split 90/10 over the versions. */
export const SPLIT_SERVICE = 'web';
/** The Service of v1 alone, without a waypoint. */
export const L4_SERVICE = 'web-v1';
export const VERSIONS = ['v1', 'v2'] as const;
export type Version = (typeof VERSIONS)[number];
/** Percent of the requests each version gets through the waypoint and through nginx. */
export const SPLIT: Record<Version, number> = { v1: 90, v2: 10 };
export const PROXY_POD = 'proxy';
/** The backends' TLS listener (NS_L7_DIRECT), which nginx proxies to. */
export const BACKEND_TLS_PORT = 8443;
/** Set by the waypoint's route and by nginx on every response: proof that a request went through the proxy. */
export const ROUTE_HEADER = 'x-bench-route';
/** Set by each backend: its version. */
export const BACKEND_HEADER = 'x-bench-backend';
/** Set by each backend: the scheme the request reached it by (https from nginx). */
export const SCHEME_HEADER = 'x-bench-scheme';
/** The waypoint's retries: Envoy's usual set for a proxy in front of a flaky backend. */
const RETRIES = { attempts: 2, retryOn: 'connect-failure,refused-stream,reset,503' };

export const backendPod = (version: Version): string => `web-${version}`;

const httpPorts = [{ name: 'http', port: SERVER_PORT, targetPort: SERVER_PORT, protocol: 'TCP', appProtocol: 'http' }];

function service(ns: string, name: string, selector: Record<string, string>, labels: Record<string, string> = {}): Obj {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns, labels }, spec: { selector, ports: httpPorts } };
}

/**
 * Everything but the Gateway and the proxy pod: `backendConf(ns, version)`
 * is a backend's nginx config; clients go on `clientNode`, backends on
 * `serverNode`.
 */
export function l7Manifest(backendConf: (ns: string, version: Version) => string, clientNode: string, serverNode: string): string {
  const objects: Obj[] = [];
  for (const [ns, enrolled] of [[NS_L7_MESH, true], [NS_L7_DIRECT, false]] as const) {
    objects.push(namespace(ns, enrolled), serviceAccount(ns, 'client'), serviceAccount(ns, 'web'));
    objects.push(pod(ns, 'client', 'client', ['sleep', 'infinity'], clientNode));
    for (const v of VERSIONS) objects.push(pod(ns, backendPod(v), 'web', ['nginx', '-e', 'stderr', '-c', backendConf(ns, v)], serverNode, { app: 'web', version: v }));
  }
  objects.push(service(NS_L7_MESH, SPLIT_SERVICE, { app: 'web' }, { [USE_WAYPOINT_LABEL]: WAYPOINT_NAME }));
  objects.push(service(NS_L7_MESH, L4_SERVICE, { app: 'web', version: 'v1' }));
  objects.push({
    apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule',
    metadata: { name: SPLIT_SERVICE, namespace: NS_L7_MESH },
    spec: { host: SPLIT_SERVICE, subsets: VERSIONS.map((v) => ({ name: v, labels: { version: v } })) },
  });
  objects.push({
    apiVersion: 'networking.istio.io/v1', kind: 'VirtualService',
    metadata: { name: SPLIT_SERVICE, namespace: NS_L7_MESH },
    spec: {
      hosts: [SPLIT_SERVICE],
      http: [{
        retries: RETRIES,
        headers: { response: { set: { [ROUTE_HEADER]: 'waypoint' } } },
        route: VERSIONS.map((v) => ({ destination: { host: SPLIT_SERVICE, subset: v }, weight: SPLIT[v] })),
      }],
    },
  });
  return toYaml(objects);
}

/** The waypoint: a Gateway the CA's waypoint controller turns into a Deployment. */
export function gatewayManifest(): string {
  return toYaml([{
    apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway',
    metadata: { name: WAYPOINT_NAME, namespace: NS_L7_MESH },
    spec: { gatewayClassName: ISTIO_WAYPOINT_CLASS, listeners: [{ name: 'mesh', port: HBONE_PORT, protocol: 'HBONE' }] },
  }]);
}

/** nginx in the waypoint's place, on `node`, outside the mesh. */
export function proxyPodManifest(conf: string, node: string): string {
  return toYaml([serviceAccount(NS_L7_DIRECT, PROXY_POD), pod(NS_L7_DIRECT, PROXY_POD, PROXY_POD, ['nginx', '-e', 'stderr', '-c', conf], node)]);
}
