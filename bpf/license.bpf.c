/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The one license section of the linked object. */
#include "meshlet.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";
