/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The original destination of a redirected connection: the value of both
 * cookie_dst and flow_dst. Mirrored by agent/bpf/codec.ts. */
#ifndef MESHLET_ORIG_DST_H
#define MESHLET_ORIG_DST_H

#include "meshlet.h"

struct orig_dst {
	__u32 addr[4];	/* network order; IPv4 as ::ffff:a.b.c.d */
	__u16 port;	/* host order */
	__u16 family;	/* MESHLET_AF_INET (also when v4-mapped) or MESHLET_AF_INET6 */
};

#endif
