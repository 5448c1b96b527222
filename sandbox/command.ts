// `meshlet sandbox …`: a cluster in miniature on this machine.
import { readFile } from 'node:fs/promises';
import { Command, Option } from 'commander';
import { ConfigError } from '../lib/core/errors.ts';
import { applyManifest, deleteManifest, type ObjectResult } from './apply.ts';
import { formatResults, runDemo } from './demo.ts';
import { spawnInPod } from './exec.ts';
import { DEFAULT_NAME } from './layout.ts';
import { down, downAll, READY_TIMEOUT_MS, rebootNode, up } from './lifecycle.ts';
import { formatStatus, sandboxStatus } from './status.ts';
import { runControlPlaneSupervisor, runSupervisor } from './supervisor.ts';
import { controlPlaneBinaries } from './controlplane/binaries.ts';
import { readSandboxFile } from './registry.ts';
import { spawn } from 'node:child_process';

const nameOption = (): Option => new Option('--name <name>', 'sandbox name').env('MESHLET_SANDBOX').default(DEFAULT_NAME);

const out = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

const readManifest = async (file: string): Promise<string> => {
  try {
    return file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read ${file}: ${(err as Error).message}`);
  }
};

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString();
}

/** Prints kubectl-style results; refused objects make the command fail after the rest applied. */
function report(results: readonly ObjectResult[]): void {
  const lines = formatResults(results);
  results.forEach((r, i) => (r.action === 'refused' ? process.stderr.write(`${lines[i]}\n`) : out(lines[i]!)));
  if (results.some((r) => r.action === 'refused')) process.exitCode = 1;
}

const parseNodes = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new ConfigError(`--nodes must be an integer, got "${value}"`);
  return n;
};

export function sandboxCommand(): Command {
  const sandbox = new Command('sandbox').description('a cluster in miniature on this machine: a namespace per node and pod, agents and ztunnels (needs root)');

  sandbox
    .command('up')
    .description('create the cluster, install meshlet from the manifests `meshlet install` renders, optionally apply a manifest')
    .addOption(nameOption())
    .option('--nodes <n>', 'number of nodes', parseNodes, 2)
    .option('-f, --file <file>', 'manifest to apply once the nodes run')
    .option('--no-wait', 'do not wait for the agents, ztunnels and CA to be ready')
    .option('--ready-timeout <ms>', 'how long to wait for them', parseNodes, READY_TIMEOUT_MS)
    .option('--no-install', 'a cluster without meshlet, to install it yourself (`up` prints the `meshlet install` flags this sandbox needs)')
    .option('--cert-ttl <duration>', 'workload certificate lifetime the ztunnels ask for, e.g. 30s or 24h (rotation at half of it)')
    .action(async (opts: { name: string; nodes: number; file?: string; wait: boolean; readyTimeout: number; install: boolean; certTtl?: string }) => {
      const manifest = opts.file === undefined ? undefined : await readManifest(opts.file);
      const { info, applied } = await up({
        name: opts.name, nodes: opts.nodes, waitReady: opts.wait, readyTimeoutMs: opts.readyTimeout, log: out, install: opts.install,
        ...(opts.certTtl ? { certTtl: opts.certTtl } : {}),
        ...(manifest !== undefined ? { manifest, manifestSource: opts.file } : {}),
      });
      report(applied);
      out('');
      out(formatStatus(await sandboxStatus(info.name)));
    });

  sandbox
    .command('apply')
    .description('create or update the objects of a manifest (Namespace, ServiceAccount, Service, Pod, mesh policies…)')
    .addOption(nameOption())
    .requiredOption('-f, --file <file>', 'multi-document YAML, or - for stdin')
    .action(async (opts: { name: string; file: string }) => {
      report(await applyManifest(opts.name, await readManifest(opts.file), opts.file));
    });

  sandbox
    .command('delete')
    .description('delete the objects of a manifest; pods are killed and their namespaces removed')
    .addOption(nameOption())
    .requiredOption('-f, --file <file>', 'multi-document YAML, or - for stdin')
    .action(async (opts: { name: string; file: string }) => {
      report(await deleteManifest(opts.name, await readManifest(opts.file), opts.file));
    });

  sandbox
    .command('exec')
    .description('run a command in a pod\'s network namespace and cgroup, e.g. meshlet sandbox exec client -n demo -- curl -s http://web/')
    .argument('<pod>', 'pod name')
    .argument('<command...>', 'command and arguments (after --)')
    .addOption(nameOption())
    .option('-n, --namespace <namespace>', 'pod namespace', 'default')
    .option('-c, --container <container>', 'container to enter (default: the pod\'s first)')
    .action(async (pod: string, argv: string[], opts: { name: string; namespace: string; container?: string }) => {
      const child = await spawnInPod(opts.name, { pod, namespace: opts.namespace, ...(opts.container ? { container: opts.container } : {}) }, argv, { stdio: 'inherit' });
      // The terminal's Ctrl-C reaches the command too; outlive it to pass on its status.
      const ignore = (): void => undefined;
      process.on('SIGINT', ignore);
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
        child.on('error', (err) => {
          process.stderr.write(`meshlet: ${err.message}\n`);
          resolve([127, null]);
        });
        child.on('close', (c, s) => resolve([c, s]));
      });
      process.off('SIGINT', ignore);
      process.exitCode = code ?? 128 + (signal === 'SIGKILL' ? 9 : signal === 'SIGTERM' ? 15 : signal === 'SIGINT' ? 2 : 1);
    });

  sandbox
    .command('kubeconfig')
    .description('print the path of the sandbox\'s admin kubeconfig: kubectl --kubeconfig "$(meshlet sandbox kubeconfig)" get pods -A')
    .addOption(nameOption())
    .action(async (opts: { name: string }) => {
      out((await readSandboxFile(opts.name)).controlPlane.kubeconfig);
    });

  sandbox
    .command('kubectl')
    .description('run the sandbox\'s kubectl against it, e.g. meshlet sandbox kubectl -- get pods -A -o wide')
    .argument('<args...>', 'kubectl\'s arguments (after --)')
    .addOption(nameOption())
    .action(async (args: string[], opts: { name: string }) => {
      const info = await readSandboxFile(opts.name);
      const kubectl = (await controlPlaneBinaries()).path('kubectl');
      const child = spawn(kubectl, ['--kubeconfig', info.controlPlane.kubeconfig, ...args], { stdio: 'inherit' });
      process.exitCode = await new Promise<number>((resolve) => {
        child.on('error', (err) => {
          process.stderr.write(`meshlet: cannot run ${kubectl}: ${err.message}\n`);
          resolve(127);
        });
        child.on('close', (code) => resolve(code ?? 1));
      });
    });

  sandbox
    .command('status')
    .description('nodes with their agent and ztunnel pids, pods, Services')
    .addOption(nameOption())
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (opts: { name: string; output: string }) => {
      const info = await sandboxStatus(opts.name);
      out(opts.output === 'json' ? JSON.stringify(info, null, 2) : formatStatus(info));
    });

  sandbox
    .command('reboot')
    .description('reboot a node: kill every process of it (kubelet, kube-proxy, every container, meshlet\'s too) and start it again, as after a power cut that kept its disk')
    .addOption(nameOption())
    .requiredOption('--node <node>', 'the node, e.g. node-1')
    .action(async (opts: { name: string; node: string }) => {
      await rebootNode(opts.name, opts.node, out);
      out(`node ${opts.node} of sandbox "${opts.name}" is starting again; its pods come back as its kubelet restarts them`);
    });

  sandbox
    .command('down')
    .description('remove everything the sandbox created, also after a crash')
    .addOption(nameOption())
    .option('--all', 'every meshlet sandbox on this host')
    .action(async (opts: { name: string; all?: boolean }) => {
      if (opts.all) {
        const names = await downAll();
        out(names.length ? `removed sandboxes: ${names.join(', ')}` : 'no sandboxes');
      } else {
        await down(opts.name);
        out(`sandbox "${opts.name}" is down`);
      }
    });

  sandbox
    .command('demo')
    .description('a sandbox with sample workloads (npm start); Ctrl-C tears it down')
    .addOption(nameOption())
    .option('--nodes <n>', 'number of nodes', parseNodes, 2)
    .action(async (opts: { name: string; nodes: number }) => {
      await runDemo({ name: opts.name, nodes: opts.nodes, out });
    });

  sandbox
    .command('supervise', { hidden: true })
    .description('run and restart the control plane, or one node\'s kubelet and kube-proxy (started by `up`)')
    .addOption(nameOption())
    .option('--node <node>', 'node name')
    .option('--control-plane', 'supervise the control plane')
    .action(async (opts: { name: string; node?: string; controlPlane?: boolean }) => {
      if (opts.controlPlane) await runControlPlaneSupervisor(opts.name);
      else if (opts.node) await runSupervisor(opts.name, opts.node);
      else throw new ConfigError('supervise needs --node NAME or --control-plane');
    });

  return sandbox;
}
