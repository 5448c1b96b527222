// Istio's path patterns for authorization: exact, `prefix*`, `*suffix`, `*`
// (any path), or an Envoy URI template where `{*}` is one path segment and
// `{**}` anything from there on (it must be the last operator). A template
// has no `*`, `{` or `}` outside its operators, and an operator is a whole
// segment.
import type { Fail } from '../policy/fields.ts';
import { checkPattern, stringMatcher } from '../policy/match.ts';
import { quote } from './fields.ts';

const MAX_PATH = 2048;

const isPathTemplate = (p: string): boolean => p.includes('{*}') || p.includes('{**}');

export function checkPathPattern(v: string, at: string, fail: Fail): string {
  if (!isPathTemplate(v)) return checkPattern(v, at, fail);
  if (v.length > MAX_PATH) fail(`${at} is longer than ${MAX_PATH} characters`);
  if (!v.startsWith('/')) fail(`${at} ${quote(v)}: a path template starts with "/"`);
  const segments = v.split('/').slice(1);
  let sawGlobstar = false;
  for (const seg of segments) {
    const operator = seg === '{*}' || seg === '{**}';
    if (!operator && /[*{}]/.test(seg)) fail(`${at} ${quote(v)} has ${quote(seg)}: in a template, *, { and } appear only as a whole {*} or {**} segment`);
    if (operator && sawGlobstar) fail(`${at} ${quote(v)}: {**} must be the last operator`);
    if (seg === '{**}') sawGlobstar = true;
    if (/[\s\u0000-\u001f\u007f]/.test(seg)) fail(`${at} ${quote(v)} has characters no path holds`);
  }
  return v;
}

const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A matcher over paths for patterns that passed checkPathPattern. No path (undefined) matches nothing. */
export function pathMatcher(patterns: readonly string[]): (path: string | undefined) => boolean {
  const plain = stringMatcher(patterns.filter((p) => !isPathTemplate(p)));
  const templates = patterns.filter(isPathTemplate).map((p) => {
    const source = p.split('/').map((seg) => (seg === '{*}' ? '[^/]+' : seg === '{**}' ? '.*' : escapeRegex(seg))).join('/');
    return new RegExp(`^${source}$`);
  });
  return (path) => path !== undefined && (plain(path) || templates.some((re) => re.test(path)));
}
