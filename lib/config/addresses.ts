// The four addresses a node's mesh components use, each with one name in
// flags (`--capture-ip4`), config types, the BPF node_config struct
// (`capture_ip4`), the sandbox and `status -o json`.

export interface NodeAddresses {
  /** Where the ztunnel accepts captured outbound connections: the connect hooks rewrite to it. */
  captureIp4: string;
  captureIp6?: string;
  /** The ztunnel's source address toward local pods; STRICT admits it (Istio's 127.0.0.6). */
  inboundSourceIp4?: string;
  inboundSourceIp6?: string;
  /** Where kubelet probes come from: admitted under STRICT on the pod's declared probe ports only. */
  probeSourceIp4?: string;
  probeSourceIp6?: string;
  /** The node's own address: inbound HBONE, readiness and metrics listen on it, peers dial it. */
  nodeIp4: string;
  nodeIp6?: string;
}
