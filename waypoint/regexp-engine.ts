// lib/l7 runs users' RE2 patterns on V8's regex engine, which backtracks:
// a pattern such as (a*)*b on a long input would take exponential time.
// V8's --enable-experimental-regexp-engine-on-excessive-backtracks makes a
// regex that backtracks too much fall back to V8's linear-time engine, for
// exactly the subset of patterns lib/l7 lets through (lib/l7/regex.ts). The
// flag is read when a RegExp is created, so it must be on before the first
// route is compiled: the waypoint turns it on as it starts.
import { setFlagsFromString } from 'node:v8';

export const LINEAR_FALLBACK_FLAG = '--enable-experimental-regexp-engine-on-excessive-backtracks';

export function enableLinearRegexpFallback(): void {
  setFlagsFromString(LINEAR_FALLBACK_FLAG);
}
