/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* sockops (pod cgroups): once a redirected connect has its source address and
 * port, re-key its original destination from the socket cookie to (source ip,
 * source port), which is what the ztunnel sees as its peer, marking it when
 * that source is not the capturing pod's own address; drop the record at
 * close. */
#include "meshlet.h"
#include "map_pods.h"
#include "map_cookie_dst.h"
#include "map_flow_dst.h"

/* The pod side of the connection. A dual-stack socket talking IPv4 is keyed by
 * its v4-mapped address, as the ztunnel sees it. */
static __always_inline void local_flow_key(const struct bpf_sock_ops *skops, struct flow_key *key)
{
	if (skops->family == MESHLET_AF_INET6) {
		__u32 remote[4] = { skops->remote_ip6[0], skops->remote_ip6[1], skops->remote_ip6[2],
				    skops->remote_ip6[3] };

		if (!addr_is_v4mapped(remote)) {
			key->addr[0] = skops->local_ip6[0];
			key->addr[1] = skops->local_ip6[1];
			key->addr[2] = skops->local_ip6[2];
			key->addr[3] = skops->local_ip6[3];
			key->port = (__u16)skops->local_port;
			return;
		}
	}
	/* Also for v4-mapped: the v6 source is only filled in after this callback. */
	addr_set_v4mapped(key->addr, skops->local_ip4);
	key->port = (__u16)skops->local_port;
}

static __always_inline void on_connect(struct bpf_sock_ops *skops)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct orig_dst *found = bpf_map_lookup_elem(&cookie_dst, &cookie);
	const struct pod_info *info;
	struct flow_key key = {};
	struct orig_dst od;

	if (!found)
		return;
	/* Copy out: the LRU may reuse the slot once the entry is deleted. */
	od = *found;
	bpf_map_delete_elem(&cookie_dst, &cookie);

	local_flow_key(skops, &key);
	/* The ztunnel names the source by this address: it must be the pod's
	 * (bound with IP_FREEBIND or NET_ADMIN, it may be anyone's). A pod
	 * un-enrolled meanwhile has no addresses left to vouch for. */
	info = bpf_map_lookup_elem(&pods, &od.cgroup_id);
	if (!info || !pod_owns(info, key.addr))
		od.flags |= ORIG_DST_F_SOURCE_MISMATCH;
	if (bpf_map_update_elem(&flow_dst, &key, &od, BPF_ANY))
		return;
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
}

static __always_inline void on_close(struct bpf_sock_ops *skops)
{
	struct flow_key key = {};

	local_flow_key(skops, &key);
	bpf_map_delete_elem(&flow_dst, &key);
}

SEC("sockops")
int ml_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		on_connect(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* args[1] is the new state; the port is still bound at this point. */
		if (skops->args[1] == BPF_TCP_CLOSE)
			on_close(skops);
		break;
	}
	return 1;
}
