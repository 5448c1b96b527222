import { Command } from 'commander';
import { jsonLogger } from '../lib/core/log.ts';
import { NodeAgent, type AgentOptions } from './node-agent.ts';
import { DEFAULT_ROOT_NAMESPACE } from '../lib/policy/index.ts';

export function agentCommand(): Command {
  return new Command('agent')
    .description('run the node agent: watch cluster state, keep BPF capture and the ztunnel in sync')
    .requiredOption('--node <name>', 'this node\'s name, as in the cluster')
    .requiredOption('--state-file <path>', 'YAML file of Kubernetes objects to watch (the sandbox\'s API server)')
    .requiredOption('--pod-cgroup-root <dir>', 'cgroup v2 directory holding one cgroup per pod, named by pod UID')
    .requiredOption('--ztunnel-cgroup <dir>', 'cgroup v2 directory of the node\'s ztunnel')
    .requiredOption('--bpf-dir <dir>', 'bpffs directory to pin programs and maps in')
    .requiredOption('--capture-ip4 <ip>', 'address the ztunnel accepts captured IPv4 connections on')
    .option('--capture-ip6 <ip>', 'address the ztunnel accepts captured IPv6 connections on')
    .option('--inbound-source-ip4 <ip>', 'address the ztunnel connects to local pods from: STRICT admits it')
    .option('--inbound-source-ip6 <ip>', 'IPv6 address the ztunnel connects to local pods from')
    .option('--probe-source-ip4 <ip>', 'node address kubelet probes come from: admitted on declared probe ports under STRICT')
    .option('--probe-source-ip6 <ip>', 'IPv6 node address kubelet probes come from')
    .option('--root-namespace <ns>', 'namespace whose selector-less policies apply mesh-wide', DEFAULT_ROOT_NAMESPACE)
    .requiredOption('--control-socket <path>', 'the ztunnel\'s control socket')
    .requiredOption('--admin-socket <path>', 'Unix socket for this agent\'s admin API (status)')
    .action(async (opts: AgentOptions) => {
      const log = jsonLogger('agent');
      const agent = new NodeAgent(opts, log);
      const shutdown = () => {
        // Leaves programs and maps pinned and attached: capture outlives the agent.
        void agent.stop().then(() => process.exit(0));
      };
      process.once('SIGTERM', shutdown);
      process.once('SIGINT', shutdown);
      await agent.start();
    });
}
