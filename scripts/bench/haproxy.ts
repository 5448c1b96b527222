// The haproxy-mtls baseline: one haproxy per node in TCP mode, inside that
// node's network namespace and a cgroup below the node's (so `sandbox down`
// kills it). Node-1's accepts plaintext on its pod gateway address and
// originates TLS 1.3 with a client certificate; node-2's terminates it,
// requires and verifies the client certificate, and forwards to the server pod.
// Each starts on its node's CPUs (cpus.ts), so it sizes its threads to them.
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SandboxNodeInfo } from '../../sandbox/info.ts';
import { spawnIn } from '../../sandbox/proc.ts';
import { issueLeaf, loadRoot } from './certs.ts';
import { pinnedArgv } from './cpus.ts';
import { BenchSetupError } from './errors.ts';

/** Where the client pod addresses node-1's haproxy (on node-1's pod gateway address). */
export const FRONT_PORT = 18080;
/** node-2's TLS listener on its underlay address. */
export const TLS_PORT = 18443;

export interface HaproxyPair {
  /** URL base the client uses: node-1's haproxy. */
  base: string;
  pids: number[];
  /** Files a TLS client needs to talk to node-2's listener directly (sanity checks). */
  rootCertFile: string;
  clientPemFile: string;
  serverName: string;
  logs: string[];
  stop(): void;
}

const serverNameOf = (node: SandboxNodeInfo): string => `haproxy.${node.name}.bench`;

function originatorConfig(front: SandboxNodeInfo, back: SandboxNodeInfo, crt: string, ca: string): string {
  const sni = serverNameOf(back);
  return `${GLOBAL}
frontend bench_out
  bind ${front.captureIp4}:${FRONT_PORT}
  default_backend bench_peer

backend bench_peer
  server ${back.name} ${back.nodeIp4}:${TLS_PORT} ssl crt ${crt} ca-file ${ca} verify required sni str(${sni}) verifyhost ${sni}
`;
}

function terminatorConfig(back: SandboxNodeInfo, crt: string, ca: string, server: string): string {
  return `${GLOBAL}
frontend bench_in
  bind ${back.nodeIp4}:${TLS_PORT} ssl crt ${crt} ca-file ${ca} verify required
  default_backend bench_app

backend bench_app
  server app ${server}
`;
}

// TLS 1.3 only, as meshlet's HBONE; idle timeouts long enough for the idle-connection figure.
const GLOBAL = `# meshlet bench haproxy-mtls baseline (generated)
global
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.3
  ssl-default-server-options ssl-min-ver TLSv1.3

defaults
  mode tcp
  timeout connect 5s
  timeout client 15m
  timeout server 15m
`;

/**
 * Writes certificates and configs under `dir` and starts both haproxies,
 * on `cpus` (front's, back's); `server` is the server pod's ip:port. Caller
 * waits for readiness.
 */
export async function startHaproxyPair(dir: string, sandbox: string, front: SandboxNodeInfo, back: SandboxNodeInfo, server: string, cpus: readonly [string, string]): Promise<HaproxyPair> {
  await mkdir(dir, { recursive: true });
  const root = await loadRoot(sandbox);
  const ca = join(dir, 'root-cert.pem');
  await writeFile(ca, root.certPem);
  const pems: string[] = [];
  for (const node of [front, back]) {
    const leaf = await issueLeaf(root, serverNameOf(node), `spiffe://cluster.local/ns/bench/sa/haproxy-${node.name}`);
    const pem = join(dir, `${node.name}.pem`);
    await writeFile(pem, leaf.certPem + leaf.keyPem, { mode: 0o600 });
    pems.push(pem);
  }
  const configs = [originatorConfig(front, back, pems[0]!, ca), terminatorConfig(back, pems[1]!, ca, server)];
  const children: ChildProcess[] = [];
  const logs: string[] = [];
  const stop = () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  };
  try {
    for (const [i, node] of [front, back].entries()) {
      const cfg = join(dir, `${node.name}.cfg`);
      await writeFile(cfg, configs[i]!);
      const cgroup = join(node.cgroup, 'bench-haproxy');
      await mkdir(cgroup, { recursive: true });
      const log = join(dir, `${node.name}.log`);
      logs.push(log);
      const fd = openSync(log, 'a');
      try {
        // -db: foreground, so the pid is haproxy's own (taskset execs it) and its cgroup holds it.
        children.push(spawnIn({ cgroup, netns: node.netns }, pinnedArgv(cpus[i]!, ['haproxy', '-db', '-f', cfg]), { stdio: ['ignore', fd, fd] }));
      } finally {
        closeSync(fd);
      }
      children.at(-1)!.on('error', () => undefined);
    }
    await new Promise((r) => setTimeout(r, 300));
    const dead = children.findIndex((c) => c.exitCode !== null);
    if (dead >= 0) {
      // The log goes with the sandbox's run dir, so quote it.
      const tail = (await readFile(logs[dead]!, 'utf8').catch(() => '')).trim().split('\n').slice(-8).join('\n');
      throw new BenchSetupError(`haproxy on ${[front, back][dead]!.name} exited at start:\n${tail}`);
    }
  } catch (err) {
    stop();
    throw err;
  }
  return {
    base: `http://${front.captureIp4}:${FRONT_PORT}`,
    pids: children.map((c) => c.pid!),
    rootCertFile: ca,
    clientPemFile: pems[0]!,
    serverName: serverNameOf(back),
    logs,
    stop,
  };
}
