/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* cgroup_skb/ingress (pod cgroups): inbound mTLS enforcement. A TCP connection
 * attempt (SYN without ACK, to a listener) into an enrolled pod is admitted
 * from loopback, from the ztunnel's inbound source address, from the node
 * address on a declared probe port, or when the port's effective mode is
 * PERMISSIVE; otherwise it is dropped, counted and reported. Every other
 * packet passes: replies to the pod's own connections, established traffic
 * and UDP are never judged. */
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include "meshlet.h"
#include "inbound_admission.h"
#include "map_drop_count.h"
#include "map_drop_events.h"

#define SKB_PASS 1
#define SKB_DROP 0

/* __sk_buff.protocol, network order. */
#define MESHLET_ETH_P_IP 0x0800
#define MESHLET_ETH_P_IPV6 0x86DD

/* IPv6 next-header values walked to find the TCP header. */
#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_DEST 60
#define IPV6_MAX_EXT_HDRS 8

enum verdict { NOT_ATTEMPT, ATTEMPT, UNPARSED };

/* cgroup_skb data starts at the network header. */
static __always_inline enum verdict tcp_syn(struct __sk_buff *skb, __u32 off, struct drop_event *a)
{
	struct tcphdr tcp;

	if (bpf_skb_load_bytes(skb, off, &tcp, sizeof(tcp)))
		return NOT_ATTEMPT;
	if (!tcp.syn || tcp.ack)
		return NOT_ATTEMPT;
	a->sport = bpf_ntohs(tcp.source);
	a->dport = bpf_ntohs(tcp.dest);
	return ATTEMPT;
}

static __always_inline enum verdict parse4(struct __sk_buff *skb, struct drop_event *a)
{
	struct iphdr ip;

	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.protocol != MESHLET_IPPROTO_TCP)
		return NOT_ATTEMPT;
	/* Local delivery reassembles fragments: only a guard against reading payload as a header. */
	if (ip.frag_off & bpf_htons(0x1fff))
		return NOT_ATTEMPT;
	addr_set_v4mapped(a->src, ip.saddr);
	addr_set_v4mapped(a->dst, ip.daddr);
	a->family = MESHLET_AF_INET;
	return tcp_syn(skb, ip.ihl * 4, a);
}

/* Extension headers must not hide a SYN: past IPV6_MAX_EXT_HDRS it is UNPARSED. */
static __always_inline enum verdict parse6(struct __sk_buff *skb, struct drop_event *a)
{
	struct ipv6hdr ip;
	__u32 off = sizeof(ip);
	__u8 next;

	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
		return NOT_ATTEMPT;
	__builtin_memcpy(a->src, &ip.saddr, sizeof(a->src));
	__builtin_memcpy(a->dst, &ip.daddr, sizeof(a->dst));
	a->family = MESHLET_AF_INET6;
	next = ip.nexthdr;
	for (int i = 0; i < IPV6_MAX_EXT_HDRS; i++) {
		struct ipv6_opt_hdr ext;

		if (next == MESHLET_IPPROTO_TCP)
			return tcp_syn(skb, off, a);
		if (next != NEXTHDR_HOP && next != NEXTHDR_ROUTING && next != NEXTHDR_FRAGMENT &&
		    next != NEXTHDR_AUTH && next != NEXTHDR_DEST)
			return NOT_ATTEMPT;
		if (bpf_skb_load_bytes(skb, off, &ext, sizeof(ext)))
			return NOT_ATTEMPT;
		if (next == NEXTHDR_FRAGMENT)
			off += 8;
		else if (next == NEXTHDR_AUTH)
			off += (ext.hdrlen + 2) * 4;
		else
			off += (ext.hdrlen + 1) * 8;
		next = ext.nexthdr;
	}
	return next == MESHLET_IPPROTO_TCP ? tcp_syn(skb, off, a) : UNPARSED;
}

/* Not inlined, which also puts struct drop_event in the BTF the layout test reads. */
static __noinline int drop(struct __sk_buff *skb, const struct drop_event *ev)
{
	drop_count_inc(ev->cgroup_id);
	/* Fails when no agent is reading; the counter still has it. */
	bpf_perf_event_output(skb, &drop_events, BPF_F_CURRENT_CPU, (void *)ev, sizeof(*ev));
	return SKB_DROP;
}

SEC("cgroup_skb/ingress")
int ml_ingress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	const struct node_config *cfg;
	const struct pod_info *info;
	struct drop_event a = {};
	enum verdict v;
	__u64 pod;

	/* Connection attempts reach listeners; anything else is a reply or an
	 * established flow. */
	if (!sk)
		return SKB_PASS;
	sk = bpf_sk_fullsock(sk);
	if (!sk || sk->protocol != MESHLET_IPPROTO_TCP || sk->state != BPF_TCP_LISTEN)
		return SKB_PASS;
	if (skb->protocol == bpf_htons(MESHLET_ETH_P_IP))
		v = parse4(skb, &a);
	else if (skb->protocol == bpf_htons(MESHLET_ETH_P_IPV6))
		v = parse6(skb, &a);
	else
		return SKB_PASS;
	if (v == NOT_ATTEMPT)
		return SKB_PASS;

	cfg = node_config_get();
	pod = skb_pod(skb);
	info = pod ? bpf_map_lookup_elem(&pods, &pod) : 0;
	if (!cfg || !info)
		return SKB_PASS;
	a.cgroup_id = pod;
	if (v == UNPARSED) {
		if (!(info->flags & POD_F_STRICT_INBOUND))
			return SKB_PASS;
		a.reason = DROP_UNPARSED;
		return drop(skb, &a);
	}
	if (inbound_admitted(a.family == MESHLET_AF_INET, a.src, a.dport, pod, info, cfg))
		return SKB_PASS;
	a.reason = DROP_NOT_FROM_ZTUNNEL;
	return drop(skb, &a);
}
