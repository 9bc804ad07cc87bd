"""Reading routes back when a pod's static neighbour exists: VPP keeps an adjacency entry for the
neighbour's /32 (/128) that `ip_route_dump` shows exactly like the attached host route the driver
programs, so the driver reads its routes with `ip_route_v2_dump` filtered to API-made entries.

Two consequences the old read-back had, each checked here on the emulator and on a real VPP
(`target`): a route the driver deleted read back as present (a later resync then never wrote it
again), and a neighbour made before the driver's first resync stood for the pod's route, which
was never written (the pod got no traffic).
"""

from __future__ import annotations

from vpp_papi import VPPApiClient

from tests.vpp.helpers import Target, make_driver, state_of
from vppagent.drivers.vpp.api.calls import FIB_SOURCE_API
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.state.diff import diff_states

POD = "ns/pod0"
POD_MAC = "02:00:00:00:00:01"


def messages(ipv4: str, ipv6: str) -> list[felix.ToDataplane]:
    return [b.config({}), b.profile("kns.ns", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
            b.workload(POD, "cali0", ipv4=[f"{ipv4}/32"], ipv6=[f"{ipv6}/128"], profiles=["kns.ns"])]


def add_neighbours(raw: VPPApiClient, sw_if_index: int, *addresses: str) -> None:
    """Static neighbours, as CNI Add makes them for the pod's addresses."""
    raw.api.sw_interface_ip6_enable_disable(sw_if_index=sw_if_index, enable=True)
    for address in addresses:
        reply = raw.api.ip_neighbor_add_del(is_add=True, neighbor={
            "sw_if_index": sw_if_index, "flags": 1, "mac_address": POD_MAC, "ip_address": address})
        assert reply.retval == 0, (address, reply)


def api_routes(raw: VPPApiClient) -> set[str]:
    """Table 0's entries VPP holds as API-made (not what the driver under test says it holds)."""
    return {str(d.route.prefix) for is_ip6 in (False, True)
            for d in raw.api.ip_route_v2_dump(src=FIB_SOURCE_API, table={"table_id": 0, "is_ip6": is_ip6})}


def test_a_neighbour_made_before_the_first_resync_does_not_stand_for_the_pods_route(
        target: Target, driver: VppDriver) -> None:
    sw_if_index = target.pod(POD)
    add_neighbours(target.raw, sw_if_index, "10.65.0.10", "fd65::a")
    assert {"10.65.0.10/32", "fd65::a/128"} <= set(target.routes()), "ip_route_dump lists the neighbours' entries"
    assert not {"10.65.0.10/32", "fd65::a/128"} & api_routes(target.raw)
    report = driver.resync(state_of(messages("10.65.0.10", "fd65::a")))
    assert report.ok and not report.failed, report
    assert {"10.65.0.10/32", "fd65::a/128"} <= api_routes(target.raw), "the pod's routes were written"
    assert driver.resync(state_of(messages("10.65.0.10", "fd65::a"))).writes == 0, "and read back as held"


def test_a_deleted_route_whose_neighbour_stays_reads_back_as_absent_and_is_written_again(
        target: Target, driver: VppDriver) -> None:
    sw_if_index = target.pod(POD)
    first = state_of(messages("10.65.0.10", "fd65::a"))
    assert driver.resync(first).ok
    add_neighbours(target.raw, sw_if_index, "10.65.0.10", "fd65::a")  # after the routes, as CNI Add
    # Felix's endpoint names other addresses than CNI Add did: the routes move, the neighbours stay
    moved = state_of(messages("10.65.0.11", "fd65::b"))
    report = driver.apply(diff_states(first, moved), moved)
    assert report.ok and not report.failed, report
    assert not {"10.65.0.10/32", "fd65::a/128"} & api_routes(target.raw), "VPP deleted them"
    restarted = make_driver(target)  # the agent restarted: everything read back
    try:
        report = restarted.resync(first)
        assert report.ok and not report.failed, report
        assert {"10.65.0.10/32", "fd65::a/128"} <= api_routes(target.raw), "written again, not taken as present"
    finally:
        restarted.close()
