// Readers for the fields of untrusted policy objects. Each names the field
// it rejects, so the operator's reason points at the line to fix.
import { isRecord, type KubeObject } from '../cluster/objects.ts';
import { objectNameProblem } from '../cluster/names.ts';

export type Fail = (reason: string) => never;

export const SECURITY_GROUP = 'security.istio.io';
const VERSIONS = ['v1', 'v1beta1'];

export function checkApiVersion(obj: KubeObject, fail: Fail): void {
  const v = obj.apiVersion;
  if (typeof v === 'string' && VERSIONS.some((ver) => v === `${SECURITY_GROUP}/${ver}`)) return;
  fail(`apiVersion ${JSON.stringify(v)} is not supported; use ${SECURITY_GROUP}/v1 (v1beta1 is accepted too)`);
}

export interface ObjectMeta {
  name: string;
  namespace: string;
  createdAt: number;
}

export function metaOf(obj: KubeObject, fail: Fail): ObjectMeta {
  const m = isRecord(obj.metadata) ? obj.metadata : fail('metadata is missing');
  if (typeof m.name !== 'string' || m.name === '') fail('metadata.name is missing');
  const ns = m.namespace ?? 'default';
  if (typeof ns !== 'string' || ns === '') fail('metadata.namespace must be a non-empty string');
  // The ztunnel's rule for the names its policy keys are made of (mesh/validate-policy.ts).
  const problem = objectNameProblem(m.name, 'metadata.name') ?? objectNameProblem(ns, 'metadata.namespace');
  if (problem) fail(problem);
  let createdAt = 0;
  if (m.creationTimestamp !== undefined && m.creationTimestamp !== null) {
    const t = m.creationTimestamp instanceof Date ? m.creationTimestamp.getTime() : Date.parse(String(m.creationTimestamp));
    if (Number.isNaN(t)) fail(`metadata.creationTimestamp ${JSON.stringify(m.creationTimestamp)} is not an RFC 3339 time`);
    createdAt = t;
  }
  return { name: m.name as string, namespace: ns as string, createdAt };
}

/** A missing spec is an empty one (for AuthorizationPolicy: allow nothing). */
export function specOf(obj: KubeObject, fail: Fail): Record<string, unknown> {
  if (obj.spec === undefined || obj.spec === null) return {};
  return isRecord(obj.spec) ? obj.spec : fail('spec must be an object');
}

export function record(value: unknown, field: string, fail: Fail): Record<string, unknown> {
  return isRecord(value) ? value : fail(`${field} must be an object`);
}

/** Unknown keys are rejected, not ignored: a misspelt field silently dropped would widen or narrow a policy. */
export function onlyKeys(obj: Record<string, unknown>, known: readonly string[], field: string, fail: Fail): void {
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) fail(`${field}.${key} is not a field meshlet knows; expected one of ${known.join(', ')}`);
  }
}

/** Absent or null: undefined. Otherwise a list of non-empty strings (numbers are taken as their text, for ports). */
export function stringList(value: unknown, field: string, fail: Fail): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) return fail(`${field} must be a list`);
  return value.map((v: unknown, i: number) => {
    if (typeof v === 'number') return String(v);
    if (typeof v !== 'string' || v === '') return fail(`${field}[${i}] must be a non-empty string, got ${JSON.stringify(v)}`);
    return v;
  });
}

/** `selector.matchLabels`; an absent or empty selector selects every workload (null). */
export function selectorOf(value: unknown, field: string, fail: Fail): Record<string, string> | null {
  if (value === undefined || value === null) return null;
  const selector = record(value, field, fail);
  onlyKeys(selector, ['matchLabels'], field, fail);
  const labels = selector.matchLabels;
  if (labels === undefined || labels === null) return null;
  const map = record(labels, `${field}.matchLabels`, fail);
  for (const [k, v] of Object.entries(map)) {
    if (k === '') fail(`${field}.matchLabels has an empty key`);
    if (typeof v !== 'string') fail(`${field}.matchLabels["${k}"] must be a string, got ${JSON.stringify(v)}`);
    if (k.includes('*') || v.includes('*')) fail(`${field}.matchLabels["${k}"] uses *, but selectors match labels exactly`);
  }
  return Object.keys(map).length === 0 ? null : (map as Record<string, string>);
}

const PORT_TEXT = /^\d{1,5}$/;

export function parsePort(value: unknown): number | null {
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string' || !PORT_TEXT.test(text)) return null;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : null;
}
