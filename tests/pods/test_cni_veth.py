"""CNI Add/Del with the kernel veth attachment, in real network namespaces (root)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pyroute2 import netns as pr_netns

from vppagent.gen.cni import cni_pb2
from vppagent.pods.spec import PodSpecError, parse_add, parse_del
from vppagent.pods.veth import VethAttacher


def add_request(netns: str, host: str = "calitest0", ips: tuple[str, ...] = ("10.66.0.2/32",)) -> cni_pb2.AddRequest:
    return cni_pb2.AddRequest(
        interface_name="eth0", netns=netns, desired_host_interface_name=host,
        container_ips=[cni_pb2.IPConfig(address=a) for a in ips],
        workload=cni_pb2.WorkloadIDs(name="pod1", namespace="default", pod="pod1", endpoint="eth0",
                                     orchestrator="k8s"))


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=20).stdout


@pytest.mark.root
def test_add_gives_calico_shaped_pod_and_connectivity_then_del(netns_factory) -> None:  # type: ignore[no-untyped-def]
    node, pod = netns_factory("node"), netns_factory("pod")
    # the node needs an uplink with a default route for proxy ARP to answer 169.254.1.1
    sh("ip", "-n", node, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
    sh("ip", "-n", node, "addr", "add", "198.18.0.1/24", "dev", "up0")
    sh("ip", "-n", node, "link", "set", "up0", "up")
    sh("ip", "-n", node, "link", "set", "up1", "up")
    sh("ip", "-n", node, "route", "add", "default", "via", "198.18.0.254", "dev", "up0")
    spec = parse_add(add_request(f"/var/run/netns/{pod}", ips=("10.66.0.2/32", "fd66::2/128")))
    assert str(spec.workload) == "k8s/default/pod1/eth0"
    pr_netns.pushns(node)
    try:
        attachment = VethAttacher().add(spec)
    finally:
        pr_netns.popns()
    assert attachment.host_ifname == "calitest0" and attachment.container_mac
    routes = sh("ip", "-n", pod, "route")
    assert "default via 169.254.1.1 dev eth0" in routes and "169.254.1.1 dev eth0" in routes
    assert "default via fe80::ecee:eeff:feee:eeee dev eth0" in sh("ip", "-6", "-n", pod, "route")
    assert "10.66.0.2 dev calitest0" in sh("ip", "-n", node, "route")
    assert "ee:ee:ee:ee:ee:ee" in sh("ip", "-n", node, "link", "show", "calitest0")
    assert sh("ip", "netns", "exec", node, "sysctl", "-n", "net.ipv4.conf.calitest0.proxy_arp").strip() == "1"
    # real packets: the pod reaches the node through proxy ARP and the host route back
    sh("ip", "netns", "exec", pod, "ping", "-c", "1", "-W", "2", "198.18.0.1")

    pr_netns.pushns(node)
    try:
        removed = VethAttacher().delete(parse_del(cni_pb2.DelRequest(
            interface_name="eth0", netns=f"/var/run/netns/{pod}")))
        again = VethAttacher().delete(parse_del(cni_pb2.DelRequest(
            interface_name="eth0", netns=f"/var/run/netns/{pod}")))
    finally:
        pr_netns.popns()
    assert removed == "calitest0" and again is None
    assert "calitest0" not in sh("ip", "-n", node, "link")
    assert "eth0" not in sh("ip", "-n", pod, "link")


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("desired_host_interface_name", "cali;rm -rf", "not a valid interface name"),
    ("desired_host_interface_name", "a" * 16, "not a valid interface name"),
    ("netns", "/etc/passwd", "must be an absolute path"),
    ("netns", "/var/run/netns/../../etc", "must be an absolute path"),
    ("netns", "/var/run/netns/does-not-exist-xyz", "does not exist"),
])
def test_hostile_or_bad_requests_are_refused(tmp_path: Path, field: str, value: str, needle: str) -> None:
    req = add_request("/proc/self/ns/net")
    setattr(req, field, value)
    with pytest.raises(PodSpecError, match=needle):
        parse_add(req)


def test_bad_addresses_are_refused() -> None:
    with pytest.raises(PodSpecError, match="container_ips"):
        parse_add(add_request("/proc/self/ns/net", ips=("10.0.0.300/32",)))
    with pytest.raises(PodSpecError, match="at least one"):
        parse_add(add_request("/proc/self/ns/net", ips=()))
