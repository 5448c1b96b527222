/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Shared includes, constants and address helpers for every meshlet hook. */
#ifndef MESHLET_H
#define MESHLET_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* From socket.h / in.h, which do not build for the bpf target. */
#define MESHLET_AF_INET 2
#define MESHLET_AF_INET6 10
#define MESHLET_IPPROTO_TCP 6

/* sock_addr programs return 1 to let the syscall proceed. */
#define SOCK_ADDR_ALLOW 1

/* IPv4 addresses are kept as v4-mapped IPv6 (::ffff:a.b.c.d) in 16-byte
 * fields so one key layout serves both families. Words are network order. */
static __always_inline void addr_set_v4mapped(__u32 addr[4], __u32 ip4)
{
	addr[0] = 0;
	addr[1] = 0;
	addr[2] = bpf_htonl(0x0000ffff);
	addr[3] = ip4;
}

static __always_inline int addr_is_v4mapped(const __u32 addr[4])
{
	return addr[0] == 0 && addr[1] == 0 && addr[2] == bpf_htonl(0x0000ffff);
}

static __always_inline void addr_copy(__u32 dst[4], const __u32 src[4])
{
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
}

static __always_inline int addr_equal(const __u32 a[4], const __u32 b[4])
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

static __always_inline int addr_is_zero(const __u32 a[4])
{
	return (a[0] | a[1] | a[2] | a[3]) == 0;
}

static __always_inline int ip4_is_loopback(__u32 ip4)
{
	return (bpf_ntohl(ip4) >> 24) == 127;
}

static __always_inline int ip6_is_loopback(const __u32 a[4])
{
	return a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == bpf_htonl(1);
}

/* fe80::/10: scoped to one link, never a mesh destination. */
static __always_inline int ip6_is_link_local(const __u32 a[4])
{
	return (bpf_ntohl(a[0]) & 0xffc00000) == 0xfe800000;
}

/* The bpf_sock_addr port field carries a network-order u16 in its low half. */
static __always_inline __u16 user_port_host(__u32 user_port)
{
	return bpf_ntohs((__u16)user_port);
}

#endif
