// `meshlet ca` assembled: mesh root from --state-dir, node tokens, cluster
// state for authorization, and the HTTPS server. Used by the command and by
// tests that run the CA in process.
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { Logger } from '../lib/core/log.ts';
import { ClusterState } from '../lib/cluster/cluster-state.ts';
import type { ClusterSource } from '../lib/cluster/sources/source.ts';
import { HostedIdentities } from './hosted.ts';
import { CaMetrics } from './metrics.ts';
import { NodeTokens } from './node-tokens.ts';
import { ROOT_CERT_FILE, loadOrCreateRoot } from './root.ts';
import { CaServer } from './server.ts';

export interface CaConfig {
  host: string;
  port: number;
  stateDir: string;
  /** Which node runs which service accounts: the CA signs only for those. */
  source: ClusterSource;
  nodeTokensFile: string;
  trustDomain: string;
  defaultTtlSeconds: number;
  maxTtlSeconds: number;
  /** Extra names/IPs for the serving certificate, besides the listen address. */
  serverNames: readonly string[];
  log: Logger;
}

export interface RunningCa {
  /** https://host:port, with the bound port. */
  url: string;
  port: number;
  /** The trust bundle clients pin (the root certificate in --state-dir). */
  bundleFile: string;
  close(): Promise<void>;
}

const WILDCARD = new Set(['0.0.0.0', '::', '']);

/** The listen address, or every local address when listening on all of them. */
function servingNames(host: string, extra: readonly string[]): string[] {
  const own = WILDCARD.has(host)
    ? Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address.replace(/%.*$/, '')))
    : [host];
  return [...new Set([...own, 'localhost', ...extra])];
}

export async function startCa(config: CaConfig): Promise<RunningCa> {
  const { log } = config;
  const root = await loadOrCreateRoot(config.stateDir, config.trustDomain, log);
  const tokens = new NodeTokens(config.nodeTokensFile, log);
  const hosted = new HostedIdentities();
  const clusterState = new ClusterState();
  const { source } = config;
  await tokens.start();
  await source.start((update) => {
    const { state, rejected } = clusterState.update(update.objects);
    hosted.update(state);
    if (rejected.length > 0 || update.unreadable.length > 0) {
      log.warn('cluster state has objects the CA ignores', { rejected: rejected.map((r) => `${r.object}: ${r.reason}`), unreadable: update.unreadable.map((u) => `${u.object}: ${u.reason}`) });
    }
  });
  if (!hosted.ready) log.warn('cluster state not read yet; signing waits for it', { source: source.status().name });
  const server = new CaServer({
    root, trustDomain: config.trustDomain, tokens, hosted,
    defaultTtlSeconds: config.defaultTtlSeconds, maxTtlSeconds: config.maxTtlSeconds,
    serverNames: servingNames(config.host, config.serverNames), metrics: new CaMetrics(), log,
  });
  let address;
  try {
    address = await server.listen(config.host, config.port);
  } catch (err) {
    tokens.stop();
    source.stop();
    throw err;
  }
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const bundleFile = join(config.stateDir, ROOT_CERT_FILE);
  log.info('ca listening', { url: `https://${urlHost}:${address.port}`, trustDomain: config.trustDomain, bundleFile });
  return {
    url: `https://${urlHost}:${address.port}`,
    port: address.port,
    bundleFile,
    close: async () => {
      tokens.stop();
      source.stop();
      await server.close();
    },
  };
}
