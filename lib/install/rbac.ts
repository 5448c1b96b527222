// meshlet's accounts and RBAC, read from daemonset/rbac.yaml, the one source
// of the rules (test/kube/rbac.test.ts checks them against what each
// component calls): the install ships that file's documents, comments
// included, changed only where the namespace follows --namespace, and with
// the Namespace labelled for the Pod Security level its pods need.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isSeq, parseAllDocuments, type Document } from 'yaml';
import { ConfigError } from '../core/errors.ts';
import { REPO_ROOT } from '../core/repo.ts';
import { isRecord } from '../cluster/objects.ts';
import type { InstallObject, Manifest } from './object.ts';

export const RBAC_FILE = join(REPO_ROOT, 'daemonset', 'rbac.yaml');
/** The namespace rbac.yaml is written for. */
export const RBAC_NAMESPACE = 'meshlet-system';
/** Host network, host PID, host paths and added capabilities: only Pod Security's privileged level admits the DaemonSet. */
export const POD_SECURITY_LABEL = 'pod-security.kubernetes.io/enforce';

/** The documents of rbac.yaml, in its order (empty ones dropped). */
export function readRbacDocuments(file: string = RBAC_FILE): Document[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${file}: ${(err as Error).message}; it ships with meshlet (daemonset/rbac.yaml), so run meshlet from its checkout or its image`);
  }
  return parseAllDocuments(text).flatMap((doc, i) => {
    if (doc.errors.length > 0) throw new ConfigError(`${file}: document ${i + 1} is not valid YAML: ${doc.errors[0]!.message}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return [];
    if (!isInstallObject(value)) throw new ConfigError(`${file}: document ${i + 1} is not a Kubernetes object with apiVersion, kind and metadata.name`);
    return [doc];
  });
}

function isInstallObject(value: unknown): value is InstallObject {
  return isRecord(value) && typeof value.apiVersion === 'string' && typeof value.kind === 'string'
    && isRecord(value.metadata) && typeof value.metadata.name === 'string';
}

/** rbac.yaml's objects with every mention of its namespace (the Namespace itself, metadata.namespace, subjects) moved to `namespace`. */
export function rbacManifests(namespace: string, documents: readonly Document[] = readRbacDocuments()): Manifest[] {
  return documents.map((source) => {
    const doc = source.clone();
    const moveAt = (path: readonly (string | number)[]): void => {
      if (doc.getIn(path) === RBAC_NAMESPACE) doc.setIn(path, namespace);
    };
    const isNamespace = doc.get('kind') === 'Namespace' && doc.get('apiVersion') === 'v1';
    if (isNamespace) {
      moveAt(['metadata', 'name']);
      doc.setIn(['metadata', 'labels', POD_SECURITY_LABEL], 'privileged');
    }
    moveAt(['metadata', 'namespace']);
    const subjects = doc.get('subjects', true);
    if (isSeq(subjects)) subjects.items.forEach((_, i) => moveAt(['subjects', i, 'namespace']));
    const comments = isNamespace ? [{ path: ['metadata', 'labels', POD_SECURITY_LABEL], text: 'The node DaemonSet uses the host network, PID namespace and paths and added capabilities: Pod Security admits it at the privileged level only.' }] : [];
    return { object: doc.toJS() as InstallObject, comments, document: doc };
  });
}
