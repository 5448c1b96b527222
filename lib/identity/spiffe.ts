// SPIFFE identities of workloads: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>,
// validated by the SPIFFE-ID spec's character rules plus meshlet's ns/sa path shape.
import type { Workload } from '../mesh/model.ts';
import { InvalidSpiffeIdError } from './errors.ts';

export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

export interface SpiffeId {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

const SCHEME = 'spiffe://';
// SPIFFE-ID spec: a trust domain is lowercase letters, digits, '.', '-', '_';
// a path segment adds uppercase letters. Both exclude '%', so no percent-encoding.
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
const MAX_TRUST_DOMAIN = 255;
const MAX_URI = 2048;

/** Why `trustDomain` is not a valid SPIFFE trust domain name, or undefined if it is. */
export function trustDomainProblem(trustDomain: string): string | undefined {
  if (trustDomain === '') return 'the trust domain is empty';
  if (trustDomain.length > MAX_TRUST_DOMAIN) return `the trust domain is longer than ${MAX_TRUST_DOMAIN} characters`;
  if (!TRUST_DOMAIN.test(trustDomain)) return 'the trust domain may hold only lowercase letters, digits, ".", "-" and "_"';
  return undefined;
}

function segmentProblem(what: string, value: string): string | undefined {
  if (value === '') return `the ${what} is empty`;
  if (value === '.' || value === '..') return `the ${what} may not be "." or ".."`;
  if (!SEGMENT.test(value)) return `the ${what} ${JSON.stringify(value)} may hold only letters, digits, ".", "-" and "_"`;
  return undefined;
}

/** Builds a validated identity. */
export function spiffeId(namespace: string, serviceAccount: string, trustDomain: string = DEFAULT_TRUST_DOMAIN): SpiffeId {
  const id = { trustDomain, namespace, serviceAccount };
  const problem = trustDomainProblem(trustDomain) ?? segmentProblem('namespace', namespace) ?? segmentProblem('service account', serviceAccount);
  if (problem) throw new InvalidSpiffeIdError(`${SCHEME}${trustDomain}/ns/${namespace}/sa/${serviceAccount}`, problem);
  return id;
}

/** The identity a workload's certificate carries. */
export function workloadIdentity(workload: Pick<Workload, 'namespace' | 'serviceAccount'>, trustDomain: string = DEFAULT_TRUST_DOMAIN): SpiffeId {
  return spiffeId(workload.namespace, workload.serviceAccount, trustDomain);
}

export function formatSpiffeId(id: SpiffeId): string {
  return `${SCHEME}${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** Parses `spiffe://<td>/ns/<ns>/sa/<sa>`; throws InvalidSpiffeIdError saying what is wrong. */
export function parseSpiffeId(uri: string): SpiffeId {
  if (uri.length > MAX_URI) throw new InvalidSpiffeIdError(uri.slice(0, 64), `longer than ${MAX_URI} bytes`);
  if (!uri.startsWith(SCHEME)) throw new InvalidSpiffeIdError(uri, 'the scheme must be "spiffe://"');
  return parsePath(uri, uri.slice(SCHEME.length));
}

/** Istio's principal form: the SPIFFE ID without its scheme (`cluster.local/ns/x/sa/y`). */
export function formatPrincipal(id: SpiffeId): string {
  return formatSpiffeId(id).slice(SCHEME.length);
}

export function parsePrincipal(principal: string): SpiffeId {
  if (principal.startsWith(SCHEME)) throw new InvalidSpiffeIdError(principal, 'a principal has no "spiffe://" scheme');
  return parsePath(principal, principal);
}

function parsePath(input: string, rest: string): SpiffeId {
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const tdProblem = trustDomainProblem(trustDomain);
  if (tdProblem) throw new InvalidSpiffeIdError(input, tdProblem);
  if (slash === -1) throw new InvalidSpiffeIdError(input, 'it names only a trust domain, a workload identity needs a path');
  const segments = rest.slice(slash + 1).split('/');
  if (segments.length !== 4 || segments[0] !== 'ns' || segments[2] !== 'sa') {
    throw new InvalidSpiffeIdError(input, 'the path must be exactly /ns/<namespace>/sa/<service-account>');
  }
  const [, namespace, , serviceAccount] = segments as [string, string, string, string];
  const problem = segmentProblem('namespace', namespace) ?? segmentProblem('service account', serviceAccount);
  if (problem) throw new InvalidSpiffeIdError(input, problem);
  return { trustDomain, namespace, serviceAccount };
}

export function sameIdentity(a: SpiffeId, b: SpiffeId): boolean {
  return a.trustDomain === b.trustDomain && a.namespace === b.namespace && a.serviceAccount === b.serviceAccount;
}
