// Raw cluster objects as they arrive from the API server: untrusted until
// convert.ts has checked them.

export interface KubeObject {
  apiVersion?: unknown;
  kind?: unknown;
  metadata?: unknown;
  spec?: unknown;
  status?: unknown;
  [field: string]: unknown;
}

/** "Kind namespace/name" (or "Kind name"), the way operators refer to an object. */
export function objectRef(obj: KubeObject): string {
  const meta = isRecord(obj.metadata) ? obj.metadata : {};
  const kind = typeof obj.kind === 'string' ? obj.kind : '<no kind>';
  const name = typeof meta.name === 'string' ? meta.name : '<no name>';
  return typeof meta.namespace === 'string' ? `${kind} ${meta.namespace}/${name}` : `${kind} ${name}`;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
