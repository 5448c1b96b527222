// The layout rule, checked the way the BTF test checks map layouts: lib/
// imports only lib/; a process folder imports lib/ and itself, never another
// process; cli/ reaches a process only through its entry module (command.ts,
// or api.ts for the sandbox's programmatic API); no module imports itself
// back through a cycle; and only the agent's BPF loader runs bpftool.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { CLI_DIR, LIB_DIR, PROCESS_DIRS, PROCESS_SOURCE_DIRS } from '../../lib/core/layout.ts';
import { REPO_ROOT } from '../../lib/core/repo.ts';

const ENTRY_MODULES = new Set(['command.ts', 'api.ts']);

function sourceFiles(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(join(REPO_ROOT, dir), { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

/** Repo-relative paths of the modules `file` imports (static, re-exports and dynamic import()). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(REPO_ROOT, file), 'utf8');
  return ts.preProcessFile(text, true, true).importedFiles
    .map((f) => f.fileName)
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => relative(REPO_ROOT, resolve(REPO_ROOT, dirname(file), spec)));
}

const topOf = (path: string): string => path.split('/')[0]!;

/** Why `from` may not import `to`, or null if it may. */
function violation(from: string, to: string): string | null {
  const own = topOf(from);
  const target = topOf(to);
  if (target === own) return null;
  if (own === LIB_DIR) return 'lib/ imports only lib/';
  if (target === LIB_DIR) return null;
  if (own === CLI_DIR) {
    const isEntry = (PROCESS_DIRS as readonly string[]).includes(target) && to.split('/').length === 2 && ENTRY_MODULES.has(to.split('/')[1]!);
    return isEntry ? null : `cli/ may import a process only through its ${[...ENTRY_MODULES].join(' or ')}`;
  }
  return `process folders import lib/ and themselves, never another (${own}/ → ${target}/)`;
}

const files = PROCESS_SOURCE_DIRS.flatMap(sourceFiles).sort();
const graph = new Map(files.map((f) => [f, importsOf(f)]));

test('the layout has lib/ and every process folder', () => {
  for (const dir of [LIB_DIR, 'agent', 'ztunnel', 'ca', 'sandbox', CLI_DIR]) {
    assert.ok(files.some((f) => topOf(f) === dir), `${dir}/ holds sources`);
  }
});

test('the build compiles lib/, every process folder and cli/', () => {
  const config = JSON.parse(readFileSync(join(REPO_ROOT, 'tsconfig.build.json'), 'utf8')) as { include: string[] };
  assert.deepEqual(config.include, PROCESS_SOURCE_DIRS.map((d) => `${d}/**/*.ts`));
});

test('imports follow the layout rule', () => {
  const bad: string[] = [];
  for (const [from, targets] of graph) {
    for (const to of targets) {
      const why = violation(from, to);
      if (why) bad.push(`${from} → ${to}: ${why}`);
      else if (!graph.has(to) && (PROCESS_SOURCE_DIRS as readonly string[]).includes(topOf(to))) bad.push(`${from} → ${to}: no such module`);
    }
  }
  assert.deepEqual(bad, []);
});

test('the rule itself: a cross-process import is caught', () => {
  assert.match(violation('ztunnel/outbound.ts', 'agent/enrollment.ts') ?? '', /never another/);
  assert.match(violation('lib/mesh/state.ts', 'ztunnel/admin.ts') ?? '', /lib\/ imports only lib/);
  assert.match(violation('cli/status.ts', 'agent/node-agent.ts') ?? '', /only through/);
  assert.equal(violation('cli/main.ts', 'agent/command.ts'), null);
  assert.equal(violation('ztunnel/outbound.ts', 'lib/hbone/relay.ts'), null);
});

test('no import cycles', () => {
  const cycles: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'visiting');
    stack.push(f);
    for (const to of graph.get(f) ?? []) {
      if (!graph.has(to)) continue;
      if (state.get(to) === 'visiting') cycles.push([...stack.slice(stack.indexOf(to)), to].join(' → '));
      else if (!state.has(to)) visit(to);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  assert.deepEqual(cycles, []);
});

test('only the agent\'s BPF loader runs bpftool', () => {
  const runners = files.filter((f) => /['"]bpftool['"]/.test(readFileSync(join(REPO_ROOT, f), 'utf8')));
  assert.deepEqual(runners.filter((f) => !f.startsWith('agent/bpf/')), []);
});
