// Phase two of a policy update: index converted policies by the namespace
// they can apply to and compile their matchers, once per state change, so a
// connection check only walks the policies that can select its workload.
import { compileMatch, type Connection } from './match.ts';
import type { AuthzAction, AuthzPolicy, MtlsSetting, PeerAuthPolicy } from './types.ts';

type Labels = Readonly<Record<string, string>>;

export interface CompiledAuthz {
  key: string;
  action: AuthzAction;
  /** A rejected policy's stand-in: why it was rejected. */
  failClosed?: string;
  selects(labels: Labels): boolean;
  matches(c: Connection): boolean;
}

export interface CompiledPeerAuth {
  key: string;
  mode: MtlsSetting;
  /** A rejected policy's stand-in: why it was rejected. */
  failClosed?: string;
  ports: ReadonlyMap<number, MtlsSetting>;
  selects(labels: Labels): boolean;
}

export interface AuthzSet {
  deny: readonly CompiledAuthz[];
  allow: readonly CompiledAuthz[];
}

export interface PeerAuthSet {
  /** The oldest of each level decides that level. */
  mesh: CompiledPeerAuth | undefined;
  namespace: CompiledPeerAuth | undefined;
  /** Oldest first: the first that selects a workload decides. */
  workloads: readonly CompiledPeerAuth[];
}

const NO_PEER_AUTH: PeerAuthSet = { mesh: undefined, namespace: undefined, workloads: [] };

/** Read-only once built; a state change builds a new one and swaps it in. */
/** PeerAuthentications oldest first (then by key), as Istio breaks ties between equally specific ones. */
function olderFirst(a: PeerAuthPolicy, b: PeerAuthPolicy): number {
  return a.createdAt - b.createdAt || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

export class PolicyStore {
  readonly authorizationPolicies: readonly AuthzPolicy[];
  readonly peerAuthentications: readonly PeerAuthPolicy[];
  #meshAuthz: AuthzSet;
  #authzByNamespace = new Map<string, AuthzSet>();
  #meshPeerAuth: PeerAuthSet;
  #peerAuthByNamespace = new Map<string, PeerAuthSet>();

  constructor(authz: readonly AuthzPolicy[] = [], peerAuth: readonly PeerAuthPolicy[] = []) {
    this.authorizationPolicies = [...authz].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    this.peerAuthentications = [...peerAuth].sort(olderFirst);

    const mesh = this.authorizationPolicies.filter((p) => p.scope.namespace === null).map(compileAuthz);
    this.#meshAuthz = split(mesh);
    for (const [ns, own] of groupBy(this.authorizationPolicies.filter((p) => p.scope.namespace !== null), (p) => p.scope.namespace!)) {
      this.#authzByNamespace.set(ns, split([...mesh, ...own.map(compileAuthz)]));
    }

    const meshPeerAuth = this.peerAuthentications.find((p) => p.level === 'mesh');
    this.#meshPeerAuth = { ...NO_PEER_AUTH, mesh: meshPeerAuth && compilePeerAuth(meshPeerAuth) };
    for (const [ns, own] of groupBy(this.peerAuthentications.filter((p) => p.level !== 'mesh'), (p) => p.namespace)) {
      const nsLevel = own.find((p) => p.level === 'namespace');
      this.#peerAuthByNamespace.set(ns, {
        mesh: this.#meshPeerAuth.mesh,
        namespace: nsLevel && compilePeerAuth(nsLevel),
        workloads: own.filter((p) => p.level === 'workload').map(compilePeerAuth),
      });
    }
  }

  /** Mesh-wide policies plus the namespace's own; each still checks its selector. */
  authzFor(namespace: string): AuthzSet {
    return this.#authzByNamespace.get(namespace) ?? this.#meshAuthz;
  }

  peerAuthFor(namespace: string): PeerAuthSet {
    return this.#peerAuthByNamespace.get(namespace) ?? this.#meshPeerAuth;
  }
}

function compileAuthz(p: AuthzPolicy): CompiledAuthz {
  const rules = p.rules.map((r) => r.clauses.map((clause) => clause.map(compileMatch)));
  // Loops, not every/some with closures: this runs for each connection.
  const matches = (c: Connection): boolean => {
    for (const clauses of rules) if (allClauses(clauses, c)) return true;
    return false;
  };
  return { key: p.key, action: p.action, selects: labelSelector(p.scope.matchLabels), matches, ...(p.failClosed === undefined ? {} : { failClosed: p.failClosed }) };
}

function allClauses(clauses: ((c: Connection) => boolean)[][], c: Connection): boolean {
  for (const clause of clauses) {
    let any = false;
    for (const m of clause) if (m(c)) { any = true; break; }
    if (!any) return false;
  }
  return true;
}

function compilePeerAuth(p: PeerAuthPolicy): CompiledPeerAuth {
  return {
    key: p.key, mode: p.mode, ports: new Map(p.portLevelMtls.map((e) => [e.port, e.mode])), selects: labelSelector(p.matchLabels),
    ...(p.failClosed === undefined ? {} : { failClosed: p.failClosed }),
  };
}

function labelSelector(matchLabels: Labels | null): (labels: Labels) => boolean {
  if (matchLabels === null) return () => true;
  const wanted = Object.entries(matchLabels);
  return (labels) => wanted.every(([k, v]) => labels[k] === v);
}

function split(policies: CompiledAuthz[]): AuthzSet {
  return { deny: policies.filter((p) => p.action === 'DENY'), allow: policies.filter((p) => p.action === 'ALLOW') };
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}
