/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* probe_ports: per-pod ports the node address (kubelet) may reach in
 * plaintext under STRICT. Mirrored by agent/bpf/codec.ts. */
#ifndef MESHLET_MAP_PROBE_PORTS_H
#define MESHLET_MAP_PROBE_PORTS_H

#include "pod_port_key.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct pod_port_key);
	__type(value, __u8);	/* 1: probe port */
} probe_ports __weak SEC(".maps");

static __always_inline int is_probe_port(__u64 pod, __u16 port)
{
	struct pod_port_key key = { .cgroup_id = pod, .port = port };

	return bpf_map_lookup_elem(&probe_ports, &key) != 0;
}

#endif
