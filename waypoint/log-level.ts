// --log-level: the lines below the level are not written.
import type { Logger } from '../lib/core/log.ts';
import type { LogLevel } from '../lib/config/waypoint.ts';

const RANK: Readonly<Record<LogLevel, number>> = { info: 0, warn: 1, error: 2 };

export function atLevel(log: Logger, level: LogLevel): Logger {
  const at = RANK[level];
  const none = () => {};
  return {
    info: at <= RANK.info ? log.info : none,
    warn: at <= RANK.warn ? log.warn : none,
    error: log.error,
  };
}
