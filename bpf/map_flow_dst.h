/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* flow_dst: original destination by the pod side of a redirected connection
 * (its source ip and port), which is the ztunnel's peer; marked when that
 * source ip is not the pod's own. Entries go at TCP close; the LRU only
 * catches what is missed. Mirrored by agent/bpf/codec.ts. */
#ifndef MESHLET_MAP_FLOW_DST_H
#define MESHLET_MAP_FLOW_DST_H

#include "orig_dst.h"

struct flow_key {
	__u32 addr[4];	/* network order; IPv4 as ::ffff:a.b.c.d */
	__u16 port;	/* host order */
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct orig_dst);
} flow_dst __weak SEC(".maps");

static __always_inline const struct orig_dst *flow_dst_lookup(const __u32 addr[4], __u16 port)
{
	struct flow_key key = { .port = port };

	addr_copy(key.addr, addr);
	return bpf_map_lookup_elem(&flow_dst, &key);
}

#endif
