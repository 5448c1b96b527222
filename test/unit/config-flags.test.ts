// Each process's flags come from one table: what a launcher renders with
// configArgs() is exactly what the process parses back, field for field.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Command } from 'commander';
import { AGENT_FLAGS, type AgentConfig } from '../../lib/config/agent.ts';
import { CA_FLAGS, type CaConfig } from '../../lib/config/ca.ts';
import { addFlags, configArgs, flagOf, type FlagTable } from '../../lib/config/flags.ts';
import { ZTUNNEL_FLAGS, ZTUNNEL_LIMIT_DEFAULTS, ztunnelLimits, type ZtunnelConfig } from '../../lib/config/ztunnel.ts';

function parse<C>(table: FlagTable<C>, args: string[]): C {
  const command = addFlags(new Command('x').exitOverride(), table);
  command.parse(args, { from: 'user' });
  return command.opts() as C;
}

const agent: AgentConfig = {
  node: 'node-1', kubeconfig: '/run/agent.kubeconfig', kubeletCgroupRoot: '/sys/fs/cgroup', cgroupDriver: 'systemd', ztunnelCgroup: '/sys/fs/cgroup/zt', bpfDir: '/sys/fs/bpf/m',
  captureIp4: '10.244.1.1', captureIp6: 'fd00::1', inboundSourceIp4: '10.244.1.254', probeSourceIp4: '10.244.1.1',
  rootNamespace: 'meshlet-system', serviceCidrs: '10.96.0.0/16,fd00:96::/112', controlSocket: '/run/c.sock', adminSocket: '/run/a.sock',
};

const ztunnel: ZtunnelConfig = {
  node: 'node-1', captureIp4: '10.244.1.1', nodeIp4: '10.200.0.11', nodeIp6: 'fd00:200::11', inboundSourceIp4: '10.244.1.254',
  controlSocket: '/run/c.sock', adminSocket: '/run/z.sock', outboundPort: 15001, hbonePort: 15008, adminPort: 0, readinessPort: 15021, metricsPort: 15020,
  drainSeconds: 2.5, trustDomain: 'example.org', caUrl: 'https://10.200.0.2:15012', caBundle: '/ca.pem', caTokenFile: '/token', certTtl: 30,
};

const ca: CaConfig = {
  listen: '10.200.0.2:15012', stateDir: '/run/ca', kubeconfig: '/run/ca.kubeconfig', rootSecret: 'mesh/root', tokenAudience: 'mesh-ca',
  nodeAccount: ['system:serviceaccount:mesh:ztunnel', 'system:serviceaccount:mesh:ztunnel-canary'], trustDomain: 'cluster.local',
  defaultTtl: 3600, maxTtl: 7200, serverName: ['ca.local', '10.200.0.2'],
};

test('a field\'s flag is its name in kebab case', () => {
  assert.deepEqual(['captureIp4', 'inboundSourceIp6', 'probeSourceIp4', 'nodeIp4', 'caTokenFile'].map(flagOf),
    ['--capture-ip4', '--inbound-source-ip6', '--probe-source-ip4', '--node-ip4', '--ca-token-file']);
});

test('configArgs renders what the process parses back, for every process', () => {
  assert.deepEqual(parse(AGENT_FLAGS, configArgs(AGENT_FLAGS, agent)), agent);
  assert.deepEqual(parse(ZTUNNEL_FLAGS, configArgs(ZTUNNEL_FLAGS, ztunnel)), ztunnel);
  assert.deepEqual(parse(CA_FLAGS, configArgs(CA_FLAGS, ca)), ca);
  assert.deepEqual(parse(ZTUNNEL_FLAGS, configArgs(ZTUNNEL_FLAGS, { ...ztunnel, plaintextTunnels: true })).plaintextTunnels, true);
});

test('defaults fill what the launcher leaves out', () => {
  const { outboundPort, hbonePort, drainSeconds, trustDomain, ...given } = ztunnel;
  assert.deepEqual(parse(ZTUNNEL_FLAGS, configArgs(ZTUNNEL_FLAGS, given)), { ...given, outboundPort, hbonePort, drainSeconds: 5, trustDomain: 'cluster.local' });
  assert.equal(parse(CA_FLAGS, configArgs(CA_FLAGS, { ...ca, defaultTtl: undefined })).defaultTtl, 86_400);
  const caDefaults = parse(CA_FLAGS, configArgs(CA_FLAGS, { ...ca, rootSecret: undefined, tokenAudience: undefined, nodeAccount: undefined }));
  assert.deepEqual([caDefaults.rootSecret, caDefaults.tokenAudience, caDefaults.nodeAccount],
    ['meshlet-system/meshlet-ca-root', 'meshlet-ca', ['system:serviceaccount:meshlet-system:meshlet-ztunnel']]);
  assert.equal(parse(AGENT_FLAGS, configArgs(AGENT_FLAGS, { ...agent, cgroupDriver: undefined })).cgroupDriver, 'auto');
});

test('a launcher that leaves out a required field is refused, naming the flag', () => {
  const { captureIp4: _dropped, ...rest } = agent;
  assert.throws(() => configArgs(AGENT_FLAGS, rest), { code: 'MESHLET_CONFIG', message: /--capture-ip4 is required/ });
});

test('bad values are refused with the flag and the fix', () => {
  assert.throws(() => parse(AGENT_FLAGS, configArgs(AGENT_FLAGS, { ...agent, captureIp4: 'fd00::1' })), { code: 'MESHLET_CONFIG', message: /--capture-ip4 must be an IPv4 address/ });
  assert.throws(() => parse(AGENT_FLAGS, [...configArgs(AGENT_FLAGS, agent), '--cgroup-driver', 'docker']), { code: 'MESHLET_CONFIG', message: /--cgroup-driver must be one of systemd, cgroupfs, auto/ });
  assert.throws(() => parse(ZTUNNEL_FLAGS, configArgs(ZTUNNEL_FLAGS, { ...ztunnel, outboundPort: 70000 })), { code: 'MESHLET_CONFIG', message: /--outbound-port must be a port number/ });
  assert.throws(() => parse(ZTUNNEL_FLAGS, configArgs(ZTUNNEL_FLAGS, { ...ztunnel, trustDomain: 'Bad Domain' })), { code: 'MESHLET_CONFIG', message: /--trust-domain/ });
  assert.throws(() => parse(CA_FLAGS, configArgs(CA_FLAGS, { ...ca, listen: 'nowhere' })), { code: 'MESHLET_CONFIG', message: /--listen "nowhere" is not ip:port/ });
  assert.throws(() => parse(CA_FLAGS, configArgs(CA_FLAGS, { ...ca, rootSecret: 'meshlet-ca-root' })), { code: 'MESHLET_CONFIG', message: /--root-secret "meshlet-ca-root" is not <namespace>\/<name> of a Secret/ });
});

test('the ztunnel\'s bounds and the CA\'s signing rate are flags; unset, the defaults apply', () => {
  const bounds = { hboneHandshakeTimeout: 5, hboneIdleTimeout: 60, hboneMaxStreams: 50, hboneMaxSessionsPerPeer: 10, maxConnectionsPerPod: 100, idleTimeout: 0 };
  assert.deepEqual(parse(ZTUNNEL_FLAGS, configArgs(ZTUNNEL_FLAGS, { ...ztunnel, ...bounds })), { ...ztunnel, ...bounds });
  assert.deepEqual(ztunnelLimits(parse(ZTUNNEL_FLAGS, configArgs(ZTUNNEL_FLAGS, ztunnel))), ZTUNNEL_LIMIT_DEFAULTS);
  const withFlag = (...extra: string[]) => parse(ZTUNNEL_FLAGS, [...configArgs(ZTUNNEL_FLAGS, ztunnel), ...extra]);
  assert.equal(withFlag('--idle-timeout', 'off').idleTimeout, 0);
  assert.equal(withFlag('--idle-timeout', '2h').idleTimeout, 7200);
  assert.equal(withFlag('--connect-timeout', '3s').connectTimeout, 3);
  assert.equal(ZTUNNEL_LIMIT_DEFAULTS.connectTimeout, 10);
  assert.throws(() => withFlag('--max-connections-per-pod', '0'), { code: 'MESHLET_CONFIG', message: /--max-connections-per-pod must be a positive whole number/ });
  assert.throws(() => withFlag('--hbone-handshake-timeout', '0'), { code: 'MESHLET_CONFIG', message: /--hbone-handshake-timeout "0" is not a duration/ });
  assert.deepEqual(parse(CA_FLAGS, configArgs(CA_FLAGS, { ...ca, signRate: 2.5, signBurst: 5 })), { ...ca, signRate: 2.5, signBurst: 5 });
  assert.throws(() => parse(CA_FLAGS, [...configArgs(CA_FLAGS, ca), '--sign-rate', '0']), { code: 'MESHLET_CONFIG', message: /--sign-rate must be a positive number per second/ });
  const waypoints = { waypointController: true, waypointImage: 'registry.example/meshlet:1', waypointCaUrl: 'https://meshlet-ca.meshlet-system.svc:15012' };
  assert.deepEqual(parse(CA_FLAGS, configArgs(CA_FLAGS, { ...ca, ...waypoints })), { ...ca, ...waypoints });
  assert.throws(() => parse(CA_FLAGS, [...configArgs(CA_FLAGS, ca), '--waypoint-ca-url', '10.0.0.1:15012']), { code: 'MESHLET_CONFIG', message: /--waypoint-ca-url "10.0.0.1:15012" is not https:\/\/<host>:<port>/ });
});
