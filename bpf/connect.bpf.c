/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* cgroup/connect4, cgroup/connect6 (pod cgroups): send an enrolled pod's TCP
 * connects to the node ztunnel's outbound port, remembering the original
 * destination and the pod under the socket cookie for sockops to re-key and
 * check. */
#include "meshlet.h"
#include "map_node_config.h"
#include "map_pods.h"
#include "map_excluded_ports.h"
#include "map_cookie_dst.h"

/* Returns the pod to capture for, or 0 when the connect stays untouched. A
 * connect to port 0 stays untouched too: that port is what getsockname
 * answers for a connection whose source address is not its pod's. */
static __always_inline __u64 capturing_pod(const struct bpf_sock_addr *ctx, __u16 port)
{
	__u64 pod;

	if (ctx->protocol != MESHLET_IPPROTO_TCP || port == SOURCE_MISMATCH_PORT)
		return 0;
	pod = current_pod(POD_F_CAPTURE_OUTBOUND);
	if (!pod || port_excluded(pod, port))
		return 0;
	return pod;
}

/* Without a record the ztunnel could not learn the destination, so a failed
 * update means the connect goes direct rather than to a dead end. */
static __always_inline int remember(struct bpf_sock_addr *ctx, __u64 pod, const __u32 addr[4], __u16 port, __u16 family)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct orig_dst od = { .port = port, .family = family, .cgroup_id = pod };

	addr_copy(od.addr, addr);
	return bpf_map_update_elem(&cookie_dst, &cookie, &od, BPF_ANY);
}

SEC("cgroup/connect4")
int ml_connect4(struct bpf_sock_addr *ctx)
{
	const struct node_config *cfg = node_config_get();
	__u32 dst = ctx->user_ip4;
	__u16 port = user_port_host(ctx->user_port);
	__u32 addr[4];
	__u64 pod;

	/* 0.0.0.0 means this host, like loopback. */
	if (!cfg || !cfg->capture_ip4 || !dst || ip4_is_loopback(dst) || dst == cfg->capture_ip4)
		return SOCK_ADDR_ALLOW;
	pod = capturing_pod(ctx, port);
	if (!pod)
		return SOCK_ADDR_ALLOW;
	addr_set_v4mapped(addr, dst);
	if (remember(ctx, pod, addr, port, MESHLET_AF_INET))
		return SOCK_ADDR_ALLOW;

	ctx->user_ip4 = cfg->capture_ip4;
	ctx->user_port = bpf_htons(cfg->outbound_port);
	return SOCK_ADDR_ALLOW;
}

SEC("cgroup/connect6")
int ml_connect6(struct bpf_sock_addr *ctx)
{
	const struct node_config *cfg = node_config_get();
	__u16 port = user_port_host(ctx->user_port);
	__u32 dst[4], ztunnel[4];
	__u16 family;
	__u64 pod;

	if (!cfg)
		return SOCK_ADDR_ALLOW;
	dst[0] = ctx->user_ip6[0];
	dst[1] = ctx->user_ip6[1];
	dst[2] = ctx->user_ip6[2];
	dst[3] = ctx->user_ip6[3];

	if (addr_is_v4mapped(dst)) {
		/* A dual-stack socket reaching an IPv4 peer: redirect within IPv4. */
		if (!cfg->capture_ip4 || !dst[3] || ip4_is_loopback(dst[3]) || dst[3] == cfg->capture_ip4)
			return SOCK_ADDR_ALLOW;
		addr_set_v4mapped(ztunnel, cfg->capture_ip4);
		family = MESHLET_AF_INET;
	} else {
		/* :: means this host, like loopback. A link-local peer is reached
		 * from a link-local source, which is never the pod's address. */
		if (addr_is_zero(cfg->capture_ip6) || addr_is_zero(dst) || ip6_is_loopback(dst) ||
		    ip6_is_link_local(dst) || addr_equal(dst, cfg->capture_ip6))
			return SOCK_ADDR_ALLOW;
		addr_copy(ztunnel, cfg->capture_ip6);
		family = MESHLET_AF_INET6;
	}
	pod = capturing_pod(ctx, port);
	if (!pod)
		return SOCK_ADDR_ALLOW;
	if (remember(ctx, pod, dst, port, family))
		return SOCK_ADDR_ALLOW;

	ctx->user_ip6[0] = ztunnel[0];
	ctx->user_ip6[1] = ztunnel[1];
	ctx->user_ip6[2] = ztunnel[2];
	ctx->user_ip6[3] = ztunnel[3];
	ctx->user_port = bpf_htons(cfg->outbound_port);
	return SOCK_ADDR_ALLOW;
}
