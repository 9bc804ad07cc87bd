"""Wire pods the way the kernel driver's CNI Add does, for agents whose driver only records the
Add (dry-run). Runs as its own process inside the node namespace:

    ip netns exec NODE python -m vppagent.lab.wire_pods '[{"netns": ..., "address": ..., ...}]'

A separate, single-threaded process because the attacher uses pyroute2's NetNS, which forks; a
fork of the lab (busy gRPC threads) can hang or crash in the child.
"""

from __future__ import annotations

import json
import sys

from vppagent.gen.cni import cni_pb2
from vppagent.pods.spec import parse_add
from vppagent.pods.veth import VethAttacher


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m vppagent.lab.wire_pods JSON-LIST", file=sys.stderr)
        return 2
    for pod in json.loads(argv[0]):
        request = cni_pb2.AddRequest(
            interface_name="eth0", netns=pod["netns"], desired_host_interface_name=pod["host_interface"],
            container_ips=[cni_pb2.IPConfig(address=pod["address"])],
            workload=cni_pb2.WorkloadIDs(name=pod["name"], pod=pod["name"], namespace=pod["namespace"]))
        attachment = VethAttacher().add(parse_add(request))
        print(f"{pod['name']}: {attachment.host_ifname}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
