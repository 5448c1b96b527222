// The sandbox runtime's pure parts: Kubernetes' $(VAR) expansion, the env
// sources it refuses, and the capabilities a container gets or is refused for
// (the rest runs in test/e2e/kubelet-runtime.test.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { boundingSetArg, containerCapabilities, DEFAULT_CAPABILITIES } from '../../sandbox/capabilities.ts';
import { envProblem } from '../../sandbox/pods.ts';
import { expandVars } from '../../sandbox/kubelet/sandbox-runtime.ts';

test('$(VAR) expands defined names, leaves undefined ones, and $$ escapes', () => {
  const vars = { PORT: '8080', HOST: 'web' };
  assert.equal(expandVars('--port=$(PORT)', vars), '--port=8080');
  assert.equal(expandVars('$(HOST):$(PORT)/$(MISSING)', vars), 'web:8080/$(MISSING)');
  assert.equal(expandVars('$$(PORT) $$ $PORT', vars), '$(PORT) $ $PORT');
});

test('env from literal values and the downward-API fields the sandbox fills is accepted', () => {
  assert.equal(envProblem({ name: 'app', env: [{ name: 'A', value: '1' }, { name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }] }), undefined);
});

test('env the sandbox cannot fill is refused with what to do instead', () => {
  assert.match(envProblem({ name: 'app', env: [{ name: 'S', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }] })!, /env S takes its value from secretKeyRef.*use a literal value or a fieldRef to metadata\.name/);
  assert.match(envProblem({ name: 'app', env: [{ name: 'L', valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } }] })!, /fieldRef metadata\.labels\['app'\], which the sandbox cannot fill/);
  assert.match(envProblem({ name: 'app', envFrom: [{ configMapRef: { name: 'c' } }] })!, /envFrom .* is not supported/);
});

const withCaps = (add?: string[], drop?: string[]) => containerCapabilities({ name: 'app', securityContext: { capabilities: { ...(add ? { add } : {}), ...(drop ? { drop } : {}) } } });

test('a container gets containerd\'s default capabilities, less what it drops, plus what it adds back of them', () => {
  assert.deepEqual(containerCapabilities({ name: 'app' }), { capabilities: [...DEFAULT_CAPABILITIES] });
  assert.equal(DEFAULT_CAPABILITIES.length, 14);
  assert.deepEqual(withCaps(undefined, ['NET_RAW', 'cap_kill']), { capabilities: DEFAULT_CAPABILITIES.filter((c) => c !== 'NET_RAW' && c !== 'KILL') });
  assert.deepEqual(withCaps(['NET_BIND_SERVICE'], ['ALL']), { capabilities: ['NET_BIND_SERVICE'] });
  assert.deepEqual(withCaps(undefined, ['ALL']), { capabilities: [] });
  assert.deepEqual(withCaps(['CHOWN'], ['CHOWN']), { capabilities: DEFAULT_CAPABILITIES.filter((c) => c !== 'CHOWN') }, 'drops apply after adds, as containerd applies them');
});

test('capabilities beyond the default set, unknown names and privileged containers are refused with the reason', () => {
  assert.match(withCaps(['NET_ADMIN', 'SYS_TIME']).problem!, /^container "app": securityContext\.capabilities\.add NET_ADMIN, SYS_TIME is refused: the sandbox grants at most containerd's default set \(CHOWN, .*AUDIT_WRITE\), since its pods see the host's filesystems/);
  assert.match(withCaps(['ALL']).problem!, /add ALL is refused/);
  assert.match(withCaps(undefined, ['NET_RAWW']).problem!, /unknown capability "NET_RAWW"/);
  assert.match(containerCapabilities({ name: 'app', securityContext: { privileged: true } }).problem!, /privileged containers are not supported/);
});

test('in a namespace Pod Security runs at the privileged level, single capabilities beyond the default set are granted, never ALL', () => {
  const agent = { name: 'agent', securityContext: { capabilities: { drop: ['ALL'], add: ['BPF', 'PERFMON', 'NET_ADMIN', 'SYS_ADMIN', 'SYS_PTRACE'] } } };
  assert.deepEqual(containerCapabilities(agent, true), { capabilities: ['NET_ADMIN', 'SYS_PTRACE', 'SYS_ADMIN', 'PERFMON', 'BPF'] });
  assert.match(containerCapabilities(agent, false).problem!, /add BPF, PERFMON, NET_ADMIN, SYS_ADMIN, SYS_PTRACE is refused: .* but in a namespace labelled pod-security\.kubernetes\.io\/enforce=privileged/);
  assert.deepEqual(containerCapabilities({ name: 'app', securityContext: { capabilities: { add: ['net_admin'] } } }, true), { capabilities: [...DEFAULT_CAPABILITIES, 'NET_ADMIN'] });
  assert.match(containerCapabilities({ name: 'app', securityContext: { capabilities: { add: ['ALL'] } } }, true).problem!, /add ALL is refused/);
  assert.match(containerCapabilities({ name: 'app', securityContext: { privileged: true } }, true).problem!, /privileged containers are not supported/);
});

test('setpriv\'s bounding set names exactly the granted capabilities', () => {
  assert.equal(boundingSetArg(['NET_RAW', 'KILL']), '-all,+net_raw,+kill');
  assert.equal(boundingSetArg([]), '-all');
});
