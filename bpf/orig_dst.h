/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The original destination of a redirected connection and the pod that made
 * it: the value of both cookie_dst and flow_dst. Mirrored by
 * agent/bpf/codec.ts. */
#ifndef MESHLET_ORIG_DST_H
#define MESHLET_ORIG_DST_H

#include "meshlet.h"

/* Set by sockops when the socket's local address is not one of the pod's own
 * addresses (pods map): the pod bound another pod's or a foreign address.
 * The record is kept, so getsockname can tell the ztunnel (getsockname.bpf.c). */
#define ORIG_DST_F_SOURCE_MISMATCH (1U << 0)
/* The port getsockname reports for such a record. No redirected connection
 * has it otherwise: connect leaves a connect to port 0 alone. */
#define SOURCE_MISMATCH_PORT 0

struct orig_dst {
	__u32 addr[4];	/* network order; IPv4 as ::ffff:a.b.c.d */
	__u16 port;	/* host order; never SOURCE_MISMATCH_PORT */
	__u16 family;	/* MESHLET_AF_INET (also when v4-mapped) or MESHLET_AF_INET6 */
	__u32 flags;	/* ORIG_DST_F_*; connect writes 0 */
	__u64 cgroup_id;	/* the enrolled pod whose connect was captured (as found in pods) */
};

#endif
