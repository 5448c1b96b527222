// What build/bpf/meshlet.bpf.o contains and where its pins live. Program
// names are the C function names (kernel names stop at 15 characters).
import { join } from 'node:path';
import { REPO_ROOT } from '../../lib/core/repo.ts';
import type { MapName } from './codec.ts';

export const OBJECT_FILE = 'meshlet.bpf.o';
export const DEFAULT_OBJECT_DIR = join(REPO_ROOT, 'build', 'bpf');

export interface ProgramSpec {
  name: string;
  /** bpftool's name for the cgroup attach type. */
  attachType: string;
  target: 'pod' | 'ztunnel';
}

/**
 * Pod programs in attach order: sockops and getpeername are in place before
 * connect starts redirecting, so no redirected socket misses its re-keying.
 * ingress comes last: its map entries are written before any attach anyway.
 */
export const PROGRAMS: readonly ProgramSpec[] = [
  { name: 'ml_sockops', attachType: 'sock_ops', target: 'pod' },
  { name: 'ml_getpeername4', attachType: 'getpeername4', target: 'pod' },
  { name: 'ml_getpeername6', attachType: 'getpeername6', target: 'pod' },
  { name: 'ml_connect4', attachType: 'connect4', target: 'pod' },
  { name: 'ml_connect6', attachType: 'connect6', target: 'pod' },
  { name: 'ml_ingress', attachType: 'ingress', target: 'pod' },
  { name: 'ml_getsockname4', attachType: 'getsockname4', target: 'ztunnel' },
  { name: 'ml_getsockname6', attachType: 'getsockname6', target: 'ztunnel' },
];

export const POD_PROGRAMS = PROGRAMS.filter((p) => p.target === 'pod');
export const ZTUNNEL_PROGRAMS = PROGRAMS.filter((p) => p.target === 'ztunnel');

export const MAP_NAMES: readonly MapName[] = [
  'node_config',
  'pods',
  'excluded_ports',
  'cookie_dst',
  'flow_dst',
  'port_mode',
  'probe_ports',
  'drop_count',
  'drop_events',
];

export const progPin = (pinDir: string, name: string): string => join(pinDir, 'progs', name);
export const mapPin = (pinDir: string, name: MapName): string => join(pinDir, 'maps', name);
