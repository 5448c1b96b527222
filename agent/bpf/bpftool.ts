// bpftool through child_process: single commands with JSON output, and many
// commands in one process with `bpftool batch file -`.
import { BpfError, CommandError } from '../../lib/core/errors.ts';
import { run } from '../../lib/core/exec.ts';

const BPFTOOL = 'bpftool';

/** Runs `bpftool -j ARGS`; null when the command prints nothing (e.g. an empty `cgroup show`). */
export async function bpftoolJson(args: readonly string[]): Promise<unknown> {
  const { stdout } = await run(BPFTOOL, ['-j', ...args]);
  return stdout.trim() === '' ? null : parseJson(stdout, args.join(' '));
}

/** Runs `bpftool ARGS` for its effect. */
export async function bpftool(args: readonly string[]): Promise<void> {
  await run(BPFTOOL, args);
}

/** What a batch did: the outputs of the commands that took effect, in order, and what stopped it, if anything did. */
export interface BatchOutcome {
  outputs: unknown[];
  error?: BpfError | CommandError;
}

/**
 * Runs every command in one bpftool process and returns their JSON outputs in
 * order. bpftool stops at the first failing command, so everything before it
 * has taken effect; the error names the failed command.
 */
export async function batch(commands: readonly (readonly string[])[]): Promise<unknown[]> {
  const { outputs, error } = await tryBatch(commands);
  if (error) throw error;
  return outputs;
}

/**
 * batch, reporting a failed command with what ran before it instead of
 * throwing, for a caller that must undo that. Throws only when what ran
 * cannot be told (bpftool could not start, or printed no readable list).
 */
export async function tryBatch(commands: readonly (readonly string[])[]): Promise<BatchOutcome> {
  if (commands.length === 0) return { outputs: [] };
  const input = commands.map(batchLine).join('\n') + '\n';
  const result = await run(BPFTOOL, ['-j', 'batch', 'file', '-'], { input, allowFailure: true });
  const entries = result.stdout.trim() === '' ? [] : parseJson(result.stdout, 'batch');
  if (!Array.isArray(entries)) throw new BpfError(`bpftool batch printed no list: ${result.stdout.slice(0, 200)}`);
  const outputs: unknown[] = [];
  for (const [i, entry] of entries.entries()) {
    const output = isRecord(entry) ? entry.output : undefined;
    const error = isRecord(output) ? output.error : isRecord(entry) ? entry.error : undefined;
    if (typeof error === 'string') {
      const failed = commands[i] ?? [];
      return {
        outputs,
        error: new BpfError(`bpftool ${failed.join(' ')}: ${error}`, {
          cause: new CommandError(`bpftool batch (command ${i + 1} of ${commands.length})`, result.exitCode, result.stderr),
        }),
      };
    }
    outputs.push(output ?? null);
  }
  if (result.exitCode !== 0 || outputs.length !== commands.length) {
    return { outputs, error: new CommandError(`bpftool batch (${outputs.length} of ${commands.length} commands ran)`, result.exitCode, result.stderr) };
  }
  return { outputs };
}

/**
 * One batch line. bpftool splits on whitespace, honours '…' and "…" without
 * escapes, cuts comments at '#' and joins lines ending in '\'.
 */
function batchLine(args: readonly string[]): string {
  return args
    .map((arg) => {
      if (/[\n\r#]/.test(arg) || arg.endsWith('\\')) throw new BpfError(`cannot pass ${JSON.stringify(arg)} to bpftool batch`);
      if (arg !== '' && !/[\s'"]/.test(arg)) return arg;
      if (!arg.includes("'")) return `'${arg}'`;
      if (!arg.includes('"')) return `"${arg}"`;
      throw new BpfError(`cannot quote ${JSON.stringify(arg)} for bpftool batch`);
    })
    .join(' ');
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new BpfError(`bpftool ${what}: unreadable JSON output: ${text.slice(0, 200)}`, { cause });
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
