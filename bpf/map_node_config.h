/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* node_config: the node's capture address and the sources inbound
 * enforcement trusts, written by the agent; field names follow the agent's
 * flags (--capture-ip4, --inbound-source-ip4, --probe-source-ip4). Layout mirrored by agent/bpf/codec.ts (checked against BTF by a test). */
#ifndef MESHLET_MAP_NODE_CONFIG_H
#define MESHLET_MAP_NODE_CONFIG_H

#include "meshlet.h"

struct node_config {
	__u32 capture_ip6[4];	/* network order; all zero: no IPv6 capture */
	__u32 capture_ip4;	/* network order; zero: no IPv4 capture */
	__u16 outbound_port;	/* host order; zero: capture off */
	__u16 pad;
	/* Addresses: network order, all zero never matches. */
	__u32 inbound_source_ip6[4];	/* the ztunnel's source when it connects to local pods */
	__u32 probe_source_ip6[4];	/* where kubelet probes come from */
	__u32 inbound_source_ip4;
	__u32 probe_source_ip4;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct node_config);
} node_config __weak SEC(".maps");

/* A config without an outbound port means the agent has not set up the node
 * yet: callers then leave traffic alone. */
static __always_inline const struct node_config *node_config_get(void)
{
	__u32 zero = 0;
	const struct node_config *cfg = bpf_map_lookup_elem(&node_config, &zero);

	if (!cfg || !cfg->outbound_port)
		return 0;
	return cfg;
}

#endif
