/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* port_mode: per-port inbound mTLS mode overriding the pod's default (the
 * POD_F_STRICT_INBOUND flag). Mirrored by agent/bpf/codec.ts. */
#ifndef MESHLET_MAP_PORT_MODE_H
#define MESHLET_MAP_PORT_MODE_H

#include "pod_port_key.h"
#include "map_pods.h"

#define PORT_MODE_STRICT 1
#define PORT_MODE_PERMISSIVE 2

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct pod_port_key);
	__type(value, __u8);	/* PORT_MODE_* */
} port_mode __weak SEC(".maps");

/* Any value but PERMISSIVE counts as STRICT: fail closed. */
static __always_inline int inbound_permissive(__u64 pod, const struct pod_info *info, __u16 port)
{
	struct pod_port_key key = { .cgroup_id = pod, .port = port };
	const __u8 *mode = bpf_map_lookup_elem(&port_mode, &key);

	if (mode)
		return *mode == PORT_MODE_PERMISSIVE;
	return !(info->flags & POD_F_STRICT_INBOUND);
}

#endif
