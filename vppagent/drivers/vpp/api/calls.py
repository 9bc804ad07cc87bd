"""Typed VPP calls: one method per request the driver sends, one request each (as ligato's `vppcalls`).

Every request the driver sends is a method here, or in batches.py where many of one kind go as one
pipeline (`VppCalls.batches`); each takes and returns typed values (types.py), so callers never build
a field dict or parse a reply. The `api/` package is the only one that names VPP message fields:
here and in batches.py, with the field layouts and reply readings both use in fields.py. A refusal
is `ApiRefused` (retval not accepted), a broken connection `VppConnectionLost`, both from
connection.py. Where VPP answers a harmless retval for "already so" (an index that is gone, IPv6
already on), the method says which and accepts it, so the callers' intent ("make it so") reads as
one call.
"""

from __future__ import annotations

import ipaddress

from vppagent.drivers.vpp.api.batches import VppBatches
from vppagent.drivers.vpp.api.connection import VppConnection
from vppagent.drivers.vpp.api.errors import NO_INDEX, ApiError
from vppagent.drivers.vpp.api.fields import (
    acl_fields,
    acl_list_fields,
    classify_acl_fields,
    cnat_from_details,
    input_tables_from,
    neighbor_fields,
    route_fields,
    route_from_details,
    rule_from_details,
    session_fields,
    session_of,
    table_del_fields,
    table_fields,
)
from vppagent.drivers.vpp.api.types import (
    AclContent,
    AclDetails,
    AfPacketDetails,
    ClassifySession,
    ClassifyTableAdd,
    CnatDetails,
    InterfaceDetails,
    RouteTarget,
    TapDetails,
)
from vppagent.policy.model import IPAddress, IPNetwork

ADMIN_UP = 1  # IF_STATUS_API_FLAG_ADMIN_UP
AF_PACKET_MODE_ETHERNET = 1
AF_PACKET_FLAGS = 3  # QDISC_BYPASS | CKSUM_GSO: with 0, TCP fails on bad checksums
# fib_source_t's FIB_SOURCE_API (a compile-time value: `show fib source` lists "[8] API" in 26.06).
# An `ip_route_v2_dump` with this `src` lists the entries whose best source is the API, so not the
# adjacency entry (source "adjacency", 15) a static or learned neighbour adds for the same /32.
FIB_SOURCE_API = 8
ZERO_MAC = "00:00:00:00:00:00"
RX_MODE_INTERRUPT = 2  # RX_MODE_API_INTERRUPT

CNAT_POLICY_K8S = 2  # cnat_snat_policies_t: Kubernetes' (hairpin, outside -> outside)


class VppCalls:
    def __init__(self, conn: VppConnection) -> None:
        self.conn = conn
        self.batches = VppBatches(conn)

    # -- ACLs -------------------------------------------------------------------------------------
    def cli(self, command: str, *, changes: bool = False) -> str:
        """One CLI command (`cli_inband`), for settings with no binary API; returns what VPP printed.
        `changes`: the command is a write (counted as one; a `show` is not)."""
        reply = self.conn.call("cli_inband", cmd=command, what=command)
        if changes:
            self.conn.writes += 1
        return str(reply.reply)

    def acl_dump(self) -> list[AclDetails]:
        return [AclDetails(int(d.acl_index), str(d.tag), AclContent.of(rule_from_details(r) for r in d.r))
                for d in self.conn.dump("acl_dump", acl_index=NO_INDEX)]

    def acl_add_replace(self, index: int, tag: str, content: AclContent) -> int:
        """Create (index NO_INDEX) or replace in place; returns the ACL's index."""
        reply = self.conn.call("acl_add_replace", **acl_fields(index, tag, content),
                               what=f"ACL {tag}, {len(content)} rules")
        return int(reply.acl_index)

    def acl_del(self, index: int) -> None:
        self.conn.call("acl_del", acl_index=index, what=f"ACL {index}")

    def interface_acls(self) -> dict[int, tuple[list[int], list[int]]]:
        """Every interface's bound ACLs: (input, output) index lists."""
        out = {}
        for d in self.conn.dump("acl_interface_list_dump", sw_if_index=NO_INDEX):
            acls = [int(a) for a in d.acls]
            out[int(d.sw_if_index)] = (acls[:d.n_input], acls[d.n_input:])
        return out

    def set_acl_list(self, sw_if_index: int, acl_in: int | None, acl_out: int | None) -> None:
        """Bind at most one ACL per direction (None: none), replacing whatever was bound."""
        self.conn.call("acl_interface_set_acl_list", **acl_list_fields(sw_if_index, acl_in, acl_out),
                       what=f"interface {sw_if_index}")

    # -- interfaces -------------------------------------------------------------------------------
    def interfaces(self, sw_if_index: int = NO_INDEX) -> list[InterfaceDetails]:
        """All interfaces, or the one given."""
        return [InterfaceDetails(int(d.sw_if_index), str(d.interface_name), str(d.tag), str(d.interface_dev_type))
                for d in self.conn.dump("sw_interface_dump", sw_if_index=sw_if_index)]

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
        self.conn.call("ip_neighbor_add_del", is_add=True, neighbor=neighbor_fields(sw_if_index, ip, mac), what=what)

    def neighbor_del(self, sw_if_index: int, ip: IPAddress, mac: str) -> None:
        """Gone already is fine (NO_SUCH_ENTRY)."""
        self.conn.call("ip_neighbor_add_del", accept=(0, ApiError.NO_SUCH_ENTRY), is_add=False,
                       neighbor=neighbor_fields(sw_if_index, ip, mac or ZERO_MAC),
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
                parsed = route_from_details(details.route)
                if parsed is not None:
                    out[parsed[0]] = parsed[1]
        return out

    def route_add(self, prefix: IPNetwork, target: RouteTarget) -> None:
        """Add, or replace the path of, a table-0 route."""
        self.conn.call("ip_route_add_del", is_add=True, is_multipath=False, route=route_fields(prefix, target),
                       what=f"route {prefix} {target}")

    def route_del(self, prefix: IPNetwork) -> None:
        self.conn.call("ip_route_add_del", is_add=False, is_multipath=False, route=route_fields(prefix, None),
                       what=f"route {prefix}")

    # -- classifier -------------------------------------------------------------------------------
    def classify_table_ids(self) -> list[int]:
        return [int(i) for i in self.conn.call("classify_table_ids").ids]

    def classify_sessions(self, index: int) -> list[ClassifySession]:
        """A session keeps its next index in 16 bits: the ~0 we set reads back as 0xffff."""
        return [session_of(s) for s in self.conn.dump("classify_session_dump", table_id=index)]

    def classify_table_add(self, *, mask: bytes, next_table: int, miss_next: int, nbuckets: int, memory_size: int,
                           index: int = NO_INDEX, what: str = "classifier table") -> int:
        """A new table matching from the IP header (index NO_INDEX), or an existing one re-pointed
        (its index: only next_table and miss_next change); returns the table's index."""
        reply = self.conn.call("classify_add_del_table", **table_fields(
            ClassifyTableAdd(mask, next_table, miss_next, nbuckets, memory_size), index), what=what)
        return int(reply.new_table_index)

    def classify_table_del(self, index: int) -> None:
        """Gone already is fine (NO_SUCH_TABLE)."""
        self.conn.call("classify_add_del_table", accept=(0, ApiError.NO_SUCH_TABLE), **table_del_fields(index),
                       what=f"classifier table {index}")

    def classify_session(self, table: int, match: bytes, hit_next: int, opaque: int, *, add: bool) -> None:
        self.conn.call("classify_add_del_session", **session_fields(table, match, hit_next, opaque, add=add),
                       what=f"classifier session in table {table}")

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
        reply = self.conn.call(message, accept=accept, **classify_acl_fields(sw_if_index, family, table, add=add),
                               what=what)
        return int(reply.retval) == 0

    def input_tables(self, sw_if_index: int) -> dict[int, int]:
        """The classifier table VPP records as the interface's input ACL, per family (NO_INDEX: none).
        VPP keeps this record when an interface is deleted: a later interface with the same index
        inherits it while its feature is off (docs/vpp-driver.md, "Source guard")."""
        reply = self.conn.call("classify_table_by_interface", sw_if_index=sw_if_index,
                               what=f"input classifier of interface {sw_if_index}")
        return input_tables_from(reply)

    # -- cnat (Services) --------------------------------------------------------------------------
    def cnat_translations(self) -> list[CnatDetails]:
        """Every translation with an address VIP (interface VIPs are left out: the driver makes none)."""
        return [found for d in self.conn.dump("cnat_translation_dump")
                if (found := cnat_from_details(d.translation)) is not None]

    def cnat_snat_k8s(self, ip4: str, ip6: str) -> None:
        """Source NAT by cnat's Kubernetes policy, to these addresses."""
        self.conn.call("cnat_set_snat_addresses", snat_ip4=ip4, snat_ip6=ip6, sw_if_index=NO_INDEX,
                       what=f"cnat source NAT addresses {ip4}, {ip6}")
        self.conn.call("cnat_set_snat_policy", policy=CNAT_POLICY_K8S, what="cnat source NAT policy k8s")

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
