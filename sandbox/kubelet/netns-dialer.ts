// Probe connections from a network namespace the kubelet's process is not in:
// one socat per connection, started in the namespace by nsenter, its stdio
// the connection. The kubelet of a node that runs inside the node's namespace
// needs none of this; a kubelet outside it (a test in the root namespace)
// still probes from the node, as a real kubelet does.
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { isIP } from 'node:net';
import { Duplex } from 'node:stream';
import { NETNS_DIR } from '../layout.ts';
import type { ProbeDialer } from './probes.ts';

/** socat -d -d says this once the TCP connection is up and it relays. */
const CONNECTED = /starting data transfer loop/;

/** Whether this process runs in network namespace `netns` (same namespace inode). */
export function inNetns(netns: string): boolean {
  const here = statSync('/proc/self/ns/net');
  const there = statSync(`${NETNS_DIR}/${netns}`);
  return here.dev === there.dev && here.ino === there.ino;
}

const socatAddress = (host: string): string => (isIP(host) === 6 ? `[${host}]` : host);

/** A dialer whose connections leave from network namespace `netns`. */
export function netnsDialer(netns: string): ProbeDialer {
  return (dest, signal) => new Promise<Duplex>((resolve, reject) => {
    const family = isIP(dest.host) === 6 ? 6 : 4;
    const bind = dest.localAddress ? `,bind=${socatAddress(dest.localAddress)}` : '';
    const child = spawn('nsenter', [`--net=${NETNS_DIR}/${netns}`, '--', 'socat', '-d', '-d', 'STDIO', `TCP${family}:${socatAddress(dest.host)}:${dest.port}${bind}`], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    let connected = false;
    const kill = (): void => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    const onAbort = (): void => {
      kill();
      reject(new Error('timed out'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    child.stdin.on('error', () => undefined);
    child.on('error', (err) => {
      signal.removeEventListener('abort', onAbort);
      reject(new Error(`cannot run socat in network namespace ${netns}: ${err.message}`));
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
      if (connected || !CONNECTED.test(stderr)) return;
      connected = true;
      signal.removeEventListener('abort', onAbort);
      const stream = Duplex.from({ readable: child.stdout, writable: child.stdin });
      // Destroying it (the probe is done) is no error of the probe's.
      stream.on('error', () => undefined);
      stream.once('close', kill);
      resolve(stream);
    });
    // 'close', not 'exit': socat's last stderr lines may still be unread when it exits.
    child.on('close', () => {
      signal.removeEventListener('abort', onAbort);
      if (connected) return;
      // socat's error lines read "… E connect(…): Connection refused".
      const error = /\sE (.*)$/m.exec(stderr)?.[1];
      reject(new Error(error ?? (stderr.trim().split('\n').pop() || `socat exited with ${child.exitCode}`)));
    });
  });
}
