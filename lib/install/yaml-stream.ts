// Objects as one multi-document YAML stream, as kubectl reads it from stdin,
// with each manifest's comments above the fields they explain. The same
// input prints the same bytes: no timestamps, keys in the order written.
import { Document, isMap, isNode, isScalar, isSeq, type Node } from 'yaml';
import { describeObject, type FieldComment, type Manifest } from './object.ts';

/** The YAML node a comment goes above: a map key (so it sits over `key:`), a list item, or the document. */
function commentTarget(doc: Document, path: FieldComment['path']): { commentBefore?: string | null } | undefined {
  if (path.length === 0) return doc;
  const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true);
  const last = path[path.length - 1];
  if (isMap(parent)) {
    const pair = parent.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === last);
    if (!pair) return undefined;
    // A key set from JavaScript (setIn) is a bare string, which holds no comment.
    if (!isNode(pair.key)) pair.key = doc.createNode(pair.key);
    return pair.key as Node;
  }
  if (isSeq(parent) && typeof last === 'number') {
    const item = parent.items[last];
    return isNode(item) ? item : undefined;
  }
  return undefined;
}

function toDocument(m: Manifest): Document {
  // No anchors: an object used twice (the containers' shared env) is written out twice, as kubectl users read it.
  const doc = m.document ? m.document.clone() : new Document(m.object, { aliasDuplicateObjects: false });
  for (const c of m.comments) {
    const target = commentTarget(doc, c.path);
    // A comment on a field that is not there is the renderer's bug: say which.
    if (!target) throw new Error(`${describeObject(m.object)} has no field ${c.path.join('.')} to comment on`);
    const text = c.text.split('\n').map((line) => ` ${line}`).join('\n');
    target.commentBefore = target.commentBefore ? `${target.commentBefore}\n${text}` : text;
  }
  return doc;
}

/** The stream: `header` (comment lines) first, then every manifest as its own document. */
export function renderStream(manifests: readonly Manifest[], header: readonly string[] = []): string {
  const head = header.map((line) => `# ${line}`.trimEnd()).join('\n');
  // A document read with its own `---` (rbac.yaml's) gets the one every document gets here.
  const docs = manifests.map((m) => toDocument(m).toString({ lineWidth: 0 }).replace(/^---\n/, ''));
  return `${head ? `${head}\n` : ''}${docs.map((d) => `---\n${d}`).join('')}`;
}
