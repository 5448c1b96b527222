// `meshlet install`'s stream, read back as kubectl reads it: each flag lands
// in the fields it names; each container's arguments are what its own flag
// table parses, once the kubelet has expanded $(VAR); a name one object uses
// to find another (a ConfigMap, a volume, a socket, the CA's address and
// audience) is the same on both sides; the RBAC is daemonset/rbac.yaml's; and
// the uninstall names every object once, node pods first.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Command } from 'commander';
import { HttpMethod, KubeConfig, RequestContext } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { AGENT_FLAGS, type AgentConfig } from '../../lib/config/agent.ts';
import { CA_FLAGS, DEFAULT_TOKEN_AUDIENCE, parseSecretRef, type CaConfig } from '../../lib/config/ca.ts';
import { addFlags, type FlagTable } from '../../lib/config/flags.ts';
import { ZTUNNEL_FLAGS, type ZtunnelConfig } from '../../lib/config/ztunnel.ts';
import { PORTS } from '../../lib/mesh/model.ts';
import { ConfigError } from '../../lib/core/errors.ts';
import { podCgroupPath } from '../../lib/cluster/cgroup-layout.ts';
import { agentEntryScript, AGENT_CAPABILITIES, ztunnelEntryScript } from '../../lib/install/node.ts';
import { kubeconfigText } from '../../lib/install/ca-deployment.ts';
import * as names from '../../lib/install/names.ts';
import { INSTALL_FLAGS, installDefaults, type InstallOptions } from '../../lib/install/options.ts';
import { RBAC_FILE } from '../../lib/install/rbac.ts';
import { renderInstall, renderUninstall } from '../../lib/install/render.ts';
import { expandVars } from '../../sandbox/kubelet/sandbox-runtime.ts';

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: unknown };
type Container = { name: string; image: string; command: string[]; args: string[]; env?: { name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }[]; volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[]; securityContext: Record<string, unknown>; readinessProbe?: { httpGet: { path: string; port: number | string; scheme?: string } }; ports?: { name: string; containerPort: number }[] };
type Volume = { name: string; [source: string]: unknown };
type PodSpec = { serviceAccountName: string; containers: Container[]; volumes: Volume[]; [k: string]: unknown };

const stream = (text: string): Obj[] => parseAllDocuments(text).map((d) => d.toJS() as Obj | null).filter((o): o is Obj => o !== null);
const rendered = (o: Partial<InstallOptions> = {}): Obj[] => stream(renderInstall({ ...installDefaults(), ...o }));
const find = (objects: Obj[], kind: string, name: string): Obj => {
  const found = objects.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(found, `the stream has a ${kind} ${name}`);
  return found;
};
const podSpec = (o: Obj): PodSpec => (o.spec as { template: { spec: PodSpec } }).template.spec;
const container = (spec: PodSpec, name: string): Container => {
  const c = spec.containers.find((x) => x.name === name);
  assert.ok(c, `container ${name}`);
  return c;
};

function parse<C>(table: FlagTable<C>, args: readonly string[]): C {
  const command = addFlags(new Command('x').exitOverride(), table);
  command.parse([...args], { from: 'user' });
  return command.opts() as C;
}

/** What the kubelet passes: the downward API's values for the container's env, $(VAR) expanded. */
const NODE = { name: 'node-a', ip: '192.0.2.10', podUid: '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0' };
function kubeletArgv(c: Container): string[] {
  const values: Record<string, string> = { 'spec.nodeName': NODE.name, 'status.hostIP': NODE.ip, 'status.hostIPs': NODE.ip, 'metadata.uid': NODE.podUid };
  const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? values[e.valueFrom!.fieldRef.fieldPath]]));
  return [...c.command, ...c.args].map((a) => expandVars(a, env));
}

/** A container's argv after its entry script: what follows `sh -c <script> <name>`. */
const argsAfterEntry = (c: Container): string[] => kubeletArgv(c).slice(4);

function nodePod(objects: Obj[]): PodSpec {
  return podSpec(find(objects, 'DaemonSet', names.NODE_DAEMONSET));
}

function parsedComponents(objects: Obj[]) {
  const node = nodePod(objects);
  const ca = podSpec(find(objects, 'Deployment', names.CA_NAME));
  return {
    node, ca,
    agent: parse<AgentConfig>(AGENT_FLAGS, ['--ztunnel-cgroup', '/sys/fs/cgroup/pod', ...argsAfterEntry(container(node, names.AGENT_CONTAINER))]),
    ztunnel: parse<ZtunnelConfig>(ZTUNNEL_FLAGS, argsAfterEntry(container(node, names.ZTUNNEL_CONTAINER))),
    caFlags: parse<CaConfig>(CA_FLAGS, kubeletArgv(container(ca, names.CA_CONTAINER)).slice(2)),
  };
}

/** Where `file` is in the container: the volume mounted above it, and the path inside that volume. */
function volumeOf(spec: PodSpec, c: Container, file: string): { volume: Volume; inside: string } {
  const mount = c.volumeMounts.find((m) => file.startsWith(`${m.mountPath}/`));
  assert.ok(mount, `${c.name} mounts something above ${file}`);
  const volume = spec.volumes.find((v) => v.name === mount.name);
  assert.ok(volume, `volume ${mount.name}`);
  return { volume, inside: file.slice(mount.mountPath.length + 1) };
}

test('the same flags print the same bytes', () => {
  assert.equal(renderInstall(installDefaults()), renderInstall(installDefaults()));
  assert.equal(renderUninstall('meshlet-system'), renderUninstall('meshlet-system'));
});

test('the stream holds rbac.yaml\'s objects, the kubeconfig, the CA and the DaemonSet, in apply order', () => {
  const objects = rendered();
  const rbac = stream(readFileSync(RBAC_FILE, 'utf8'));
  assert.deepEqual(objects.map((o) => `${o.kind}/${o.metadata.name}`), [
    ...rbac.map((o) => `${o.kind}/${o.metadata.name}`),
    `ConfigMap/${names.KUBECONFIG_CONFIGMAP}`, `Service/${names.CA_NAME}`, `Deployment/${names.CA_NAME}`, `DaemonSet/${names.NODE_DAEMONSET}`,
  ]);
  assert.equal(objects[0]!.kind, 'Namespace');
  for (const o of objects.slice(1)) {
    const clusterScoped = o.kind === 'ClusterRole' || o.kind === 'ClusterRoleBinding';
    assert.equal(o.metadata.namespace, clusterScoped ? undefined : 'meshlet-system', `${o.kind} ${o.metadata.name}`);
  }
});

test('RBAC is rbac.yaml\'s, unchanged but for the namespace', () => {
  const rbac = stream(readFileSync(RBAC_FILE, 'utf8'));
  const isRbac = (o: Obj) => o.kind !== 'Namespace';
  assert.deepEqual(rendered().filter(isRbac).slice(0, rbac.length - 1), rbac.filter(isRbac));
  const moved = JSON.parse(JSON.stringify(rbac.filter(isRbac)).replaceAll('"meshlet-system"', '"mesh-ops"')) as Obj[];
  assert.deepEqual(rendered({ namespace: 'mesh-ops' }).filter(isRbac).slice(0, moved.length), moved);
  const ns = rendered({ namespace: 'mesh-ops' })[0]!;
  assert.equal(ns.metadata.name, 'mesh-ops');
  assert.equal(ns.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'privileged');
});

test('--namespace moves every object, the CA\'s address, root Secret and node account', () => {
  const objects = rendered({ namespace: 'mesh-ops' });
  for (const o of objects) if (o.metadata.namespace !== undefined) assert.equal(o.metadata.namespace, 'mesh-ops', `${o.kind} ${o.metadata.name}`);
  const { ztunnel, caFlags } = parsedComponents(objects);
  assert.equal(ztunnel.caUrl, 'https://meshlet-ca.mesh-ops.svc:15012');
  assert.equal(caFlags.waypointCaUrl, ztunnel.caUrl);
  assert.deepEqual(parseSecretRef(caFlags.rootSecret), { namespace: 'mesh-ops', name: names.ROOT_SECRET_NAME });
  assert.deepEqual(caFlags.nodeAccount, ['system:serviceaccount:mesh-ops:meshlet-agent']);
  for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
    for (const b of objects.filter((o) => o.kind === kind)) for (const s of b.subjects as { namespace: string }[]) assert.equal(s.namespace, 'mesh-ops');
  }
});

test('the containers\' arguments are what their own flag tables parse, with the node\'s name and address from the downward API', () => {
  const { agent, ztunnel, caFlags } = parsedComponents(rendered());
  assert.equal(agent.node, NODE.name);
  assert.equal(ztunnel.node, NODE.name);
  for (const ip of [agent.captureIp4, agent.inboundSourceIp4, agent.probeSourceIp4, ztunnel.captureIp4, ztunnel.nodeIp4, ztunnel.inboundSourceIp4]) assert.equal(ip, NODE.ip);
  assert.equal(agent.bpfDir, names.BPF_PIN_DIR);
  assert.equal(agent.kubeletCgroupRoot, names.HOST_CGROUP2_ROOT);
  assert.equal(agent.cgroupDriver, 'auto');
  assert.equal(agent.serviceCidrs, '10.96.0.0/12');
  // The agent pushes state to the ztunnel of its own pod.
  assert.equal(agent.controlSocket, ztunnel.controlSocket);
  assert.equal(agent.controlSocket, names.CONTROL_SOCKET);
  assert.notEqual(agent.adminSocket, ztunnel.adminSocket);
  assert.equal(ztunnel.trustDomain, caFlags.trustDomain);
  assert.equal(ztunnel.certTtl, caFlags.defaultTtl);
  assert.equal(ztunnel.certTtl, 86_400);
  assert.equal(caFlags.waypointController, true);
  assert.equal(caFlags.tokenAudience, DEFAULT_TOKEN_AUDIENCE);
});

test('each flag lands where it says', () => {
  const o: Partial<InstallOptions> = {
    image: 'registry.example/meshlet:0.1.0', trustDomain: 'example.org', cgroupDriver: 'systemd', certTtl: 3600,
    serviceCidrs: '10.0.0.0/16,fd00:10::/112', kubeletCgroupRoot: '/kubelet.slice', apiServer: 'https://192.0.2.1:6443', inboundSourceIp4: '169.254.7.6',
  };
  const objects = rendered(o);
  const { node, ca, agent, ztunnel, caFlags } = parsedComponents(objects);
  for (const c of [...node.containers, ...ca.containers]) assert.equal(c.image, o.image, c.name);
  assert.equal(caFlags.waypointImage, o.image);
  assert.equal(ztunnel.trustDomain, 'example.org');
  assert.equal(caFlags.trustDomain, 'example.org');
  assert.equal(agent.cgroupDriver, 'systemd');
  assert.equal(ztunnel.certTtl, 3600);
  assert.equal(caFlags.defaultTtl, 3600);
  assert.equal(agent.serviceCidrs, o.serviceCidrs);
  assert.equal(agent.kubeletCgroupRoot, '/sys/fs/cgroup/kubelet.slice');
  assert.equal(agent.inboundSourceIp4, '169.254.7.6');
  assert.equal(ztunnel.inboundSourceIp4, '169.254.7.6');
  const kubeconfig = find(objects, 'ConfigMap', names.KUBECONFIG_CONFIGMAP).data as Record<string, string>;
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfig[names.KUBECONFIG_KEY]!);
  assert.equal(kc.getCurrentCluster()?.server, o.apiServer);
  // The entry script looks in the systemd layout alone, under the kubelet's root.
  const script = agentEntryScript({ ...installDefaults(), ...o });
  assert.match(script, /"\/sys\/fs\/cgroup\/kubelet\.slice\/kubepods\.slice\/kubepods-burstable\.slice\/kubepods-burstable-pod\$\{unit\}\.slice"/);
  assert.doesNotMatch(script, /kubepods\/burstable/);
});

test('bad settings are refused with the flag named', () => {
  const bad: [keyof InstallOptions, string, RegExp][] = [
    ['namespace', 'Mesh', /--namespace "Mesh" is not a Kubernetes name/],
    ['certTtl', '721h', /--cert-ttl "721h" is longer than the CA grants/],
    ['kubeletCgroupRoot', 'kubelet', /--kubelet-cgroup-root "kubelet" must be/],
    ['kubeletCgroupRoot', '/a/../b', /--kubelet-cgroup-root/],
    ['kubeletCgroupRoot', '/a b', /--kubelet-cgroup-root/],
    ['apiServer', 'http://10.0.0.1:6443', /--api-server "http:\/\/10\.0\.0\.1:6443" is not https/],
    ['serviceCidrs', '10.96.0.0', /--service-cidrs/],
    ['cgroupDriver', 'cgroupv1', /--cgroup-driver must be one of systemd, cgroupfs, auto/],
    ['inboundSourceIp4', 'fd00::1', /--inbound-source-ip4 must be an IPv4 address/],
    ['image', 'a b', /--image "a b" is not an image reference/],
  ];
  for (const [key, text, message] of bad) {
    const spec = INSTALL_FLAGS[key];
    const flag = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    assert.throws(() => spec.parse!(text, flag), (err: unknown) => err instanceof ConfigError && message.test(err.message), `${flag} ${text}`);
  }
});

test('what one object names, the other serves: volumes, the CA\'s Service, its audience and account', () => {
  const objects = rendered();
  const { node, ca, ztunnel, caFlags } = parsedComponents(objects);
  for (const spec of [node, ca]) {
    const volumes = new Set(spec.volumes.map((v) => v.name));
    const mounted = new Set(spec.containers.flatMap((c) => c.volumeMounts.map((m) => m.name)));
    assert.deepEqual([...mounted].filter((v) => !volumes.has(v)), [], 'every mount names a volume');
    assert.deepEqual([...volumes].filter((v) => !mounted.has(v)), [], 'every volume is mounted');
  }
  // The ztunnel dials the CA's Service at its port, which targets the CA container's port.
  const service = find(objects, 'Service', names.CA_NAME);
  const url = new URL(ztunnel.caUrl!);
  assert.equal(url.hostname, `${service.metadata.name}.${service.metadata.namespace}.svc`);
  const [port] = (service.spec as { ports: { port: number; targetPort: string }[] }).ports;
  assert.equal(Number(url.port), port!.port);
  const caContainer = container(ca, names.CA_CONTAINER);
  assert.equal(caContainer.ports?.find((p) => p.name === port!.targetPort)?.containerPort, port!.port);
  assert.ok(caFlags.serverName.includes(url.hostname), 'the CA\'s certificate names the host the ztunnels dial');
  const selector = (service.spec as { selector: Record<string, string> }).selector;
  const caLabels = (find(objects, 'Deployment', names.CA_NAME).spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels;
  for (const [k, v] of Object.entries(selector)) assert.equal(caLabels[k], v);
  // The ztunnel's token is projected for the CA's audience, and its account is the CA's node account.
  const zt = container(node, names.ZTUNNEL_CONTAINER);
  const token = volumeOf(node, zt, ztunnel.caTokenFile!);
  const source = (token.volume.projected as { sources: { serviceAccountToken: { audience: string; path: string } }[] }).sources[0]!.serviceAccountToken;
  assert.equal(source.audience, caFlags.tokenAudience);
  assert.equal(source.path, token.inside);
  assert.deepEqual(caFlags.nodeAccount, [`system:serviceaccount:meshlet-system:${node.serviceAccountName}`]);
  // The trust bundle is the CA's ConfigMap, under the key the CA writes.
  const bundle = volumeOf(node, zt, ztunnel.caBundle!);
  assert.deepEqual(bundle.volume.configMap, { name: names.TRUST_BUNDLE_CONFIGMAP, optional: true });
  assert.equal(bundle.inside, names.TRUST_BUNDLE_KEY);
  // Both the agent and the CA read the kubeconfig ConfigMap the stream holds, and its credentials where their pod has them.
  const { agent } = parsedComponents(objects);
  for (const [spec, c, file] of [[node, container(node, names.AGENT_CONTAINER), agent.kubeconfig], [ca, caContainer, caFlags.kubeconfig]] as const) {
    const kc = volumeOf(spec, c, file);
    assert.deepEqual(kc.volume.configMap, { name: names.KUBECONFIG_CONFIGMAP });
    assert.equal(kc.inside, names.KUBECONFIG_KEY);
  }
  // The CA's account is rbac.yaml's, bound to its ClusterRole.
  assert.equal(ca.serviceAccountName, names.CA_ACCOUNT);
  const bindings = objects.filter((o) => o.kind === 'ClusterRoleBinding').map((b) => (b.subjects as { name: string }[])[0]!.name);
  assert.ok(bindings.includes(names.CA_ACCOUNT) && bindings.includes(node.serviceAccountName));
  // The readiness probe asks the ztunnel's readiness listener.
  assert.equal(zt.readinessProbe?.httpGet.port, ztunnel.readinessPort);
  assert.equal(ztunnel.readinessPort, PORTS.readiness);
  assert.equal(zt.readinessProbe?.httpGet.path, '/healthz/ready');
});

test('the node pod: host network and PID, every taint tolerated, surge without unavailability, capabilities not privilege', () => {
  const ds = find(rendered(), 'DaemonSet', names.NODE_DAEMONSET);
  const spec = podSpec(ds);
  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.hostPID, true);
  assert.equal(spec.dnsPolicy, 'ClusterFirstWithHostNet');
  assert.equal(spec.priorityClassName, 'system-node-critical');
  assert.deepEqual(spec.tolerations, [{ operator: 'Exists' }]);
  assert.deepEqual((ds.spec as { updateStrategy: unknown }).updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
  assert.deepEqual(spec.containers.map((c) => c.name), [names.AGENT_CONTAINER, names.ZTUNNEL_CONTAINER]);
  for (const c of spec.containers) {
    assert.equal(c.securityContext.privileged, false, c.name);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true, c.name);
    // Declared ports of a host-network pod become host ports, and the scheduler would keep a surge pod off its node.
    assert.equal(c.ports, undefined, c.name);
    assert.ok(((c as unknown as { resources: { requests: Record<string, string> } }).resources.requests.cpu), `${c.name} requests resources`);
  }
  const agent = container(spec, names.AGENT_CONTAINER);
  const zt = container(spec, names.ZTUNNEL_CONTAINER);
  assert.deepEqual(agent.securityContext.capabilities, { drop: ['ALL'], add: AGENT_CAPABILITIES.map((c) => c.name) });
  assert.deepEqual(AGENT_CAPABILITIES.map((c) => c.name), ['BPF', 'PERFMON', 'NET_ADMIN', 'SYS_ADMIN', 'SYS_PTRACE']);
  assert.deepEqual(zt.securityContext.capabilities, { drop: ['ALL'] });
  // The host paths are the ones the agent and ztunnel need (the CNI dirs for the plugin that holds new pods), and nothing more.
  const hostPaths = spec.volumes.filter((v) => v.hostPath).map((v) => (v.hostPath as { path: string }).path);
  assert.deepEqual(hostPaths, [names.HOST_BPFFS, names.HOST_CGROUP2_ROOT, names.HOST_RUN_DIR, '/etc/cni/net.d', '/opt/cni/bin']);
  const mountedAt = (c: Container, volume: string) => c.volumeMounts.find((m) => m.name === volume);
  assert.equal(mountedAt(zt, 'cni-conf'), undefined, 'the ztunnel sees no CNI config');
  assert.equal(mountedAt(agent, 'cgroup')?.readOnly, true);
  assert.equal(mountedAt(zt, 'bpffs'), undefined);
  assert.equal(mountedAt(zt, 'cgroup'), undefined);
  // An API token in the agent container alone: the ztunnel holds a token for the CA and nothing else.
  assert.equal(spec.automountServiceAccountToken, false);
  assert.ok(agent.volumeMounts.some((m) => m.mountPath === names.SERVICE_ACCOUNT_DIR));
  assert.ok(!zt.volumeMounts.some((m) => m.mountPath === names.SERVICE_ACCOUNT_DIR));
  // The ztunnel's young generation as the sandbox runs it; glibc's malloc at its defaults (the waypoint's tunables cost bulk transfers, ca/waypoint-objects.ts).
  assert.deepEqual(zt.env?.find((e) => e.name === 'NODE_OPTIONS'), { name: 'NODE_OPTIONS', value: '--max-semi-space-size=1' });
  assert.equal(zt.env?.find((e) => e.name === 'GLIBC_TUNABLES'), undefined);
  const grace = spec.terminationGracePeriodSeconds as number;
  const { ztunnel } = parsedComponents(rendered());
  assert.ok(ztunnel.drainSeconds < grace, 'the ztunnel drains within the pod\'s grace period');
});

/** Runs a node container's entry script as the kubelet would hand it to sh, with the node's cgroup v2 root at `root`, its hostIPs `hostIps` and a `meshlet` that prints its argv. */
function runEntry(o: InstallOptions, root: string, podUid: string, which: 'agent' | 'ztunnel' = 'agent', hostIps = NODE.ip): { status: number | null; stdout: string; stderr: string } {
  const c = container(nodePod(stream(renderInstall(o))), which === 'agent' ? names.AGENT_CONTAINER : names.ZTUNNEL_CONTAINER);
  const [sh, dashC, script, name, ...args] = kubeletArgv(c);
  assert.deepEqual([sh, dashC, name], ['/bin/sh', '-c', `meshlet-${which}`]);
  assert.equal(script, which === 'agent' ? agentEntryScript(o) : ztunnelEntryScript(o), 'the kubelet\'s expansion leaves the script as written');
  const bin = join(root, '..', 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, 'meshlet'), '#!/bin/sh\nprintf "%s\\n" "$@"\n');
  chmodSync(join(bin, 'meshlet'), 0o755);
  const result = spawnSync(sh!, [dashC!, script!.replaceAll(names.HOST_CGROUP2_ROOT, root), name!, ...args], {
    env: { PATH: `${bin}:/usr/bin:/bin`, POD_UID: podUid, HOST_IPS: hostIps }, encoding: 'utf8',
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('the agent\'s entry finds its pod\'s cgroup in either driver\'s layout and execs the agent with it', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-install-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const root = join(dir, 'cgroup');
  mkdirSync(root);
  writeFileSync(join(root, 'cgroup.controllers'), 'cpu memory\n');
  for (const [driver, qos] of [['systemd', 'Burstable'], ['cgroupfs', 'Guaranteed']] as const) {
    const podDir = join(root, podCgroupPath(NODE.podUid, qos, driver));
    mkdirSync(podDir, { recursive: true });
    const run = runEntry({ ...installDefaults(), cgroupDriver: driver }, root, NODE.podUid);
    assert.equal(run.status, 0, run.stderr);
    const argv = run.stdout.trimEnd().split('\n');
    assert.deepEqual(argv.slice(0, 3), ['agent', '--ztunnel-cgroup', podDir]);
    assert.equal(argv[argv.indexOf('--node') + 1], NODE.name);
    rmSync(join(root, driver === 'systemd' ? 'kubepods.slice' : 'kubepods'), { recursive: true });
  }
  const missing = runEntry(installDefaults(), root, NODE.podUid);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, new RegExp(`this pod's cgroup \\(pod UID ${NODE.podUid}\\) is none of .*kubepods-burstable-pod${NODE.podUid.replaceAll('-', '_')}\\.slice.*--kubelet-cgroup-root`));
  rmSync(join(root, 'cgroup.controllers'));
  const v1 = runEntry(installDefaults(), root, NODE.podUid);
  assert.equal(v1.status, 1);
  assert.match(v1.stderr, /meshlet needs cgroup v2 \(the unified hierarchy\): cgroup v1 and hybrid nodes are not supported/);
});

test('on a dual-stack node both entries add the node\'s IPv6 address from status.hostIPs, and on a single-stack one nothing', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-install-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const root = join(dir, 'cgroup');
  mkdirSync(join(root, podCgroupPath(NODE.podUid, 'Burstable', 'systemd')), { recursive: true });
  writeFileSync(join(root, 'cgroup.controllers'), 'cpu memory\n');
  const argv = (o: InstallOptions, which: 'agent' | 'ztunnel', hostIps: string): string[] => {
    const run = runEntry(o, root, NODE.podUid, which, hostIps);
    assert.equal(run.status, 0, run.stderr);
    return run.stdout.trimEnd().split('\n').slice(1);
  };
  const dual = `${NODE.ip},2001:db8::10`;
  const zt = parse<ZtunnelConfig>(ZTUNNEL_FLAGS, argv(installDefaults(), 'ztunnel', dual));
  assert.deepEqual([zt.captureIp4, zt.nodeIp4, zt.captureIp6, zt.nodeIp6, zt.inboundSourceIp6], [NODE.ip, NODE.ip, '2001:db8::10', '2001:db8::10', '2001:db8::10']);
  const agent = parse<AgentConfig>(AGENT_FLAGS, argv(installDefaults(), 'agent', dual));
  assert.deepEqual([agent.captureIp6, agent.probeSourceIp6, agent.inboundSourceIp6], ['2001:db8::10', '2001:db8::10', '2001:db8::10']);
  const own = { ...installDefaults(), inboundSourceIp6: 'fd00:a9fe::7' };
  assert.equal(parse<ZtunnelConfig>(ZTUNNEL_FLAGS, argv(own, 'ztunnel', dual)).inboundSourceIp6, 'fd00:a9fe::7');
  assert.equal(parse<AgentConfig>(AGENT_FLAGS, argv(own, 'agent', dual)).inboundSourceIp6, 'fd00:a9fe::7');
  const single = parse<ZtunnelConfig>(ZTUNNEL_FLAGS, argv(own, 'ztunnel', NODE.ip));
  assert.deepEqual([single.captureIp6, single.nodeIp6, single.inboundSourceIp6], [undefined, undefined, undefined]);
});

test('the kubeconfig authenticates with the token file the kubelet keeps fresh', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshlet-kubeconfig-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'token'), 'first-token');
  writeFileSync(join(dir, 'ca.crt'), '');
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfigText('https://192.0.2.1:6443').replaceAll(names.SERVICE_ACCOUNT_DIR, dir));
  assert.equal(kc.getCurrentCluster()?.caFile, join(dir, 'ca.crt'));
  const ctx = new RequestContext('https://192.0.2.1:6443/api', HttpMethod.GET);
  await kc.applySecurityAuthentication(ctx);
  assert.equal(ctx.getHeaders().Authorization, 'Bearer first-token');
});

test('uninstall names every installed object once, by identity, the node pods first and the namespace last', () => {
  for (const namespace of ['meshlet-system', 'mesh-ops']) {
    const installed = rendered({ namespace });
    const removed = stream(renderUninstall(namespace));
    const id = (o: Obj) => `${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}`;
    assert.deepEqual([...removed.map(id)].sort(), [...installed.map(id)].sort());
    assert.deepEqual(removed.slice(0, 2).map((o) => o.kind), ['DaemonSet', 'Deployment']);
    assert.equal(removed.at(-1)!.kind, 'Namespace');
    for (const o of removed) assert.deepEqual(Object.keys(o).sort(), ['apiVersion', 'kind', 'metadata']);
  }
});
