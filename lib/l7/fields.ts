// Readers for the fields of untrusted routing objects (Istio networking and
// Gateway API), on top of lib/policy/fields.ts: API groups, durations in
// both resources' syntaxes, percentages, bounded integers, header names.
// Each names the field it rejects, so the reason points at the line to fix.
import type { KubeObject } from '../cluster/objects.ts';
import { dnsLabelProblem } from '../cluster/names.ts';
import { record, type Fail } from '../policy/fields.ts';

export const NETWORKING_GROUP = 'networking.istio.io';
export const GATEWAY_GROUP = 'gateway.networking.k8s.io';

/** Checks `apiVersion` is `<group>/<one of versions>`. */
export function checkGroupVersion(obj: KubeObject, group: string, versions: readonly string[], fail: Fail): void {
  const v = obj.apiVersion;
  if (typeof v === 'string' && versions.some((ver) => v === `${group}/${ver}`)) return;
  fail(`apiVersion ${JSON.stringify(v)} is not supported; use ${group}/${versions[0]}${versions.length > 1 ? ` (${versions.slice(1).join(', ')} accepted too)` : ''}`);
}

/** Absent and null read the same: not set. */
export const isSet = (v: unknown): boolean => v !== undefined && v !== null;

export function text(v: unknown, field: string, fail: Fail, { empty = false, max = 4096 } = {}): string {
  if (typeof v !== 'string' || (!empty && v === '')) return fail(`${field} must be a ${empty ? '' : 'non-empty '}string, got ${quote(v)}`);
  if (v.length > max) return fail(`${field} is ${v.length} characters long; at most ${max}`);
  if (!v.isWellFormed()) return fail(`${field} holds an unpaired surrogate, which no request can carry`);
  return v;
}

export function optionalText(v: unknown, field: string, fail: Fail, options: { empty?: boolean; max?: number } = {}): string | undefined {
  return isSet(v) ? text(v, field, fail, options) : undefined;
}

export function integer(v: unknown, field: string, min: number, max: number, fail: Fail): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) return fail(`${field} must be an integer from ${min} to ${max}, got ${quote(v)}`);
  return v;
}

export function bool(v: unknown, field: string, fail: Fail): boolean {
  if (typeof v !== 'boolean') return fail(`${field} must be true or false, got ${quote(v)}`);
  return v;
}

export function list(v: unknown, field: string, fail: Fail, max = 1024): unknown[] {
  if (!isSet(v)) return [];
  if (!Array.isArray(v)) return fail(`${field} must be a list`);
  if (v.length > max) return fail(`${field} has ${v.length} entries; meshlet takes at most ${max}`);
  return v;
}

/** Istio's Percent `{value: 0..100}`. */
export function percentOf(v: unknown, field: string, fail: Fail): number {
  const o = record(v, field, fail);
  for (const k of Object.keys(o)) if (k !== 'value') fail(`${field}.${k} is not a field of a percentage; use {value: 0-100}`);
  const value = o.value ?? 0;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 100) return fail(`${field}.value must be a number from 0 to 100, got ${quote(value)}`);
  return value;
}

const GO_DURATION = /^(?:(?:\d+(?:\.\d+)?|\.\d+)(?:h|m|s|ms|us|µs|ns))+$/;
const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, µs: 0.001, ns: 0.000001 };
/** No timeout meshlet holds is longer: beyond it a timer would fire at once (Node's timers are 32-bit). */
const MAX_DURATION_MS = 2_147_483_647;

/**
 * Istio's duration (`1h`, `1m`, `1s`, `1ms`, `1.5s`, `1h30m`), in milliseconds.
 * `min` is Istio's own floor for the field (1ms for most, 0 where 0 disables).
 */
export function istioDuration(v: unknown, field: string, fail: Fail, { min = 1 } = {}): number {
  if (typeof v !== 'string' || !(v === '0' || GO_DURATION.test(v))) {
    return fail(`${field} ${quote(v)} is not a duration; write e.g. "10s", "250ms" or "1m30s"`);
  }
  let ms = 0;
  for (const [, n, unit] of v.matchAll(/(\d*\.?\d+)(h|ms|m|s|us|µs|ns)/g)) ms += Number(n) * UNIT_MS[unit!]!;
  return boundedMs(Math.round(ms), v, field, min, fail);
}

const GATEWAY_DURATION = /^([0-9]{1,5}(h|m|s|ms)){1,4}$/;

/** Gateway API's Duration (GEP-2257): up to four `<1-5 digits><h|m|s|ms>` parts; "0s" disables. */
export function gatewayDuration(v: unknown, field: string, fail: Fail): number {
  if (typeof v !== 'string' || !GATEWAY_DURATION.test(v)) return fail(`${field} ${quote(v)} is not a Gateway API duration; write e.g. "10s", "500ms" or "1m30s"`);
  let ms = 0;
  for (const [, n, unit] of v.matchAll(/(\d+)(h|ms|m|s)/g)) ms += Number(n) * UNIT_MS[unit!]!;
  return boundedMs(ms, v, field, 0, fail);
}

function boundedMs(ms: number, v: string, field: string, min: number, fail: Fail): number {
  if (ms > MAX_DURATION_MS) return fail(`${field} ${quote(v)} is longer than meshlet can time (about 24 days)`);
  if (ms < min) return fail(`${field} ${quote(v)} is shorter than ${min}ms, the least this field takes`);
  return ms;
}

/** RFC 9110 token: what an HTTP header name is made of. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** A header name, lower-cased: HTTP names are case-insensitive and the request view holds them lower-case. */
export function headerName(v: unknown, field: string, fail: Fail): string {
  const name = text(v, field, fail, { max: 256 });
  if (!TOKEN.test(name)) return fail(`${field} ${quote(name)} is not an HTTP header name (letters, digits and !#$%&'*+-.^_\`|~ only)`);
  return name.toLowerCase();
}

/** A value a header can carry: no control characters but tab (Istio's and Envoy's rule). */
export function headerValue(v: unknown, field: string, fail: Fail): string {
  const value = text(v, field, fail, { empty: true });
  if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(value)) return fail(`${field} holds a control character, which no header can carry`);
  return value;
}

export const quote = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v.slice(0, 80)) : (JSON.stringify(v) ?? String(v)).slice(0, 80));

/** Istio's exportTo: the namespaces an object is visible to; null for all ("*", or unset). "." is its own, "~" none. */
export function exportToOf(v: unknown, namespace: string, fail: Fail): string[] | null {
  const entries = list(v, 'spec.exportTo', fail, 64).map((e, i) => text(e, `spec.exportTo[${i}]`, fail));
  if (entries.length === 0 || entries.includes('*')) return null;
  return [...new Set(entries.flatMap((e, i) => {
    if (e === '.') return [namespace];
    if (e === '~') return [];
    const problem = dnsLabelProblem(e, `spec.exportTo[${i}]`);
    if (problem) fail(`${problem}; use ".", "*", "~" or a namespace`);
    return [e];
  }))];
}
