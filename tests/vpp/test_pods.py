"""Pods on VPP: CNI Add/Del with a tap (emulator, the pod's Linux side recorded) and with
af_packet on a real veth in a real network namespace (root); fail-closed binding, rollback,
matching Felix's endpoint by workload id, and re-creation after VPP restarts."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.vpp.helpers import FakePlumbing, Target, guard_writes, make_driver, pod_spec, state_of, wkey
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.pods.linux import VPP_SIDE_MAC, NetnsPlumbing
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.lab import builders as b
from vppagent.pods.spec import PodDelete
from vppagent.pods.veth import AttachError
from vppagent.state.diff import diff_states
from vppagent.vppsim import Direction, Packet


def open_profile_state(*pods: str) -> list:  # type: ignore[type-arg]
    msgs = [b.config({}), b.profile("web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80])],
                                    outbound=[b.rule("allow")])]
    for i, pod in enumerate(pods):
        msgs.append(b.workload(pod, f"cali{i}", ipv4=[f"10.65.0.{2 + i}/32"], profiles=["web"]))
    return msgs


def taps(target: Target) -> dict[int, object]:
    return {int(t.sw_if_index): t for t in target.raw.api.sw_interface_tap_v2_dump(sw_if_index=NO_INDEX)}


def test_tap_add_binds_drop_all_until_felix_describes_the_pod_then_its_policy(sim_target: Target) -> None:
    plumbing = FakePlumbing()
    driver = make_driver(sim_target, pod_interface="tap", plumbing=plumbing)
    try:
        driver.resync(state_of([b.config({})]))
        spec = pod_spec("ns/a", ["10.65.0.2/32", "fd65::2/128"])
        attachment = driver.attach_pod(spec)
        assert attachment.host_ifname == "calitest0" and attachment.container_mac == "02:00:00:00:00:01"
        (sw_if_index, tap), = taps(sim_target).items()
        assert (tap.host_namespace, tap.host_if_name) == ("/proc/self/ns/net", "eth0")  # type: ignore[attr-defined]
        iface = sim_target.emulator.state.interfaces.get(sw_if_index)
        assert iface is not None
        assert iface.tag == workload_tag(wkey("ns/a")) and iface.admin_up and iface.mac == bytes.fromhex("eeeeeeeeeeee")
        assert {"10.65.0.2/32", "fd65::2/128"} <= set(sim_target.routes())
        assert plumbing.configured == [spec]
        # no endpoint from Felix yet: closed both ways
        syn = Packet.make("10.65.9.9", "10.65.0.2", "tcp", 40000, 80)
        assert not sim_target.emulator.evaluate(sw_if_index, Direction.OUTPUT, syn).permitted
        # Felix sends the endpoint: its policy replaces drop-all on the interface
        old, new = state_of([b.config({})]), state_of(open_profile_state("ns/a"))
        report = driver.apply(diff_states(old, new), new)
        assert report.ok and not report.failed
        assert sim_target.emulator.evaluate(sw_if_index, Direction.OUTPUT, syn).permitted
        # CNI Del: interface, routes and now unused ACLs go
        assert driver.detach_pod(PodDelete("/proc/self/ns/net", "eth0")) == "calitest0"
        assert taps(sim_target) == {} and "10.65.0.2/32" not in sim_target.routes()
        old, new = new, state_of([b.config({})])
        driver.apply(diff_states(old, new), new)
        assert sim_target.our_acls() == {}
        assert driver.detach_pod(PodDelete("/proc/self/ns/net", "eth0")) is None, "a second Del finds nothing"
    finally:
        driver.close()


def test_a_pod_felix_already_knows_gets_its_shared_acls_at_once(sim_target: Target) -> None:
    driver = make_driver(sim_target, pod_interface="tap")
    try:
        first = sim_target.pod("ns/a")
        driver.resync(state_of(open_profile_state("ns/a", "ns/b")))
        acls = set(sim_target.our_acls())
        writes = driver.conn.writes
        driver.attach_pod(pod_spec("ns/b", ["10.65.0.3/32"]))
        # tap + bind + unnumbered + IPv6 + up + route + neighbour, and the pod gateway the first time
        # (loopback, tag, address, up), and its source guard: no ACL written, ns/b shares ns/a's
        assert driver.conn.writes - writes == 7 + 4 + guard_writes() and set(sim_target.our_acls()) == acls
        (tap_index,) = taps(sim_target)
        assert sim_target.bindings()[tap_index] == sim_target.bindings()[first]
    finally:
        driver.close()


def test_no_vhost_net_is_a_clear_refusal_and_leaves_nothing(sim_target: Target) -> None:
    sim_target.emulator.faults.no_vhost_net = True
    driver = make_driver(sim_target, pod_interface="tap")
    try:
        with pytest.raises(AttachError, match=r"retval -11 .*no /dev/vhost-net.*af_packet"):
            driver.attach_pod(pod_spec("ns/a", ["10.65.0.2/32"]))
        assert taps(sim_target) == {} and sim_target.our_acls() == {}
    finally:
        driver.close()


def test_a_failure_half_way_is_rolled_back(sim_target: Target) -> None:
    plumbing = FakePlumbing()
    plumbing.fail_configure = "pod netns vanished"
    driver = make_driver(sim_target, pod_interface="af_packet", plumbing=plumbing)
    try:
        driver.resync(state_of([b.config({})]))
        with pytest.raises(AttachError, match="pod netns vanished"):
            driver.attach_pod(pod_spec("ns/a", ["10.65.0.2/32"]))
        assert plumbing.veths == {}
        # only the pod gateway loopback (node infrastructure, kept for the next pod) is left
        assert [i.tag for i in sim_target.emulator.state.interfaces.all() if i.tag] == ["vpa1:gw"]
        assert "10.65.0.2/32" not in sim_target.routes() and sim_target.our_acls() == {}
    finally:
        driver.close()


def test_del_finds_the_pod_without_memory_of_it(sim_target: Target) -> None:
    plumbing = FakePlumbing()
    first = make_driver(sim_target, pod_interface="af_packet", plumbing=plumbing)
    first.attach_pod(pod_spec("ns/a", ["10.65.0.2/32"], host_ifname="calia"))
    first.close()
    second = make_driver(sim_target, pod_interface="af_packet", plumbing=plumbing)  # the agent restarted
    try:
        assert second.detach_pod(PodDelete("/proc/self/ns/net", "eth0")) == "calia"
        assert plumbing.veths == {} and list(sim_target.raw.api.af_packet_dump()) == []
        assert "10.65.0.2/32" not in sim_target.routes()
    finally:
        second.close()


@pytest.mark.parametrize("kind", ["tap", "af_packet"])
def test_pods_come_back_after_vpp_restarts(sim_target: Target, kind: str) -> None:
    plumbing = FakePlumbing()
    driver = make_driver(sim_target, pod_interface=kind, plumbing=plumbing)
    try:
        state = state_of(open_profile_state("ns/a"))
        driver.resync(state)
        driver.attach_pod(pod_spec("ns/a", ["10.65.0.2/32"]))
        sim_target.emulator.restart()
        report = driver.resync(state)  # reconnects, re-creates the pod's VPP side, binds its policy
        assert report.ok and not report.failed
        (pod,) = [i for i in sim_target.emulator.state.interfaces.all() if i.tag.startswith("vpa1:wl")]
        assert sim_target.emulator.state.ip_links.unnumbered.get(pod.sw_if_index) is not None, "IP again"
        assert pod.tag == workload_tag(wkey("ns/a")) and pod.admin_up
        syn = Packet.make("10.65.9.9", "10.65.0.2", "tcp", 40000, 80)
        assert sim_target.emulator.evaluate(pod.sw_if_index, Direction.OUTPUT, syn).permitted
        assert "10.65.0.2/32" in sim_target.routes()
        assert len(plumbing.configured) == (2 if kind == "tap" else 1), "a new tap is addressed again"
    finally:
        driver.close()


# -- af_packet with real namespaces -----------------------------------------------------------------


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create network namespaces")
    prefix = f"vpa{uuid.uuid4().hex[:6]}"
    made = []
    for suffix in ("node", "pod"):
        name = f"{prefix}-{suffix}"
        result = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=20)
        if result.returncode:
            pytest.skip(f"cannot create network namespaces here: {result.stderr.strip()}")
        made.append(name)
    yield made[0], made[1]
    for name in made:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20).stdout


@pytest.mark.root
def test_af_packet_pod_in_a_real_namespace(sim_target: Target, namespaces: tuple[str, str]) -> None:
    node, pod = namespaces
    driver = make_driver(sim_target, pod_interface="af_packet", plumbing=NetnsPlumbing(node_netns=node))
    try:
        driver.resync(state_of(open_profile_state("ns/a")))
        spec = pod_spec("ns/a", ["10.66.0.2/32", "fd66::2/128"], host_ifname="calireal0",
                        netns=f"/var/run/netns/{pod}")
        attachment = driver.attach_pod(spec)
        assert attachment.container_mac and attachment.container_mac != VPP_SIDE_MAC
        assert "calireal0" in ip("-n", node, "link", "show")
        assert "10.66.0.2/32" in ip("-n", pod, "addr", "show", "eth0")
        assert "default via 169.254.1.1 dev eth0" in ip("-n", pod, "route")
        assert "default via fe80::ecee:eeff:feee:eeee dev eth0" in ip("-6", "-n", pod, "route")
        neigh = ip("-n", pod, "neigh", "show", "dev", "eth0")
        assert "169.254.1.1 lladdr ee:ee:ee:ee:ee:ee PERMANENT" in neigh
        (details,) = sim_target.raw.api.af_packet_dump()
        assert details.host_if_name == "calireal0"
        assert details.sw_if_index in sim_target.bindings()
        assert driver.detach_pod(PodDelete(f"/var/run/netns/{pod}", "eth0")) == "calireal0"
        assert "calireal0" not in ip("-n", node, "link", "show") and "eth0" not in ip("-n", pod, "link")
        assert list(sim_target.raw.api.af_packet_dump()) == []
    finally:
        driver.close()


def test_pod_interfaces_are_ip_enabled_and_cleaned_up(sim_target: Target) -> None:
    """Unnumbered to the gateway loopback (169.254.1.1/32, the pod's IPv4 gateway), IPv6 on (its
    link-local is the pod's IPv6 gateway), static neighbours for the pod; all gone after CNI Del."""
    driver = make_driver(sim_target, pod_interface="tap")
    links = sim_target.emulator.state.ip_links
    try:
        driver.resync(state_of(open_profile_state("ns/a")))
        driver.attach_pod(pod_spec("ns/a", ["10.65.0.2/32", "fd00:65::2/128"]))
        (tap_index,) = taps(sim_target)
        gateway = links.unnumbered[tap_index]
        gw = sim_target.emulator.state.interfaces.get(gateway)
        assert gw is not None and gw.tag == "vpa1:gw" and gw.admin_up
        assert [str(a) for a in gw.addresses] == ["169.254.1.1/32"]
        assert str(links.link_local(tap_index)) == "fe80::ecee:eeff:feee:eeee"
        assert {str(ip) for (ifx, ip) in links.neighbors if ifx == tap_index} == {"10.65.0.2", "fd00:65::2"}
        assert all(n.static for n in links.neighbors.values())
        driver.detach_pod(PodDelete("/proc/self/ns/net", "eth0"))
        assert tap_index not in links.unnumbered and not links.ip6_enabled(tap_index)
        assert not any(ifx == tap_index for (ifx, _) in links.neighbors)
    finally:
        driver.close()
