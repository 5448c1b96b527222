/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* cookie_dst: original destination and capturing pod by socket cookie, from
 * connect until sockops knows the source address and port. Mirrored by
 * agent/bpf/codec.ts. */
#ifndef MESHLET_MAP_COOKIE_DST_H
#define MESHLET_MAP_COOKIE_DST_H

#include "orig_dst.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);	/* socket cookie */
	__type(value, struct orig_dst);
} cookie_dst __weak SEC(".maps");

#endif
