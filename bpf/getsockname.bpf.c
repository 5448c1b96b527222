/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* cgroup/getsockname4, cgroup/getsockname6 (ztunnel cgroup): on a socket
 * accepted on the outbound port, report the pod's original destination as the
 * local address, so the ztunnel reads it from socket.localAddress/localPort. */
#include "meshlet.h"
#include "map_node_config.h"
#include "map_flow_dst.h"

/* Only the outbound listener's accepted sockets: the ztunnel's other sockets
 * must keep their real addresses. */
static __always_inline const struct orig_dst *accepted_flow(const struct bpf_sock_addr *ctx, const __u32 peer[4])
{
	const struct node_config *cfg = node_config_get();
	struct bpf_sock *sk = ctx->sk;

	if (!cfg || !sk || ctx->protocol != MESHLET_IPPROTO_TCP ||
	    user_port_host(ctx->user_port) != cfg->outbound_port)
		return 0;
	return flow_dst_lookup(peer, bpf_ntohs(sk->dst_port));
}

SEC("cgroup/getsockname4")
int ml_getsockname4(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	const struct orig_dst *od;
	__u32 peer[4];

	if (!sk)
		return SOCK_ADDR_ALLOW;
	addr_set_v4mapped(peer, sk->dst_ip4);
	od = accepted_flow(ctx, peer);
	if (!od || od->family != MESHLET_AF_INET)
		return SOCK_ADDR_ALLOW;

	ctx->user_ip4 = od->addr[3];
	ctx->user_port = bpf_htons(od->port);
	return SOCK_ADDR_ALLOW;
}

SEC("cgroup/getsockname6")
int ml_getsockname6(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	const struct orig_dst *od;
	__u32 peer[4];

	if (!sk)
		return SOCK_ADDR_ALLOW;
	/* A dual-stack listener sees IPv4 peers v4-mapped, matching the key. */
	peer[0] = sk->dst_ip6[0];
	peer[1] = sk->dst_ip6[1];
	peer[2] = sk->dst_ip6[2];
	peer[3] = sk->dst_ip6[3];
	od = accepted_flow(ctx, peer);
	if (!od)
		return SOCK_ADDR_ALLOW;

	ctx->user_ip6[0] = od->addr[0];
	ctx->user_ip6[1] = od->addr[1];
	ctx->user_ip6[2] = od->addr[2];
	ctx->user_ip6[3] = od->addr[3];
	ctx->user_port = bpf_htons(od->port);
	return SOCK_ADDR_ALLOW;
}
