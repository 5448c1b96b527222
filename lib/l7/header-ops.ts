// Header operations on a request's or a response's headers, pure: the input
// is never changed (a new map holds the result). Envoy's order within one
// set of operations: remove, then set (overwrite, or add when absent), then
// add (append). Sets are applied most specific first (destination, then
// rule), so on a name both set, the rule's value wins, as with Envoy's
// default most_specific_header_mutations_wins=false.
import type { HeaderOps } from './types.ts';

/** Lower-case names; a repeated header is a list (how Node's http module writes one). */
export type HeaderMap = Record<string, string | string[]>;

/** `headers` itself when there is nothing to apply (most routes): the callers hand over a map of their own. */
export function applyHeaderOps(headers: HeaderMap, ops: readonly HeaderOps[]): HeaderMap {
  if (ops.every(isEmpty)) return headers;
  const out: HeaderMap = { ...headers };
  for (const op of ops) {
    for (const name of op.remove) delete out[name];
    for (const { name, value } of op.set) put(out, name, value);
    for (const { name, value } of op.add) {
      const current = Object.hasOwn(out, name) ? out[name] : undefined;
      put(out, name, current === undefined ? value : [...(Array.isArray(current) ? current : [current]), value]);
    }
  }
  return out;
}

const isEmpty = (op: HeaderOps): boolean => op.remove.length === 0 && op.set.length === 0 && op.add.length === 0;

/** As an own property: a header named `__proto__` must not reach the object's prototype. */
function put(map: HeaderMap, name: string, value: string | string[]): void {
  Object.defineProperty(map, name, { value, enumerable: true, writable: true, configurable: true });
}
