// The sandbox itself, on real namespaces and cgroups and a real control
// plane: Nodes and pods on both, direct (un-enrolled) pod-to-pod traffic
// across nodes over IPv4 and IPv6, kubectl, status, pods confined as a
// container runtime confines them on routed links that refuse other source
// addresses, restarts, recovery after a crash, and a teardown that leaves
// nothing behind. Needs root; under
// CI=true it never skips.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import {
  ApplyRefusedError, sandboxApply, sandboxDelete, sandboxDown, sandboxExec, sandboxIsRunning, sandboxSpawn, sandboxStatus, sandboxUp, SandboxRunningError,
  type SandboxInfo,
} from '../../sandbox/api.ts';
import { cgroup2Root, cgroupProcs } from '../../sandbox/cgroup.ts';
import { CLI_MAIN, REPO_ROOT } from '../../sandbox/layout.ts';
import { MESHLET_NAMESPACE } from '../../sandbox/node-pod.ts';
import { eventually } from '../support/eventually.ts';

const run = promisify(execFile);

/** Pids in a pod's cgroup: the kubelet runs each container in a cgroup of its own below the pod's. */
async function podProcs(podCgroup: string): Promise<number[]> {
  const below = readdirSync(podCgroup, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(podCgroup, e.name));
  return (await Promise.all([podCgroup, ...below].map(cgroupProcs))).flat().sort((a, b) => a - b);
}
const name = `t${randomBytes(4).toString('hex')}`;
const prefix = `meshlet-${name}`;

function unavailable(): string | false {
  if (process.platform !== 'linux') return 'the sandbox needs Linux';
  if (process.getuid?.() !== 0) return 'the sandbox needs root';
  if (!readFileSync('/proc/self/mounts', 'utf8').includes(' cgroup2 ')) return 'the sandbox needs cgroup v2';
  return false;
}
const skip = process.env.CI === 'true' ? false : unavailable();

const podsYaml = `
apiVersion: v1
kind: Namespace
metadata:
  name: lc
---
apiVersion: v1
kind: Pod
metadata:
  name: alpha
  namespace: lc
  labels: {app: alpha}
spec:
  nodeName: node-1
  containers:
    - name: echo
      image: node
      command: [node, scripts/workloads/http-echo.ts, --port, "8080"]
      env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
---
apiVersion: v1
kind: Pod
metadata:
  name: beta
  namespace: lc
  labels: {app: beta}
spec:
  nodeName: node-2
  containers:
    - name: web
      image: python
      command: [python3, -m, http.server, "8080", --bind, "::"]
---
apiVersion: v1
kind: Service
metadata:
  name: beta
  namespace: lc
spec:
  selector: {app: beta}
  ports: [{port: 80, targetPort: 8080}]
`;

/** What the sandbox must never change: the root namespace's addresses, routes, rules and links. */
async function rootNetwork(): Promise<string> {
  const ip = async (...args: string[]): Promise<unknown> => JSON.parse((await run('ip', ['-j', ...args])).stdout || '[]');
  const addrs = (await ip('addr')) as { ifname: string; addr_info: { local: string; prefixlen: number }[] }[];
  const links = (await ip('link')) as { ifname: string }[];
  return JSON.stringify({
    addrs: addrs.map((l) => [l.ifname, l.addr_info.map((a) => `${a.local}/${a.prefixlen}`).sort()]),
    routes4: await ip('-4', 'route', 'show', 'table', 'all'),
    routes6: await ip('-6', 'route', 'show', 'table', 'all'),
    rules: await ip('rule'),
    links: links.map((l) => l.ifname).sort(),
  });
}

/** Everything of the sandbox that could outlive it, by its prefix. */
function leftovers(): string[] {
  const found: string[] = [];
  const netns = existsSync('/run/netns') ? readdirSync('/run/netns') : [];
  found.push(...netns.filter((n) => n.startsWith(`${prefix}-`)).map((n) => `netns ${n}`));
  if (existsSync(join(cgroup2Root(), prefix))) found.push(`cgroup ${join(cgroup2Root(), prefix)}`);
  if (existsSync(`/run/meshlet/${name}`)) found.push(`run dir /run/meshlet/${name}`);
  if (existsSync(`/sys/fs/bpf/meshlet/${name}`)) found.push(`pin dir /sys/fs/bpf/meshlet/${name}`);
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      // A killed process whose parent has not reaped it yet is dead already.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const cgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      if (cgroup.includes(`/${prefix}/`) || argv.some((a) => a.includes(prefix) || a.includes(`/run/meshlet/${name}/`)) || (argv.includes('supervise') && argv.includes(name))) {
        found.push(`process ${pid}: ${argv.join(' ')}`);
      }
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

const curl = async (from: string, url: string): Promise<string | undefined> => {
  const res = await sandboxExec(name, { pod: from, namespace: 'lc' }, ['curl', '-sS', '--max-time', '2', url], { timeoutMs: 5000 });
  return res.exitCode === 0 ? res.stdout : undefined;
};

const cli = async (...args: string[]): Promise<string> => (await run(process.execPath, [CLI_MAIN, 'sandbox', ...args])).stdout;
const cliStatus = async (): Promise<SandboxInfo> => JSON.parse(await cli('status', '--name', name, '-o', 'json')) as SandboxInfo;

const killSupervisors = async (): Promise<void> => {
  const status = await sandboxStatus(name);
  for (const pid of [...status.nodes.map((n) => n.supervisorPid), status.controlPlane.supervisorPid]) if (pid) process.kill(pid, 'SIGKILL');
  await eventually('supervisors to die', async () => ((await sandboxIsRunning(name)) ? undefined : true));
};

describe('sandbox lifecycle', { skip, timeout: 300_000 }, () => {
  let rootBefore = '';

  before(async () => {
    rootBefore = await rootNetwork();
    // The agent's own readiness is not this suite's concern.
    await sandboxUp({ name, nodes: 2, waitReady: false });
  });

  after(async () => {
    await sandboxDown(name);
    assert.deepEqual(leftovers(), [], 'down left things behind');
    assert.equal(await rootNetwork(), rootBefore, 'the root network namespace changed');
  });

  it('runs pods on both nodes that reach each other directly over IPv4 and IPv6', async () => {
    const applied = await sandboxApply(name, podsYaml);
    assert.deepEqual(applied.map((r) => `${r.ref} ${r.action}`), ['namespace/lc created', 'pod/alpha created', 'pod/beta created', 'service/beta created']);
    const info = await sandboxStatus(name);
    const alpha = info.pods.find((p) => p.name === 'alpha')!;
    const beta = info.pods.find((p) => p.name === 'beta')!;
    assert.equal(alpha.node, 'node-1');
    assert.equal(beta.node, 'node-2');
    assert.match(alpha.ip, /^10\.244\.1\.\d+$/);
    assert.match(beta.ip6 ?? '', /^fd00:244:2::/);

    const v4 = await eventually('alpha -> beta over IPv4', () => curl('alpha', `http://${beta.ip}:8080/`));
    assert.match(v4, /Directory listing/);
    const v6 = await eventually('alpha -> beta over IPv6', () => curl('alpha', `http://[${beta.ip6}]:8080/`));
    assert.match(v6, /Directory listing/);
    const back = JSON.parse((await eventually('beta -> alpha over IPv4', () => curl('beta', `http://${alpha.ip}:8080/hello`)))) as { pod: string; peer: string };
    assert.equal(back.pod, 'alpha');
    assert.equal(back.peer.replace(/^::ffff:/, '').split(':')[0], beta.ip, 'un-enrolled traffic keeps its source address');

    const exit = await sandboxExec(name, { pod: 'alpha', namespace: 'lc' }, ['sh', '-c', 'cat; exit 3'], { input: 'hi' });
    assert.deepEqual([exit.stdout, exit.exitCode], ['hi', 3]);
    const vip = (await sandboxStatus(name)).services?.find((s) => s.name === 'beta')?.clusterIPs[0];
    const resolved = await sandboxExec(name, { pod: 'alpha', namespace: 'lc' }, ['getent', 'hosts', 'beta', 'beta.lc.svc.cluster.local']);
    assert.match(resolved.stdout, new RegExp(`^${vip?.replaceAll('.', '\\.')}\\s+beta\\.lc\\.svc\\.cluster\\.local`, 'm'), 'Service names resolve in pods');

    const child = await sandboxSpawn(name, { pod: 'beta', namespace: 'lc' }, ['cat']);
    child.stdin!.write('ping\n');
    const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
    assert.equal(chunk.toString(), 'ping\n');
    child.kill();
  });

  it('reports nodes, pods and Services with `status -o json`', async () => {
    const info = await cliStatus();
    assert.equal(info.name, name);
    assert.equal(info.controlPlane.kubeconfig, `/run/meshlet/${name}/kubeconfig`);
    assert.match(info.controlPlane.hostServer, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(info.controlPlane.server, 'https://10.200.0.2:6443');
    assert.ok(info.controlPlane.supervisorPid, 'the control plane has a live supervisor');
    assert.deepEqual(info.nodes.map((n) => [n.name, n.netns, n.nodeIp4, n.nodeIp6, n.podCidr, n.captureIp4, n.inboundSourceIp4]), [
      // As the DaemonSet renders them: capture on the node's own address, the inbound source one every node holds.
      ['node-1', `${prefix}-node-1`, '10.200.0.11', 'fd00:200::11', '10.244.1.0/24', '10.200.0.11', '169.254.7.7'],
      ['node-2', `${prefix}-node-2`, '10.200.0.12', 'fd00:200::12', '10.244.2.0/24', '10.200.0.12', '169.254.7.7'],
    ]);
    for (const n of info.nodes) {
      assert.ok(n.supervisorPid && n.supervisorPid > 0, `${n.name} has a live supervisor`);
      assert.equal(n.bpfDir, `/sys/fs/bpf/meshlet/${name}/${n.name}`);
      assert.equal(n.cgroup, join(cgroup2Root(), prefix, n.name));
    }
    info.pods = info.pods.filter((p) => p.namespace !== MESHLET_NAMESPACE);
    assert.deepEqual(info.pods.map((p) => [p.namespace, p.name, p.node, p.enrolled, p.running]), [
      ['lc', 'alpha', 'node-1', false, true],
      ['lc', 'beta', 'node-2', false, true],
    ]);
    // Pod cgroups in the kubelet's own layout: node-1 as the systemd driver names them, node-2 as cgroupfs
    // does; the fixture's pods ask for no resources, so they are BestEffort.
    assert.deepEqual(info.nodes.map((n) => n.cgroupDriver), ['systemd', 'cgroupfs']);
    const kubeletLayout: Record<string, (uid: string) => string> = {
      'node-1': (uid) => `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${uid.replaceAll('-', '_')}.slice`,
      'node-2': (uid) => `kubepods/besteffort/pod${uid}`,
    };
    for (const p of info.pods) {
      assert.equal(p.netns, `${prefix}-${p.uid.slice(0, 8)}`);
      assert.equal(p.cgroup, join(cgroup2Root(), prefix, p.node, kubeletLayout[p.node]!(p.uid)));
      assert.ok((await podProcs(p.cgroup)).length > 0, `${p.name}'s container runs below ${p.cgroup}`);
    }
    assert.match(info.services?.find((s) => s.name === 'beta')?.clusterIPs[0] ?? '', /^10\.96\.\d+\.\d+$/);
  });

  it('is a cluster to kubectl: Nodes Ready with their CIDRs and addresses, pods Running with IPs', async () => {
    const nodes = JSON.parse(await cli('kubectl', '--name', name, '--', 'get', 'nodes', '-o', 'json')) as { items: { metadata: { name: string }; spec: { podCIDRs: string[] }; status: { addresses: { type: string; address: string }[]; conditions: { type: string; status: string }[] } }[] };
    assert.deepEqual(nodes.items.map((n) => [n.metadata.name, n.spec.podCIDRs, n.status.addresses.filter((a) => a.type === 'InternalIP').map((a) => a.address), n.status.conditions.find((c) => c.type === 'Ready')?.status]), [
      ['node-1', ['10.244.1.0/24', 'fd00:244:1::/64'], ['10.200.0.11', 'fd00:200::11'], 'True'],
      ['node-2', ['10.244.2.0/24', 'fd00:244:2::/64'], ['10.200.0.12', 'fd00:200::12'], 'True'],
    ]);
    const wide = await cli('kubectl', '--name', name, '--', 'get', 'pods', '-n', 'lc', '-o', 'wide');
    assert.match(wide, /^alpha\s+1\/1\s+Running\s+0\s+\S+\s+10\.244\.1\.\d+\s+node-1\s/m);
    assert.match(wide, /^beta\s+1\/1\s+Running\s+0\s+\S+\s+10\.244\.2\.\d+\s+node-2\s/m);
    // The printed kubeconfig works with any kubectl on the host, through the loopback relay.
    assert.equal((await cli('kubeconfig', '--name', name)).trim(), `/run/meshlet/${name}/kubeconfig`);
  });

  it('enrolls by re-applying labels, keeping pod identity and processes', async () => {
    const lcPods = async () => (await sandboxStatus(name)).pods.filter((p) => p.namespace === 'lc');
    const before = { pods: await lcPods() };
    const betaPids = await podProcs(before.pods.find((p) => p.name === 'beta')!.cgroup);
    assert.ok(betaPids.length > 0);
    const relabel = podsYaml
      .replace('  name: lc\n', '  name: lc\n  labels: {istio.io/dataplane-mode: ambient}\n')
      .replace('labels: {app: beta}', 'labels: {app: beta, istio.io/dataplane-mode: none}');
    const results = await sandboxApply(name, relabel);
    assert.deepEqual(results.map((r) => r.action), ['configured', 'unchanged', 'configured', 'unchanged']);
    const afterwards = { pods: await lcPods() };
    assert.deepEqual(afterwards.pods.map((p) => [p.name, p.enrolled]), [['alpha', true], ['beta', false]]);
    assert.deepEqual(afterwards.pods.map((p) => [p.uid, p.ip]), before.pods.map((p) => [p.uid, p.ip]));
    assert.deepEqual(await podProcs(afterwards.pods.find((p) => p.name === 'beta')!.cgroup), betaPids);
  });

  it('refuses what the API server refuses alone, runs image-only containers idle, and deletes pods completely', async () => {
    const manifest = `
apiVersion: v1
kind: Pod
metadata: {name: no-containers, namespace: lc}
spec:
  containers: []
---
apiVersion: v1
kind: Pod
metadata: {name: image-only, namespace: lc}
spec:
  containers: [{name: app, image: nginx}]
---
apiVersion: v1
kind: Pod
metadata: {name: gamma, namespace: lc}
spec:
  containers: [{name: app, image: busybox, command: [sleep, infinity]}]
`;
    await assert.rejects(sandboxApply(name, manifest), (err: unknown) => {
      assert.ok(err instanceof ApplyRefusedError);
      assert.match(err.message, /no-containers: HTTP 422: .*spec\.containers: Required value/);
      return true;
    });
    const pods = (await sandboxStatus(name)).pods;
    const gamma = pods.find((p) => p.name === 'gamma');
    assert.ok(gamma?.running, 'the rest of the manifest applied');
    assert.ok(pods.find((p) => p.name === 'image-only')?.running, 'a container without a command runs idle');
    const deleted = await sandboxDelete(name, manifest, { strict: false });
    assert.deepEqual(deleted.map((r) => r.action), ['not found', 'deleted', 'deleted']);
    await eventually('pod namespace and cgroup removed', () => !existsSync(`/run/netns/${gamma.netns}`) && !existsSync(gamma.cgroup));
    assert.equal((await sandboxStatus(name)).pods.some((p) => p.name === 'gamma'), false);
  });

  it('confines pods as a container runtime does, on routed links of their own: no other source address, no way to the inbound source', async () => {
    const manifest = `
apiVersion: v1
kind: Namespace
metadata: {name: iso}
---
apiVersion: v1
kind: Pod
metadata: {name: mallory, namespace: iso}
spec:
  nodeName: node-1
  containers: [{name: app, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: target, namespace: iso}
spec:
  nodeName: node-1
  containers: [{name: app, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: minimal, namespace: iso}
spec:
  nodeName: node-2
  containers: [{name: app, image: busybox, securityContext: {capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: netadmin, namespace: iso}
spec:
  nodeName: node-2
  restartPolicy: Never
  containers: [{name: app, image: busybox, securityContext: {capabilities: {add: [NET_ADMIN]}}}]
`;
    const applied = await sandboxApply(name, manifest);
    assert.match(applied.find((r) => r.name === 'netadmin')?.warning ?? '', /StartError: container "app": securityContext\.capabilities\.add NET_ADMIN is refused/);
    const info = await sandboxStatus(name);
    const node1 = info.nodes.find((n) => n.name === 'node-1')!;
    const podOf = (pod: string) => info.pods.find((p) => p.name === pod)!;
    const [mallory, target, alpha, beta] = [podOf('mallory'), podOf('target'), podOf('alpha'), podOf('beta')];
    const iso = (pod: string, argv: string[]) => sandboxExec(name, { pod, namespace: 'iso' }, argv, { timeoutMs: 15_000 });

    // containerd's default capabilities (Docker's 0xa80425fb) and no other, for the container and what it execs.
    const fields = async (pod: string): Promise<string[]> => {
      const status = (await iso(pod, ['cat', '/proc/self/status'])).stdout;
      return ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs'].map((k) => status.match(new RegExp(`^${k}:\\s*(\\S+)$`, 'm'))?.[1] ?? `${k} missing`);
    };
    assert.deepEqual(await fields('mallory'), ['0000000000000000', '00000000a80425fb', '00000000a80425fb', '00000000a80425fb', '0000000000000000', '1']);
    assert.deepEqual(await fields('minimal'), ['0000000000000000', '0000000000000400', '0000000000000400', '0000000000000400', '0000000000000000', '1'], 'drop ALL, add NET_BIND_SERVICE');
    const claim = await iso('mallory', ['ip', 'addr', 'add', `${node1.inboundSourceIp4}/32`, 'dev', 'eth0']);
    assert.notEqual(claim.exitCode, 0);
    assert.match(claim.stderr, /Operation not permitted/);
    const enter = await iso('mallory', ['nsenter', `--net=/run/netns/${node1.netns}`, 'true']);
    assert.match(enter.stderr, /Operation not permitted/);
    const move = await iso('mallory', ['sh', '-c', `echo $$ > ${join(node1.cgroup, 'kube-proxy', 'cgroup.procs')}`]);
    assert.match(move.stderr, /Read-only file system/, 'a pod cannot move itself into another cgroup');
    // The nodes' credentials and the components' sockets are not a pod's to read or dial.
    const secrets = await iso('mallory', ['sh', '-c', `ls -A /run/meshlet; cat ${node1.kubeletKubeconfig}`]);
    assert.equal(secrets.stdout, '', 'the sandbox run root is an empty directory in pods');
    assert.match(secrets.stderr, /No such file or directory/);

    // Raw datagrams to target (same node) claiming other sources never arrive; mallory's own do, after them on the same path.
    const listener = await sandboxSpawn(name, { pod: 'target', namespace: 'iso' }, ['python3', '-u', join(REPO_ROOT, 'test/e2e/fixtures/udp-listen.py'), '9999']);
    let heard = '';
    listener.stdout!.on('data', (c: Buffer) => (heard += c.toString()));
    try {
      await eventually('the listener in target', () => heard.includes('listening\n') || undefined);
      const spoof = async (src: string, dst: string, payload: string): Promise<void> => {
        const r = await iso('mallory', ['python3', join(REPO_ROOT, 'test/e2e/fixtures/spoof-udp.py'), src, dst, '9999', payload]);
        assert.equal(r.exitCode, 0, `raw send from ${src}: ${r.stderr}`);
      };
      const claims: [string, string][] = [
        ['pod-same-node', alpha.ip], ['pod-other-node', beta.ip], ['inbound-source', node1.inboundSourceIp4!], ['capture', node1.captureIp4],
        ['pod-same-node6', alpha.ip6!], ['pod-other-node6', beta.ip6!], ['inbound-source6', node1.inboundSourceIp6!], ['capture6', node1.captureIp6!],
      ];
      for (const [tag, src] of claims) await spoof(src, tag.endsWith('6') ? target.ip6! : target.ip, tag);
      await spoof(mallory.ip, target.ip, 'own');
      await spoof(mallory.ip6!, target.ip6!, 'own6');
      await eventually('mallory\'s own datagrams', () => (heard.includes('own ') && heard.includes('own6 ')) || undefined);
      assert.deepEqual(heard.split('\n').filter((l) => l !== '' && l !== 'listening').sort(), [`own ${mallory.ip}`, `own6 ${mallory.ip6}`]);
    } finally {
      listener.kill();
    }

    // The same listener on the node's capture and inbound source addresses: pods reach the first only.
    const addresses = [node1.captureIp4, node1.inboundSourceIp4!, node1.captureIp6!, node1.inboundSourceIp6!];
    const url = (ip: string) => `${ip.includes(':') ? `[${ip}]` : ip}:18080`;
    const listen = (ip: string) => (ip.includes(':') ? `TCP6-LISTEN:18080,bind=[${ip}],reuseaddr,fork` : `TCP4-LISTEN:18080,bind=${ip},reuseaddr,fork`);
    const listeners = addresses.map((ip) => spawn('nsenter', [`--net=/run/netns/${node1.netns}`, '--', 'socat', listen(ip), 'SYSTEM:echo here'], { stdio: 'ignore' }));
    try {
      for (const ip of addresses) {
        await eventually(`the node's listener on ${ip}`, async () => (await run('nsenter', [`--net=/run/netns/${node1.netns}`, '--', 'socat', '-T2', '-', `TCP:${url(ip)}`])).stdout.includes('here') || undefined);
      }
      const fromPod = async (ip: string) => (await iso('mallory', ['socat', '-T2', '-', `TCP:${url(ip)},connect-timeout=2`])).stdout;
      assert.deepEqual(await Promise.all(addresses.map(fromPod)), ['here\n', '', 'here\n', '']);
    } finally {
      for (const l of listeners) l.kill();
      await Promise.all(listeners.map((l) => (l.exitCode === null && l.signalCode === null ? once(l, 'exit') : undefined)));
    }
    await sandboxDelete(name, manifest);
  });

  it('restarts a node component that dies: its node\'s kubelet starts the container again', async () => {
    const node = (await sandboxStatus(name)).nodes[0]!;
    const ztunnelOf = async () => (await sandboxStatus(name)).nodes.find((n) => n.name === node.name)!;
    const { ztunnelPid, ztunnelRestarts } = await eventually('the ztunnel container to run', async () => {
      const now = await ztunnelOf();
      return now.ztunnelPid ? now : undefined;
    }, 60_000);
    process.kill(ztunnelPid!, 'SIGKILL');
    await eventually('the ztunnel to be restarted', async () => {
      const now = await ztunnelOf();
      return (now.ztunnelRestarts ?? 0) > (ztunnelRestarts ?? 0) && now.ztunnelPid !== undefined && now.ztunnelPid !== ztunnelPid ? true : undefined;
    }, 60_000);
  });

  it('refuses a second up, and comes back after its supervisors are killed', async () => {
    await assert.rejects(sandboxUp({ name, nodes: 2, waitReady: false }), SandboxRunningError);

    await killSupervisors();
    await sandboxDown(name);
    assert.deepEqual(leftovers(), []);
    let info = await sandboxUp({ name, nodes: 2, waitReady: false });
    assert.equal(info.nodes.filter((n) => n.supervisorPid).length, 2);

    // Straight after a crash, without down: up cleans the leftovers itself.
    await sandboxApply(name, podsYaml);
    await killSupervisors();
    info = await sandboxUp({ name, nodes: 2, waitReady: false });
    assert.equal(info.nodes.filter((n) => n.supervisorPid).length, 2);
    // Listed before the pods: a pod's namespace cannot exist before the pod.
    const netns = readdirSync('/run/netns').filter((n) => n.startsWith(`${prefix}-`));
    const pods = (await sandboxStatus(name)).pods;
    assert.deepEqual(pods.filter((p) => p.namespace !== MESHLET_NAMESPACE), [], 'a fresh cluster: only meshlet\'s own pods');
    assert.equal(netns.filter((n) => !pods.some((p) => p.netns === n)).length, 3, 'underlay and two nodes, no stale pods');
  });
});
