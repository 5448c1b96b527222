// One JSON object per line on stdout: what the node components log.

export type Fields = Record<string, unknown>;

export interface Logger {
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
}

export function jsonLogger(component: string, out: NodeJS.WritableStream = process.stdout): Logger {
  const write = (level: string, msg: string, fields: Fields = {}) => {
    out.write(`${JSON.stringify({ time: new Date().toISOString(), level, component, msg, ...fields })}\n`);
  };
  return {
    info: (msg, fields) => write('info', msg, fields),
    warn: (msg, fields) => write('warn', msg, fields),
    error: (msg, fields) => write('error', msg, fields),
  };
}
