// One object of the install stream, and the comments it is printed with: the
// reasons a platform engineer reviewing `meshlet install` output looks for
// (why a capability, why a host path), attached to the field they explain.
import type { Document } from 'yaml';

export interface InstallObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string>; [field: string]: unknown };
  [field: string]: unknown;
}

/** A comment above the field at `path` (keys and list indexes from the object's root); [] is the object itself. */
export interface FieldComment {
  path: readonly (string | number)[];
  text: string;
}

export interface Manifest {
  object: InstallObject;
  comments: readonly FieldComment[];
  /** The YAML it was read from, printed with its own comments (rbac.yaml's); absent: printed from `object`. */
  document?: Document;
}

/** "DaemonSet meshlet-system/meshlet-node" (or "ClusterRole meshlet-agent"). */
export function describeObject(o: Pick<InstallObject, 'kind' | 'metadata'>): string {
  return o.metadata.namespace === undefined ? `${o.kind} ${o.metadata.name}` : `${o.kind} ${o.metadata.namespace}/${o.metadata.name}`;
}
