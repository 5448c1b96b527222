// Manifests as users write them: multi-document YAML (or a List) of ordinary
// Kubernetes objects, parsed whole before anything reaches the API server.
import type { KubernetesObject } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { ConfigError } from '../lib/core/errors.ts';

/** An object from a manifest: typed metadata, everything else kept as written. */
export interface ManifestObject extends KubernetesObject {
  spec?: unknown;
  status?: unknown;
  [field: string]: unknown;
}

/** API group of an apiVersion ("" for the core group): kinds like Gateway exist in several groups. */
export const groupOf = (apiVersion: string | undefined): string => (apiVersion?.includes('/') ? apiVersion.split('/')[0]! : '');

/** kubectl's way of naming an object: "pod/web" or "authorizationpolicy.security.istio.io/deny". */
export function objectRef(o: ManifestObject): string {
  const group = groupOf(o.apiVersion);
  const kind = (o.kind ?? 'object').toLowerCase();
  return `${group ? `${kind}.${group}` : kind}/${o.metadata?.name ?? '<no name>'}`;
}

/** Parses a manifest; a syntax error or a non-mapping document fails the whole file, as with kubectl. */
export function parseManifest(text: string, source = 'manifest'): ManifestObject[] {
  const objects: ManifestObject[] = [];
  parseAllDocuments(text).forEach((doc, i) => {
    if (doc.errors.length > 0) throw new ConfigError(`${source}: document ${i + 1} is not valid YAML: ${doc.errors[0]!.message}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return;
    if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`${source}: document ${i + 1} is not a YAML mapping (a Kubernetes object)`);
    const obj = value as ManifestObject;
    // A List (kubectl get -o yaml) holds objects under items.
    if (typeof obj.kind === 'string' && obj.kind.endsWith('List') && Array.isArray(obj.items)) {
      for (const item of obj.items as unknown[]) if (typeof item === 'object' && item !== null && !Array.isArray(item)) objects.push(item as ManifestObject);
    } else {
      objects.push(obj);
    }
  });
  return objects;
}
