/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* drop_count: inbound connection attempts dropped, per pod since enrollment
 * (the agent deletes the entry at un-enrollment). Mirrored by
 * agent/bpf/codec.ts. */
#ifndef MESHLET_MAP_DROP_COUNT_H
#define MESHLET_MAP_DROP_COUNT_H

#include "meshlet.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);	/* one per pod, like pods */
	__type(key, __u64);	/* pod cgroup id */
	__type(value, __u64);
} drop_count __weak SEC(".maps");

static __always_inline void drop_count_inc(__u64 pod)
{
	__u64 one = 1;
	__u64 *count = bpf_map_lookup_elem(&drop_count, &pod);

	if (count) {
		__sync_fetch_and_add(count, 1);
		return;
	}
	/* Another CPU may create the entry first: then add to its. */
	if (!bpf_map_update_elem(&drop_count, &pod, &one, BPF_NOEXIST))
		return;
	count = bpf_map_lookup_elem(&drop_count, &pod);
	if (count)
		__sync_fetch_and_add(count, 1);
}

#endif
