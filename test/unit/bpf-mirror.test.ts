// The datapath's mirror of the per-pod maps and of its attachments: the
// changes it plans from what it holds, and what it holds after they land.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AttachmentMirror, type MapChange, MapMirror, type MirrorDumps, type PodEntries } from '../../agent/bpf/mirror.ts';

const empty = (): MirrorDumps => ({ pods: [], excluded_ports: [], port_mode: [], probe_ports: [] });

const entries = (p: Partial<PodEntries> = {}): PodEntries => ({
  flags: 1,
  ip4: null,
  ip6: null,
  excluded_ports: new Map(),
  port_mode: new Map(),
  probe_ports: new Map(),
  ...p,
});

const describeChange = (c: MapChange): string =>
  `${c.value === undefined ? 'delete' : 'update'} ${c.map} ${typeof c.key === 'bigint' ? c.key : `${c.key.cgroupId}:${c.key.port}`}${c.value === undefined ? '' : ` ${JSON.stringify(c.value)}`}`;

describe('MapMirror', () => {
  test('a new pod: its port entries, then the pod entry', () => {
    const m = new MapMirror(empty());
    const changes = m.podChanges(7n, entries({ flags: 3, excluded_ports: new Map([[5432, true]]), port_mode: new Map([[8080, 'PERMISSIVE']]), probe_ports: new Map([[9000, true]]) }));
    assert.deepEqual(changes.map(describeChange), [
      'update excluded_ports 7:5432 true',
      'update port_mode 7:8080 "PERMISSIVE"',
      'update probe_ports 7:9000 true',
      'update pods 7 {"flags":3,"ip4":null,"ip6":null}',
    ]);
    m.apply(changes);
    assert.deepEqual(m.enrolledIds(), [7n]);
    assert.deepEqual(m.podChanges(7n, entries({ flags: 3, excluded_ports: new Map([[5432, true]]), port_mode: new Map([[8080, 'PERMISSIVE']]), probe_ports: new Map([[9000, true]]) })), [], 'nothing to write twice');
  });

  test('seeded from dumps: stale entries are deleted after the pod entry, changed values rewritten', () => {
    const dumps = empty();
    dumps.pods.push({ key: 7n, value: { flags: 1, ip4: null, ip6: null } }, { key: 8n, value: { flags: 1, ip4: null, ip6: null } });
    dumps.excluded_ports.push({ key: { cgroupId: 7n, port: 1 }, value: true }, { key: { cgroupId: 8n, port: 1 }, value: true });
    dumps.port_mode.push({ key: { cgroupId: 7n, port: 80 }, value: 'STRICT' });
    const m = new MapMirror(dumps);
    const changes = m.podChanges(7n, entries({ flags: 3, port_mode: new Map([[80, 'PERMISSIVE']]) }));
    assert.deepEqual(changes.map(describeChange), ['update port_mode 7:80 "PERMISSIVE"', 'update pods 7 {"flags":3,"ip4":null,"ip6":null}', 'delete excluded_ports 7:1']);
    m.apply(changes);
    assert.deepEqual(m.podChanges(7n, entries({ flags: 3, port_mode: new Map([[80, 'PERMISSIVE']]) })), []);
    assert.deepEqual(m.podChanges(8n, entries({ excluded_ports: new Map([[1, true]]) })), [], 'the other pod is untouched');
  });

  test('a pod whose addresses changed: only its pods entry is rewritten', () => {
    const m = new MapMirror(empty());
    m.apply(m.podChanges(7n, entries({ ip4: '10.0.1.5', excluded_ports: new Map([[5432, true]]) })));
    assert.deepEqual(m.podChanges(7n, entries({ ip4: '10.0.1.5', excluded_ports: new Map([[5432, true]]) })), []);
    const changes = m.podChanges(7n, entries({ ip4: '10.0.1.6', ip6: 'fd00::6', excluded_ports: new Map([[5432, true]]) }));
    assert.deepEqual(changes.map(describeChange), ['update pods 7 {"flags":1,"ip4":"10.0.1.6","ip6":"fd00::6"}']);
  });

  test('removal: pod entries first, then every port entry, also of cgroups without a pod entry', () => {
    const dumps = empty();
    dumps.pods.push({ key: 7n, value: { flags: 3, ip4: null, ip6: null } }, { key: 9n, value: { flags: 1, ip4: null, ip6: null } });
    dumps.probe_ports.push({ key: { cgroupId: 7n, port: 9000 }, value: true });
    dumps.excluded_ports.push({ key: { cgroupId: 8n, port: 22 }, value: true });
    const m = new MapMirror(dumps);
    const changes = m.removalChanges(new Set([7n, 8n, 10n]));
    assert.deepEqual(changes.map(describeChange), ['delete pods 7', 'delete excluded_ports 8:22', 'delete probe_ports 7:9000']);
    m.apply(changes);
    assert.deepEqual(m.enrolledIds(), [9n]);
    assert.deepEqual(m.removalChanges(new Set([7n, 8n])), [], 'nothing left to delete (a missing key would fail the batch)');
  });
});

describe('MapMirror within the maps\' room', () => {
  const ports = (...list: number[]): ReadonlyMap<number, true> => new Map(list.map((p) => [p, true]));
  const room = { pods: 10, excluded_ports: 4, port_mode: 10, probe_ports: 10 };

  test('a pod whose new entries do not fit is left out whole; the pods after it still fit', () => {
    const dumps = empty();
    dumps.pods.push({ key: 1n, value: { flags: 1, ip4: null, ip6: null } });
    dumps.excluded_ports.push({ key: { cgroupId: 1n, port: 1 }, value: true }, { key: { cgroupId: 1n, port: 2 }, value: true });
    const m = new MapMirror(dumps);
    const plan = m.planPods([
      { id: 7n, want: entries({ excluded_ports: ports(10, 11, 12) }) },
      { id: 8n, want: entries({ excluded_ports: ports(20, 21) }) },
    ], room);
    assert.deepEqual(plan.noRoom, [{ id: 7n, map: 'excluded_ports', needed: 3, free: 2, capacity: 4 }]);
    assert.deepEqual(plan.planned, [8n]);
    assert.deepEqual(plan.changes.map(describeChange), ['update excluded_ports 8:20 true', 'update excluded_ports 8:21 true', 'update pods 8 {"flags":1,"ip4":null,"ip6":null}']);
  });

  test('the pods planned before count, and so do the entries an update replaces or frees', () => {
    const dumps = empty();
    dumps.pods.push({ key: 1n, value: { flags: 1, ip4: null, ip6: null } });
    dumps.excluded_ports.push({ key: { cgroupId: 1n, port: 1 }, value: true }, { key: { cgroupId: 1n, port: 2 }, value: true });
    const m = new MapMirror(dumps);
    // Pod 1 keeps port 2, drops port 1 and adds 3: one new entry at its peak, none after it.
    const plan = m.planPods([
      { id: 1n, want: entries({ flags: 3, excluded_ports: ports(2, 3) }) },
      { id: 7n, want: entries({ excluded_ports: ports(10, 11) }) },
      { id: 8n, want: entries({ excluded_ports: ports(20) }) },
    ], room);
    assert.deepEqual(plan.planned, [1n, 7n]);
    assert.deepEqual(plan.noRoom, [{ id: 8n, map: 'excluded_ports', needed: 1, free: 0, capacity: 4 }]);
  });

  test('a pod needs room for its additions before its stale entries are deleted', () => {
    const dumps = empty();
    dumps.excluded_ports.push(...[1, 2, 3, 4].map((port) => ({ key: { cgroupId: 1n, port }, value: true as const })));
    const m = new MapMirror(dumps);
    const plan = m.planPods([{ id: 1n, want: entries({ excluded_ports: ports(5) }) }], room);
    assert.deepEqual(plan.noRoom, [{ id: 1n, map: 'excluded_ports', needed: 1, free: 0, capacity: 4 }], 'the batch adds before it deletes');
    assert.deepEqual(plan.changes, []);
  });

  test('a full pods table refuses a new pod but not an update of an enrolled one', () => {
    const dumps = empty();
    dumps.pods.push({ key: 1n, value: { flags: 1, ip4: null, ip6: null } });
    const m = new MapMirror(dumps);
    const plan = m.planPods([{ id: 1n, want: entries({ flags: 3 }) }, { id: 2n, want: entries() }], { ...room, pods: 1 });
    assert.deepEqual(plan.planned, [1n]);
    assert.deepEqual(plan.noRoom.map((r) => [r.id, r.map]), [[2n, 'pods']]);
  });

  test('undo puts back what the mirror held for every key that ran, last first', () => {
    const dumps = empty();
    dumps.pods.push({ key: 7n, value: { flags: 1, ip4: null, ip6: null } });
    dumps.excluded_ports.push({ key: { cgroupId: 7n, port: 1 }, value: true });
    dumps.port_mode.push({ key: { cgroupId: 7n, port: 80 }, value: 'STRICT' });
    const m = new MapMirror(dumps);
    const changes = m.podChanges(7n, entries({ flags: 3, excluded_ports: ports(2), port_mode: new Map([[80, 'PERMISSIVE']]) }));
    assert.deepEqual(changes.map(describeChange), [
      'update excluded_ports 7:2 true',
      'update port_mode 7:80 "PERMISSIVE"',
      'update pods 7 {"flags":3,"ip4":null,"ip6":null}',
      'delete excluded_ports 7:1',
    ]);
    assert.deepEqual(m.undoChanges(changes.slice(0, 3)).map(describeChange), [
      'update pods 7 {"flags":1,"ip4":null,"ip6":null}',
      'update port_mode 7:80 "STRICT"',
      'delete excluded_ports 7:2',
    ]);
    assert.deepEqual(m.undoChanges(changes).map(describeChange)[0], 'update excluded_ports 7:1 true', 'a stale entry deleted is put back');
    const fresh = m.podChanges(9n, entries({ excluded_ports: ports(5) }));
    assert.deepEqual(m.undoChanges(fresh).map(describeChange), ['delete pods 9', 'delete excluded_ports 9:5'], 'a new pod\'s capture stops before its exclusions go');
    assert.deepEqual(m.undoChanges([]), []);
  });
});

describe('AttachmentMirror', () => {
  test('below a walked root every cgroup is known; elsewhere only recorded ones', () => {
    const a = new AttachmentMirror();
    a.recordWalk('/cg/pods', new Map([[5n, new Set([11, 12])]]));
    assert.equal(a.knows('/cg/pods/uid-1', 6n), true);
    assert.deepEqual([...a.attached(6n)], [], 'a cgroup the walk did not list has none of our programs');
    assert.deepEqual([...a.attached(5n)].sort(), [11, 12]);
    assert.equal(a.knows('/cg/pods', 4n), true);
    assert.equal(a.knows('/cg/podsx/uid-1', 6n), false, 'a sibling with the same prefix is not below the root');
    assert.equal(a.knows('/cg/other', 20n), false);
    a.recordCgroups(new Map([[20n, new Set([13])]]));
    assert.equal(a.knows('/cg/other', 20n), true);
  });

  test('attach, detach and forget', () => {
    const a = new AttachmentMirror();
    a.recordWalk('/', new Map());
    a.attach(5n, [1, 2, 3]);
    a.detach(5n, [2]);
    assert.deepEqual([...a.attached(5n)].sort(), [1, 3]);
    a.forget(5n);
    assert.deepEqual([...a.attached(5n)], []);
    assert.equal(a.knows('/x', 5n), true, 'the root still covers it');
  });
});
