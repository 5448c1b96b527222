/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* iter/tcp: ends the connections into one pod that its inbound mode no longer
 * admits. The ingress hook judges only connection attempts, so a plaintext
 * connection admitted under PERMISSIVE would outlive a switch to STRICT (or an
 * AuthorizationPolicy newly selecting the pod); the agent runs this after
 * writing the tighter mode. A tcp iterator walks the sockets of the network
 * namespace of whoever reads it, so the agent reads it from inside the pod's.
 *
 * A connection is ended (bpf_sock_destroy: the peer gets a reset, the pod's
 * socket ECONNABORTED) when its local address is one of the pod's, its local
 * port has a listener (it was accepted: connections the pod opened itself
 * use other ports and are never touched), and inbound_admitted() refuses its
 * peer. One line per connection it ends, which the agent counts:
 *   close <local> <local port> <peer> <peer port>
 * followed, should the kernel refuse, by "failed <same fields> <errno>".
 *
 * Its own object (bpftool iter pin loads a whole object and attaches its
 * first program), so the maps below are this object's copies: the agent
 * writes into them the one pod's entries, as it wrote them into the capture
 * object's maps, before each run. */
#include "../meshlet.h"
#include <linux/in6.h>
#include <bpf/bpf_tracing.h>
#include "../inbound_admission.h"

/* include/net/tcp_states.h */
#define TCP_ESTABLISHED 1
#define TCP_SYN_RECV 3
#define TCP_FIN_WAIT1 4
#define TCP_FIN_WAIT2 5
#define TCP_CLOSE_WAIT 8
#define TCP_LAST_ACK 9
#define TCP_LISTEN 10
#define TCP_CLOSING 11

/* The kernel types this program reads, relocated against the running
 * kernel's BTF (CO-RE): only the fields used. */
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 seq_num;
} __attribute__((preserve_access_index));

struct sock_common {
	unsigned short skc_family;
	volatile unsigned char skc_state;
	__u16 skc_num;		/* local port, host order */
	__be16 skc_dport;	/* peer port, network order */
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
} __attribute__((preserve_access_index));

extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

/* The run's input, written by the agent. Mirrored by agent/bpf/strict-sweep.ts. */
struct sweep_config {
	__u64 cgroup_id;	/* the pod (its key in pods) */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sweep_config);
} sweep_config SEC(".maps");

/* Per local port, the run that saw a listener on it. The iterator shows every
 * listening socket before any other (as /proc/net/tcp lists them), so by the
 * first connection the run knows all its listeners. */
static __u32 listening[65536];
static __u32 run;

/* Full sockets that still carry traffic; TIME_WAIT and request sockets are
 * minisocks that bpf_sock_destroy must not be given. */
static __always_inline int open_state(unsigned char state)
{
	return state == TCP_ESTABLISHED || state == TCP_SYN_RECV || state == TCP_FIN_WAIT1 ||
	       state == TCP_FIN_WAIT2 || state == TCP_CLOSE_WAIT || state == TCP_LAST_ACK ||
	       state == TCP_CLOSING;
}

SEC("iter/tcp")
int ml_strict_sweep(struct bpf_iter__tcp *ctx)
{
	struct sock_common *sk = ctx->sk_common;
	struct seq_file *seq = ctx->meta->seq;
	const struct sweep_config *in;
	const struct node_config *cfg;
	const struct pod_info *info;
	__u32 local[4], peer[4], zero = 0;
	__u16 port, peer_port;
	unsigned char state;
	int v4, err;

	/* Each read of the pinned iterator is a run, starting at object 0. */
	if (ctx->meta->seq_num == 0)
		run++;
	if (!sk)
		return 0;
	state = sk->skc_state;
	port = sk->skc_num;
	if (state == TCP_LISTEN) {
		listening[port] = run;
		return 0;
	}
	if (!open_state(state) || listening[port] != run)
		return 0;

	in = bpf_map_lookup_elem(&sweep_config, &zero);
	cfg = node_config_get();
	info = in ? bpf_map_lookup_elem(&pods, &in->cgroup_id) : 0;
	if (!cfg || !info)
		return 0;
	if (sk->skc_family == MESHLET_AF_INET) {
		addr_set_v4mapped(local, sk->skc_rcv_saddr);
		addr_set_v4mapped(peer, sk->skc_daddr);
	} else if (sk->skc_family == MESHLET_AF_INET6) {
		/* IPv4 peers of a dual-stack listener show as ::ffff:a.b.c.d here too. */
		__builtin_memcpy(local, &sk->skc_v6_rcv_saddr, sizeof(local));
		__builtin_memcpy(peer, &sk->skc_v6_daddr, sizeof(peer));
	} else {
		return 0;
	}
	v4 = addr_is_v4mapped(peer);
	if (!pod_owns(info, local) || inbound_admitted(v4, peer, port, in->cgroup_id, info, cfg))
		return 0;

	peer_port = bpf_ntohs(sk->skc_dport);
	/* The line first: a full buffer shows this socket again in the next
	 * chunk of the read, where it is destroyed and counted once. */
	if (BPF_SEQ_PRINTF(seq, "close %pI6 %u %pI6 %u\n", local, port, peer, peer_port) < 0)
		return 0;
	err = bpf_sock_destroy(sk);
	if (err)
		BPF_SEQ_PRINTF(seq, "failed %pI6 %u %pI6 %u %d\n", local, port, peer, peer_port, -err);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
