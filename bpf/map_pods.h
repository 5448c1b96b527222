/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* pods: enrolled pod cgroups. Deleting an entry stops capture at once, even
 * before the programs are detached. Mirrored by agent/bpf/codec.ts. */
#ifndef MESHLET_MAP_PODS_H
#define MESHLET_MAP_PODS_H

#include "meshlet.h"

#define POD_F_CAPTURE_OUTBOUND (1U << 0)
/* Default inbound mode STRICT; unset is PERMISSIVE. port_mode overrides per port. */
#define POD_F_STRICT_INBOUND (1U << 1)

/* Containers sit in child cgroups of the pod cgroup; bounds the ancestor walk. */
#define POD_MAX_CGROUP_DEPTH 16

/* The pod's own addresses, written by the agent from the pod's status: a
 * redirected connection from any other local address is marked
 * ORIG_DST_F_SOURCE_MISMATCH (sockops.bpf.c). Kubernetes gives a pod at most
 * one address per family. */
struct pod_info {
	__u32 flags;	/* POD_F_* */
	__u32 ip4;	/* network order; zero: none */
	__u32 ip6[4];	/* network order; all zero: none */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);	/* cgroup v2 id */
	__type(value, struct pod_info);
} pods __weak SEC(".maps");

/* Whether addr (IPv4 as ::ffff:a.b.c.d) is one of the pod's own addresses. */
static __always_inline int pod_owns(const struct pod_info *info, const __u32 addr[4])
{
	if (addr_is_v4mapped(addr))
		return info->ip4 && addr[3] == info->ip4;
	return !addr_is_zero(info->ip6) && addr_equal(addr, info->ip6);
}

/* Returns the cgroup id of the enrolled pod the current task belongs to, or 0.
 * The task's own cgroup is tried first (the common case), then its ancestors
 * from the root down, keeping the deepest match. */
static __always_inline __u64 current_pod(__u32 want_flags)
{
	__u64 id = bpf_get_current_cgroup_id();
	struct pod_info *info = bpf_map_lookup_elem(&pods, &id);
	__u64 found = 0;

	if (info)
		return (info->flags & want_flags) == want_flags ? id : 0;

	for (int level = 1; level < POD_MAX_CGROUP_DEPTH; level++) {
		__u64 anc = bpf_get_current_ancestor_cgroup_id(level);

		if (!anc || anc == id)
			break;
		info = bpf_map_lookup_elem(&pods, &anc);
		if (info && (info->flags & want_flags) == want_flags)
			found = anc;
	}
	return found;
}

/* The same walk for a packet, from the cgroup of the socket it is delivered to. */
static __always_inline __u64 skb_pod(struct __sk_buff *skb)
{
	__u64 id = bpf_skb_cgroup_id(skb);
	__u64 found = 0;

	if (!id)
		return 0;
	if (bpf_map_lookup_elem(&pods, &id))
		return id;
	for (int level = 1; level < POD_MAX_CGROUP_DEPTH; level++) {
		__u64 anc = bpf_skb_ancestor_cgroup_id(skb, level);

		if (!anc || anc == id)
			break;
		if (bpf_map_lookup_elem(&pods, &anc))
			found = anc;
	}
	return found;
}

#endif
