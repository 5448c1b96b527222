// What the figures were measured on: printed with every report, since they
// only compare within one machine.
import { readFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, release } from 'node:os';

export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  kernel: string;
  /** 1-minute load average when the run started and ended: other work on the cores skews everything. */
  loadStart: number;
  loadEnd?: number;
  memTotalMB: number;
}

export async function machineInfo(): Promise<MachineInfo> {
  const meminfo = await readFile('/proc/meminfo', 'utf8').catch(() => '');
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(meminfo)?.[1] ?? 0);
  return {
    nproc: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    kernel: release(),
    loadStart: loadavg()[0]!,
    memTotalMB: Math.round(memKb / 1024),
  };
}
