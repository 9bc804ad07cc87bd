"""The conformance suite: VPP API behaviour the driver relies on, checked through vpp_papi only.

Test modules import everything from here and provide a ``target`` fixture (the emulator in
``test_conformance_emulator.py``, a real VPP in ``test_conformance_realvpp.py``), so the same
functions run against both.  Tests clean up what they create, because a real VPP is shared.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from vpp_papi import VPPApiClient

from tests.vppsim.conftest import Target
from vppagent.vppsim import ApiError, load_definitions

NONE = 0xFFFFFFFF
ADMIN_UP = 1
MISSING_SW_IF_INDEX = 0x0FFFFFF0


def rule(action: int = 1, src: str = "0.0.0.0/0", dst: str = "0.0.0.0/0", proto: int = 0,
         sport: tuple[int, int] = (0, 65535), dport: tuple[int, int] = (0, 65535)) -> dict[str, Any]:
    return {"is_permit": action, "src_prefix": src, "dst_prefix": dst, "proto": proto,
            "srcport_or_icmptype_first": sport[0], "srcport_or_icmptype_last": sport[1],
            "dstport_or_icmpcode_first": dport[0], "dstport_or_icmpcode_last": dport[1]}


def path(sw_if_index: int, next_hop: str) -> dict[str, Any]:
    """An IPv4 fib_path; vpp_papi needs the fixed 16-entry label stack spelled out."""
    return {"sw_if_index": sw_if_index, "proto": 0, "nh": {"address": {"ip4": next_hop}},
            "label_stack": [{}] * 16}


class Made:
    """What a test created on the target, undone in reverse order afterwards."""

    def __init__(self, vpp: VPPApiClient) -> None:
        self.vpp = vpp
        self.acls: list[int] = []
        self.loopbacks: list[int] = []
        self.tables: list[int] = []
        self.routes: list[dict[str, Any]] = []
        self.ip_tables: list[int] = []
        # (sw_if_index, table, input?): a classifier detach must name the attached table.
        self.attached: list[tuple[int, int, bool]] = []

    def acl(self, rules: list[dict[str, Any]], tag: str = "vppagent-conformance") -> int:
        reply = self.vpp.api.acl_add_replace(acl_index=NONE, tag=tag, count=len(rules), r=rules)
        assert reply.retval == 0, reply
        self.acls.append(reply.acl_index)
        return int(reply.acl_index)

    def loopback(self) -> int:
        reply = self.vpp.api.create_loopback()
        assert reply.retval == 0, reply
        self.loopbacks.append(reply.sw_if_index)
        return int(reply.sw_if_index)

    def cleanup(self) -> None:
        api = self.vpp.api
        for sw_if_index in self.loopbacks:
            api.acl_interface_set_acl_list(sw_if_index=sw_if_index, count=0, n_input=0, acls=[])
        for sw_if_index, table, is_input in self.attached:
            attach = api.input_acl_set_interface if is_input else api.output_acl_set_interface
            attach(sw_if_index=sw_if_index, ip4_table_index=table, ip6_table_index=NONE, l2_table_index=NONE,
                   is_add=False)
        for route in self.routes:
            api.ip_route_add_del(is_add=False, route=route)
        for table_id in self.ip_tables:
            api.ip_table_add_del(is_add=False, table={"table_id": table_id})
        for acl_index in self.acls:
            api.acl_del(acl_index=acl_index)
        for sw_if_index in self.loopbacks:
            api.delete_loopback(sw_if_index=sw_if_index)
        for table_index in self.tables:
            # VPP checks the mask length against match_n_vectors (> 0) even for a delete.
            api.classify_add_del_table(is_add=False, table_index=table_index, del_chain=False,
                                       match_n_vectors=1, mask_len=16, mask=bytes(16))


@pytest.fixture(params=["bootstrap", "apidir"])
def vpp(request: pytest.FixtureRequest, target: Target) -> VPPApiClient:
    """A client that took its definitions from get_api_json ("bootstrap") or from .api.json files."""
    if request.param == "apidir" and target.api_dir is None:
        pytest.skip("no API definition directory for this target")
    return target.client(bootstrap=request.param == "bootstrap")


@pytest.fixture
def made(vpp: VPPApiClient) -> Iterator[Made]:
    tracker = Made(vpp)
    yield tracker
    tracker.cleanup()


def acl_lists(vpp: VPPApiClient, sw_if_index: int) -> tuple[list[int], list[int]]:
    [details] = vpp.api.acl_interface_list_dump(sw_if_index=sw_if_index)
    return list(details.acls[:details.n_input]), list(details.acls[details.n_input:])


# -- transport and core ----------------------------------------------------------------------------
def test_message_table_carries_the_vendored_crcs(vpp: VPPApiClient, target: Target) -> None:
    definitions = load_definitions(target.release.api_dir)
    table = vpp.transport.message_table
    missing = [definitions.name_crc(name) for name in definitions.id_by_name
               if definitions.name_crc(name) not in table]
    assert missing == []
    assert table[definitions.name_crc("sockclnt_create")] == 15
    assert table[definitions.name_crc("sockclnt_create_reply")] == 16


def test_client_index_is_a_socket_registration_handle(vpp: VPPApiClient) -> None:
    assert vpp.transport.socket_index & 0x80000000


def test_control_ping(vpp: VPPApiClient) -> None:
    reply = vpp.api.control_ping()
    assert reply.retval == 0 and reply.vpe_pid > 0


def test_show_version_is_the_target_release(vpp: VPPApiClient, target: Target) -> None:
    reply = vpp.api.show_version()
    assert (reply.retval, reply.program, reply.version) == (0, "vpe", target.release.version)


def test_get_api_json_serves_the_definitions(vpp: VPPApiClient, target: Target) -> None:
    reply = vpp.api.get_api_json()
    served = {message[0]: message[-1]["crc"] for module in json.loads(reply.json)
              for message in module["messages"]}
    definitions = load_definitions(target.release.api_dir)
    memclnt = next(module for module in definitions.modules if module.name == "memclnt").message_names
    assert [name for name in memclnt if name in served] == []  # clients bootstrap with their own memclnt
    wanted = [name for name in definitions.id_by_name if name not in memclnt]
    assert {name: served.get(name) for name in wanted} == {name: definitions.messages[name].crc for name in wanted}


def test_cli_show_version(vpp: VPPApiClient, target: Target) -> None:
    assert vpp.api.cli_inband(cmd="show version").reply.startswith(f"vpp v{target.release.version} built by ")


# -- ACLs ------------------------------------------------------------------------------------------
def test_acl_dump_round_trips_rules_and_tag(vpp: VPPApiClient, made: Made) -> None:
    rules = [rule(2, "10.1.0.0/16", "0.0.0.0/0", 6, dport=(80, 443)), rule(0, "::/0", "fd00::/8", 17)]
    index = made.acl(rules, tag="k8s:ns/pod:egress")
    [details] = vpp.api.acl_dump(acl_index=index)
    assert (details.acl_index, details.tag, details.count) == (index, "k8s:ns/pod:egress", 2)
    assert [(str(r.src_prefix), str(r.dst_prefix), int(r.proto), int(r.is_permit),
             r.dstport_or_icmpcode_first, r.dstport_or_icmpcode_last) for r in details.r] == [
        ("10.1.0.0/16", "0.0.0.0/0", 6, 2, 80, 443), ("::/0", "fd00::/8", 17, 0, 0, 65535)]


def test_acl_with_no_rules_is_accepted(vpp: VPPApiClient, made: Made) -> None:
    index = made.acl([])
    [details] = vpp.api.acl_dump(acl_index=index)
    assert details.count == 0 and details.r == []


def test_acl_indices_are_reused_last_freed_first(vpp: VPPApiClient, made: Made) -> None:
    first, second = made.acl([rule()]), made.acl([rule()])
    assert vpp.api.acl_del(acl_index=first).retval == 0
    assert vpp.api.acl_del(acl_index=second).retval == 0
    made.acls.clear()
    assert made.acl([rule()]) == second
    assert made.acl([rule()]) == first


def test_acl_replace_keeps_index_and_bindings(vpp: VPPApiClient, made: Made) -> None:
    sw_if_index = made.loopback()
    index = made.acl([rule(1)])
    vpp.api.acl_interface_set_acl_list(sw_if_index=sw_if_index, count=1, n_input=1, acls=[index])
    reply = vpp.api.acl_add_replace(acl_index=index, tag="replaced", count=1, r=[rule(0)])
    assert (reply.retval, reply.acl_index) == (0, index)
    assert acl_lists(vpp, sw_if_index) == ([index], [])
    assert vpp.api.acl_dump(acl_index=index)[0].tag == "replaced"


def test_acl_replace_of_a_free_index_is_no_such_entry(vpp: VPPApiClient, made: Made) -> None:
    index = made.acl([rule()])
    vpp.api.acl_del(acl_index=index)
    made.acls.clear()
    reply = vpp.api.acl_add_replace(acl_index=index, tag="", count=1, r=[rule()])
    assert reply.retval == ApiError.NO_SUCH_ENTRY


@pytest.mark.parametrize(("bad_rule", "retval"), [
    (rule(src="10.0.0.1/8"), ApiError.INVALID_SRC_ADDRESS),
    (rule(dst="10.0.0.1/8"), ApiError.INVALID_DST_ADDRESS),
    (rule(src="10.0.0.0/8", dst="::/0"), ApiError.INVALID_SRC_ADDRESS),
    (rule(sport=(100, 99)), ApiError.INVALID_VALUE_2),
    (rule(dport=(443, 80)), ApiError.INVALID_VALUE_2),
])
def test_acl_rule_validation(vpp: VPPApiClient, bad_rule: dict[str, Any], retval: int) -> None:
    before = [d.acl_index for d in vpp.api.acl_dump(acl_index=NONE)]
    reply = vpp.api.acl_add_replace(acl_index=NONE, tag="bad", count=2, r=[rule(), bad_rule])
    assert reply.retval == retval
    assert [d.acl_index for d in vpp.api.acl_dump(acl_index=NONE)] == before


def test_acl_tag_of_63_characters_is_accepted(vpp: VPPApiClient, made: Made) -> None:
    index = made.acl([rule()], tag="t" * 63)
    assert vpp.api.acl_dump(acl_index=index)[0].tag == "t" * 63


def test_acl_del_refusals(vpp: VPPApiClient, made: Made) -> None:
    sw_if_index = made.loopback()
    inbound, outbound, unused = made.acl([rule()]), made.acl([rule()]), made.acl([rule()])
    vpp.api.acl_interface_set_acl_list(sw_if_index=sw_if_index, count=2, n_input=1, acls=[inbound, outbound])
    assert vpp.api.acl_del(acl_index=inbound).retval == ApiError.ACL_IN_USE_INBOUND
    assert vpp.api.acl_del(acl_index=outbound).retval == ApiError.ACL_IN_USE_OUTBOUND
    assert vpp.api.acl_del(acl_index=unused).retval == 0
    assert vpp.api.acl_del(acl_index=unused).retval == ApiError.NO_SUCH_ENTRY
    made.acls.remove(unused)


def test_set_acl_list_splits_input_and_output(vpp: VPPApiClient, made: Made) -> None:
    sw_if_index = made.loopback()
    a, b, c = made.acl([rule()]), made.acl([rule()]), made.acl([rule()])
    reply = vpp.api.acl_interface_set_acl_list(sw_if_index=sw_if_index, count=3, n_input=2, acls=[c, a, b])
    assert reply.retval == 0
    assert acl_lists(vpp, sw_if_index) == ([c, a], [b])


def test_set_acl_list_refusals(vpp: VPPApiClient, made: Made) -> None:
    sw_if_index = made.loopback()
    a = made.acl([rule()])
    bad_if = vpp.api.acl_interface_set_acl_list(sw_if_index=MISSING_SW_IF_INDEX, count=1, n_input=1, acls=[a])
    assert bad_if.retval == ApiError.INVALID_SW_IF_INDEX
    unknown = vpp.api.acl_interface_set_acl_list(sw_if_index=sw_if_index, count=2, n_input=0, acls=[a, 0xFFFF])
    assert unknown.retval == ApiError.NO_SUCH_ENTRY
    assert acl_lists(vpp, sw_if_index) == ([], [])


def test_duplicate_in_input_list_answers_1_and_applies_the_output_list(vpp: VPPApiClient, made: Made) -> None:
    sw_if_index = made.loopback()
    a, b = made.acl([rule()]), made.acl([rule()])
    reply = vpp.api.acl_interface_set_acl_list(sw_if_index=sw_if_index, count=3, n_input=2, acls=[a, a, b])
    assert reply.retval == 1
    assert acl_lists(vpp, sw_if_index) == ([], [b])


def test_duplicate_in_output_list_answers_1_and_applies_nothing(vpp: VPPApiClient, made: Made) -> None:
    sw_if_index = made.loopback()
    a, b = made.acl([rule()]), made.acl([rule()])
    vpp.api.acl_interface_set_acl_list(sw_if_index=sw_if_index, count=1, n_input=1, acls=[a])
    reply = vpp.api.acl_interface_set_acl_list(sw_if_index=sw_if_index, count=3, n_input=1, acls=[b, a, a])
    assert reply.retval == 1
    assert acl_lists(vpp, sw_if_index) == ([a], [])


def test_interface_add_del_appends_and_swap_deletes(vpp: VPPApiClient, made: Made) -> None:
    sw_if_index = made.loopback()
    a, b, c = made.acl([rule()]), made.acl([rule()]), made.acl([rule()])
    for index in (a, b, c):
        reply = vpp.api.acl_interface_add_del(is_add=True, is_input=True, sw_if_index=sw_if_index, acl_index=index)
        assert reply.retval == 0
    assert acl_lists(vpp, sw_if_index) == ([a, b, c], [])
    vpp.api.acl_interface_add_del(is_add=False, is_input=True, sw_if_index=sw_if_index, acl_index=a)
    assert acl_lists(vpp, sw_if_index) == ([c, b], [])


def test_interface_add_del_refusals(vpp: VPPApiClient, made: Made) -> None:
    sw_if_index = made.loopback()
    a, b = made.acl([rule()]), made.acl([rule()])
    api = vpp.api
    api.acl_interface_add_del(is_add=True, is_input=True, sw_if_index=sw_if_index, acl_index=a)
    api.acl_interface_add_del(is_add=True, is_input=False, sw_if_index=sw_if_index, acl_index=a)
    assert api.acl_interface_add_del(is_add=True, is_input=True, sw_if_index=sw_if_index,
                                     acl_index=a).retval == ApiError.ACL_IN_USE_INBOUND
    assert api.acl_interface_add_del(is_add=True, is_input=False, sw_if_index=sw_if_index,
                                     acl_index=a).retval == ApiError.ACL_IN_USE_OUTBOUND
    assert api.acl_interface_add_del(is_add=False, is_input=True, sw_if_index=sw_if_index,
                                     acl_index=b).retval == ApiError.NO_SUCH_ENTRY
    assert api.acl_interface_add_del(is_add=True, is_input=True, sw_if_index=MISSING_SW_IF_INDEX,
                                     acl_index=b).retval == ApiError.INVALID_SW_IF_INDEX


def test_interface_list_dump_of_all_interfaces_includes_empty_ones(vpp: VPPApiClient, made: Made) -> None:
    bound, empty = made.loopback(), made.loopback()
    a = made.acl([rule()])
    vpp.api.acl_interface_set_acl_list(sw_if_index=bound, count=1, n_input=0, acls=[a])
    details = {d.sw_if_index: (d.n_input, list(d.acls)) for d in vpp.api.acl_interface_list_dump(sw_if_index=NONE)}
    assert details[bound] == (0, [a])
    assert details[empty] == (0, [])


def test_stats_counters_enable_answers_with_the_acl_del_reply(vpp: VPPApiClient) -> None:
    reply = vpp.api.acl_stats_intf_counters_enable(enable=False)
    assert type(reply).__name__ == "acl_del_reply"
    assert reply.retval == 0


def test_acl_plugin_version(vpp: VPPApiClient) -> None:
    reply = vpp.api.acl_plugin_get_version()
    assert (reply.major, reply.minor) == (1, 4)


def test_dump_of_nothing_is_an_empty_list(vpp: VPPApiClient, made: Made) -> None:
    index = made.acl([rule()])
    vpp.api.acl_del(acl_index=index)
    made.acls.clear()
    assert vpp.api.acl_dump(acl_index=index) == []


# -- interfaces ------------------------------------------------------------------------------------
def test_loopback_lifecycle_flags_tag_and_addresses(vpp: VPPApiClient, made: Made) -> None:
    api = vpp.api
    sw_if_index = made.loopback()
    [details] = api.sw_interface_dump(sw_if_index=sw_if_index)
    assert details.interface_name.startswith("loop") and not details.flags & ADMIN_UP
    assert api.sw_interface_set_flags(sw_if_index=sw_if_index, flags=ADMIN_UP).retval == 0
    assert api.sw_interface_tag_add_del(is_add=True, sw_if_index=sw_if_index, tag="pod-a").retval == 0
    [details] = api.sw_interface_dump(sw_if_index=sw_if_index)
    assert details.flags & ADMIN_UP and details.tag == "pod-a"
    assert api.sw_interface_add_del_address(sw_if_index=sw_if_index, is_add=True, prefix="10.77.0.1/24").retval == 0
    assert [str(d.prefix) for d in api.ip_address_dump(sw_if_index=sw_if_index, is_ipv6=False)] == ["10.77.0.1/24"]
    assert api.sw_interface_add_del_address(sw_if_index=sw_if_index, is_add=True,
                                            prefix="10.77.0.1/24").retval == ApiError.ADDRESS_IN_USE
    assert api.sw_interface_add_del_address(sw_if_index=sw_if_index, is_add=False,
                                            prefix="10.77.9.1/24").retval == ApiError.ADDRESS_NOT_FOUND_FOR_INTERFACE
    assert api.delete_loopback(sw_if_index=sw_if_index).retval == 0
    made.loopbacks.clear()
    assert api.sw_interface_dump(sw_if_index=sw_if_index) == []


def test_interface_calls_on_a_missing_interface(vpp: VPPApiClient) -> None:
    api = vpp.api
    assert api.sw_interface_set_flags(sw_if_index=MISSING_SW_IF_INDEX, flags=1).retval == ApiError.INVALID_SW_IF_INDEX
    assert api.sw_interface_tag_add_del(is_add=True, sw_if_index=MISSING_SW_IF_INDEX,
                                        tag="x").retval == ApiError.INVALID_SW_IF_INDEX


def test_interface_events_subscription(target: Target, made: Made) -> None:
    listener = target.client(bootstrap=True)
    received: list[Any] = []
    listener.register_event_callback(lambda name, message: received.append((name, message)))
    assert listener.api.want_interface_events(enable_disable=1, pid=4242).retval == 0
    assert listener.api.want_interface_events(enable_disable=1, pid=4242).retval == ApiError.INVALID_REGISTRATION
    sw_if_index = made.loopback()
    made.vpp.api.sw_interface_set_flags(sw_if_index=sw_if_index, flags=ADMIN_UP)
    listener.api.control_ping()  # events precede the next reply on the listener's socket
    deadline = time.monotonic() + 2
    while not any(m.sw_if_index == sw_if_index for _, m in received) and time.monotonic() < deadline:
        time.sleep(0.01)
    events = [m for name, m in received if name == "sw_interface_event" and m.sw_if_index == sw_if_index]
    assert events and events[-1].flags & ADMIN_UP and not events[-1].deleted
    assert listener.api.want_interface_events(enable_disable=0, pid=4242).retval == 0
    assert listener.api.want_interface_events(enable_disable=0, pid=4242).retval == ApiError.INVALID_REGISTRATION


# -- routes ----------------------------------------------------------------------------------------
def test_route_add_dump_delete_in_a_table(vpp: VPPApiClient, made: Made) -> None:
    api = vpp.api
    sw_if_index = made.loopback()
    assert api.ip_table_add_del(is_add=True, table={"table_id": 4077, "is_ip6": False}).retval == 0
    made.ip_tables.append(4077)
    route = {"table_id": 4077, "prefix": "10.88.0.0/16", "n_paths": 1,
             "paths": [path(sw_if_index, "10.77.0.2")]}
    assert api.ip_route_add_del(is_add=True, route=route).retval == 0
    made.routes.append(route)
    dumped = {str(d.route.prefix): d.route for d in api.ip_route_dump(table={"table_id": 4077, "is_ip6": False})}
    assert "10.88.0.0/16" in dumped
    assert dumped["10.88.0.0/16"].paths[0].sw_if_index == sw_if_index
    assert api.ip_route_add_del(is_add=False, route=route).retval == 0
    made.routes.clear()
    dumped_after = [str(d.route.prefix) for d in api.ip_route_dump(table={"table_id": 4077, "is_ip6": False})]
    assert "10.88.0.0/16" not in dumped_after


def test_route_in_a_missing_table_is_no_such_fib(vpp: VPPApiClient) -> None:
    route = {"table_id": 4078, "prefix": "10.99.0.0/16", "n_paths": 1, "paths": [path(0, "0.0.0.0")]}
    assert vpp.api.ip_route_add_del(is_add=True, route=route).retval == ApiError.NO_SUCH_FIB


# -- classifier ------------------------------------------------------------------------------------
def test_classifier_table_and_session(vpp: VPPApiClient, made: Made) -> None:
    api = vpp.api
    mask = bytes(26) + b"\xff" * 4 + bytes(2)  # IPv4 source address after a 14-byte Ethernet header
    reply = api.classify_add_del_table(is_add=True, table_index=NONE, nbuckets=2, memory_size=2 << 20,
                                       skip_n_vectors=0, match_n_vectors=2, next_table_index=NONE,
                                       miss_next_index=NONE, mask_len=32, mask=mask)
    assert reply.retval == 0 and (reply.skip_n_vectors, reply.match_n_vectors) == (0, 2)
    made.tables.append(reply.new_table_index)
    match = bytes(26) + bytes([10, 0, 0, 1]) + bytes(2)
    assert api.classify_add_del_session(is_add=True, table_index=reply.new_table_index, hit_next_index=0,
                                        match_len=32, match=match).retval == 0
    assert reply.new_table_index in api.classify_table_ids().ids
    sw_if_index = made.loopback()
    assert api.input_acl_set_interface(sw_if_index=sw_if_index, ip4_table_index=reply.new_table_index,
                                       ip6_table_index=NONE, l2_table_index=NONE, is_add=True).retval == 0
    made.attached.append((sw_if_index, reply.new_table_index, True))
    assert api.input_acl_set_interface(sw_if_index=MISSING_SW_IF_INDEX, ip4_table_index=reply.new_table_index,
                                       ip6_table_index=NONE, l2_table_index=NONE,
                                       is_add=True).retval == ApiError.INVALID_SW_IF_INDEX
