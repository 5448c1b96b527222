// RE2 patterns (Istio's and Envoy's regex dialect) on JavaScript's engine.
// Only what RE2 accepts and JavaScript reads the same way gets through:
// lookarounds and backreferences (not RE2), \p classes, POSIX classes and
// mid-pattern flag switches (read differently) are refused at conversion,
// so a pattern that converted always compiles. RE2 matches in linear time and
// V8 backtracks: the waypoint process runs with V8's
// --enable-experimental-regexp-engine-on-excessive-backtracks, which falls
// back to a linear engine for exactly this subset.
import type { Fail } from '../policy/fields.ts';
import { quote, text } from './fields.ts';

/** Envoy warns past a program size of 100; a route pattern longer than this is a mistake. */
export const MAX_PATTERN = 1024;
/** RE2's own limit on a counted repetition. */
const MAX_REPEAT = 1000;

interface Translated {
  source: string;
  flags: string;
}

/** Checks `v` is an RE2 pattern meshlet can run; returns it unchanged. */
export function checkRegex(v: unknown, field: string, fail: Fail): string {
  const pattern = text(v, field, fail, { empty: true, max: MAX_PATTERN });
  const t = translate(pattern);
  if (typeof t === 'string') return fail(`${field} ${quote(pattern)}: ${t}`);
  try {
    new RegExp(t.source, t.flags);
  } catch (err) {
    return fail(`${field} ${quote(pattern)} is not a valid regular expression: ${(err as Error).message.replace(/^Invalid regular expression: /, '')}`);
  }
  return pattern;
}

/**
 * A checked pattern as a RegExp. `whole`: the pattern must match the whole
 * input, as Envoy's safe_regex matchers do; `global`: for replace-all.
 */
export function compileRegex(pattern: string, { whole = true, global = false } = {}): RegExp {
  const t = translate(pattern);
  if (typeof t === 'string') throw new TypeError(`compileRegex: ${t} (the pattern was not checked with checkRegex)`);
  // Lookarounds for the ends of the input, not ^ and $, which (?m) would turn into line anchors.
  const source = whole ? `(?<![\\s\\S])(?:${t.source})(?![\\s\\S])` : t.source;
  return new RegExp(source, t.flags + (global ? 'g' : ''));
}

/** RE2's `\1` (and `\0` for the whole match) in a substitution, as String.replace's `$1`; a literal `$` stays literal. */
export function re2Substitution(substitution: string): string {
  return substitution.replace(/\$/g, '$$$$').replace(/\\(\d)/g, (_, d: string) => (d === '0' ? '$&' : `$${d}`));
}

/** The JavaScript form of an RE2 pattern, or why there is none. */
function translate(pattern: string): Translated | string {
  let flags = '';
  let i = 0;
  const lead = /^\(\?([imsU]+)\)/.exec(pattern);
  if (lead) {
    if (lead[1]!.includes('U')) return 'the U (ungreedy) flag has no JavaScript equivalent; write lazy quantifiers (*?, +?) instead';
    flags = [...new Set(lead[1]!)].join('');
    i = lead[0].length;
  }
  let out = '';
  while (i < pattern.length) {
    const c = pattern[i]!;
    if (c === '\\') {
      const escaped = escape(pattern, i);
      if (escaped.error) return escaped.error;
      out += escaped.text;
      i += escaped.length;
      continue;
    }
    if (c === '[') {
      const cls = charClass(pattern, i);
      if (cls.error) return cls.error;
      out += cls.text;
      i += cls.length;
      continue;
    }
    if (c === '(' && pattern[i + 1] === '?') {
      const group = groupOpening(pattern, i);
      if (group.error) return group.error;
      out += group.text;
      i += group.length;
      continue;
    }
    if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(i));
      if (m && (Number(m[1]) > MAX_REPEAT || (m[3] !== undefined && m[3] !== '' && Number(m[3]) > MAX_REPEAT))) {
        return `repetition ${m[0]} exceeds RE2's limit of ${MAX_REPEAT}`;
      }
    }
    out += c;
    i += 1;
  }
  return { source: out, flags };
}

interface Piece {
  text: string;
  length: number;
  error?: string;
}

function escape(p: string, i: number): Piece {
  const n = p[i + 1];
  if (n === undefined) return { text: '', length: 1, error: 'ends with a lone backslash' };
  if (/[1-9]/.test(n)) return { text: '', length: 2, error: `\\${n} is a backreference, which RE2 does not support` };
  if (n === 'p' || n === 'P') return { text: '', length: 2, error: 'Unicode classes (\\p, \\P) are not supported; list the characters in a class instead' };
  if (n === 'Q' || n === 'C' || n === 'Z' || n === 'k') return { text: '', length: 2, error: `\\${n} is not supported; escape each special character with \\ instead` };
  if (n === 'x' && p[i + 2] === '{') return { text: '', length: 2, error: '\\x{...} is not supported; write \\xHH' };
  if (n === 'A') return { text: '(?<![\\s\\S])', length: 2 };
  if (n === 'z') return { text: '(?![\\s\\S])', length: 2 };
  return { text: `\\${n}`, length: 2 };
}

function charClass(p: string, start: number): Piece {
  let i = start + 1;
  if (p[i] === '^') i += 1;
  // A ] right after [ or [^ is a literal, in RE2 as in POSIX; JavaScript needs it escaped.
  let out = p.slice(start, i);
  if (p[i] === ']') {
    out += '\\]';
    i += 1;
  }
  while (i < p.length && p[i] !== ']') {
    if (p[i] === '[' && p[i + 1] === ':') return { text: '', length: 0, error: 'POSIX classes such as [[:alpha:]] are not supported; write the range, e.g. [a-zA-Z]' };
    if (p[i] === '\\') {
      const escaped = escape(p, i);
      if (escaped.error) return { ...escaped, length: 0 };
      out += escaped.text;
      i += escaped.length;
      continue;
    }
    // An unescaped [ inside a class is literal in RE2; escape it for JavaScript.
    out += p[i] === '[' ? '\\[' : p[i]!;
    i += 1;
  }
  if (i >= p.length) return { text: '', length: 0, error: 'a character class [ is never closed' };
  return { text: `${out}]`, length: i + 1 - start };
}

function groupOpening(p: string, i: number): Piece {
  const rest = p.slice(i);
  if (rest.startsWith('(?:')) return { text: '(?:', length: 3 };
  const named = /^\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>/.exec(rest);
  if (named) return { text: `(?<${named[1]}>`, length: named[0].length };
  if (/^\(\?<?[=!]/.test(rest)) return { text: '', length: 0, error: 'lookahead and lookbehind are not RE2; match the text itself instead' };
  const modifier = /^\(\?([ims]+):/.exec(rest);
  if (modifier) return { text: modifier[0], length: modifier[0].length };
  if (/^\(\?[imsU-]+\)/.test(rest)) return { text: '', length: 0, error: 'a flag switch such as (?i) is supported only at the start of the pattern; use (?i:...) for a part' };
  return { text: '', length: 0, error: `unknown group syntax ${quote(rest.slice(0, 6))}` };
}
