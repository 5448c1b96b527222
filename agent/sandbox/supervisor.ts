// A node's supervisor, the sandbox's kubelet for the DaemonSet pod: runs the
// agent and the ztunnel in their cgroups inside the node namespace, restarts
// them when they exit (with a crash-loop backoff), and records their pids.
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, writeSync } from 'node:fs';
import type { SandboxInfo, SandboxNodeInfo } from './info.ts';
import { CLI_MAIN, nodeCgroups, REPO_ROOT, sandboxPaths } from './layout.ts';
import { spawnIn } from './proc.ts';
import { readSandboxFile, writePids, type NodePids } from './registry.ts';
import { SandboxError } from '../errors.ts';

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5000;
/** A child that ran this long was healthy: its next crash starts the backoff over. */
const HEALTHY_AFTER_MS = 10_000;
const STOP_GRACE_MS = 3000;

/** The agent's command line: a contract with agent/agent-command.ts. */
export function agentArgs(info: SandboxInfo, node: SandboxNodeInfo): string[] {
  return [
    'agent',
    '--node', node.name,
    '--state-file', info.stateFile,
    '--pod-cgroup-root', nodeCgroups(node).pods,
    '--ztunnel-cgroup', nodeCgroups(node).ztunnel,
    '--bpf-dir', node.bpfDir,
    '--capture-ip4', node.podGatewayIp,
    ...(node.podGatewayIp6 ? ['--capture-ip6', node.podGatewayIp6] : []),
    '--control-socket', node.controlSocket!,
    '--admin-socket', node.agentAdminSocket,
  ];
}

/** The ztunnel's command line: a contract with agent/ztunnel/command.ts. */
export function ztunnelArgs(node: SandboxNodeInfo): string[] {
  return [
    'ztunnel',
    '--node', node.name,
    '--capture-ip4', node.podGatewayIp,
    ...(node.podGatewayIp6 ? ['--capture-ip6', node.podGatewayIp6] : []),
    '--node-ip', node.underlayIp,
    ...(node.underlayIp6 ? ['--node-ip6', node.underlayIp6] : []),
    '--control-socket', node.controlSocket!,
    '--admin-socket', node.ztunnelAdminSocket,
  ];
}

interface Managed {
  role: 'agent' | 'ztunnel';
  argv: string[];
  cgroup: string;
  log: string;
  child?: ChildProcess;
  startedAt: number;
  restarts: number;
  backoffMs: number;
  timer?: NodeJS.Timeout;
}

const say = (line: string): void => {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`);
};

/** Runs until SIGTERM/SIGINT or until the sandbox disappears; never returns early on child failures. */
export async function runSupervisor(name: string, nodeName: string): Promise<void> {
  const info = await readSandboxFile(name);
  const node = info.nodes.find((n) => n.name === nodeName);
  if (!node) throw new SandboxError(`sandbox "${name}" has no node "${nodeName}"`);
  const cgroups = nodeCgroups(node);
  const managed: Managed[] = [
    { role: 'agent', argv: agentArgs(info, node), cgroup: cgroups.agent, log: node.agentLog!, startedAt: 0, restarts: 0, backoffMs: BACKOFF_MIN_MS },
    { role: 'ztunnel', argv: ztunnelArgs(node), cgroup: cgroups.ztunnel, log: node.ztunnelLog!, startedAt: 0, restarts: 0, backoffMs: BACKOFF_MIN_MS },
  ];
  let stopping = false;

  // Writes are chained so that the last one on disk reflects the latest state.
  let writing = Promise.resolve();
  const recordPids = (): void => {
    writing = writing.then(() => {
      const pids: NodePids = {
        supervisorPid: process.pid,
        agentPid: managed[0]!.child?.pid,
        ztunnelPid: managed[1]!.child?.pid,
        agentRestarts: managed[0]!.restarts,
        ztunnelRestarts: managed[1]!.restarts,
      };
      return writePids(name, nodeName, pids).catch((err: unknown) => say(`cannot write pids.json: ${(err as Error).message}`));
    });
  };

  const start = (m: Managed): void => {
    m.timer = undefined;
    if (stopping) return;
    const fd = openSync(m.log, 'a');
    try {
      writeSync(fd, `--- ${new Date().toISOString()} meshlet supervisor: starting ${m.role} (restart ${m.restarts})\n`);
      m.child = spawnIn({ cgroup: m.cgroup, netns: node.netns }, [process.execPath, CLI_MAIN, ...m.argv], {
        stdio: ['ignore', fd, fd],
        cwd: REPO_ROOT,
      });
    } finally {
      closeSync(fd);
    }
    m.startedAt = Date.now();
    const child = m.child;
    say(`started ${m.role} pid ${child.pid}`);
    let gone = false;
    const onGone = (what: string): void => {
      if (gone) return;
      gone = true;
      if (m.child === child) m.child = undefined;
      recordPids();
      if (stopping) return;
      if (Date.now() - m.startedAt > HEALTHY_AFTER_MS) m.backoffMs = BACKOFF_MIN_MS;
      say(`${m.role} ${what}; restarting in ${m.backoffMs} ms`);
      m.restarts++;
      m.timer = setTimeout(() => start(m), m.backoffMs);
      m.backoffMs = Math.min(m.backoffMs * 2, BACKOFF_MAX_MS);
    };
    child.on('error', (err) => onGone(`could not start: ${err.message}`));
    child.on('exit', (code, signal) => onGone(`exited (${signal ?? `code ${code}`})`));
    recordPids();
  };

  await new Promise<void>((resolve) => {
    const stop = (why: string): void => {
      if (stopping) return;
      stopping = true;
      say(`stopping: ${why}`);
      clearInterval(watchdog);
      const running = managed.filter((m) => m.child);
      for (const m of managed) clearTimeout(m.timer);
      for (const m of running) m.child!.kill('SIGTERM');
      const force = setTimeout(() => {
        for (const m of running) m.child?.kill('SIGKILL');
        resolve();
      }, STOP_GRACE_MS);
      Promise.all(running.map((m) => new Promise((r) => (m.child ? m.child.once('exit', r) : r(undefined))))).then(() => {
        clearTimeout(force);
        resolve();
      }, resolve);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    // A sandbox torn down under us (run dir removed) needs no supervisor.
    const watchdog = setInterval(() => {
      if (!existsSync(sandboxPaths(name).infoFile)) stop('sandbox.json is gone');
    }, 2000);
    for (const m of managed) start(m);
  });
}
