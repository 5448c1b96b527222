/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* excluded_ports: per-pod outbound ports that bypass the mesh.
 * Mirrored by agent/bpf/codec.ts. */
#ifndef MESHLET_MAP_EXCLUDED_PORTS_H
#define MESHLET_MAP_EXCLUDED_PORTS_H

#include "meshlet.h"
#include "pod_port_key.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct pod_port_key);
	__type(value, __u8);	/* 1: excluded */
} excluded_ports __weak SEC(".maps");

static __always_inline int port_excluded(__u64 pod_cgroup, __u16 port)
{
	struct pod_port_key key = { .cgroup_id = pod_cgroup, .port = port };

	return bpf_map_lookup_elem(&excluded_ports, &key) != 0;
}

#endif
