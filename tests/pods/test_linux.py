"""The pod's Linux side (vppagent.pods.linux), one definition for the kernel and the VPP attachment:
which routes a pod gets (settled against Calico's CNI plugin), and both attachments giving a pod
the same routing table in real network namespaces (root)."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest
from pyroute2 import netns as pr_netns

from vppagent.drivers.vpp.pods.linux import NetnsPlumbing
from vppagent.pods.linux import GATEWAY_V4, GATEWAY_V6, pod_routes
from vppagent.pods.spec import PodSpec
from vppagent.pods.veth import VethAttacher
from vppagent.state.model import WorkloadKey


def spec(addresses: tuple[str, ...], routes: tuple[str, ...] = (), netns: str = "/proc/self/ns/net",
         host: str = "calitest0") -> PodSpec:
    return PodSpec(workload=WorkloadKey("k8s", "ns/pod1", "eth0"), netns=Path(netns), container_ifname="eth0",
                   host_ifname=host, addresses=tuple(ipaddress.ip_interface(a) for a in addresses),
                   routes=tuple(ipaddress.ip_network(r) for r in routes))


def routes_of(pod: PodSpec) -> list[tuple[str, str]]:
    return [(str(dst), gateway) for dst, gateway in pod_routes(pod)]


def test_no_routes_in_the_request_means_the_default_route_of_each_family_the_pod_has() -> None:
    assert routes_of(spec(("10.66.0.2/32", "fd66::2/128"))) == [("0.0.0.0/0", GATEWAY_V4), ("::/0", GATEWAY_V6)]
    assert routes_of(spec(("10.66.0.2/32",))) == [("0.0.0.0/0", GATEWAY_V4)]
    assert routes_of(spec(("fd66::2/128",))) == [("::/0", GATEWAY_V6)]


def test_given_routes_are_used_as_they_are_so_ipv4_only_routes_give_no_ipv6_default() -> None:
    """Calico's CNI plugin adds its default routes only when the CNI config names no routes, and
    then programs each family's routes from that list: a dual-stack pod whose request carries only
    IPv4 routes gets no IPv6 route."""
    dual = spec(("10.66.0.2/32", "fd66::2/128"), routes=("10.96.0.0/12", "0.0.0.0/0"))
    assert routes_of(dual) == [("10.96.0.0/12", GATEWAY_V4), ("0.0.0.0/0", GATEWAY_V4)]
    both = spec(("10.66.0.2/32", "fd66::2/128"), routes=("0.0.0.0/0", "fd00:96::/108"))
    assert routes_of(both) == [("0.0.0.0/0", GATEWAY_V4), ("fd00:96::/108", GATEWAY_V6)]
    v4_pod = spec(("10.66.0.2/32",), routes=("0.0.0.0/0", "::/0"))
    assert routes_of(v4_pod) == [("0.0.0.0/0", GATEWAY_V4)], "no IPv6 route without an IPv6 address"


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20).stdout


@pytest.mark.root
def test_kernel_and_vpp_attachments_give_a_pod_the_same_routes(netns_factory) -> None:  # type: ignore[no-untyped-def]
    node, kernel_pod, vpp_pod = netns_factory("node"), netns_factory("kpod"), netns_factory("vpod")
    addresses, routes = ("10.66.0.2/32", "fd66::2/128"), ("10.96.0.0/12", "0.0.0.0/0")
    pr_netns.pushns(node)
    try:
        VethAttacher().add(spec(addresses, routes, netns=f"/var/run/netns/{kernel_pod}", host="calik0"))
    finally:
        pr_netns.popns()
    plumbing = NetnsPlumbing(node_netns=node)
    vpp_spec = spec(addresses, routes, netns=f"/var/run/netns/{vpp_pod}", host="caliv0")
    plumbing.create_veth(vpp_spec)  # af_packet's veth; VPP would take the node end
    plumbing.configure_container(vpp_spec)

    for family in ("-4", "-6"):
        kernel_table, vpp_table = ip(family, "-n", kernel_pod, "route"), ip(family, "-n", vpp_pod, "route")
        assert kernel_table == vpp_table, family
    v4 = ip("-4", "-n", vpp_pod, "route")
    assert "10.96.0.0/12 via 169.254.1.1 dev eth0" in v4 and "default via 169.254.1.1 dev eth0" in v4
    assert "default" not in ip("-6", "-n", vpp_pod, "route"), "IPv4-only routes: no IPv6 default (as Calico)"
    # VPP answers no ARP/ND for the gateways: only the VPP attachment pins them
    assert "169.254.1.1 lladdr ee:ee:ee:ee:ee:ee PERMANENT" in ip("-n", vpp_pod, "neigh", "show", "dev", "eth0")
    assert "PERMANENT" not in ip("-n", kernel_pod, "neigh", "show", "dev", "eth0")
