/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* cgroup/getpeername4, cgroup/getpeername6 (pod cgroups): a redirected
 * connection still reports its original destination as the peer. */
#include "meshlet.h"
#include "map_node_config.h"
#include "map_flow_dst.h"

/* The record of this socket, if its real peer is the ztunnel's outbound port. */
static __always_inline const struct orig_dst *redirected_flow(const struct bpf_sock_addr *ctx,
							       const struct node_config *cfg, const __u32 local[4])
{
	struct bpf_sock *sk = ctx->sk;

	if (!sk || ctx->protocol != MESHLET_IPPROTO_TCP ||
	    user_port_host(ctx->user_port) != cfg->outbound_port)
		return 0;
	return flow_dst_lookup(local, (__u16)sk->src_port);
}

SEC("cgroup/getpeername4")
int ml_getpeername4(struct bpf_sock_addr *ctx)
{
	const struct node_config *cfg = node_config_get();
	struct bpf_sock *sk = ctx->sk;
	const struct orig_dst *od;
	__u32 local[4];

	if (!cfg || !sk || !cfg->capture_ip4 || ctx->user_ip4 != cfg->capture_ip4)
		return SOCK_ADDR_ALLOW;
	addr_set_v4mapped(local, sk->src_ip4);
	od = redirected_flow(ctx, cfg, local);
	if (!od || od->family != MESHLET_AF_INET)
		return SOCK_ADDR_ALLOW;

	ctx->user_ip4 = od->addr[3];
	ctx->user_port = bpf_htons(od->port);
	return SOCK_ADDR_ALLOW;
}

SEC("cgroup/getpeername6")
int ml_getpeername6(struct bpf_sock_addr *ctx)
{
	const struct node_config *cfg = node_config_get();
	struct bpf_sock *sk = ctx->sk;
	const struct orig_dst *od;
	__u32 peer[4], ztunnel4[4], local[4];

	if (!cfg || !sk)
		return SOCK_ADDR_ALLOW;
	peer[0] = ctx->user_ip6[0];
	peer[1] = ctx->user_ip6[1];
	peer[2] = ctx->user_ip6[2];
	peer[3] = ctx->user_ip6[3];
	addr_set_v4mapped(ztunnel4, cfg->capture_ip4);
	if (addr_is_zero(peer) || !(addr_equal(peer, cfg->capture_ip6) || addr_equal(peer, ztunnel4)))
		return SOCK_ADDR_ALLOW;
	/* Dual-stack sockets talking IPv4 have a v4-mapped source, like the key. */
	local[0] = sk->src_ip6[0];
	local[1] = sk->src_ip6[1];
	local[2] = sk->src_ip6[2];
	local[3] = sk->src_ip6[3];
	od = redirected_flow(ctx, cfg, local);
	if (!od)
		return SOCK_ADDR_ALLOW;

	ctx->user_ip6[0] = od->addr[0];
	ctx->user_ip6[1] = od->addr[1];
	ctx->user_ip6[2] = od->addr[2];
	ctx->user_ip6[3] = od->addr[3];
	ctx->user_port = bpf_htons(od->port);
	return SOCK_ADDR_ALLOW;
}
