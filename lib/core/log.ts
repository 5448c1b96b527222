// One JSON object per line on stdout: an event name plus fields, so the
// sandbox's log files and `kubectl logs` can be filtered with jq.

export type Fields = Record<string, unknown>;

export interface Logger {
  info(event: string, fields?: Fields): void;
  warn(event: string, fields?: Fields): void;
  error(event: string, fields?: Fields): void;
}

/** Errors do not survive JSON.stringify; keep what an operator reads. */
const errorFields = (value: unknown): unknown =>
  value instanceof Error ? { message: value.message, ...('code' in value ? { code: value.code } : {}) } : value;

export function jsonLogger(component: string, out: NodeJS.WritableStream = process.stdout): Logger {
  const write = (level: string, event: string, fields: Fields = {}) => {
    const line: Fields = { time: new Date().toISOString(), level, component, event };
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
