/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* drop_events: one record per dropped inbound connection attempt, for the
 * agent (bpftool map event_pipe). Layout mirrored by agent/bpf/codec.ts. */
#ifndef MESHLET_MAP_DROP_EVENTS_H
#define MESHLET_MAP_DROP_EVENTS_H

#include "meshlet.h"

#define DROP_NOT_FROM_ZTUNNEL 1	/* STRICT, and not from an admitted source */
#define DROP_UNPARSED 2		/* STRICT, and the TCP header sits behind too many IPv6 extension headers */

struct drop_event {
	__u64 cgroup_id;	/* the pod */
	__u32 src[4];		/* network order; IPv4 as ::ffff:a.b.c.d */
	__u32 dst[4];
	__u16 sport;		/* host order */
	__u16 dport;
	__u16 family;		/* MESHLET_AF_INET or MESHLET_AF_INET6 */
	__u16 reason;		/* DROP_* */
};

/* Sized by libbpf to the number of possible CPUs. BTF key/value types keep the
 * map visible to the layout test; libbpf drops them at creation. */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__type(key, __u32);	/* CPU */
	__type(value, __u32);	/* perf event fd */
} drop_events __weak SEC(".maps");

#endif
