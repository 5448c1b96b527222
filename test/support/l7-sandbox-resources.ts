// A routing case's resources in the sandbox, applied as a user applies them
// and removed after, with the one wait that makes a replay trustworthy: until
// the waypoint holds exactly those objects. Each case's objects are created
// anew (the previous case's are gone first), so the waypoint's informers
// counting them all means it has seen every one of them.
import assert from 'node:assert/strict';
import type { KubeObject } from '../../lib/cluster/objects.ts';
import { sandboxApply, sandboxDelete, sandboxKubectl, type ObjectResult } from '../../sandbox/api.ts';
import { eventually } from './eventually.ts';
import { CASE_NAMESPACE } from './l7-cases.ts';
import type { SandboxL7Client } from './l7-sandbox-client.ts';
import { manifestOf } from './l7-workloads.ts';

/** The kinds a case's resources are, as the waypoint's informers name them (after their group/version). */
const L7_KINDS = ['VirtualService', 'DestinationRule', 'HTTPRoute', 'GRPCRoute', 'AuthorizationPolicy'] as const;

const kindOf = (o: KubeObject): string => String(o.kind);
const stampOf = (o: KubeObject): string => String((o.metadata as Record<string, unknown> | undefined)?.creationTimestamp ?? '');
const refOf = (o: KubeObject): { kind: string; namespace: string; name: string } => {
  const meta = o.metadata as { name: string; namespace?: string };
  return { kind: kindOf(o), namespace: meta.namespace ?? CASE_NAMESPACE, name: meta.name };
};

/** The object without what the API server sets itself (a case's creationTimestamp is honoured by the order of applying). */
function applicable(o: KubeObject): KubeObject {
  const { creationTimestamp: _, ...metadata } = (o.metadata ?? {}) as Record<string, unknown>;
  return { ...o, metadata };
}

const isRefused = (o: KubeObject, refused: readonly ObjectResult[]): boolean => {
  const { kind, namespace, name } = refOf(o);
  return refused.some((r) => r.kind === kind && (r.namespace ?? CASE_NAMESPACE) === namespace && r.name === name);
};

export class CaseResources {
  readonly #sandbox: string;
  readonly #client: SandboxL7Client;
  /** Per L7 kind, what the waypoint holds with no case applied. */
  #baseline: Record<string, number> = {};

  constructor(sandbox: string, client: SandboxL7Client) {
    this.#sandbox = sandbox;
    this.#client = client;
  }

  /** What the waypoint holds now is what it holds between cases. */
  async recordBaseline(): Promise<void> {
    this.#baseline = await this.#counts();
  }

  /**
   * `resources` in place for `body`, removed after (on failure too). Objects
   * the API server refuses (its schemas and validation rules) go to `body`
   * when it takes them (`takesRefusals`); otherwise a refusal fails.
   */
  async with(resources: readonly KubeObject[], what: string, body: (refused: ObjectResult[]) => Promise<void>, takesRefusals = false): Promise<void> {
    try {
      const refused = (await this.#apply(resources)).filter((r) => r.action === 'refused');
      if (!takesRefusals) assert.deepEqual(refused.map((r) => `${r.ref}: ${r.reason}`), [], 'the API server admits every resource');
      await this.#holds(resources.filter((o) => !isRefused(o, refused)), what);
      await body(refused);
    } finally {
      if (resources.length > 0) await sandboxDelete(this.#sandbox, manifestOf(resources.map(applicable)));
      await this.#holds([], 'no case resources');
    }
  }

  async #kubectl(args: readonly string[]): Promise<string> {
    const r = await sandboxKubectl(this.#sandbox, args);
    assert.equal(r.exitCode, 0, `kubectl ${args.join(' ')} failed (${r.exitCode}): ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** What the waypoint's informers hold of each L7 kind. */
  async #counts(): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (const i of (await this.#client.waypointConfig()).source.informers ?? []) {
      const kind = i.kind.split(' ').pop()!;
      if ((L7_KINDS as readonly string[]).includes(kind)) counts[kind] = (counts[kind] ?? 0) + i.objects;
    }
    return counts;
  }

  /** Until the waypoint holds exactly `resources` of the L7 kinds beside the baseline, in two reads in a row (its config is built a breath after its informers count). */
  async #holds(resources: readonly KubeObject[], what: string): Promise<void> {
    const want = { ...this.#baseline };
    for (const r of resources) want[kindOf(r)] = (want[kindOf(r)] ?? 0) + 1;
    let before = false;
    await eventually(`the waypoint to hold ${what}`, async () => {
      const got = await this.#counts();
      const same = L7_KINDS.every((k) => (got[k] ?? 0) === (want[k] ?? 0));
      if (!same) {
        before = false;
        throw new Error(`it holds ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
      }
      const twice = before;
      before = true;
      return twice;
    }, 30_000);
  }

  #creationTimestamps(objects: readonly KubeObject[]): Promise<string[]> {
    return Promise.all(objects.map((o) => {
      const { kind, namespace, name } = refOf(o);
      return this.#kubectl(['get', `${kind.toLowerCase()}/${name}`, '-n', namespace, '-o', 'jsonpath={.metadata.creationTimestamp}']);
    }));
  }

  /**
   * Applies a group the case dates alike; where it dates them (a tie of
   * age), until the API server has stamped them alike too: it stamps whole
   * seconds, and a group's applies may straddle one.
   */
  async #applyGroup(group: readonly KubeObject[], dated: boolean): Promise<ObjectResult[]> {
    const manifest = manifestOf(group.map(applicable));
    for (let attempt = 0; ; attempt++) {
      const results = await sandboxApply(this.#sandbox, manifest, { strict: false });
      if (!dated || group.length < 2 || new Set(await this.#creationTimestamps(group)).size === 1 || attempt >= 3) return results;
      await sandboxDelete(this.#sandbox, manifest);
    }
  }

  /** All at once, or oldest first a second apart where the case dates its objects differently. */
  async #apply(resources: readonly KubeObject[]): Promise<ObjectResult[]> {
    const stamps = [...new Set(resources.map(stampOf))].sort();
    const results: ObjectResult[] = [];
    for (const [i, stamp] of stamps.entries()) {
      if (i > 0) {
        const [previous] = await this.#creationTimestamps(resources.filter((o) => stampOf(o) === stamps[i - 1]).slice(0, 1));
        await eventually('the next whole second', () => new Date().toISOString().slice(0, 19) > previous!.slice(0, 19), 5_000);
      }
      results.push(...await this.#applyGroup(resources.filter((o) => stampOf(o) === stamp), stamp !== ''));
    }
    return results;
  }
}
