// HTTP/2 tuning shared by both tunnel ends. The protocol's default 64 KiB
// windows cap one stream at a window per round trip; several MB keep a
// long transfer at line rate.
export const STREAM_WINDOW = 4 * 1024 * 1024;
export const SESSION_WINDOW = 16 * 1024 * 1024;
/** Streams per session; the client opens another session when one is full. */
export const MAX_STREAMS_PER_SESSION = 100;
/** nghttp2's per-session memory cap, in MB; must cover the windows above. */
export const MAX_SESSION_MEMORY_MB = 64;
