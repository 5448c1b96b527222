// glibc's malloc, tuned for the proxies (the ztunnel and the waypoint): one
// event loop each, relaying bytes through buffers of 16-128 KiB (socket
// reads, TLS records). Passed as GLIBC_TUNABLES, which glibc reads as the
// process starts.
// - arena_max 2: glibc makes an arena per thread that allocates (V8's
//   workers among them), each keeping freed memory of its own. Two arenas
//   took the waypoint's RssAnon under the bench's load 10-20 MiB lower.
// - mmap_threshold 16 KiB, trim_threshold 64 KiB, top_pad 0: those buffers
//   came from the main arena's brk heap, which gives memory back only from
//   its top, so it stayed at its high-water mark (18 MiB of the waypoint's
//   66). Mapped on their own, they go back to the kernel when freed. Setting
//   the threshold also stops glibc raising it after each such free, which
//   moved the buffers back into the heap. The waypoint's RssAnon at 1,000
//   req/s went from 64-66 MiB to 55-56; it makes about one mmap call per 20
//   requests (strace), a cost the bench cannot see.
export const PROXY_GLIBC_TUNABLES = 'glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=16384:glibc.malloc.trim_threshold=65536:glibc.malloc.top_pad=0';

/** The container env entry. */
export const proxyGlibcTunablesEnv = (): { name: string; value: string } => ({ name: 'GLIBC_TUNABLES', value: PROXY_GLIBC_TUNABLES });
