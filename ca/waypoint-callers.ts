// Which callers that are not node accounts the CA signs for: waypoint pods,
// each for its own identity only (the server checks the CSR against it).
//
// Why this rule, and why it is safe. istiod signs any workload's own
// ServiceAccount identity for a token of that account: whoever can run a pod
// under an account gets its key. meshlet keeps workload keys on the nodes
// (each ztunnel holds its node's pods' identities) and lets a key leave a
// node only for a waypoint, which terminates mTLS itself. A token of any
// other account gets a certificate only when all of these hold, checked
// cheapest first:
//   1. it is bound to a pod (pod-name and pod-uid in the review's extra): a
//      Secret's token or an unbound TokenRequest is never enough, and the
//      API server binds a token only to a pod that runs under its account;
//   2. that pod exists as that UID and runs under the token's account
//      (from the watch, or the API server);
//   3. it carries the controller's labels: gateway-name = its account (the
//      controller names a waypoint's ServiceAccount after its Gateway) and
//      the managed label with the controller's value;
//   4. it is not terminating or finished;
//   5. a Gateway of a waypoint class by that name exists in the pod's
//      namespace and is not being deleted (one list call).
// The labels are a filter, not a boundary: anyone who may create pods in a
// namespace can set them. The boundary is step 5: creating a Gateway is a
// grant of its own, so one who may only create pods gets no key for any
// identity, and a key for ns/X leaves a node only once someone allowed to
// create Gateways in ns has declared a waypoint named X. What remains, that
// one who may create both pods and Gateways in ns can hold any identity of
// ns by naming a Gateway after its account, is no more than Kubernetes
// already gives them (a pod of theirs may run as any account of ns, and the
// node's ztunnel then speaks for it with that identity), and never reaches
// another namespace: the identity is always the token's own.
import type { KubeConfig } from '@kubernetes/client-node';
import { isRecord } from '../lib/cluster/objects.ts';
import { describeError, listCollection } from '../lib/cluster/sources/kube-client.ts';
import { KubeApiError } from '../lib/core/errors.ts';
import { refusal, type Refusal, type WaypointCaller } from './caller.ts';
import type { PodLookup, PodPlacement } from './caller-pods.ts';
import { classNameOf, WAYPOINT_CLASSES } from './waypoint-gateway.ts';
import { GATEWAY_NAME_LABEL, MANAGED_LABEL, MANAGED_VALUE } from './waypoint-objects.ts';

/** A waypoint Gateway as the caller check needs it. */
export interface GatewayPresence {
  className: string;
  /** metadata.deletionTimestamp is set. */
  deleting: boolean;
}

export interface GatewayLookup {
  /** The Gateway `namespace/name` as it is now, or undefined when there is none (or the Gateway API is not installed). */
  find(namespace: string, name: string): Promise<GatewayPresence | undefined>;
}

/** Asks the API server each time (a waypoint asks for a certificate a few times a day). A list by name: the CA's ClusterRole grants list and watch on gateways, and no get. */
export class ApiGatewayLookup implements GatewayLookup {
  readonly #kc: KubeConfig;
  readonly #timeoutMs: number;

  constructor(kc: KubeConfig, timeoutMs = 10_000) {
    this.#kc = kc;
    this.#timeoutMs = timeoutMs;
  }

  async find(namespace: string, name: string): Promise<GatewayPresence | undefined> {
    let items;
    try {
      ({ items } = await listCollection(this.#kc, `/apis/gateway.networking.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/gateways`, {
        fieldSelector: `metadata.name=${name}`, maxObjects: 1, signal: AbortSignal.timeout(this.#timeoutMs),
      }));
    } catch (err) {
      // No Gateway API, no Gateways.
      if (err instanceof KubeApiError && err.statusCode === 404) return undefined;
      throw err;
    }
    const gw = items[0];
    if (gw === undefined) return undefined;
    const meta = isRecord(gw.metadata) ? gw.metadata : {};
    return { className: classNameOf(gw) ?? '', deleting: meta.deletionTimestamp !== undefined && meta.deletionTimestamp !== null };
  }
}

/** The token as the review found it: a ServiceAccount's, bound to a pod. */
export interface BoundToken {
  namespace: string;
  serviceAccount: string;
  podName: string;
  podUid: string;
}

/** Why the token is no waypoint's (the authenticator refuses it as no node account's either). */
export interface NotAWaypoint {
  notWaypoint: string;
}

export const isNotAWaypoint = (answer: WaypointCaller | Refusal | NotAWaypoint): answer is NotAWaypoint => 'notWaypoint' in answer;

export class WaypointCallers {
  readonly #pods: PodLookup;
  readonly #gateways: GatewayLookup;

  constructor(pods: PodLookup, gateways: GatewayLookup) {
    this.#pods = pods;
    this.#gateways = gateways;
  }

  /** Steps 2-5 of the rule above (step 1 is the caller's: a token bound to no pod never gets here). */
  async authenticate(t: BoundToken): Promise<WaypointCaller | Refusal | NotAWaypoint> {
    const pod = `${t.namespace}/${t.podName}`;
    let found: PodPlacement | undefined;
    try {
      found = await this.#pods.find(t.namespace, t.podName, t.podUid);
    } catch (err) {
      return refusal('review-unavailable', `the CA could not read pod ${pod} from the API server (${describeError(err)}); check the CA's connection to the API server and that its ServiceAccount may list pods (ClusterRole meshlet-ca)`);
    }
    const gone = (why: string) => refusal('pod-not-on-node', `the token is bound to pod ${pod}, but ${why}; a waypoint gets certificates only while its own pod runs`);
    if (found === undefined) return gone('that pod no longer exists');
    if (found.uid !== t.podUid) return gone(`that pod was recreated (uid ${found.uid}, the token's is ${t.podUid}): the waypoint must read its new pod's token`);
    if (found.serviceAccount !== t.serviceAccount) return { notWaypoint: `its pod ${pod} runs as ServiceAccount ${found.serviceAccount}, not as the token's` };
    const labels = found.labels ?? {};
    if (labels[GATEWAY_NAME_LABEL] !== t.serviceAccount || labels[MANAGED_LABEL] !== MANAGED_VALUE) {
      return { notWaypoint: `its pod ${pod} is not a waypoint's: it lacks the labels ${GATEWAY_NAME_LABEL}=${t.serviceAccount} and ${MANAGED_LABEL}=${MANAGED_VALUE}, which the waypoint controller puts on the pods of the Deployment it makes for a Gateway` };
    }
    if (found.terminated !== undefined) return gone(`that pod is ${found.terminated}`);
    let gateway: GatewayPresence | undefined;
    try {
      gateway = await this.#gateways.find(t.namespace, t.serviceAccount);
    } catch (err) {
      return refusal('review-unavailable', `the CA could not read Gateway ${t.namespace}/${t.serviceAccount} from the API server (${describeError(err)}); check the CA's connection to the API server and that its ServiceAccount may list gateways (ClusterRole meshlet-ca)`);
    }
    const gw = `${t.namespace}/${t.serviceAccount}`;
    const classes = WAYPOINT_CLASSES.join(' or ');
    const missing = gateway === undefined ? `there is no Gateway ${gw} of class ${classes}`
      : !WAYPOINT_CLASSES.includes(gateway.className) ? `Gateway ${gw} has class ${JSON.stringify(gateway.className)}, not ${classes}`
        : gateway.deleting ? `Gateway ${gw} is being deleted` : undefined;
    if (missing !== undefined) {
      return { notWaypoint: `its pod ${pod} carries the waypoint labels, but ${missing}; a waypoint gets certificates only while its Gateway exists, and labelling a pod by hand does not make it one` };
    }
    return { waypoint: { namespace: t.namespace, serviceAccount: t.serviceAccount, pod: t.podName } };
  }
}
