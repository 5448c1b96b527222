// The sandbox runtime's pure parts: Kubernetes' $(VAR) expansion and the
// env sources it refuses (the rest runs in test/e2e/kubelet-runtime.test.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
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
