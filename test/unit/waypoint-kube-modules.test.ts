// The waypoint process must not load client-node's KubeConfig or generated
// API models (73 MiB of anonymous RSS against a 60 MB budget): a child node
// imports the waypoint's modules with a resolve hook recording every URL.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

const root = new URL('../../', import.meta.url);

const HOOK = `
import { registerHooks } from 'node:module';
const seen = [];
registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); seen.push(r.url); return r; } });
process.on('exit', () => process.stdout.write(JSON.stringify(seen)));
`;

const ENTRY = ['waypoint/command.ts', 'waypoint/waypoint.ts', 'waypoint/config-source.ts']
  .map((file) => `await import(${JSON.stringify(new URL(file, root).href)});`).join('\n');

test('the waypoint loads neither client-node\'s index, its KubeConfig, its serializer nor its generated models', () => {
  const out = execFileSync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(HOOK)}`, '--input-type=module', '-e', ENTRY], { encoding: 'utf8' });
  const urls: unknown = JSON.parse(out);
  assert.ok(Array.isArray(urls));
  const clientNode = urls.filter((u): u is string => typeof u === 'string' && u.includes('/@kubernetes/client-node/dist/'));
  assert.ok(clientNode.some((u) => u.endsWith('/dist/watch.js')), 'the hook sees client-node\'s Watch, which the waypoint does use');
  const heavy = clientNode.filter((u) => /\/dist\/(index|config|serializer|cache)\.js$|\/dist\/gen\/(index|models\/|apis\/(?!exception\.js))/.test(u));
  assert.deepEqual(heavy, []);
});
