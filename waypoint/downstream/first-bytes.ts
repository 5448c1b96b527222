// What a client's first bytes say about its protocol, for a port that
// declares none: the HTTP/2 connection preface, an HTTP/1.x request line
// (RFC 9112 §3), something else, or too little to tell yet. Pure, so it is
// tested byte by byte; sniff.ts feeds it from the stream.

export type FirstBytes = 'h2' | 'http1' | 'other' | 'incomplete';

/** RFC 9113 §3.4: what a client speaking HTTP/2 with prior knowledge sends first. */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** A request line still undecided after this many bytes is taken for HTTP/1 (a long URL); nothing else gets this far. */
export const MAX_SNIFF_BYTES = 8192;

/** Methods are short tokens; a longer run of token characters is not a request line. */
const MAX_METHOD = 32;

const SP = 0x20;
const CR = 0x0d;
const LF = 0x0a;
const VERSION = Buffer.from('HTTP/1.', 'latin1');

/** RFC 9110 §5.6.2 tchar, by byte. */
const TCHAR = (() => {
  const table = new Uint8Array(256);
  for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") table[c.charCodeAt(0)] = 1;
  return table;
})();

const isTchar = (b: number): boolean => TCHAR[b] === 1;

function classifyPreface(buf: Buffer): FirstBytes | undefined {
  const n = Math.min(buf.length, H2_PREFACE.length);
  if (buf.compare(H2_PREFACE, 0, n, 0, n) !== 0) return undefined;
  return buf.length >= H2_PREFACE.length ? 'h2' : 'incomplete';
}

function classifyRequestLine(buf: Buffer): FirstBytes {
  let i = 0;
  // RFC 9112 §2.2: a server should ignore an empty line before the request line.
  if (buf[0] === CR) {
    if (buf.length === 1) return 'incomplete';
    if (buf[1] !== LF) return 'other';
    i = 2;
  } else if (buf[0] === LF) i = 1;
  const methodStart = i;
  while (i < buf.length && isTchar(buf[i]!)) i++;
  if (i - methodStart > MAX_METHOD) return 'other';
  if (i === buf.length) return 'incomplete';
  if (i === methodStart || buf[i] !== SP) return 'other';
  const targetStart = ++i;
  // request-target: visible characters (and obs-text), no spaces or controls.
  while (i < buf.length && buf[i]! > SP && buf[i] !== 0x7f) i++;
  if (i >= MAX_SNIFF_BYTES) return 'http1';
  if (i === buf.length) return 'incomplete';
  if (i === targetStart || buf[i] !== SP) return 'other';
  i++;
  // HTTP-version: "HTTP/1." DIGIT, then CRLF (a bare LF is tolerated, as parsers do).
  const have = Math.min(buf.length - i, VERSION.length);
  if (buf.compare(VERSION, 0, have, i, i + have) !== 0) return 'other';
  if (have < VERSION.length) return 'incomplete';
  i += VERSION.length;
  if (i === buf.length) return 'incomplete';
  if (buf[i]! < 0x30 || buf[i]! > 0x39) return 'other';
  i++;
  if (i === buf.length) return 'incomplete';
  if (buf[i] === LF) return 'http1';
  if (buf[i] !== CR) return 'other';
  if (i + 1 === buf.length) return 'incomplete';
  return buf[i + 1] === LF ? 'http1' : 'other';
}

/** The HTTP/2 preface is checked first: its first line also looks like a request line (for HTTP/2.0, which HTTP/1 parsing refuses). */
export function classifyFirstBytes(buf: Buffer): FirstBytes {
  if (buf.length === 0) return 'incomplete';
  return classifyPreface(buf) ?? classifyRequestLine(buf);
}
