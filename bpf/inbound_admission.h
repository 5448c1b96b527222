/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The inbound admission rule, one copy for both of its users: ingress.bpf.c
 * judges each connection attempt by it, iter/strict_sweep.bpf.c ends the
 * established connections it no longer admits after a pod's mode tightened. */
#ifndef MESHLET_INBOUND_ADMISSION_H
#define MESHLET_INBOUND_ADMISSION_H

#include "meshlet.h"
#include "map_node_config.h"
#include "map_pods.h"
#include "map_port_mode.h"
#include "map_probe_ports.h"

/* src is v4-mapped for IPv4; zero configured addresses never match. */
static __always_inline int inbound_from(int v4, const __u32 src[4], __u32 ip4, const __u32 ip6[4])
{
	if (v4)
		return ip4 && src[3] == ip4;
	return !addr_is_zero(ip6) && addr_equal(src, ip6);
}

/* Whether a TCP connection from src (v4: an IPv4 peer, src v4-mapped) to the
 * pod's port is admitted: from loopback, from the ztunnel's inbound source
 * address, from the probe source on a declared probe port, or when the
 * port's effective mode is PERMISSIVE. */
static __always_inline int inbound_admitted(int v4, const __u32 src[4], __u16 port, __u64 pod,
					    const struct pod_info *info, const struct node_config *cfg)
{
	if (v4 ? ip4_is_loopback(src[3]) : ip6_is_loopback(src))
		return 1;
	if (inbound_from(v4, src, cfg->inbound_source_ip4, cfg->inbound_source_ip6))
		return 1;
	if (inbound_from(v4, src, cfg->probe_source_ip4, cfg->probe_source_ip6) && is_probe_port(pod, port))
		return 1;
	return inbound_permissive(pod, info, port);
}

#endif
