// The mesh CA as the cluster runs it: a Deployment of `meshlet ca` with the
// waypoint controller on, its Service (what the ztunnels and the waypoints
// dial, on 15012), and the kubeconfig the CA and the agents read the API with.
import { CA_FLAGS } from '../config/ca.ts';
import { configArgs } from '../config/flags.ts';
import {
  AGENT_ACCOUNT, CA_ACCOUNT, CA_CONTAINER, CA_NAME, CA_PORT, CA_STATE_DIR, CA_TOKEN_AUDIENCE, CLUSTER_DOMAIN, KUBECONFIG_CONFIGMAP,
  KUBECONFIG_DIR, KUBECONFIG_KEY, PART_OF, ROOT_SECRET_NAME, SERVICE_ACCOUNT_DIR,
} from './names.ts';
import type { Manifest } from './object.ts';
import type { InstallOptions } from './options.ts';

export const CA_LABELS = { 'app.kubernetes.io/name': CA_NAME, 'app.kubernetes.io/component': 'ca', ...PART_OF } as const;

/** The CA's Service in `namespace`, as pods resolve it through the cluster DNS search path. */
export const caHost = (namespace: string): string => `${CA_NAME}.${namespace}.svc`;
export const caUrl = (namespace: string): string => `https://${caHost(namespace)}:${CA_PORT}`;
/** The ServiceAccount user whose pod-bound tokens speak for a node (the DaemonSet pod's). */
export const nodeAccountUser = (namespace: string): string => `system:serviceaccount:${namespace}:${AGENT_ACCOUNT}`;

/**
 * The kubeconfig of the agents and the CA: the API server at --api-server,
 * trusted and authenticated with the pod's ServiceAccount credentials where
 * the kubelet mounts them. The tokenFile auth provider (client-node's, which
 * meshlet uses) re-reads the token every minute, so the kubelet's rotation
 * applies without a restart.
 */
export function kubeconfigText(apiServer: string): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '  - name: in-cluster',
    '    cluster:',
    `      server: ${apiServer}`,
    `      certificate-authority: ${SERVICE_ACCOUNT_DIR}/ca.crt`,
    'users:',
    '  - name: service-account',
    '    user:',
    '      auth-provider:',
    '        name: tokenFile',
    '        config:',
    `          tokenFile: ${SERVICE_ACCOUNT_DIR}/token`,
    'contexts:',
    '  - name: in-cluster',
    '    context:',
    '      cluster: in-cluster',
    '      user: service-account',
    'current-context: in-cluster',
    '',
  ].join('\n');
}

export function kubeconfigMap(o: InstallOptions): Manifest {
  return {
    object: {
      apiVersion: 'v1', kind: 'ConfigMap',
      metadata: { name: KUBECONFIG_CONFIGMAP, namespace: o.namespace, labels: { ...PART_OF } },
      data: { [KUBECONFIG_KEY]: kubeconfigText(o.apiServer) },
    },
    comments: [{ path: [], text: 'The agents\' and the CA\'s --kubeconfig (required by both): in-cluster credentials, at the API server --api-server names.' }],
  };
}

/** `meshlet ca`'s arguments: its flag table (lib/config/ca.ts), as the sandbox's supervisor renders them. */
export function caArgs(o: InstallOptions): string[] {
  const host = caHost(o.namespace);
  return configArgs(CA_FLAGS, {
    stateDir: CA_STATE_DIR,
    kubeconfig: `${KUBECONFIG_DIR}/${KUBECONFIG_KEY}`,
    rootSecret: `${o.namespace}/${ROOT_SECRET_NAME}`,
    tokenAudience: CA_TOKEN_AUDIENCE,
    nodeAccount: [nodeAccountUser(o.namespace)],
    trustDomain: o.trustDomain,
    defaultTtl: o.certTtl,
    // Every name a pod may dial the Service by; its own addresses the CA adds itself.
    serverName: [CA_NAME, `${CA_NAME}.${o.namespace}`, host, `${host}.${CLUSTER_DOMAIN}`],
    waypointController: true,
    waypointImage: o.image,
    waypointCaUrl: caUrl(o.namespace),
  });
}

export function caService(o: InstallOptions): Manifest {
  return {
    object: {
      apiVersion: 'v1', kind: 'Service',
      metadata: { name: CA_NAME, namespace: o.namespace, labels: { ...CA_LABELS } },
      spec: {
        type: 'ClusterIP',
        selector: { 'app.kubernetes.io/name': CA_NAME },
        ports: [{ name: 'https', port: CA_PORT, targetPort: 'https', protocol: 'TCP', appProtocol: 'https' }],
      },
    },
    comments: [],
  };
}

export function caDeployment(o: InstallOptions): Manifest {
  const object = {
    apiVersion: 'apps/v1', kind: 'Deployment',
    metadata: { name: CA_NAME, namespace: o.namespace, labels: { ...CA_LABELS } },
    spec: {
      replicas: 1,
      strategy: { type: 'Recreate' },
      selector: { matchLabels: { 'app.kubernetes.io/name': CA_NAME } },
      template: {
        metadata: { labels: { ...CA_LABELS, 'istio.io/dataplane-mode': 'none', 'sidecar.istio.io/inject': 'false' } },
        spec: {
          serviceAccountName: CA_ACCOUNT,
          priorityClassName: 'system-cluster-critical',
          nodeSelector: { 'kubernetes.io/os': 'linux' },
          securityContext: { runAsNonRoot: true, runAsUser: 1337, runAsGroup: 1337, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [{
            name: CA_CONTAINER,
            image: o.image,
            command: ['meshlet', 'ca'],
            args: caArgs(o),
            ports: [{ name: 'https', containerPort: CA_PORT, protocol: 'TCP' }],
            // Listening means the root is loaded (from its Secret, or made and stored there).
            readinessProbe: { httpGet: { path: '/v1/bundle', port: 'https', scheme: 'HTTPS' }, periodSeconds: 5, timeoutSeconds: 1, failureThreshold: 3 },
            resources: { requests: { cpu: '50m', memory: '128Mi' } },
            securityContext: { privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
            volumeMounts: [
              { name: 'kubeconfig', mountPath: KUBECONFIG_DIR, readOnly: true },
              { name: 'state', mountPath: CA_STATE_DIR },
            ],
          }],
          volumes: [
            { name: 'kubeconfig', configMap: { name: KUBECONFIG_CONFIGMAP } },
            { name: 'state', emptyDir: { sizeLimit: '1Mi' } },
          ],
        },
      },
    },
  };
  return {
    object,
    comments: [
      { path: ['spec', 'strategy'], text: 'One CA at a time: the waypoint controller it runs elects no leader, so two would both reconcile.' },
      { path: ['spec', 'template', 'spec', 'containers', 0, 'args'], text: 'The root stays in the Secret --root-secret names; losing it (deleting the namespace) makes every workload certificate untrusted.' },
    ],
  };
}
