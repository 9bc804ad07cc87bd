"""Pod network attachment for Calico's CNI dataplane API (veth for the kernel, tap/af_packet for VPP)."""
