/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* cgroup/getsockname4, cgroup/getsockname6 (ztunnel cgroup): on a socket
 * accepted on the outbound port, report the pod's original destination as the
 * local address, so the ztunnel reads it from socket.localAddress/localPort.
 *
 * A record marked ORIG_DST_F_SOURCE_MISMATCH (the connection's source address
 * is not the capturing pod's) is reported as SOURCE_MISMATCH_PORT (0) instead,
 * with the capturing pod's own address of the connection's family (the
 * unspecified address when the pod has none or is no longer enrolled), so the
 * ztunnel can refuse it and name the pod (ztunnel/outbound-plan.ts). */
#include "meshlet.h"
#include "map_node_config.h"
#include "map_pods.h"
#include "map_flow_dst.h"

/* The capturing pod's own address in the record's family (IPv4 as ::ffff:a.b.c.d); zero when it has none. */
static __always_inline void pod_address(const struct orig_dst *od, __u32 addr[4])
{
	__u64 pod = od->cgroup_id;
	const struct pod_info *info = bpf_map_lookup_elem(&pods, &pod);

	if (od->family == MESHLET_AF_INET) {
		addr_set_v4mapped(addr, info ? info->ip4 : 0);
		return;
	}
	addr[0] = addr[1] = addr[2] = addr[3] = 0;
	if (info)
		addr_copy(addr, info->ip6);
}

/* The local address (IPv4 as ::ffff:a.b.c.d) and port to report for a record. */
static __always_inline __u16 local_answer(const struct orig_dst *od, __u32 local[4])
{
	if (od->flags & ORIG_DST_F_SOURCE_MISMATCH) {
		pod_address(od, local);
		return SOURCE_MISMATCH_PORT;
	}
	addr_copy(local, od->addr);
	return od->port;
}

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
	__u32 peer[4], local[4];
	__u16 port;

	if (!sk)
		return SOCK_ADDR_ALLOW;
	addr_set_v4mapped(peer, sk->dst_ip4);
	od = accepted_flow(ctx, peer);
	if (!od || od->family != MESHLET_AF_INET)
		return SOCK_ADDR_ALLOW;
	port = local_answer(od, local);

	ctx->user_ip4 = local[3];
	ctx->user_port = bpf_htons(port);
	return SOCK_ADDR_ALLOW;
}

SEC("cgroup/getsockname6")
int ml_getsockname6(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	const struct orig_dst *od;
	__u32 peer[4], local[4];
	__u16 port;

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
	port = local_answer(od, local);

	ctx->user_ip6[0] = local[0];
	ctx->user_ip6[1] = local[1];
	ctx->user_ip6[2] = local[2];
	ctx->user_ip6[3] = local[3];
	ctx->user_port = bpf_htons(port);
	return SOCK_ADDR_ALLOW;
}
