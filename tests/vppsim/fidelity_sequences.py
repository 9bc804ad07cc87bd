"""The scripted sequences of the fidelity comparison (``fidelity.py``): what the driver sends, good
and bad, grouped by subsystem.  Each records every reply and undoes what it made."""

from __future__ import annotations

from typing import Any

from tests.vppsim.fidelity import NONE, Recorder, sequence

MISSING_IF = 0x0FFFFFF0
ADMIN_UP = 1
SOURCE_MASK = bytes(12) + b"\xff" * 4 + bytes(16)  # IPv4 source from the IP header (current data)
PORT_MASK = bytes(20) + b"\xff\xff" + bytes(10)


def rule(action: int = 1, src: str = "0.0.0.0/0", dst: str = "0.0.0.0/0", proto: int = 0,
         sport: tuple[int, int] = (0, 65535), dport: tuple[int, int] = (0, 65535),
         tcp_flags: tuple[int, int] = (0, 0)) -> dict[str, Any]:
    return {"is_permit": action, "src_prefix": src, "dst_prefix": dst, "proto": proto,
            "srcport_or_icmptype_first": sport[0], "srcport_or_icmptype_last": sport[1],
            "dstport_or_icmpcode_first": dport[0], "dstport_or_icmpcode_last": dport[1],
            "tcp_flags_value": tcp_flags[0], "tcp_flags_mask": tcp_flags[1]}


def path(sw_if_index: int, next_hop: str) -> dict[str, Any]:
    ip6 = ":" in next_hop
    return {"sw_if_index": sw_if_index, "proto": 1 if ip6 else 0, "weight": 1,
            "nh": {"address": {"ip6": next_hop} if ip6 else {"ip4": next_hop}}, "label_stack": [{}] * 16}


def add_acl(rec: Recorder, rules: list[dict[str, Any]], tag: str = "fidelity") -> int:
    return int(rec("acl_add_replace", acl_index=NONE, tag=tag, count=len(rules), r=rules).acl_index)


def loopback(rec: Recorder) -> int:
    return int(rec("create_loopback").sw_if_index)


def our_interfaces(rec: Recorder, label: str, indices: list[int]) -> None:
    details = rec.quiet("sw_interface_dump", sw_if_index=NONE)
    rec.record(label, "sw_interface_details", [d for d in details if d.sw_if_index in indices])


def our_routes(rec: Recorder, label: str, prefixes: list[str], table_id: int = 0) -> None:
    for is_ip6 in (False, True):
        details = rec.quiet("ip_route_dump", table={"table_id": table_id, "is_ip6": is_ip6})
        rec.record(f"{label} ip{6 if is_ip6 else 4}", "ip_route_details",
                   sorted((d for d in details if str(d.route.prefix) in prefixes), key=lambda d: str(d.route.prefix)))


def table(rec: Recorder, mask: bytes = SOURCE_MASK, next_table: int = NONE, miss: int = NONE,
          nbuckets: int = 3, memory_size: int = 2 << 20, **extra: Any) -> Any:
    return rec("classify_add_del_table", is_add=True, del_chain=False, table_index=NONE, nbuckets=nbuckets,
               memory_size=memory_size, skip_n_vectors=0, match_n_vectors=len(mask) // 16,
               next_table_index=next_table, miss_next_index=miss, current_data_flag=1, current_data_offset=0,
               mask_len=len(mask), mask=mask, **extra)


def sessions(rec: Recorder, table_id: int) -> None:
    details = rec.quiet("classify_session_dump", table_id=table_id)
    rec.record(f"classify_session_dump({table_id}) by match", "classify_session_details",
               sorted(details, key=lambda d: bytes(d.match)))


def delete_table(rec: Recorder, index: int, *, chain: bool = False) -> None:
    rec("classify_add_del_table", is_add=False, table_index=index, del_chain=chain, match_n_vectors=1,
        mask_len=16, mask=bytes(16))


# -- core ------------------------------------------------------------------------------------------
@sequence
def seq_core(rec: Recorder) -> None:
    rec("control_ping")
    rec("show_version")
    reply = rec.quiet("cli_inband", cmd="show version")
    rec.record("cli show version (up to the build host)", "cli_inband_reply",
               {"retval": reply.retval, "reply": reply.reply.split(" built by ")[0]})
    rec("acl_plugin_get_version")
    rec("acl_plugin_get_conn_table_max_entries")


# -- ACLs ------------------------------------------------------------------------------------------
@sequence
def seq_acl_add_replace_dump_del(rec: Recorder) -> None:
    rules = [rule(2, "10.1.0.0/16", "0.0.0.0/0", 6, dport=(80, 443), tcp_flags=(2, 18)),
             rule(0, "::/0", "fd00::/8", 17, sport=(53, 53)),
             rule(2, "0.0.0.0/0", "10.9.9.9/32", 1, sport=(8, 8), dport=(0, 255))]
    first = add_acl(rec, rules, tag="k8s:ns/pod:egress")
    second = add_acl(rec, [], tag="")
    third = add_acl(rec, [rule()], tag="t" * 63)
    rec("acl_dump", acl_index=NONE)
    rec("acl_dump", acl_index=first)
    rec("acl_add_replace", acl_index=second, tag="replaced", count=1, r=[rule(0, "10.0.0.0/8")])
    rec("acl_dump", acl_index=second)
    for index in (first, second):
        rec("acl_del", acl_index=index)
    rec("acl_del", acl_index=first)
    rec("acl_dump", acl_index=first)
    rec("acl_add_replace", acl_index=first, tag="free", count=1, r=[rule()])
    again = add_acl(rec, [rule()])  # last freed first
    rec("acl_dump", acl_index=NONE)
    for index in (again, third):
        rec("acl_del", acl_index=index)
    rec("acl_del", acl_index=0x7FFF)


@sequence
def seq_acl_rule_refusals(rec: Recorder) -> None:
    for bad in (rule(src="10.0.0.1/8"), rule(dst="10.0.0.1/8"), rule(src="10.0.0.0/8", dst="::/0"),
                rule(src="::/0", dst="10.0.0.0/8"), rule(sport=(100, 99)), rule(dport=(443, 80)),
                rule(src="fd00::1/8"), rule(action=3), rule(proto=6, tcp_flags=(0x12, 0x02))):
        rec("acl_add_replace", acl_index=NONE, tag="bad", count=2, r=[rule(), bad])
    rec("acl_dump", acl_index=NONE)


# -- interface ACL lists ---------------------------------------------------------------------------
@sequence
def seq_interface_acl_lists(rec: Recorder) -> None:
    sw_if_index, empty = loopback(rec), loopback(rec)
    a, b, c = add_acl(rec, [rule()]), add_acl(rec, [rule(0)]), add_acl(rec, [rule(2)])
    rec("acl_interface_set_acl_list", sw_if_index=sw_if_index, count=3, n_input=2, acls=[c, a, b])
    rec("acl_interface_list_dump", sw_if_index=sw_if_index)
    rec("acl_interface_set_acl_list", sw_if_index=sw_if_index, count=3, n_input=2, acls=[a, a, b])  # dup input
    rec("acl_interface_list_dump", sw_if_index=sw_if_index)
    rec("acl_interface_set_acl_list", sw_if_index=sw_if_index, count=3, n_input=1, acls=[b, c, c])  # dup output
    rec("acl_interface_list_dump", sw_if_index=sw_if_index)
    rec("acl_interface_set_acl_list", sw_if_index=sw_if_index, count=2, n_input=1, acls=[a, 0xFFFF])  # unknown
    rec("acl_interface_set_acl_list", sw_if_index=MISSING_IF, count=1, n_input=1, acls=[a])
    rec("acl_interface_set_acl_list", sw_if_index=sw_if_index, count=2, n_input=3, acls=[a, b])  # n_input > count
    rec("acl_interface_list_dump", sw_if_index=sw_if_index)
    rec("acl_interface_list_dump", sw_if_index=MISSING_IF)
    dump = rec.quiet("acl_interface_list_dump", sw_if_index=NONE)
    rec.record("acl_interface_list_dump(all): ours", "acl_interface_list_details",
               [d for d in dump if d.sw_if_index in (sw_if_index, empty)])
    rec("acl_del", acl_index=a)
    rec("acl_del", acl_index=b)
    rec("acl_interface_set_acl_list", sw_if_index=sw_if_index, count=0, n_input=0, acls=[])
    for index in (a, b, c):
        rec("acl_interface_add_del", is_add=True, is_input=True, sw_if_index=sw_if_index, acl_index=index)
    rec("acl_interface_add_del", is_add=True, is_input=True, sw_if_index=sw_if_index, acl_index=a)
    rec("acl_interface_add_del", is_add=True, is_input=False, sw_if_index=sw_if_index, acl_index=a)
    rec("acl_interface_add_del", is_add=True, is_input=False, sw_if_index=sw_if_index, acl_index=a)
    rec("acl_interface_add_del", is_add=False, is_input=True, sw_if_index=sw_if_index, acl_index=a)
    rec("acl_interface_list_dump", sw_if_index=sw_if_index)
    rec("acl_interface_add_del", is_add=False, is_input=True, sw_if_index=sw_if_index, acl_index=a)
    rec("acl_interface_add_del", is_add=True, is_input=True, sw_if_index=MISSING_IF, acl_index=a)
    rec("acl_interface_add_del", is_add=True, is_input=True, sw_if_index=sw_if_index, acl_index=0xFFFF)
    rec("acl_interface_set_etype_whitelist", sw_if_index=sw_if_index, count=2, n_input=1, whitelist=[0x0800, 0x86DD])
    rec("acl_interface_etype_whitelist_dump", sw_if_index=sw_if_index)
    rec("acl_interface_set_etype_whitelist", sw_if_index=sw_if_index, count=0, n_input=0, whitelist=[])
    rec("acl_stats_intf_counters_enable", enable=False)
    rec("acl_interface_set_acl_list", sw_if_index=sw_if_index, count=0, n_input=0, acls=[])
    for index in (a, b, c):
        rec("acl_del", acl_index=index)
    for index in (sw_if_index, empty):
        rec("delete_loopback", sw_if_index=index)


@sequence
def seq_acl_bindings_survive_interface_delete(rec: Recorder) -> None:
    sw_if_index = loopback(rec)
    acl = add_acl(rec, [rule()])
    rec("acl_interface_set_acl_list", sw_if_index=sw_if_index, count=2, n_input=1, acls=[acl, acl])
    rec("delete_loopback", sw_if_index=sw_if_index)
    rec("acl_del", acl_index=acl)  # in use by a deleted interface?
    again = loopback(rec)
    rec("acl_interface_list_dump", sw_if_index=again)
    rec("acl_del", acl_index=acl)
    rec("delete_loopback", sw_if_index=again)


# -- interfaces ------------------------------------------------------------------------------------
@sequence
def seq_loopbacks_flags_tags_addresses(rec: Recorder) -> None:
    a, b = loopback(rec), loopback(rec)
    our_interfaces(rec, "two new loopbacks", [a, b])
    rec("sw_interface_set_flags", sw_if_index=a, flags=ADMIN_UP)
    rec("sw_interface_set_flags", sw_if_index=MISSING_IF, flags=ADMIN_UP)
    rec("sw_interface_tag_add_del", is_add=True, sw_if_index=a, tag="vppagent:ns/pod")
    rec("sw_interface_tag_add_del", is_add=True, sw_if_index=a, tag="replaced")
    rec("sw_interface_tag_add_del", is_add=True, sw_if_index=MISSING_IF, tag="x")
    rec("sw_interface_tag_add_del", is_add=False, sw_if_index=b, tag="")
    rec("sw_interface_dump", sw_if_index=a)
    rec("sw_interface_dump", sw_if_index=MISSING_IF)
    rec("sw_interface_tag_add_del", is_add=False, sw_if_index=a, tag="")
    for prefix in ("10.77.0.1/24", "10.77.0.1/24", "10.77.0.2/24", "10.78.0.1/32", "fd77::1/64", "fd77::1/64",
                   "10.77.0.9/24"):
        rec("sw_interface_add_del_address", sw_if_index=a, is_add=True, prefix=prefix)
    rec("sw_interface_add_del_address", sw_if_index=b, is_add=True, prefix="10.77.0.3/24")  # same subnet
    rec("sw_interface_add_del_address", sw_if_index=MISSING_IF, is_add=True, prefix="10.79.0.1/24")
    rec("ip_address_dump", sw_if_index=a, is_ipv6=False)
    rec("ip_address_dump", sw_if_index=a, is_ipv6=True)
    rec("sw_interface_add_del_address", sw_if_index=a, is_add=False, prefix="10.99.0.1/24")
    rec("sw_interface_add_del_address", sw_if_index=a, is_add=False, prefix="10.77.0.1/24")
    rec("sw_interface_add_del_address", sw_if_index=a, is_add=False, prefix="10.77.0.1/24")
    rec("sw_interface_add_del_address", sw_if_index=a, is_add=False, del_all=True, prefix="0.0.0.0/0")
    rec("ip_address_dump", sw_if_index=a, is_ipv6=False)
    rec("ip_address_dump", sw_if_index=MISSING_IF, is_ipv6=False)
    rec("delete_loopback", sw_if_index=a)
    rec("delete_loopback", sw_if_index=a)
    c = loopback(rec)  # the freed index again
    our_interfaces(rec, "reused index", [b, c])
    rec("create_loopback_instance", is_specified=True, user_instance=40)
    rec("create_loopback_instance", is_specified=True, user_instance=40)
    rec("delete_loopback", sw_if_index=MISSING_IF)
    dump = rec.quiet("sw_interface_dump", sw_if_index=NONE)
    for details in dump:
        if details.interface_name == "loop40":
            rec("delete_loopback", sw_if_index=details.sw_if_index)
    for index in (b, c):
        rec("delete_loopback", sw_if_index=index)


@sequence
def seq_unnumbered_ip6_neighbours(rec: Recorder) -> None:
    lender, borrower = loopback(rec), loopback(rec)
    rec("sw_interface_add_del_address", sw_if_index=lender, is_add=True, prefix="10.80.0.1/32")
    rec("sw_interface_set_unnumbered", sw_if_index=lender, unnumbered_sw_if_index=borrower, is_add=True)
    rec("sw_interface_set_unnumbered", sw_if_index=lender, unnumbered_sw_if_index=borrower, is_add=True)
    rec("ip_address_dump", sw_if_index=borrower, is_ipv6=False)
    rec("sw_interface_set_unnumbered", sw_if_index=lender, unnumbered_sw_if_index=MISSING_IF, is_add=True)
    rec("sw_interface_set_unnumbered", sw_if_index=MISSING_IF, unnumbered_sw_if_index=borrower, is_add=True)
    rec("sw_interface_set_unnumbered", sw_if_index=MISSING_IF, unnumbered_sw_if_index=borrower, is_add=False)
    rec("sw_interface_set_unnumbered", sw_if_index=lender, unnumbered_sw_if_index=borrower, is_add=False)
    rec("sw_interface_ip6_enable_disable", sw_if_index=borrower, enable=True)
    rec("sw_interface_ip6_enable_disable", sw_if_index=borrower, enable=True)
    rec("ip_address_dump", sw_if_index=borrower, is_ipv6=True)
    rec("sw_interface_ip6_enable_disable", sw_if_index=borrower, enable=False)
    rec("sw_interface_ip6_enable_disable", sw_if_index=borrower, enable=False)
    rec("sw_interface_ip6_enable_disable", sw_if_index=borrower, enable=False)
    rec("sw_interface_ip6_enable_disable", sw_if_index=MISSING_IF, enable=True)
    for ip, mac in (("10.80.0.2", "02:00:00:00:00:01"), ("10.80.0.2", "02:00:00:00:00:02"),
                    ("fd80::2", "02:00:00:00:00:01")):
        rec("ip_neighbor_add_del", is_add=True, neighbor={"sw_if_index": borrower, "flags": 1, "mac_address": mac,
                                                           "ip_address": ip})
    for ip in ("10.80.0.2", "10.80.0.2", "fd80::2", "10.80.0.9"):
        rec("ip_neighbor_add_del", is_add=False, neighbor={"sw_if_index": borrower, "flags": 1,
                                                            "mac_address": "02:00:00:00:00:01", "ip_address": ip})
    rec("ip_neighbor_add_del", is_add=True, neighbor={"sw_if_index": MISSING_IF, "flags": 1,
                                                       "mac_address": "02:00:00:00:00:01", "ip_address": "10.80.0.3"})
    for index in (lender, borrower):
        rec("delete_loopback", sw_if_index=index)


@sequence
def seq_ip_tables_and_interface_tables(rec: Recorder) -> None:
    sw_if_index = loopback(rec)
    rec("ip_table_add_del", is_add=True, table={"table_id": 4077, "is_ip6": False, "name": "fidelity"})
    rec("ip_table_add_del", is_add=True, table={"table_id": 4077, "is_ip6": False, "name": "again"})
    rec("ip_table_add_del", is_add=True, table={"table_id": 4077, "is_ip6": True})
    tables = rec.quiet("ip_table_dump")
    rec.record("ip_table_dump: ours", "ip_table_details", sorted(
        (d for d in tables if d.table.table_id in (0, 4077)), key=lambda d: (d.table.is_ip6, d.table.table_id)))
    rec("sw_interface_set_table", sw_if_index=sw_if_index, is_ipv6=False, vrf_id=4077)
    rec("sw_interface_set_table", sw_if_index=sw_if_index, is_ipv6=False, vrf_id=4078)
    rec("sw_interface_set_table", sw_if_index=MISSING_IF, is_ipv6=False, vrf_id=4077)
    rec("sw_interface_set_table", sw_if_index=sw_if_index, is_ipv6=False, vrf_id=0)
    for is_ip6 in (False, True):
        rec("ip_table_add_del", is_add=False, table={"table_id": 4077, "is_ip6": is_ip6})
    rec("ip_table_add_del", is_add=False, table={"table_id": 4079, "is_ip6": False})
    rec("delete_loopback", sw_if_index=sw_if_index)


# -- routes ----------------------------------------------------------------------------------------
@sequence
def seq_routes_attached_recursive_and_refusals(rec: Recorder) -> None:
    sw_if_index = loopback(rec)
    routes = {
        "host": {"table_id": 0, "prefix": "10.65.0.10/32", "n_paths": 1, "paths": [path(sw_if_index, "0.0.0.0")]},
        "host6": {"table_id": 0, "prefix": "fd65::a/128", "n_paths": 1, "paths": [path(sw_if_index, "::")]},
        "subnet": {"table_id": 0, "prefix": "10.66.0.0/24", "n_paths": 1, "paths": [path(sw_if_index, "0.0.0.0")]},
        "via": {"table_id": 0, "prefix": "10.68.0.0/24", "n_paths": 1, "paths": [path(sw_if_index, "10.66.0.1")]},
        "recursive": {"table_id": 0, "prefix": "10.67.0.0/16", "n_paths": 1, "paths": [path(NONE, "10.66.0.5")]},
        "recursive6": {"table_id": 0, "prefix": "fd67::/64", "n_paths": 1, "paths": [path(NONE, "fd65::a")]},
    }
    prefixes = [r["prefix"] for r in routes.values()]
    for route in routes.values():
        rec("ip_route_add_del", is_add=True, is_multipath=False, route=route)
    our_routes(rec, "after adds", prefixes)
    rec("ip_route_add_del", is_add=True, is_multipath=False, route=routes["host"])  # again
    weightless = {**routes["subnet"], "paths": [{**path(sw_if_index, "0.0.0.0"), "weight": 0}]}
    rec("ip_route_add_del", is_add=True, is_multipath=False, route=weightless)
    our_routes(rec, "weight 0", ["10.66.0.0/24"])
    second = {**routes["via"], "paths": [path(sw_if_index, "10.66.0.2")]}
    rec("ip_route_add_del", is_add=True, is_multipath=True, route=second)
    our_routes(rec, "multipath", ["10.68.0.0/24"])
    rec("ip_route_add_del", is_add=False, is_multipath=True, route=second)
    our_routes(rec, "one path removed", ["10.68.0.0/24"])
    other = {**routes["via"], "paths": [path(sw_if_index, "10.66.0.3")]}
    rec("ip_route_add_del", is_add=False, is_multipath=False, route=other)  # a path it does not have
    our_routes(rec, "remove an absent path", ["10.68.0.0/24"])
    by_prefix = {**routes["host"], "paths": [path(sw_if_index, "10.65.0.10")]}
    rec("ip_route_add_del", is_add=False, is_multipath=False, route=by_prefix)  # host route by its own address
    rec("ip_route_add_del", is_add=False, is_multipath=False, route=routes["host"])
    rec("ip_route_add_del", is_add=True, is_multipath=False, route={
        "table_id": 4090, "prefix": "10.99.0.0/16", "n_paths": 1, "paths": [path(sw_if_index, "0.0.0.0")]})
    rec("ip_route_add_del", is_add=True, is_multipath=False, route={
        "table_id": 0, "prefix": "10.98.0.0/16", "n_paths": 0, "paths": []})
    rec("ip_route_add_del", is_add=True, is_multipath=False, route={
        "table_id": 0, "prefix": "10.97.0.0/16", "n_paths": 1, "paths": [path(MISSING_IF, "0.0.0.0")]})
    rec("ip_route_add_del", is_add=False, is_multipath=False, route={
        "table_id": 0, "prefix": "10.96.0.0/16", "n_paths": 1, "paths": [path(sw_if_index, "0.0.0.0")]})
    rec("ip_route_add_del", is_add=True, is_multipath=False, route=routes["host"])
    # The interface goes: its routes stay, and a delete naming it is refused; n_paths 0 removes.
    rec("delete_loopback", sw_if_index=sw_if_index)
    our_routes(rec, "interface gone", prefixes)
    rec("ip_route_add_del", is_add=False, is_multipath=False, route=routes["host"])
    for route in routes.values():
        rec("ip_route_add_del", is_add=False, is_multipath=False, route={**route, "n_paths": 0, "paths": []})
    our_routes(rec, "all removed", prefixes)


def routes_by_source(rec: Recorder, label: str, prefixes: list[str]) -> None:
    """``ip_route_v2_dump`` of table 0 unfiltered (0), API-made (8) and neighbours' adjacency (15)."""
    for src in (0, 8, 15):
        for is_ip6 in (False, True):
            details = rec.quiet("ip_route_v2_dump", src=src, table={"table_id": 0, "is_ip6": is_ip6})
            rec.record(f"{label} src {src} ip{6 if is_ip6 else 4}", "ip_route_v2_details",
                       sorted((d for d in details if str(d.route.prefix) in prefixes),
                              key=lambda d: str(d.route.prefix)))


@sequence
def seq_routes_and_neighbour_adjacencies(rec: Recorder) -> None:
    """A pod's route and its static neighbour share a /32 (/128): ``ip_route_dump`` cannot tell the
    neighbour's adjacency entry from the route, ``ip_route_v2_dump`` by source can."""
    sw_if_index = loopback(rec)
    rec("sw_interface_ip6_enable_disable", sw_if_index=sw_if_index, enable=True)
    routes = {address: {"table_id": 0, "prefix": f"{address}/{128 if ':' in address else 32}", "n_paths": 1,
                        "paths": [path(sw_if_index, "::" if ":" in address else "0.0.0.0")]}
              for address in ("10.67.0.5", "fd67::5")}
    prefixes = [r["prefix"] for r in routes.values()] + ["10.67.0.6/32", "fd67::6/128"]
    for route in routes.values():
        rec("ip_route_add_del", is_add=True, is_multipath=False, route=route)
    for address in ("10.67.0.5", "fd67::5", "10.67.0.6", "fd67::6"):  # two with a route, two without
        rec("ip_neighbor_add_del", is_add=True, neighbor={"sw_if_index": sw_if_index, "flags": 1,
                                                           "mac_address": "02:00:00:00:00:01", "ip_address": address})
    our_routes(rec, "routes and neighbours", prefixes)
    routes_by_source(rec, "routes and neighbours", prefixes)
    for route in routes.values():
        rec("ip_route_add_del", is_add=False, is_multipath=False, route=route)
    our_routes(rec, "routes deleted", prefixes)
    routes_by_source(rec, "routes deleted", prefixes)
    rec("ip_route_add_del", is_add=True, is_multipath=False, route=routes["10.67.0.5"])
    rec("ip_neighbor_add_del", is_add=False, neighbor={"sw_if_index": sw_if_index, "flags": 1,
                                                        "mac_address": "02:00:00:00:00:01", "ip_address": "10.67.0.5"})
    routes_by_source(rec, "neighbour deleted, route again", prefixes)
    # The interface goes: its neighbours with it, the API route stays until deleted by prefix.
    rec("delete_loopback", sw_if_index=sw_if_index)
    routes_by_source(rec, "interface gone", prefixes)
    rec("ip_route_add_del", is_add=False, is_multipath=False, route={**routes["10.67.0.5"], "n_paths": 0, "paths": []})
    routes_by_source(rec, "all removed", prefixes)


# -- classifier ------------------------------------------------------------------------------------
@sequence
def seq_classifier_tables_sessions_chains(rec: Recorder) -> None:
    last = table(rec).new_table_index
    head = table(rec, next_table=last, nbuckets=5).new_table_index
    ports = table(rec, mask=PORT_MASK, miss=0).new_table_index
    rec("classify_table_ids")
    for index in (head, last, ports, 0x7FFF):
        rec("classify_table_info", table_id=index)
    match = bytes(12) + bytes([10, 98, 0, 1]) + b"\x07" * 16
    rec("classify_add_del_session", is_add=True, table_index=head, hit_next_index=0, opaque_index=77,
        advance=0, match_len=32, match=match)
    rec("classify_add_del_session", is_add=True, table_index=head, hit_next_index=NONE, opaque_index=78,
        advance=0, match_len=32, match=match)  # same key: replaced
    rec("classify_add_del_session", is_add=True, table_index=head, hit_next_index=0, opaque_index=79,
        advance=0, match_len=32, match=bytes(12) + bytes([10, 98, 0, 2]) + bytes(16))
    sessions(rec, head)
    sessions(rec, last)
    rec("classify_session_dump", table_id=0x7FFF)
    rec("classify_add_del_session", is_add=True, table_index=0x7FFF, hit_next_index=0, match_len=32, match=match)
    rec("classify_add_del_session", is_add=True, table_index=head, hit_next_index=0, match_len=16,
        match=bytes(16))
    rec("classify_add_del_session", is_add=False, table_index=head, hit_next_index=0, match_len=32, match=match)
    rec("classify_add_del_session", is_add=False, table_index=head, hit_next_index=0, match_len=32, match=match)
    rec("classify_table_info", table_id=head)
    # re-point the head (the driver inserts member tables behind it)
    rec("classify_add_del_table", is_add=True, table_index=head, nbuckets=4, memory_size=1 << 20, skip_n_vectors=0,
        match_n_vectors=2, next_table_index=ports, miss_next_index=0, current_data_flag=1, current_data_offset=0,
        mask_len=32, mask=SOURCE_MASK)
    rec("classify_table_info", table_id=head)
    # refusals of a new table
    table(rec, memory_size=0)
    table(rec, nbuckets=0)
    rec("classify_add_del_table", is_add=True, table_index=NONE, nbuckets=2, memory_size=1 << 20,
        match_n_vectors=2, next_table_index=NONE, miss_next_index=NONE, mask_len=16, mask=bytes(16))
    rec("classify_add_del_table", is_add=True, table_index=NONE, nbuckets=2, memory_size=1 << 20,
        match_n_vectors=0, next_table_index=NONE, miss_next_index=NONE, mask_len=0, mask=b"")
    # deletes: without a mask (what the driver sent), of a missing table, of a chain
    rec("classify_add_del_table", is_add=False, table_index=ports, del_chain=False)
    delete_table(rec, 0x7FFF)
    delete_table(rec, ports)
    delete_table(rec, head, chain=True)
    rec("classify_table_ids")


@sequence
def seq_classifier_attach(rec: Recorder) -> None:
    sw_if_index = loopback(rec)
    first, other = table(rec).new_table_index, table(rec).new_table_index
    for attach in ("output_acl_set_interface", "input_acl_set_interface"):
        rec(attach, sw_if_index=sw_if_index, ip4_table_index=first, ip6_table_index=NONE, l2_table_index=NONE,
            is_add=True)
        rec("classify_table_by_interface", sw_if_index=sw_if_index)
        rec(attach, sw_if_index=sw_if_index, ip4_table_index=other, ip6_table_index=NONE, l2_table_index=NONE,
            is_add=True)  # while attached: 0, no change
        rec(attach, sw_if_index=sw_if_index, ip4_table_index=other, ip6_table_index=NONE, l2_table_index=NONE,
            is_add=False)  # not the attached one
        rec(attach, sw_if_index=sw_if_index, ip4_table_index=NONE, ip6_table_index=first, l2_table_index=NONE,
            is_add=True)
        rec(attach, sw_if_index=sw_if_index, ip4_table_index=0x7FFF, ip6_table_index=NONE, l2_table_index=NONE,
            is_add=True)
        rec(attach, sw_if_index=MISSING_IF, ip4_table_index=first, ip6_table_index=NONE, l2_table_index=NONE,
            is_add=True)
        rec("classify_table_by_interface", sw_if_index=sw_if_index)
        rec(attach, sw_if_index=sw_if_index, ip4_table_index=first, ip6_table_index=first, l2_table_index=NONE,
            is_add=False)
        rec(attach, sw_if_index=sw_if_index, ip4_table_index=first, ip6_table_index=NONE, l2_table_index=NONE,
            is_add=False)
    rec("classify_table_by_interface", sw_if_index=MISSING_IF)
    # attached when its interface goes: the next interface with that index inherits the attachment
    rec("input_acl_set_interface", sw_if_index=sw_if_index, ip4_table_index=first, ip6_table_index=NONE,
        l2_table_index=NONE, is_add=True)
    rec("delete_loopback", sw_if_index=sw_if_index)
    rec("classify_table_by_interface", sw_if_index=sw_if_index)
    again = loopback(rec)
    rec("classify_table_by_interface", sw_if_index=again)
    rec("input_acl_set_interface", sw_if_index=again, ip4_table_index=first, ip6_table_index=NONE,
        l2_table_index=NONE, is_add=False)
    rec("classify_table_by_interface", sw_if_index=again)
    for index in (first, other):
        delete_table(rec, index)
    rec("delete_loopback", sw_if_index=again)


# -- af_packet -------------------------------------------------------------------------------------
VETH = ("vpafid0", "vpafid1")  # a veth pair made by the test (af_packet needs a host interface)


@sequence
def seq_af_packet_create_delete(rec: Recorder) -> None:
    create = {"mode": 1, "hw_addr": "02:fe:00:00:00:01", "use_random_hw_addr": False, "rx_frame_size": 0,
              "tx_frame_size": 0, "rx_frames_per_block": 0, "tx_frames_per_block": 0, "flags": 3,
              "num_rx_queues": 1, "num_tx_queues": 1}
    reply = rec("af_packet_create_v3", host_if_name=VETH[0], **create)
    rec("af_packet_create_v3", host_if_name=VETH[0], **create)  # again: the existing index
    our_interfaces(rec, "af_packet interface", [reply.sw_if_index])
    dump = rec.quiet("af_packet_dump")
    rec.record("af_packet_dump: ours", "af_packet_details", [d for d in dump if d.host_if_name in VETH])
    rec("sw_interface_set_flags", sw_if_index=reply.sw_if_index, flags=ADMIN_UP)
    rec("af_packet_delete", host_if_name=VETH[0])
    rec("af_packet_delete", host_if_name=VETH[0])
    rec("af_packet_delete", host_if_name="vpafid-none")


@sequence
def seq_af_packet_rx_mode(rec: Recorder) -> None:
    """The rx-mode of an af_packet interface's queue: as created, set, refused, read back."""
    create = {"mode": 1, "hw_addr": "02:fe:00:00:00:02", "use_random_hw_addr": False, "rx_frame_size": 0,
              "tx_frame_size": 0, "rx_frames_per_block": 0, "tx_frames_per_block": 0, "flags": 3,
              "num_rx_queues": 1, "num_tx_queues": 1}
    index = int(rec("af_packet_create_v3", host_if_name=VETH[0], **create).sw_if_index)

    def placement(label: str) -> None:
        rec("sw_interface_rx_placement_dump", sw_if_index=index)
        every = rec.quiet("sw_interface_rx_placement_dump", sw_if_index=NONE)
        rec.record(f"{label}: all, ours", "sw_interface_rx_placement_details",
                   [d for d in every if d.sw_if_index == index])

    placement("as created")
    for mode in (2, 2, 1):  # interrupt, again, polling
        rec("sw_interface_set_rx_mode", sw_if_index=index, queue_id_valid=False, queue_id=0, mode=mode)
        placement(f"mode {mode}")
    rec("sw_interface_set_rx_mode", sw_if_index=index, queue_id_valid=False, queue_id=0, mode=4)  # default
    placement("default")
    rec("sw_interface_set_rx_mode", sw_if_index=index, queue_id_valid=False, queue_id=0, mode=3)  # adaptive
    rec("sw_interface_set_rx_mode", sw_if_index=index, queue_id_valid=True, queue_id=5, mode=2)
    rec("sw_interface_set_rx_mode", sw_if_index=index, queue_id_valid=True, queue_id=0, mode=2)
    rec("sw_interface_set_flags", sw_if_index=index, flags=ADMIN_UP)
    placement("up")
    rec("sw_interface_set_rx_mode", sw_if_index=MISSING_IF, queue_id_valid=False, queue_id=0, mode=2)
    looped = loopback(rec)
    rec("sw_interface_set_rx_mode", sw_if_index=looped, queue_id_valid=False, queue_id=0, mode=2)
    rec("sw_interface_rx_placement_dump", sw_if_index=looped)
    rec("delete_loopback", sw_if_index=looped)
    rec("af_packet_delete", host_if_name=VETH[0])
    rec("sw_interface_rx_placement_dump", sw_if_index=index)


# -- tap (refused on hosts without /dev/vhost-net, as here) and interface events ---------------------
@sequence
def seq_tap_create_delete(rec: Recorder) -> None:
    reply = rec("tap_create_v3", id=NONE, use_random_mac=False, mac_address="02:fe:00:00:00:02", num_rx_queues=1,
                num_tx_queues=0, tx_ring_sz=256, rx_ring_sz=256, host_mtu_set=True, host_mtu_size=1450,
                host_namespace_set=False, host_if_name_set=True, host_if_name="vpafidtap0", tag="fidelity",
                tap_flags=0)
    dump = rec.quiet("sw_interface_tap_v2_dump", sw_if_index=NONE)
    rec.record("sw_interface_tap_v2_dump: ours", "sw_interface_tap_v2_details",
               [d for d in dump if d.host_if_name == "vpafidtap0"])
    if reply.retval == 0:
        rec("tap_delete_v2", sw_if_index=reply.sw_if_index)
    rec("tap_delete_v2", sw_if_index=MISSING_IF)


@sequence
def seq_interface_events(rec: Recorder) -> None:
    rec("want_interface_events", enable_disable=1, pid=4242)
    rec("want_interface_events", enable_disable=1, pid=4242)
    rec("want_interface_events", enable_disable=0, pid=4242)
    rec("want_interface_events", enable_disable=0, pid=4242)


# -- memif ---------------------------------------------------------------------------------------------
MEMIF_SOCKET = "/run/vpp/vppagent-fidelity-memif.sock"


@sequence
def seq_memif(rec: Recorder) -> None:
    socket_id = rec("memif_socket_filename_add_del_v2", is_add=True, socket_id=NONE,
                    socket_filename=MEMIF_SOCKET).socket_id
    rec("memif_socket_filename_add_del_v2", is_add=True, socket_id=0, socket_filename=MEMIF_SOCKET)
    rec("memif_socket_filename_add_del_v2", is_add=True, socket_id=socket_id, socket_filename=MEMIF_SOCKET)
    rec("memif_socket_filename_add_del_v2", is_add=True, socket_id=socket_id, socket_filename=MEMIF_SOCKET + "2")
    create = {"role": 1, "mode": 0, "rx_queues": 1, "tx_queues": 1, "socket_id": socket_id, "ring_size": 1024,
              "buffer_size": 2048, "no_zero_copy": False, "hw_addr": "02:fe:00:00:00:03", "secret": ""}
    reply = rec("memif_create", id=7, **create)
    rec("memif_create", id=8, **{**create, "socket_id": 0x7FFF})
    dump = rec.quiet("memif_dump")
    rec.record("memif_dump: ours", "memif_details", [d for d in dump if d.sw_if_index == reply.sw_if_index])
    our_interfaces(rec, "memif interface", [reply.sw_if_index])
    rec("memif_socket_filename_add_del_v2", is_add=False, socket_id=socket_id, socket_filename="")  # in use
    rec("memif_delete", sw_if_index=reply.sw_if_index)
    rec("memif_delete", sw_if_index=reply.sw_if_index)
    rec("memif_socket_filename_add_del_v2", is_add=False, socket_id=socket_id, socket_filename="")
    rec("memif_socket_filename_add_del_v2", is_add=False, socket_id=socket_id, socket_filename="")
    # Last, because afterwards a running 26.06 no longer knows the socket (not emulated): a duplicate.
    socket_id = rec("memif_socket_filename_add_del_v2", is_add=True, socket_id=NONE,
                    socket_filename=MEMIF_SOCKET).socket_id
    create["socket_id"] = socket_id
    reply = rec("memif_create", id=7, **create)
    rec("memif_create", id=7, **create)
    rec.quiet("memif_delete", sw_if_index=reply.sw_if_index)
    rec.quiet("memif_socket_filename_add_del_v2", is_add=False, socket_id=socket_id, socket_filename="")


def cnat_endpoint(address: str, port: int) -> dict[str, Any]:
    return {"addr": address, "sw_if_index": NONE, "if_af": 1 if ":" in address else 0, "port": port}


def cnat_translation(vip: str, port: int, proto: int, backends: list[tuple[str, int]], *, lb_type: int = 0,
                     flow_hash: int = 0, is_real_ip: int = 0) -> dict[str, Any]:
    """A translation as the driver sends it: no source rewrite (zero address, port 0), no flags."""
    zero = "::" if ":" in vip else "0.0.0.0"
    paths = [{"dst_ep": cnat_endpoint(ip, p), "src_ep": cnat_endpoint(zero, 0), "flags": 0} for ip, p in backends]
    return {"vip": cnat_endpoint(vip, port), "id": 0, "ip_proto": proto, "is_real_ip": is_real_ip, "flags": 0,
            "lb_type": lb_type, "n_paths": len(paths), "flow_hash_config": flow_hash, "paths": paths}


@sequence
def seq_cnat_translations(rec: Recorder) -> None:
    """What the services converger sends: create, update in place (paths replaced; the
    load-balancing type is kept from creation), the dump, deletes (an unknown id), id reuse."""
    tcp = rec("cnat_translation_update", translation=cnat_translation(
        "10.96.0.10", 80, 6, [("10.65.0.3", 8080), ("10.65.0.4", 8080)])).id
    udp6 = rec("cnat_translation_update", translation=cnat_translation(
        "fd96::10", 53, 17, [("fd65::3", 5353)], lb_type=1, flow_hash=1)).id
    node_port = rec("cnat_translation_update", translation=cnat_translation(
        "192.0.2.77", 30080, 6, [("10.65.0.3", 8080)], is_real_ip=1)).id
    rec("cnat_translation_dump")
    rec("cnat_translation_update", translation=cnat_translation(
        "10.96.0.10", 80, 6, [("10.65.0.4", 8080), ("10.65.0.5", 8080)], lb_type=1))
    rec("cnat_translation_update", translation=cnat_translation("10.96.0.10", 80, 17, [("10.65.0.4", 8080)]))
    rec("cnat_translation_dump")
    rec("cnat_translation_del", id=tcp)
    rec("cnat_translation_del", id=tcp)
    rec("cnat_translation_del", id=0x0FFFFFF0)
    rec("cnat_translation_update", translation=cnat_translation("10.96.0.11", 443, 6, [("10.65.0.6", 8443)]))
    rec("cnat_translation_dump")
    for translation in rec.quiet("cnat_translation_dump"):
        rec.quiet("cnat_translation_del", id=translation.translation.id)
    rec("cnat_translation_dump")
    del udp6, node_port


@sequence
def seq_cnat_snat_and_features(rec: Recorder) -> None:
    """The source NAT set-up the driver sends on 26.06 (docs/services.md), good and bad: the hairpin
    addresses, then configured ones (`service_snat_ipv4`/`_ipv6`) replacing them, set again as after
    a reconnect."""
    lo = loopback(rec)
    rec("cnat_set_snat_addresses", snat_ip4="169.254.2.1", snat_ip6="fd69:fe::1", sw_if_index=NONE)
    rec("cnat_set_snat_addresses", snat_ip4="198.51.100.5", snat_ip6="2001:db8:5::5", sw_if_index=NONE)
    rec("cnat_set_snat_addresses", snat_ip4="198.51.100.5", snat_ip6="2001:db8:5::5", sw_if_index=NONE)
    rec("cnat_set_snat_policy", policy=2)
    rec("cnat_snat_policy_add_del_if", sw_if_index=lo, is_add=1, table=2)
    rec("cnat_snat_policy_add_del_if", sw_if_index=lo, is_add=1, table=2)
    rec("cnat_snat_policy_add_del_if", sw_if_index=MISSING_IF, is_add=1, table=2)
    rec("feature_cnat_enable_disable", sw_if_index=lo, enable_disable=True)
    rec("feature_cnat_enable_disable", sw_if_index=lo, enable_disable=True)
    rec("feature_cnat_enable_disable", sw_if_index=MISSING_IF, enable_disable=True)
    rec("feature_cnat_enable_disable", sw_if_index=lo, enable_disable=False)
    rec("feature_cnat_enable_disable", sw_if_index=lo, enable_disable=False)
    rec("cnat_snat_policy_add_del_if", sw_if_index=lo, is_add=0, table=2)
    rec("cnat_set_snat_policy", policy=0)
    rec("delete_loopback", sw_if_index=lo)


@sequence
def seq_snat_proxy(rec: Recorder) -> None:
    """The Services' source-NAT address as the driver announces it (services/proxy.py), good and bad:
    cnat's source-NAT entry read, released (all zero) and set again; proxy ARP ranges (idempotent add,
    delete of what is not there, a table that does not exist, the dump) and the per-interface flag;
    ND proxy entries (idempotent both ways). `ip6nd_proxy_dump` is not called: VPP sends its details
    under a wrong message id (services/proxy.py), which no client can read."""
    rec.quiet("cnat_set_snat_addresses", snat_ip4="0.0.0.0", snat_ip6="::", sw_if_index=NONE)  # start with none
    rec("cnat_get_snat_addresses")
    rec("cnat_set_snat_addresses", snat_ip4="0.0.0.0", snat_ip6="::", sw_if_index=NONE)
    rec("cnat_set_snat_addresses", snat_ip4="198.51.100.5", snat_ip6="2001:db8:5::5", sw_if_index=NONE)
    rec("cnat_get_snat_addresses")
    rec("cnat_set_snat_addresses", snat_ip4="198.51.100.6", snat_ip6="::", sw_if_index=NONE)  # IPv6 kept
    rec("cnat_get_snat_addresses")
    rec("cnat_set_snat_addresses", snat_ip4="0.0.0.0", snat_ip6="::", sw_if_index=NONE)
    rec("cnat_get_snat_addresses")
    lo = loopback(rec)
    single = {"table_id": 0, "low": "198.51.100.5", "hi": "198.51.100.5"}
    rec("proxy_arp_add_del", is_add=True, proxy=single)
    rec("proxy_arp_add_del", is_add=True, proxy=single)
    rec("proxy_arp_add_del", is_add=True, proxy={"table_id": 0, "low": "198.51.100.10", "hi": "198.51.100.20"})
    rec("proxy_arp_add_del", is_add=True, proxy={"table_id": 0, "low": "198.51.100.30", "hi": "198.51.100.29"})
    rec("proxy_arp_add_del", is_add=True, proxy={"table_id": 4242, "low": "198.51.100.5", "hi": "198.51.100.5"})
    rec("proxy_arp_dump")
    rec("proxy_arp_add_del", is_add=False, proxy=single)
    rec("proxy_arp_add_del", is_add=False, proxy=single)
    rec("proxy_arp_dump")
    rec("proxy_arp_intfc_enable_disable", sw_if_index=lo, enable=True)
    rec("proxy_arp_intfc_enable_disable", sw_if_index=lo, enable=True)
    rec("proxy_arp_intfc_enable_disable", sw_if_index=MISSING_IF, enable=True)
    rec.record("proxy ARP interfaces", "proxy_arp_intfc_details",
               [d for d in rec.quiet("proxy_arp_intfc_dump") if d.sw_if_index == lo])
    rec("proxy_arp_intfc_enable_disable", sw_if_index=lo, enable=False)
    rec("proxy_arp_intfc_enable_disable", sw_if_index=lo, enable=False)
    rec.record("proxy ARP interfaces after", "proxy_arp_intfc_details",
               [d for d in rec.quiet("proxy_arp_intfc_dump") if d.sw_if_index == lo])
    rec("ip6nd_proxy_add_del", sw_if_index=lo, is_add=True, ip="2001:db8:5::5")
    rec("ip6nd_proxy_add_del", sw_if_index=lo, is_add=True, ip="2001:db8:5::5")
    rec("ip6nd_proxy_add_del", sw_if_index=MISSING_IF, is_add=True, ip="2001:db8:5::5")
    rec("ip6nd_proxy_add_del", sw_if_index=lo, is_add=False, ip="2001:db8:5::5")
    rec("ip6nd_proxy_add_del", sw_if_index=lo, is_add=False, ip="2001:db8:5::5")
    for low, high in (("198.51.100.10", "198.51.100.20"), ("198.51.100.30", "198.51.100.29")):
        rec.quiet("proxy_arp_add_del", is_add=False, proxy={"table_id": 0, "low": low, "hi": high})
    rec("proxy_arp_dump")
    rec("delete_loopback", sw_if_index=lo)
