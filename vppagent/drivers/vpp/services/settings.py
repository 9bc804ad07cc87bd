"""What the operator tells the driver about the cluster's Services (AgentConfig's `service_*` keys).

- Source NAT (`snat_ipv4`/`snat_ipv6`): cnat's one source address per family. A flow cnat's
  Kubernetes policy source-NATs leaves with it: hairpin (a pod reaching itself through a Service) and
  flows from outside to a backend outside (NodePort or external traffic for a backend on another
  node), whose answer must come back to this VPP. Unset, the hairpin addresses below serve hairpin
  alone (no other node can route back to them). The address must be VPP's alone: cnat takes it over
  in VPP's FIB, so a node address would stop answering (docs/services.md, "Source NAT").
- Ownership (`cidrs`, `node_ports`): the cluster's service CIDRs (`--service-cluster-ip-range`) and
  NodePort range (`--service-node-port-range`). With CIDRs given, a translation on an address in
  them, or on a node address at a port in the range, is a Service's, hence the agent's (plan.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from vppagent.config import DEFAULT_NODE_PORT_RANGE, node_port_range
from vppagent.policy.model import IPNetwork

# The source of hairpinned flows without a configured address: link-local IPv4 beside the pod
# gateway (169.254.1.1), and a ULA; no one else uses them.
HAIRPIN_SNAT_V4 = "169.254.2.1"
HAIRPIN_SNAT_V6 = "fd69:fe::1"
DEFAULT_NODE_PORTS = node_port_range(DEFAULT_NODE_PORT_RANGE)  # one home for the default: config.py


@dataclass(frozen=True)
class ServiceSettings:
    snat_ipv4: ipaddress.IPv4Address | None = None
    snat_ipv6: ipaddress.IPv6Address | None = None
    cidrs: tuple[IPNetwork, ...] = ()
    node_ports: tuple[int, int] = DEFAULT_NODE_PORTS

    def snat_addresses(self) -> tuple[str, str]:
        """cnat's source NAT addresses (IPv4, IPv6): the configured ones, else the hairpin ones."""
        return (str(self.snat_ipv4 or HAIRPIN_SNAT_V4), str(self.snat_ipv6 or HAIRPIN_SNAT_V6))

    def in_service_cidrs(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in cidr for cidr in self.cidrs)

    def is_node_port(self, port: int) -> bool:
        return self.node_ports[0] <= port <= self.node_ports[1]


NO_SETTINGS = ServiceSettings()  # nothing configured: hairpin addresses, no ownership by ranges
