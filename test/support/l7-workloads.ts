// The workloads the routing cases name (test/support/l7-cases.ts), as objects
// for the sandbox: namespace demo in the mesh with the fixture services (a
// pod per version running test/e2e/fixtures/echo-backend.ts on node-2, a
// Service with the case table's ports), the client demo/sleep and, for the
// cases about another namespace's clients, other/curl, both on node-1. The waypoint itself comes
// later (waypointObjects): the suite first checks the services without it.
import type { KubeObject } from '../../lib/cluster/objects.ts';
import { CASE_NAMESPACE, SERVICES, WAYPOINT } from './l7-cases.ts';

/** Where each backend's steering listener is, on its pod's loopback (echo-backend.ts). */
export const CONTROL_PORT = 15999;
const BACKEND_NODE = 'node-2';
const CLIENT_NODE = 'node-1';

/** The pods that serve `service`, one per version: `<service>-<version>` (the name the echo reports). */
export const backendPods = (service: string): string[] => (SERVICES[service]?.versions ?? []).map((v) => `${service}-${v}`);

const portName = (port: number, appProtocol?: string) => `${appProtocol ?? 'http'}-${port}`;

function namespace(name: string, labels: Record<string, string>): KubeObject {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } };
}

const serviceAccount = (namespace: string, name: string): KubeObject => ({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } });

function idlePod(namespace: string, name: string, sa: string): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name, namespace, labels: { app: name } },
    spec: { nodeName: CLIENT_NODE, serviceAccountName: sa, containers: [{ name: 'idle', image: 'busybox', command: ['sleep', 'infinity'] }] },
  };
}

function backendPod(service: string, version: string, ports: readonly number[]): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: `${service}-${version}`, namespace: CASE_NAMESPACE, labels: { app: service, version } },
    spec: {
      nodeName: BACKEND_NODE,
      serviceAccountName: service,
      containers: [{
        name: 'echo',
        image: 'node',
        command: ['node', 'test/e2e/fixtures/echo-backend.ts', '--service', service, '--version', version, '--ports', ports.join(','), '--control-port', String(CONTROL_PORT)],
        env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
        ports: ports.map((p) => ({ containerPort: p })),
        readinessProbe: { tcpSocket: { port: ports[0] }, periodSeconds: 1 },
      }],
    },
  };
}

function service(name: string, ports: readonly number[], appProtocol?: string): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Service',
    metadata: { name, namespace: CASE_NAMESPACE },
    spec: { selector: { app: name }, ports: ports.map((p) => ({ name: portName(p, appProtocol), port: p, targetPort: p, ...(appProtocol ? { appProtocol } : {}) })) },
  };
}

/** The mesh-enrolled namespaces, the clients and every fixture service with its pods. */
export function workloads(): KubeObject[] {
  const objects: KubeObject[] = [
    namespace(CASE_NAMESPACE, { 'istio.io/dataplane-mode': 'ambient' }),
    namespace('other', { 'istio.io/dataplane-mode': 'ambient' }),
    serviceAccount(CASE_NAMESPACE, 'sleep'),
    serviceAccount('other', 'curl'),
    idlePod(CASE_NAMESPACE, 'sleep', 'sleep'),
    idlePod('other', 'curl', 'curl'),
  ];
  for (const [name, spec] of Object.entries(SERVICES)) {
    objects.push(serviceAccount(CASE_NAMESPACE, name), service(name, spec.ports, spec.appProtocol));
    for (const version of spec.versions) objects.push(backendPod(name, version, spec.ports));
  }
  return objects;
}

/** The waypoint Gateway and the namespace bound to it (istio.io/use-waypoint on the namespace: every service of it goes through the waypoint). */
export function waypointObjects(): KubeObject[] {
  return [
    namespace(CASE_NAMESPACE, { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': WAYPOINT.name }),
    {
      apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway',
      metadata: { name: WAYPOINT.name, namespace: WAYPOINT.namespace },
      spec: { gatewayClassName: WAYPOINT.className, listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
    },
  ];
}

/** Objects as one manifest text for the sandbox's apply (JSON documents are YAML). */
export const manifestOf = (objects: readonly KubeObject[]): string => objects.map((o) => JSON.stringify(o)).join('\n---\n');
