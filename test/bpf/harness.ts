// Per-run kernel sandbox for the BPF tests: a network namespace with the
// test addresses on a veth pair, cgroups for a pod (with a container
// child) and a ztunnel, a pin directory, and fixture processes joined to a
// cgroup before entering the namespace; optionally a second namespace for the
// pod, behind a veth like a real one. Everything carries one random prefix
// and cleanup() removes it all, whatever state the test left.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { run } from '../../lib/core/exec.ts';
import { cgroup2Mount } from '../../agent/bpf/cgroup.ts';
import { BpfDatapath } from '../../agent/bpf/datapath.ts';
import { removeCgroup } from '../../sandbox/cgroup.ts';
import { buildBpf } from './build.ts';

export const ADDR = {
  ztunnel4: '10.77.0.1',
  dest4: '10.77.1.5',
  ztunnel6: 'fd77::1',
  dest6: 'fd77:1::5',
  // With addPodNetns(): sources in the node namespace, and the pod.
  inbound4: '10.77.0.6',
  inbound6: 'fd77::6',
  node4: '10.77.0.2',
  node6: 'fd77::2',
  other4: '10.77.0.9',
  other6: 'fd77::9',
  pod4: '10.77.2.2',
  pod6: 'fd77:2::2',
  podGateway4: '10.77.2.1',
  podGateway6: 'fd77:2::1',
} as const;

/** Why these tests cannot run here (null: they can). Under CI=true the caller must fail instead. */
export function cannotRun(): string | null {
  return process.getuid?.() === 0 ? null : 'needs root (netns, cgroups, BPF)';
}

export class LineProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  #waiters: { match: (msg: Record<string, unknown>) => boolean; resolve: (msg: Record<string, unknown>) => void }[] = [];
  #stderr = '';
  #seq = 0;

  constructor(child: ChildProcess) {
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.stderr?.on('data', (c: Buffer) => (this.#stderr += c.toString()));
    // A killed fixture breaks the pipe; waitFor already reports that it exited.
    child.stdin?.on('error', () => undefined);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      const i = this.#waiters.findIndex((w) => w.match(msg));
      if (i !== -1) this.#waiters.splice(i, 1)[0]?.resolve(msg);
    });
  }

  /** The first output line that matches, failing after timeoutMs or when the process exits. */
  waitFor(match: (msg: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const fail = (why: string): void => reject(new Error(`${why}; stderr: ${this.#stderr.slice(-500)}`));
      const timer = setTimeout(() => fail('fixture timed out'), timeoutMs);
      void this.exited.then(() => fail('fixture exited'));
      this.#waiters.push({ match, resolve: (msg) => (clearTimeout(timer), resolve(msg)) });
    });
  }

  async request(body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = `r${++this.#seq}`;
    const reply = this.waitFor((m) => m.id === id);
    this.child.stdin?.write(JSON.stringify({ id, ...body }) + '\n');
    return reply;
  }

  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

export class KernelSandbox {
  readonly prefix = `meshlet-t${randomBytes(4).toString('hex')}`;
  readonly netns = this.prefix;
  readonly podNetns = `${this.prefix}-pod`;
  cgroupRoot = '';
  pinDir = '';
  #processes: LineProcess[] = [];
  #cgroups: string[] = [];
  #netnsCreated = false;
  #podNetnsCreated = false;

  get podCgroup(): string {
    return join(this.cgroupRoot, 'pod');
  }
  get containerCgroup(): string {
    return join(this.podCgroup, 'container');
  }
  get ztunnelCgroup(): string {
    return join(this.cgroupRoot, 'ztunnel');
  }

  /** Fails under CI=true instead of skipping; returns false when this run skips. Builds the object, then the sandbox. */
  async prepare(skip: string | null): Promise<boolean> {
    if (skip) {
      if (process.env.CI === 'true') throw new Error(`CI must not skip: ${skip}`);
      return false;
    }
    await buildBpf();
    await this.setUp();
    return true;
  }

  async setUp(): Promise<void> {
    this.cgroupRoot = join(await cgroup2Mount(), this.prefix);
    this.pinDir = join('/sys/fs/bpf', this.prefix, 'node');
    await run('ip', ['netns', 'add', this.netns]);
    this.#netnsCreated = true;
    const ip = (...args: string[]): Promise<unknown> => run('ip', ['-n', this.netns, ...args]);
    await ip('link', 'set', 'lo', 'up');
    // A veth pair (both ends inside the netns): the node side carries the
    // ztunnel addresses, the other end the destinations.
    await ip('link', 'add', 'name', 'ml0', 'type', 'veth', 'peer', 'name', 'ml1');
    await ip('link', 'set', 'ml0', 'up');
    await ip('link', 'set', 'ml1', 'up');
    await ip('addr', 'add', `${ADDR.ztunnel4}/32`, 'dev', 'ml0');
    await ip('-6', 'addr', 'add', `${ADDR.ztunnel6}/128`, 'dev', 'ml0', 'nodad');
    await ip('addr', 'add', `${ADDR.dest4}/32`, 'dev', 'ml1');
    await ip('-6', 'addr', 'add', `${ADDR.dest6}/128`, 'dev', 'ml1', 'nodad');
    for (const cg of [this.cgroupRoot, this.podCgroup, this.containerCgroup, this.ztunnelCgroup]) await this.makeCgroup(cg);
  }

  /**
   * The pod in its own namespace (ADDR.pod4/pod6, default routes to the node
   * side of the veth), and more source addresses in the test namespace,
   * which plays the node.
   */
  async addPodNetns(): Promise<void> {
    await run('ip', ['netns', 'add', this.podNetns]);
    this.#podNetnsCreated = true;
    const node = (...args: string[]): Promise<unknown> => run('ip', ['-n', this.netns, ...args]);
    const pod = (...args: string[]): Promise<unknown> => run('ip', ['-n', this.podNetns, ...args]);
    for (const addr of [ADDR.inbound4, ADDR.node4, ADDR.other4]) await node('addr', 'add', `${addr}/32`, 'dev', 'ml0');
    for (const addr of [ADDR.inbound6, ADDR.node6, ADDR.other6]) await node('-6', 'addr', 'add', `${addr}/128`, 'dev', 'ml0', 'nodad');
    await node('link', 'add', 'name', 'mlp0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.podNetns);
    await node('addr', 'add', `${ADDR.podGateway4}/24`, 'dev', 'mlp0');
    await node('-6', 'addr', 'add', `${ADDR.podGateway6}/64`, 'dev', 'mlp0', 'nodad');
    await node('link', 'set', 'mlp0', 'up');
    await pod('link', 'set', 'lo', 'up');
    await pod('addr', 'add', `${ADDR.pod4}/24`, 'dev', 'eth0');
    await pod('-6', 'addr', 'add', `${ADDR.pod6}/64`, 'dev', 'eth0', 'nodad');
    await pod('link', 'set', 'eth0', 'up');
    await pod('route', 'add', 'default', 'via', ADDR.podGateway4);
    await pod('-6', 'route', 'add', 'default', 'via', ADDR.podGateway6);
  }

  async makeCgroup(path: string): Promise<void> {
    await mkdir(path);
    this.#cgroups.push(path);
  }

  /** Starts a fixture script (test/bpf/<script>) in cgroup, then in netns (default: the test netns). */
  spawn(cgroup: string, script: string, args: string[] = [], netns: string = this.netns): LineProcess {
    const file = fileURLToPath(new URL(script, import.meta.url));
    // Join the cgroup first: entering the netns with `ip netns exec` would remount /sys.
    const shell = 'cg=$1 ns=$2; shift 2; echo $$ > "$cg/cgroup.procs" && exec nsenter --net="/run/netns/$ns" -- "$@"';
    const child = spawn('sh', ['-c', shell, 'sh', cgroup, netns, process.execPath, file, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const proc = new LineProcess(child);
    this.#processes.push(proc);
    return proc;
  }

  /** Removes everything this run created; keeps going past failures and reports them at the end. */
  async cleanUp(): Promise<void> {
    const errors: unknown[] = [];
    const attempt = async (what: () => Promise<unknown>): Promise<void> => {
      try {
        await what();
      } catch (err) {
        errors.push(err);
      }
    };
    for (const proc of this.#processes) await attempt(() => proc.kill());
    if (this.pinDir) await attempt(() => BpfDatapath.destroy(this.pinDir));
    await attempt(() => rm(join('/sys/fs/bpf', this.prefix), { recursive: true, force: true }));
    for (const cg of [...this.#cgroups].reverse()) await attempt(() => removeCgroup(cg));
    if (this.#podNetnsCreated) await attempt(() => run('ip', ['netns', 'delete', this.podNetns]));
    if (this.#netnsCreated) await attempt(() => run('ip', ['netns', 'delete', this.netns]));
    if (errors.length > 0) throw new AggregateError(errors, `cleanup of ${this.prefix} failed`);
  }
}

/** `bpftool cgroup show` for one cgroup: programs attached directly to it. */
export async function cgroupPrograms(path: string): Promise<{ id: number; name: string }[]> {
  const { stdout } = await run('bpftool', ['cgroup', 'show', path, '-j']);
  return stdout.trim() ? (JSON.parse(stdout) as { id: number; name: string }[]) : [];
}
