/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* A port of one pod: the key of port_mode and probe_ports.
 * Mirrored by agent/bpf/codec.ts. */
#ifndef MESHLET_POD_PORT_KEY_H
#define MESHLET_POD_PORT_KEY_H

#include "meshlet.h"

struct pod_port_key {
	__u64 cgroup_id;	/* the pod cgroup (as found in pods) */
	__u16 port;		/* host order */
	__u16 pad[3];
};

#endif
