// Durations on the command line: "90s", "30m", "24h", "7d", or bare seconds.
import { ConfigError } from './errors.ts';

const UNIT_SECONDS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 };

/** Seconds in `text`; throws ConfigError naming `flag`. */
export function parseDuration(text: string, flag: string): number {
  const match = /^(\d+)([smhd]?)$/.exec(text.trim());
  const seconds = match ? Number(match[1]) * UNIT_SECONDS[match[2]!]! : NaN;
  if (!Number.isSafeInteger(seconds) || seconds <= 0) {
    throw new ConfigError(`${flag} ${JSON.stringify(text)} is not a duration; use a positive number with s, m, h or d (e.g. 24h)`);
  }
  return seconds;
}
