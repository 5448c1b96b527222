// One JSON object per line on stdout: an event name plus fields, so the
// sandbox's log files and `kubectl logs` can be filtered with jq.

export type LogFields = Record<string, unknown>;

export interface Logger {
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
}

const errorFields = (value: unknown): unknown =>
  value instanceof Error ? { message: value.message, ...('code' in value ? { code: value.code } : {}) } : value;

export function jsonLogger(out: NodeJS.WritableStream = process.stdout): Logger {
  const write = (level: string, event: string, fields: LogFields = {}) => {
    const line: LogFields = { time: new Date().toISOString(), level, event };
    for (const [k, v] of Object.entries(fields)) line[k] = errorFields(v);
    out.write(`${JSON.stringify(line)}\n`);
  };
  return {
    info: (event, fields) => write('info', event, fields),
    warn: (event, fields) => write('warn', event, fields),
    error: (event, fields) => write('error', event, fields),
  };
}

export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
