import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { jsonLogger } from '../lib/core/log.ts';
import { AGENT_FLAGS, parseDaemonSetRef, type AgentConfig } from '../lib/config/agent.ts';
import { loadKubeconfigFile } from '../lib/cluster/kubeconfig-file.ts';
import { addFlags } from '../lib/config/flags.ts';
import { KubeSource } from '../lib/cluster/sources/kube.ts';
import { AGENT_KINDS, AGENT_POD_FIELD_SELECTOR } from '../lib/cluster/sources/kube-kinds.ts';
import { BpfDatapath } from './bpf/datapath.ts';
import { CniInstall } from './cni-install.ts';
import { NodeAgent } from './node-agent.ts';
import { DaemonSetWatch } from './uninstall.ts';
import { ZtunnelControlClient } from './ztunnel-client.ts';
import { ConfigError } from '../lib/core/errors.ts';
import type { Logger } from '../lib/core/log.ts';

/** Loads the prebuilt programs, or adopts the pinned ones, with this node's addresses. */
function openDatapath(o: AgentConfig): Promise<BpfDatapath> {
  const { captureIp4, captureIp6, inboundSourceIp4, inboundSourceIp6, probeSourceIp4, probeSourceIp6 } = o;
  return BpfDatapath.open({ pinDir: o.bpfDir, captureIp4, captureIp6, inboundSourceIp4, inboundSourceIp6, probeSourceIp4, probeSourceIp6 });
}

/** The CNI plugin's installer when the node's CNI dirs are given. */
function cniInstall(o: AgentConfig, log: Logger): CniInstall | undefined {
  if (o.cniConfDir === undefined) return undefined;
  if (o.cniBinDir === undefined) throw new ConfigError('--cni-conf-dir needs --cni-bin-dir: the node\'s CNI plugin dir (containerd\'s bin_dir, e.g. /opt/cni/bin)');
  const own = o.daemonset === undefined ? [] : [parseDaemonSetRef(o.daemonset, '--daemonset').namespace];
  // meshlet's own pods (the CA) and the cluster's must start while no agent runs.
  return new CniInstall({ confDir: o.cniConfDir, binDir: o.cniBinDir, agentSocket: o.adminSocket, excludeNamespaces: ['kube-system', ...own], log });
}

export function agentCommand(): Command {
  const command = new Command('agent')
    .description('run the node agent: watch cluster state, keep BPF capture and the ztunnel in sync');
  return addFlags(command, AGENT_FLAGS)
    .action(async (opts: AgentConfig) => {
      const log = jsonLogger('agent');
      // Read once, for the cluster source and the DaemonSet watch alike.
      const kubeconfig = await loadKubeconfigFile(opts.kubeconfig);
      const agent = new NodeAgent(opts, {
        source: new KubeSource({ kubeconfig, kinds: AGENT_KINDS, podFieldSelector: AGENT_POD_FIELD_SELECTOR, log }),
        openDatapath: () => openDatapath(opts),
        control: new ZtunnelControlClient(opts.controlSocket, log),
        cni: cniInstall(opts, log),
        log,
      });
      const ownDaemonSet = opts.daemonset === undefined ? undefined : new DaemonSetWatch(kubeconfig, parseDaemonSetRef(opts.daemonset, '--daemonset'), log);
      const shutdown = () => void (async () => {
        ownDaemonSet?.close();
        // Capture outlives the agent (programs and maps stay pinned and attached), unless meshlet is being uninstalled.
        const kind = await ownDaemonSet?.stopKind();
        if (kind) log.info('agent stopping', { uninstall: kind.uninstall, why: kind.why });
        await agent.stop({ uninstall: kind?.uninstall === true });
      })().then(() => process.exit(0), (err: unknown) => {
        log.error('agent stop failed', { error: err instanceof Error ? err.message : String(err) });
        process.exit(1);
      });
      process.once('SIGTERM', shutdown);
      process.once('SIGINT', shutdown);
      await agent.start();
      ownDaemonSet?.start();
      await warnWithoutListenerMigration(log);
    });
}

const MIGRATE_REQ = '/proc/sys/net/ipv4/tcp_migrate_req';

/** The node setting that keeps an upgrade from resetting connections queued on the old ztunnel's listeners (daemonset/README.md). */
async function warnWithoutListenerMigration(log: Logger): Promise<void> {
  const value = (await readFile(MIGRATE_REQ, 'utf8').catch(() => '')).trim();
  if (value !== '1') {
    log.warn('connections queued on a closing ztunnel listener are reset during upgrades on this node', { fix: `sysctl -w net.ipv4.tcp_migrate_req=1 on the node (Linux 5.14+); ${MIGRATE_REQ} reads ${JSON.stringify(value || 'nothing')}` });
  }
}
