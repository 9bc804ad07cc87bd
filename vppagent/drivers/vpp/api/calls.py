"""Typed VPP calls: the only module that names VPP message fields (as ligato's `vppcalls`).

Every request the driver sends is one method here taking and returning typed values (types.py);
callers never build a field dict or parse a reply. A refusal is `ApiRefused` (retval not accepted),
a broken connection `VppConnectionLost`, both from connection.py. Where VPP answers a harmless
retval for "already so" (an index that is gone, IPv6 already on), the method says which and
accepts it, so the callers' intent ("make it so") reads as one call.

Batch methods (`*_write`) send many small writes as one pipeline (connection.py): one result
per item, in order, None where VPP applied it and its `ApiRefused` where VPP refused it, so the
caller fails the object that item was for and keeps the others.

Over 400 lines: one method per message the driver sends, kept in this one module so that no
other names a message field.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from vppagent.drivers.vpp.api.connection import ApiRefused, ApiRequest, VppConnection
from vppagent.drivers.vpp.api.errors import NO_INDEX, ApiError
from vppagent.drivers.vpp.api.types import (
    AclContent,
    AclDetails,
    AclRule,
    AfPacketDetails,
    ClassifySession,
    ClassifyTableAdd,
    ClassifyTableInfo,
    CnatBackend,
    CnatDetails,
    CnatTranslation,
    InterfaceDetails,
    InterfaceTable,
    RouteTarget,
    SessionWrite,
    TapDetails,
)
from vppagent.policy.model import IPAddress, IPNetwork

ADMIN_UP = 1  # IF_STATUS_API_FLAG_ADMIN_UP
IP_NEIGHBOR_FLAG_STATIC = 1
AF_PACKET_MODE_ETHERNET = 1
AF_PACKET_FLAGS = 3  # QDISC_BYPASS | CKSUM_GSO: with 0, TCP fails on bad checksums
FIB_PATH_TYPE_NORMAL = 0
# fib_source_t's FIB_SOURCE_API (a compile-time value: `show fib source` lists "[8] API" in 26.06).
# An `ip_route_v2_dump` with this `src` lists the entries whose best source is the API, so not the
# adjacency entry (source "adjacency", 15) a static or learned neighbour adds for the same /32.
FIB_SOURCE_API = 8
ZERO_MAC = "00:00:00:00:00:00"
RX_MODE_INTERRUPT = 2  # RX_MODE_API_INTERRUPT

SESSION_NO_NEXT = 0xFFFF  # ~0 as a classifier session stores it (a u16 next index)
CNAT_LB_DEFAULT = 0  # cnat_lb_type_t: the flow hash modulo the paths
CNAT_LB_MAGLEV = 1  # Maglev: a path change moves few flows
FLOW_HASH_DEFAULT = 0  # VPP's default flow hash (addresses, ports, protocol)
FLOW_HASH_SRC_IP = 1  # IP_API_V2_FLOW_HASH_SRC_IP: the source address alone
CNAT_POLICY_K8S = 2  # cnat_snat_policies_t: Kubernetes' (hairpin, outside -> outside)
CNAT_POLICY_POD = 2  # cnat_snat_policy_table_t: the pod interfaces


class VppCalls:
    def __init__(self, conn: VppConnection) -> None:
        self.conn = conn

    # -- ACLs -------------------------------------------------------------------------------------
    def acl_dump(self) -> list[AclDetails]:
        return [AclDetails(int(d.acl_index), str(d.tag), AclContent.of(_rule_from_details(r) for r in d.r))
                for d in self.conn.dump("acl_dump", acl_index=NO_INDEX)]

    def acl_add_replace(self, index: int, tag: str, content: AclContent) -> int:
        """Create (index NO_INDEX) or replace in place; returns the ACL's index."""
        reply = self.conn.call("acl_add_replace", **_acl_fields(index, tag, content),
                               what=f"ACL {tag}, {len(content)} rules")
        return int(reply.acl_index)

    def acls_write(self, items: Sequence[tuple[int, str, AclContent]]) -> list[int | ApiRefused]:
        """`acl_add_replace` of each (index, tag, content), pipelined, in order; per item the ACL's
        index or its refusal."""
        results = self.conn.pipeline([ApiRequest("acl_add_replace", _acl_fields(index, tag, content),
                                                 what=f"ACL {tag}, {len(content)} rules")
                                      for index, tag, content in items])
        return [r if isinstance(r, ApiRefused) else int(r.acl_index) for r in results]

    def acl_del(self, index: int) -> None:
        self.conn.call("acl_del", acl_index=index, what=f"ACL {index}")

    def acls_del(self, indexes: Sequence[int]) -> list[ApiRefused | None]:
        """`acl_del` of each, pipelined, in order; per item None (done) or its refusal."""
        return _outcomes(self.conn.pipeline([ApiRequest("acl_del", {"acl_index": i}, what=f"ACL {i}")
                                             for i in indexes]))

    def interface_acls(self) -> dict[int, tuple[list[int], list[int]]]:
        """Every interface's bound ACLs: (input, output) index lists."""
        out = {}
        for d in self.conn.dump("acl_interface_list_dump", sw_if_index=NO_INDEX):
            acls = [int(a) for a in d.acls]
            out[int(d.sw_if_index)] = (acls[:d.n_input], acls[d.n_input:])
        return out

    def set_acl_list(self, sw_if_index: int, acl_in: int | None, acl_out: int | None) -> None:
        """Bind at most one ACL per direction (None: none), replacing whatever was bound."""
        self.conn.call("acl_interface_set_acl_list", **_acl_list_fields(sw_if_index, acl_in, acl_out),
                       what=f"interface {sw_if_index}")

    def acl_lists_write(self, items: Sequence[tuple[int, int | None, int | None]]) -> list[ApiRefused | None]:
        """`set_acl_list` of each (sw_if_index, acl_in, acl_out), pipelined, in order; per item None
        (done) or its refusal."""
        return _outcomes(self.conn.pipeline([ApiRequest("acl_interface_set_acl_list",
                                                        _acl_list_fields(ifx, acl_in, acl_out), what=f"interface {ifx}")
                                             for ifx, acl_in, acl_out in items]))

    # -- interfaces -------------------------------------------------------------------------------
    def interfaces(self, sw_if_index: int = NO_INDEX) -> list[InterfaceDetails]:
        """All interfaces, or the one given."""
        return [InterfaceDetails(int(d.sw_if_index), str(d.interface_name), str(d.tag), str(d.interface_dev_type))
                for d in self.conn.dump("sw_interface_dump", sw_if_index=sw_if_index)]

    def interface_prefixes(self, sw_if_index: int) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        """The interface's own addresses with their prefix lengths (the subnets on it), IPv4 first."""
        return [ipaddress.ip_interface(a.prefix) for is_ip6 in (False, True)
                for a in self.conn.dump("ip_address_dump", sw_if_index=sw_if_index, is_ipv6=is_ip6)]

    def set_tag(self, sw_if_index: int, tag: str, what: str) -> None:
        self.conn.call("sw_interface_tag_add_del", is_add=True, sw_if_index=sw_if_index, tag=tag, what=what)

    def admin_up(self, sw_if_index: int, what: str = "") -> None:
        self.conn.call("sw_interface_set_flags", sw_if_index=sw_if_index, flags=ADMIN_UP,
                       what=what or f"interface {sw_if_index} up")

    def rx_modes(self) -> dict[int, list[int]]:
        """Every interface with receive queues: the rx-mode of each queue (RX_MODE_API_*)."""
        out: dict[int, list[int]] = {}
        for d in self.conn.dump("sw_interface_rx_placement_dump", sw_if_index=NO_INDEX):
            out.setdefault(int(d.sw_if_index), []).append(int(d.mode))
        return out

    def set_rx_interrupt(self, sw_if_index: int, what: str = "") -> None:
        """All the interface's receive queues in interrupt mode (VPP then sleeps while they are idle)."""
        self.conn.call("sw_interface_set_rx_mode", sw_if_index=sw_if_index, queue_id_valid=False, queue_id=0,
                       mode=RX_MODE_INTERRUPT, what=what or f"interrupt rx-mode on interface {sw_if_index}")

    def create_loopback(self, what: str) -> int:
        return int(self.conn.call("create_loopback", mac_address=ZERO_MAC, what=what).sw_if_index)

    def add_address(self, sw_if_index: int, prefix: str, what: str) -> None:
        self.conn.call("sw_interface_add_del_address", sw_if_index=sw_if_index, is_add=True, del_all=False,
                       prefix=prefix, what=what)

    def set_unnumbered(self, sw_if_index: int, to: int, *, add: bool) -> None:
        """`sw_if_index` borrows `to`'s address (add), or stops borrowing it."""
        what = (f"interface {sw_if_index} unnumbered to the pod gateway" if add
                else f"interface {sw_if_index} numbered again")
        self.conn.call("sw_interface_set_unnumbered", sw_if_index=to, unnumbered_sw_if_index=sw_if_index,
                       is_add=add, what=what)

    def ip6_enable(self, sw_if_index: int, *, enable: bool) -> None:
        """IPv6 on or off; already so is fine (VALUE_EXIST / IP6_NOT_ENABLED). VPP counts enables."""
        accept = (0, ApiError.VALUE_EXIST) if enable else (0, ApiError.IP6_NOT_ENABLED)
        what = f"IPv6 on interface {sw_if_index}" if enable else f"IPv6 off on interface {sw_if_index}"
        self.conn.call("sw_interface_ip6_enable_disable", accept=accept, sw_if_index=sw_if_index, enable=enable,
                       what=what)

    def neighbor_add(self, sw_if_index: int, ip: IPAddress, mac: str, what: str) -> None:
        """A static neighbour."""
        self.conn.call("ip_neighbor_add_del", is_add=True, neighbor=_neighbor(sw_if_index, ip, mac), what=what)

    def neighbor_del(self, sw_if_index: int, ip: IPAddress, mac: str) -> None:
        """Gone already is fine (NO_SUCH_ENTRY)."""
        self.conn.call("ip_neighbor_add_del", accept=(0, ApiError.NO_SUCH_ENTRY), is_add=False,
                       neighbor=_neighbor(sw_if_index, ip, mac or ZERO_MAC),
                       what=f"neighbour {ip} on {sw_if_index}")

    # -- pod interfaces ---------------------------------------------------------------------------
    def tap_create(self, *, netns: str, ifname: str, mac: str, mtu: int, tag: str, what: str) -> int:
        """A tap whose host side VPP creates as `ifname` in `netns` (needs /dev/vhost-net)."""
        reply = self.conn.call(
            "tap_create_v3", id=NO_INDEX, use_random_mac=False, mac_address=mac,
            num_rx_queues=1, num_tx_queues=0, tx_ring_sz=256, rx_ring_sz=256,
            host_mtu_set=bool(mtu), host_mtu_size=mtu, host_namespace_set=True,
            host_namespace=netns, host_if_name_set=True, host_if_name=ifname,
            tag=tag, tap_flags=0, what=what)
        return int(reply.sw_if_index)

    def tap_delete(self, sw_if_index: int) -> None:
        self.conn.call("tap_delete_v2", sw_if_index=sw_if_index, what=f"tap {sw_if_index}")

    def taps(self) -> list[TapDetails]:
        return [TapDetails(int(t.sw_if_index), str(t.host_namespace), str(t.host_if_name))
                for t in self.conn.dump("sw_interface_tap_v2_dump", sw_if_index=NO_INDEX)]

    def af_packet_create(self, host_ifname: str, mac: str, what: str) -> int:
        """af_packet on a host interface; one that already exists (IF_ALREADY_EXISTS) is returned."""
        reply = self.conn.call(
            "af_packet_create_v3", accept=(0, ApiError.IF_ALREADY_EXISTS), mode=AF_PACKET_MODE_ETHERNET,
            hw_addr=mac, use_random_hw_addr=False, host_if_name=host_ifname,
            rx_frame_size=0, tx_frame_size=0, rx_frames_per_block=0, tx_frames_per_block=0,
            flags=AF_PACKET_FLAGS, num_rx_queues=1, num_tx_queues=1, what=what)
        return int(reply.sw_if_index)

    def af_packet_delete(self, host_ifname: str) -> None:
        self.conn.call("af_packet_delete", host_if_name=host_ifname, what=f"af_packet {host_ifname}")

    def af_packets(self) -> list[AfPacketDetails]:
        return [AfPacketDetails(int(d.sw_if_index), str(d.host_if_name)) for d in self.conn.dump("af_packet_dump")]

    # -- FIB --------------------------------------------------------------------------------------
    def routes(self) -> dict[IPNetwork, RouteTarget]:
        """Table 0's API-made single-path routes through an interface or via a next hop (VPP's
        own drop/local/receive routes, multi-path routes and entries of other FIB sources, such
        as a neighbour's adjacency entry that `ip_route_dump` shows like a route, are left out)."""
        out: dict[IPNetwork, RouteTarget] = {}
        for is_ip6 in (False, True):
            for details in self.conn.dump("ip_route_v2_dump", src=FIB_SOURCE_API,
                                          table={"table_id": 0, "is_ip6": is_ip6}):
                parsed = _route_from_details(details.route)
                if parsed is not None:
                    out[parsed[0]] = parsed[1]
        return out

    def route_add(self, prefix: IPNetwork, target: RouteTarget) -> None:
        """Add, or replace the path of, a table-0 route."""
        self.conn.call("ip_route_add_del", is_add=True, is_multipath=False, route=_route_fields(prefix, target),
                       what=f"route {prefix} {target}")

    def route_del(self, prefix: IPNetwork) -> None:
        self.conn.call("ip_route_add_del", is_add=False, is_multipath=False, route=_route_fields(prefix, None),
                       what=f"route {prefix}")

    def routes_write(self, changes: Sequence[tuple[IPNetwork, RouteTarget | None]]) -> list[ApiRefused | None]:
        """`route_add` (a target) or `route_del` (None) for each, pipelined, in order; per item None
        (done) or its refusal."""
        return _outcomes(self.conn.pipeline([ApiRequest(
            "ip_route_add_del", {"is_add": target is not None, "is_multipath": False,
                                 "route": _route_fields(prefix, target)},
            what=f"route {prefix} {target}" if target is not None else f"route {prefix}")
            for prefix, target in changes]))

    # -- classifier -------------------------------------------------------------------------------
    def classify_table_ids(self) -> list[int]:
        return [int(i) for i in self.conn.call("classify_table_ids").ids]

    def classify_table_info(self, index: int, what: str = "") -> ClassifyTableInfo:
        info = self.conn.call("classify_table_info", table_id=index, what=what or f"classifier table {index}")
        return _table_info(index, info)

    def classify_table_info_if_present(self, index: int) -> ClassifyTableInfo | None:
        """None when the table is gone (CLASSIFY_TABLE_NOT_FOUND). Ask only about an index
        `classify_table_ids` listed (a table deleted since is the case this covers): VPP's reply for a
        missing table leaves mask_length uninitialized (26.06), and vpp_papi cannot decode it when
        that memory is not zero (seen after guard sessions had used it)."""
        info = self.conn.call("classify_table_info", table_id=index, accept=(0, ApiError.CLASSIFY_TABLE_NOT_FOUND),
                              what=f"classifier table {index}")
        return _table_info(index, info) if int(info.retval) == 0 else None

    def classify_table_infos_if_present(self, indexes: Sequence[int]) -> list[ClassifyTableInfo | None]:
        """`classify_table_info_if_present` of each, pipelined, in order (the same caveat: ask only
        about indexes `classify_table_ids` listed); ApiRefused for any other refusal."""
        results = self.conn.pipeline([ApiRequest("classify_table_info", {"table_id": i},
                                                 accept=(0, ApiError.CLASSIFY_TABLE_NOT_FOUND),
                                                 what=f"classifier table {i}") for i in indexes])
        out: list[ClassifyTableInfo | None] = []
        for index, info in zip(indexes, results, strict=True):
            if isinstance(info, ApiRefused):
                raise info
            out.append(_table_info(index, info) if int(info.retval) == 0 else None)
        return out

    def classify_sessions_of(self, indexes: Sequence[int]) -> list[list[ClassifySession]]:
        """`classify_sessions` of each table, the dumps pipelined, in order."""
        return [[_session(s) for s in details] for details in self.conn.pipeline(
            [ApiRequest("classify_session_dump", {"table_id": i}) for i in indexes])]

    def classify_sessions(self, index: int) -> list[ClassifySession]:
        """A session keeps its next index in 16 bits: the ~0 we set reads back as 0xffff."""
        return [_session(s) for s in self.conn.dump("classify_session_dump", table_id=index)]

    def classify_table_add(self, *, mask: bytes, next_table: int, miss_next: int, nbuckets: int, memory_size: int,
                           index: int = NO_INDEX, what: str = "classifier table") -> int:
        """A new table matching from the IP header (index NO_INDEX), or an existing one re-pointed
        (its index: only next_table and miss_next change); returns the table's index."""
        reply = self.conn.call("classify_add_del_table", **_table_fields(
            ClassifyTableAdd(mask, next_table, miss_next, nbuckets, memory_size), index), what=what)
        return int(reply.new_table_index)

    def classify_tables_add(self, tables: Sequence[ClassifyTableAdd]) -> list[int | ApiRefused]:
        """New tables, pipelined, in order (none may name another of the same batch); per item its
        index or its refusal."""
        results = self.conn.pipeline([ApiRequest("classify_add_del_table", _table_fields(t, NO_INDEX), what=t.what)
                                      for t in tables])
        return [r if isinstance(r, ApiRefused) else int(r.new_table_index) for r in results]

    def classify_table_del(self, index: int) -> None:
        """Gone already is fine (NO_SUCH_TABLE). VPP checks the mask's length against
        match_n_vectors (> 0) before it looks at is_add, so a delete carries a one-vector mask."""
        self.conn.call("classify_add_del_table", accept=(0, ApiError.NO_SUCH_TABLE), is_add=False, del_chain=False,
                       table_index=index, match_n_vectors=1, mask_len=16, mask=bytes(16),
                       what=f"classifier table {index}")

    def classify_session(self, table: int, match: bytes, hit_next: int, opaque: int, *, add: bool) -> None:
        self.conn.call("classify_add_del_session", **_session_fields(table, match, hit_next, opaque, add=add),
                       what=f"classifier session in table {table}")

    def classify_sessions_write(self, sessions: Sequence[SessionWrite]) -> list[ApiRefused | None]:
        """`classify_session` for each, pipelined, in order; per item None (done) or its refusal."""
        return _outcomes(self.conn.pipeline([ApiRequest(
            "classify_add_del_session", _session_fields(s.table, s.match, s.hit_next, s.opaque, add=s.add),
            what=f"classifier session in table {s.table}") for s in sessions]))

    def output_table(self, sw_if_index: int, family: int, table: int, *, add: bool, what: str,
                     not_attached_ok: bool = False) -> bool:
        """Attach (add) or detach a classifier table as the interface's output ACL for one family.
        With `not_attached_ok`, a detach naming a table not attached there (NO_SUCH_TABLE) returns
        False instead of raising; True when VPP did it."""
        return self._classify_acl("output_acl_set_interface", sw_if_index, family, table, add=add, what=what,
                                  not_attached_ok=not_attached_ok)

    def input_table(self, sw_if_index: int, family: int, table: int, *, add: bool, what: str,
                    not_attached_ok: bool = False) -> bool:
        """Attach (add) or detach a classifier table as the interface's input ACL for one family
        (as `output_table`: an add while a table is attached answers 0 and changes nothing)."""
        return self._classify_acl("input_acl_set_interface", sw_if_index, family, table, add=add, what=what,
                                  not_attached_ok=not_attached_ok)

    def _classify_acl(self, message: str, sw_if_index: int, family: int, table: int, *, add: bool, what: str,
                      not_attached_ok: bool) -> bool:
        accept = (0, ApiError.NO_SUCH_TABLE) if not_attached_ok else (0,)
        reply = self.conn.call(message, accept=accept, **_classify_acl_fields(sw_if_index, family, table, add=add),
                               what=what)
        return int(reply.retval) == 0

    def input_tables_write(self, items: Sequence[InterfaceTable]) -> list[ApiRefused | None]:
        """`input_table` for each (a detach naming a table not attached there is refused), pipelined,
        in order; per item None (done) or its refusal."""
        return _outcomes(self.conn.pipeline([ApiRequest(
            "input_acl_set_interface", _classify_acl_fields(i.sw_if_index, i.family, i.table, add=i.add),
            what=i.what or f"input classifier {i.table} on interface {i.sw_if_index}") for i in items]))

    def input_tables_of(self, sw_if_indexes: Sequence[int]) -> list[dict[int, int] | ApiRefused]:
        """`input_tables` of each interface, pipelined, in order (its refusal where VPP refused)."""
        results = self.conn.pipeline([ApiRequest("classify_table_by_interface", {"sw_if_index": i},
                                                 what=f"input classifier of interface {i}") for i in sw_if_indexes])
        return [r if isinstance(r, ApiRefused) else {4: int(r.ip4_table_id), 6: int(r.ip6_table_id)}
                for r in results]

    def input_tables(self, sw_if_index: int) -> dict[int, int]:
        """The classifier table VPP records as the interface's input ACL, per family (NO_INDEX: none).
        VPP keeps this record when an interface is deleted: a later interface with the same index
        inherits it while its feature is off (docs/vpp-driver.md, "Source guard")."""
        reply = self.conn.call("classify_table_by_interface", sw_if_index=sw_if_index,
                               what=f"input classifier of interface {sw_if_index}")
        return {4: int(reply.ip4_table_id), 6: int(reply.ip6_table_id)}


    # -- cnat (Services) --------------------------------------------------------------------------
    def cnat_translations(self) -> list[CnatDetails]:
        """Every translation with an address VIP (interface VIPs are left out: the driver makes none)."""
        out = []
        for d in self.conn.dump("cnat_translation_dump"):
            t = d.translation
            if int(t.vip.sw_if_index) != NO_INDEX:
                continue
            backends = tuple(CnatBackend(ipaddress.ip_address(p.dst_ep.addr), int(p.dst_ep.port))
                             for p in t.paths[:int(t.n_paths)])
            out.append(CnatDetails(int(t.id), CnatTranslation(
                ipaddress.ip_address(t.vip.addr), int(t.vip.port), int(t.ip_proto), backends,
                affinity=int(t.lb_type) == CNAT_LB_MAGLEV)))
        return out

    def cnat_translation_update(self, translation: CnatTranslation, what: str = "") -> int:
        """Create, or replace the paths of, the translation of its VIP:port/protocol; returns its id.
        VPP keeps the load-balancing type and flow hash of an existing one (they are set at creation)."""
        zero = "::" if translation.vip.version == 6 else "0.0.0.0"
        paths = [{"dst_ep": _cnat_endpoint(str(b.ip), b.port), "src_ep": _cnat_endpoint(zero, 0), "flags": 0}
                 for b in translation.backends]
        reply = self.conn.call("cnat_translation_update", translation={
            "vip": _cnat_endpoint(str(translation.vip), translation.port), "id": 0, "ip_proto": translation.proto,
            "is_real_ip": int(translation.real_ip), "flags": 0,
            "lb_type": CNAT_LB_MAGLEV if translation.affinity else CNAT_LB_DEFAULT, "n_paths": len(paths),
            "flow_hash_config": FLOW_HASH_SRC_IP if translation.affinity else FLOW_HASH_DEFAULT, "paths": paths,
        }, what=what or f"cnat translation {translation.text()}")
        return int(reply.id)

    def cnat_translation_del(self, translation_id: int, what: str = "") -> None:
        """Gone already is fine (NO_SUCH_ENTRY)."""
        self.conn.call("cnat_translation_del", accept=(0, ApiError.NO_SUCH_ENTRY), id=translation_id,
                       what=what or f"cnat translation {translation_id}")


    def cnat_feature(self, sw_if_index: int, what: str = "") -> None:
        """cnat's translation and source NAT on the interface's input and output (VPP counts enables)."""
        self.conn.call("feature_cnat_enable_disable", sw_if_index=sw_if_index, enable_disable=True,
                       what=what or f"cnat on interface {sw_if_index}")

    def cnat_snat_k8s(self, ip4: str, ip6: str) -> None:
        """Source NAT by cnat's Kubernetes policy, to these addresses."""
        self.conn.call("cnat_set_snat_addresses", snat_ip4=ip4, snat_ip6=ip6, sw_if_index=NO_INDEX,
                       what=f"cnat source NAT addresses {ip4}, {ip6}")
        self.conn.call("cnat_set_snat_policy", policy=CNAT_POLICY_K8S, what="cnat source NAT policy k8s")

    def cnat_snat_pod_interface(self, sw_if_index: int) -> None:
        self.conn.call("cnat_snat_policy_add_del_if", sw_if_index=sw_if_index, is_add=1, table=CNAT_POLICY_POD,
                       what=f"interface {sw_if_index} as a pod's for cnat source NAT")

    def cnat_snat_addresses(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv6Address] | None:
        """cnat's source-NAT addresses (zero where a family has none), or None when none are set
        (FEATURE_DISABLED: cnat has no source-NAT entry)."""
        reply = self.conn.call("cnat_get_snat_addresses", accept=(0, ApiError.FEATURE_DISABLED),
                               what="cnat source NAT addresses")
        if int(reply.retval) != 0:
            return None
        return ipaddress.IPv4Address(reply.snat_ip4), ipaddress.IPv6Address(reply.snat_ip6)

    def cnat_snat_release(self) -> None:
        """Delete cnat's source-NAT entry (all zero): cnat frees the FIB entries of its addresses and
        forgets its policy and interface tables (set again after). None set is fine (FEATURE_DISABLED)."""
        self.conn.call("cnat_set_snat_addresses", accept=(0, ApiError.FEATURE_DISABLED), snat_ip4="0.0.0.0",
                       snat_ip6="::", sw_if_index=NO_INDEX, what="cnat source NAT addresses released")

    # -- proxy ARP / ND (the Services' source-NAT address) ----------------------------------------
    def proxy_arp_ranges(self) -> list[tuple[int, ipaddress.IPv4Address, ipaddress.IPv4Address]]:
        """Every proxy ARP range: (table id, low, high)."""
        return [(int(d.proxy.table_id), ipaddress.IPv4Address(d.proxy.low), ipaddress.IPv4Address(d.proxy.hi))
                for d in self.conn.dump("proxy_arp_dump")]

    def proxy_arp_range(self, address: ipaddress.IPv4Address, *, add: bool) -> None:
        """A single-address range in table 0; gone already is fine (NO_SUCH_ENTRY)."""
        self.conn.call("proxy_arp_add_del", accept=(0,) if add else (0, ApiError.NO_SUCH_ENTRY), is_add=add,
                       proxy={"table_id": 0, "low": str(address), "hi": str(address)},
                       what=f"proxy ARP for {address}" + ("" if add else " removed"))

    def proxy_arp_interfaces(self) -> set[int]:
        return {int(d.sw_if_index) for d in self.conn.dump("proxy_arp_intfc_dump")}

    def proxy_arp_interface(self, sw_if_index: int, *, enable: bool) -> None:
        self.conn.call("proxy_arp_intfc_enable_disable", sw_if_index=sw_if_index, enable=enable,
                       what=f"proxy ARP {'on' if enable else 'off'} on interface {sw_if_index}")

    def nd_proxy(self, sw_if_index: int, address: ipaddress.IPv6Address, *, add: bool) -> None:
        """Add or delete (both idempotent in VPP). No read-back: VPP's `ip6nd_proxy_dump` sends its
        details under a wrong message id (services/proxy.py)."""
        self.conn.call("ip6nd_proxy_add_del", sw_if_index=sw_if_index, is_add=add, ip=str(address),
                       what=f"ND proxy for {address} on interface {sw_if_index}" + ("" if add else " removed"))


def _outcomes(results: list[Any]) -> list[ApiRefused | None]:
    return [r if isinstance(r, ApiRefused) else None for r in results]


def _table_fields(table: ClassifyTableAdd, index: int) -> dict[str, Any]:
    return {"is_add": True, "del_chain": False, "table_index": index, "nbuckets": table.nbuckets,
            "memory_size": table.memory_size, "skip_n_vectors": 0, "match_n_vectors": len(table.mask) // 16,
            "next_table_index": table.next_table, "miss_next_index": table.miss_next, "current_data_flag": 1,
            "current_data_offset": 0, "mask_len": len(table.mask), "mask": table.mask}


def _classify_acl_fields(sw_if_index: int, family: int, table: int, *, add: bool) -> dict[str, Any]:
    return {"sw_if_index": sw_if_index, "ip4_table_index": table if family == 4 else NO_INDEX,
            "ip6_table_index": table if family == 6 else NO_INDEX, "l2_table_index": NO_INDEX, "is_add": add}


def _session_fields(table: int, match: bytes, hit_next: int, opaque: int, *, add: bool) -> dict[str, Any]:
    return {"is_add": add, "table_index": table, "hit_next_index": hit_next, "opaque_index": opaque, "advance": 0,
            "action": 0, "metadata": 0, "match_len": len(match), "match": match}


def _cnat_endpoint(address: str, port: int) -> dict[str, Any]:
    return {"addr": address, "sw_if_index": NO_INDEX, "if_af": 1 if ":" in address else 0, "port": port}


def _table_info(index: int, info: Any) -> ClassifyTableInfo:
    return ClassifyTableInfo(index, bytes(info.mask), int(info.next_table_index), int(info.miss_next_index),
                             int(info.nbuckets))


def _acl_fields(index: int, tag: str, content: AclContent) -> dict[str, Any]:
    return {"acl_index": index, "tag": tag, "count": len(content), "r": [_rule_fields(r) for r in content.rules]}


def _acl_list_fields(sw_if_index: int, acl_in: int | None, acl_out: int | None) -> dict[str, Any]:
    acls = [a for a in (acl_in, acl_out) if a is not None]
    return {"sw_if_index": sw_if_index, "count": len(acls), "n_input": 0 if acl_in is None else 1, "acls": acls}


def _rule_fields(rule: AclRule) -> dict[str, Any]:
    # Prefixes as text: vpp_papi packs strings faster than ipaddress objects.
    return {"is_permit": rule.action, "src_prefix": str(rule.src), "dst_prefix": str(rule.dst),
            "proto": rule.proto, "srcport_or_icmptype_first": rule.sport[0],
            "srcport_or_icmptype_last": rule.sport[1], "dstport_or_icmpcode_first": rule.dport[0],
            "dstport_or_icmpcode_last": rule.dport[1], "tcp_flags_mask": rule.tcp_flags_mask,
            "tcp_flags_value": rule.tcp_flags_value}


def _rule_from_details(rule: Any) -> AclRule:
    """One `vl_api_acl_rule_t` from acl_details (prefixes come back as ipaddress networks)."""
    return AclRule(int(rule.is_permit), ipaddress.ip_network(rule.src_prefix),
                   ipaddress.ip_network(rule.dst_prefix), int(rule.proto),
                   (int(rule.srcport_or_icmptype_first), int(rule.srcport_or_icmptype_last)),
                   (int(rule.dstport_or_icmpcode_first), int(rule.dstport_or_icmpcode_last)),
                   int(rule.tcp_flags_mask), int(rule.tcp_flags_value))


def _session(details: Any) -> ClassifySession:
    return ClassifySession(bytes(details.match), _session_next(int(details.hit_next_index)), int(details.opaque_index))


def _session_next(hit_next_index: int) -> int:
    return NO_INDEX if hit_next_index == SESSION_NO_NEXT else hit_next_index


def _route_fields(prefix: IPNetwork, target: RouteTarget | None) -> dict[str, Any]:
    """`vl_api_ip_route_t` for table 0; no target = delete the prefix."""
    route: dict[str, Any] = {"table_id": 0, "prefix": str(prefix), "n_paths": 0, "paths": []}
    if target is not None:
        family = "ip6" if prefix.version == 6 else "ip4"
        next_hop = str(target.next_hop) if target.next_hop is not None else ("::" if family == "ip6" else "0.0.0.0")
        route["n_paths"] = 1
        route["paths"] = [{
            "sw_if_index": NO_INDEX if target.sw_if_index is None else target.sw_if_index,
            "table_id": 0, "weight": 1, "preference": 0, "type": FIB_PATH_TYPE_NORMAL, "flags": 0,
            "proto": 1 if prefix.version == 6 else 0, "nh": {"address": {family: next_hop}},
            "n_labels": 0, "label_stack": [{}] * 16,  # vpp_papi needs the fixed array spelled out
        }]
    return route


def _route_from_details(route: Any) -> tuple[IPNetwork, RouteTarget] | None:
    if route.n_paths != 1:
        return None
    path = route.paths[0]
    prefix = ipaddress.ip_network(route.prefix)
    if int(path.type) != FIB_PATH_TYPE_NORMAL:  # drop/local/receive are VPP's own
        return None
    family_nh = path.nh.address.ip6 if prefix.version == 6 else path.nh.address.ip4
    next_hop = ipaddress.ip_address(family_nh)
    # A host route through an interface reads back with the prefix itself as next hop (VPP makes it
    # an attached host route); it is the route the driver programmed with next hop 0.
    attached_host = prefix.prefixlen == prefix.max_prefixlen and next_hop == prefix.network_address
    if int(path.sw_if_index) != NO_INDEX and (int(next_hop) == 0 or attached_host):
        return prefix, RouteTarget(sw_if_index=int(path.sw_if_index))
    if int(path.sw_if_index) == NO_INDEX and int(next_hop) != 0:
        return prefix, RouteTarget(next_hop=next_hop)
    return None


def _neighbor(sw_if_index: int, ip: IPAddress, mac: str) -> dict[str, object]:
    return {"sw_if_index": sw_if_index, "flags": IP_NEIGHBOR_FLAG_STATIC, "mac_address": mac, "ip_address": str(ip)}
