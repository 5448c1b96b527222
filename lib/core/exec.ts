import { spawn } from 'node:child_process';
import { CommandError } from './errors.ts';

export interface RunOptions {
  /** Written to the child's stdin, then closed. */
  input?: string;
  env?: NodeJS.ProcessEnv;
  /** Return instead of throwing on a non-zero exit. */
  allowFailure?: boolean;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number | null;
}

/** Runs a tool (bpftool, ip, clang) without a shell; rejects with CommandError on failure. */
export function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const stdin = options.input === undefined ? 'ignore' : 'pipe';
    const child = spawn(file, args, { env: options.env ?? process.env, stdio: [stdin, 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    child.stderr!.on('data', (c: Buffer) => err.push(c));
    child.on('error', (cause) => reject(new CommandError([file, ...args].join(' '), null, String(cause), { cause })));
    child.on('close', (exitCode) => {
      const result = { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), exitCode };
      if (exitCode === 0 || options.allowFailure) resolve(result);
      else reject(new CommandError([file, ...args].join(' '), exitCode, result.stderr || result.stdout));
    });
    if (child.stdin) {
      // A child that exits without reading its input must not crash us with EPIPE.
      child.stdin.on('error', () => undefined);
      child.stdin.end(options.input);
    }
  });
}
