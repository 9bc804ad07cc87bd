"""Interfaces: local0, loopbacks, taps, af_packet and memif interfaces, their flags, tags and addresses.

Semantics follow VPP 25.10's ``vnet/interface_api.c``, ``vnet/ip/ip4_forward.c``,
``vnet/devices/tap/tap.c`` (tapv2) and ``plugins/af_packet/af_packet.c``, checked against a
running 26.06 (tests/vppsim fidelity); the numbers of every refusal are in
:mod:`vppagent.drivers.vpp.api.errors`. One module past ~400 lines on purpose: every interface kind
shares the one interface table, its flags, tags and addresses, and splitting by kind would spread
those rules over several files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from vppagent.drivers.vpp.api.errors import NO_INDEX, OK, ApiError
from vppagent.vppsim.addresses import InvalidPrefix, IPInterface, decode_interface_prefix, encode_prefix
from vppagent.vppsim.handlers import Handler, Reply, Request, retval_reply
from vppagent.vppsim.pool import Pool, lowest_free

IF_STATUS_API_FLAG_ADMIN_UP = 1
IF_STATUS_API_FLAG_LINK_UP = 2
TAP_API_FLAG_GSO = 1


class InterfaceKind(Enum):
    LOCAL = "local"
    LOOPBACK = "Loopback"
    TAP = "virtio"
    AF_PACKET = "af-packet"  # interface_dev_type as VPP 26.06 reports it
    MEMIF = "memif"


@dataclass
class Interface:
    sw_if_index: int
    name: str
    kind: InterfaceKind
    mac: bytes
    admin_up: bool = False
    tag: str = ""
    ip4_table_id: int = 0
    ip6_table_id: int = 0
    addresses: list[IPInterface] = field(default_factory=list)
    instance: int = 0  # loopback instance, tap id, memif id
    host_if_name: str = ""
    host_namespace: str = ""
    host_bridge: str = ""
    tap_flags: int = 0
    host_mtu: int = 0
    memif_socket_id: int = 0
    memif_role: int = 0
    memif_zero_copy: bool = False

    @property
    def link_up(self) -> bool:
        # local0 has no carrier; an af_packet interface has its carrier from creation (VPP 26.06 reports
        # LINK_UP while admin down); the other virtual devices come up with their admin state.
        if self.kind is InterfaceKind.AF_PACKET:
            return True
        return self.kind is not InterfaceKind.LOCAL and self.admin_up

    @property
    def flags(self) -> int:
        return (IF_STATUS_API_FLAG_ADMIN_UP if self.admin_up else 0) | (
            IF_STATUS_API_FLAG_LINK_UP if self.link_up else 0)

    def table_id(self, ip6: bool) -> int:
        return self.ip6_table_id if ip6 else self.ip4_table_id


InterfaceEventSink = Callable[[Interface, bool], None]
InterfaceDeletedHook = Callable[[int], None]


class InterfaceTable:
    """The ``sw_interfaces`` pool plus the per-type bookkeeping of the device plugins."""

    def __init__(self, *, vhost_net_available: Callable[[], bool],
                 ip_table_exists: Callable[[bool, int], bool] = lambda is_ip6, table_id: True) -> None:
        self.pool: Pool[Interface] = Pool()
        self._ip_table_exists = ip_table_exists
        self._vhost_net_available = vhost_net_available
        self._deleted_hooks: list[InterfaceDeletedHook] = []
        self._event_sinks: list[InterfaceEventSink] = []
        self._mac_counter = 0
        self.memif_sockets: dict[int, str] = {0: "/run/vpp/memif.sock"}
        self._memif_seed = 0
        self._create(InterfaceKind.LOCAL, "local0", mac=bytes(6))

    # -- wiring -----------------------------------------------------------------------------------
    def on_deleted(self, hook: InterfaceDeletedHook) -> None:
        self._deleted_hooks.append(hook)

    def on_event(self, sink: InterfaceEventSink) -> None:
        self._event_sinks.append(sink)

    def get(self, sw_if_index: int) -> Interface | None:
        return self.pool.get(sw_if_index)

    def exists(self, sw_if_index: int) -> bool:
        return sw_if_index in self.pool

    def all(self) -> list[Interface]:
        return [interface for _, interface in self.pool.items()]

    def by_name(self, name: str) -> Interface | None:
        return next((i for i in self.all() if i.name == name), None)

    # -- lifecycle --------------------------------------------------------------------------------
    def _next_mac(self) -> bytes:
        # Locally administered unicast MACs, like VPP's random ones but reproducible.
        self._mac_counter += 1
        return bytes([0x02, 0xFE]) + self._mac_counter.to_bytes(4, "big")

    def _create(self, kind: InterfaceKind, name: str, *, mac: bytes | None = None, **extra: object) -> Interface:
        sw_if_index = self.pool.add_at_next()
        interface = Interface(sw_if_index, name, kind, mac if mac else self._next_mac())
        for key, value in extra.items():
            setattr(interface, key, value)
        self.pool.add(interface)
        return interface

    def delete(self, sw_if_index: int) -> None:
        interface = self.pool.remove(sw_if_index)
        for hook in self._deleted_hooks:
            hook(sw_if_index)
        for sink in self._event_sinks:
            sink(interface, True)

    def _instances(self, kind: InterfaceKind) -> set[int]:
        return {i.instance for i in self.all() if i.kind is kind}

    # -- message handlers -------------------------------------------------------------------------
    def handlers(self) -> dict[str, Handler]:
        return {
            "sw_interface_dump": self.sw_interface_dump,
            "sw_interface_set_flags": self.sw_interface_set_flags,
            "sw_interface_tag_add_del": self.sw_interface_tag_add_del,
            "sw_interface_add_del_address": self.sw_interface_add_del_address,
            "sw_interface_set_table": self.sw_interface_set_table,
            "ip_address_dump": self.ip_address_dump,
            "create_loopback": self.create_loopback,
            "create_loopback_instance": self.create_loopback_instance,
            "delete_loopback": self.delete_loopback,
            "tap_create_v3": self.tap_create_v3,
            "tap_delete_v2": self.tap_delete_v2,
            "sw_interface_tap_v2_dump": self.sw_interface_tap_v2_dump,
            "af_packet_create_v3": self.af_packet_create_v3,
            "af_packet_delete": self.af_packet_delete,
            "af_packet_dump": self.af_packet_dump,
            "memif_socket_filename_add_del_v2": self.memif_socket_filename_add_del_v2,
            "memif_create": self.memif_create,
            "memif_delete": self.memif_delete,
            "memif_dump": self.memif_dump,
        }

    def sw_interface_dump(self, request: Request) -> list[Reply]:
        wanted = request.fields["sw_if_index"]
        name_filter = request.fields["name_filter"] if request.fields["name_filter_valid"] else None
        details: list[Reply] = []
        for interface in self.all():
            if wanted != NO_INDEX and interface.sw_if_index != wanted:
                continue
            if name_filter is not None and name_filter not in interface.name:
                continue
            details.append(("sw_interface_details", {
                "sw_if_index": interface.sw_if_index,
                "sup_sw_if_index": interface.sw_if_index,
                "l2_address": interface.mac,
                "flags": interface.flags,
                "link_duplex": 0,
                "link_mtu": 0 if interface.kind is InterfaceKind.LOCAL else 9000,
                "mtu": [0, 0, 0, 0] if interface.kind is InterfaceKind.LOCAL else [9000, 0, 0, 0],
                "interface_name": interface.name,
                "interface_dev_type": interface.kind.value,
                "tag": interface.tag,
            }))
        return details

    def sw_interface_set_flags(self, request: Request) -> list[Reply]:
        interface = self.get(request.fields["sw_if_index"])
        if interface is None:
            return retval_reply("sw_interface_set_flags_reply", ApiError.INVALID_SW_IF_INDEX)
        admin_up = bool(request.fields["flags"] & IF_STATUS_API_FLAG_ADMIN_UP)
        if admin_up != interface.admin_up:
            interface.admin_up = admin_up
            for sink in self._event_sinks:
                sink(interface, False)
        return retval_reply("sw_interface_set_flags_reply", OK)

    def sw_interface_tag_add_del(self, request: Request) -> list[Reply]:
        interface = self.get(request.fields["sw_if_index"])
        if interface is None:
            return retval_reply("sw_interface_tag_add_del_reply", ApiError.INVALID_SW_IF_INDEX)
        interface.tag = request.fields["tag"] if request.fields["is_add"] else ""
        return retval_reply("sw_interface_tag_add_del_reply", OK)

    def sw_interface_add_del_address(self, request: Request) -> list[Reply]:
        name = "sw_interface_add_del_address_reply"
        interface = self.get(request.fields["sw_if_index"])
        if interface is None:
            return retval_reply(name, ApiError.INVALID_SW_IF_INDEX)
        if request.fields["del_all"]:
            interface.addresses.clear()
            return retval_reply(name, OK)
        try:
            address = decode_interface_prefix(request.fields["prefix"])
        except InvalidPrefix:
            return retval_reply(name, ApiError.INVALID_VALUE)
        if not request.fields["is_add"]:
            if address not in interface.addresses:
                return retval_reply(name, ApiError.ADDRESS_NOT_FOUND_FOR_INTERFACE)
            interface.addresses.remove(address)
            return retval_reply(name, OK)
        conflict = self._conflicting_address(interface, address)
        if conflict is not None:
            # ip4_add_del_interface_address_internal / ip6_…: any overlap within the FIB, including the
            # same address again, except further addresses of the same length on the same interface.
            return retval_reply(name, ApiError.ADDRESS_IN_USE if address.version == 4
                                else ApiError.DUPLICATE_IF_ADDRESS)
        interface.addresses.append(address)
        return retval_reply(name, OK)

    def _conflicting_address(self, interface: Interface, address: IPInterface) -> IPInterface | None:
        ip6 = address.version == 6
        for other in self.all():
            if other.table_id(ip6) != interface.table_id(ip6):
                continue
            for existing in other.addresses:
                if existing.version != address.version:
                    continue
                if not (existing.network.overlaps(address.network)):
                    continue
                same_subnet_sibling = (other is interface and existing.network.prefixlen
                                       == address.network.prefixlen and existing.ip != address.ip)
                if not same_subnet_sibling:
                    return existing
        return None

    def sw_interface_set_table(self, request: Request) -> list[Reply]:
        interface = self.get(request.fields["sw_if_index"])
        if interface is None:
            return retval_reply("sw_interface_set_table_reply", ApiError.INVALID_SW_IF_INDEX)
        if not self._ip_table_exists(bool(request.fields["is_ipv6"]), request.fields["vrf_id"]):
            return retval_reply("sw_interface_set_table_reply", ApiError.NO_SUCH_FIB)
        if request.fields["is_ipv6"]:
            interface.ip6_table_id = request.fields["vrf_id"]
        else:
            interface.ip4_table_id = request.fields["vrf_id"]
        return retval_reply("sw_interface_set_table_reply", OK)

    def ip_address_dump(self, request: Request) -> list[Reply]:
        interface = self.get(request.fields["sw_if_index"])
        if interface is None:
            return []
        version = 6 if request.fields["is_ipv6"] else 4
        return [("ip_address_details", {"sw_if_index": interface.sw_if_index,
                                        "prefix": encode_prefix(a.ip, a.network.prefixlen)})
                for a in interface.addresses if a.version == version]

    # loopbacks ------------------------------------------------------------------------------------
    def create_loopback(self, request: Request) -> list[Reply]:
        return self._create_loopback("create_loopback_reply", request.fields["mac_address"], None)

    def create_loopback_instance(self, request: Request) -> list[Reply]:
        wanted = request.fields["user_instance"] if request.fields["is_specified"] else None
        return self._create_loopback("create_loopback_instance_reply", request.fields["mac_address"], wanted)

    def _create_loopback(self, reply: str, mac: bytes, instance: int | None) -> list[Reply]:
        used = self._instances(InterfaceKind.LOOPBACK)
        if instance is None:
            instance = lowest_free(used)
        elif instance in used:
            return retval_reply(reply, ApiError.INVALID_REGISTRATION, sw_if_index=NO_INDEX)
        # vnet_create_loopback_interface: de:ad:00:00:00:<instance> unless a MAC is given.
        interface = self._create(InterfaceKind.LOOPBACK, f"loop{instance}",
                                 mac=mac if any(mac) else bytes([0xDE, 0xAD, 0, 0, 0, instance & 0xFF]),
                                 instance=instance)
        return retval_reply(reply, OK, sw_if_index=interface.sw_if_index)

    def delete_loopback(self, request: Request) -> list[Reply]:
        interface = self.get(request.fields["sw_if_index"])
        if interface is None or interface.kind is not InterfaceKind.LOOPBACK:
            return retval_reply("delete_loopback_reply", ApiError.INVALID_SW_IF_INDEX)
        self.delete(interface.sw_if_index)
        return retval_reply("delete_loopback_reply", OK)

    # tap (tapv2) ----------------------------------------------------------------------------------
    def tap_create_v3(self, request: Request) -> list[Reply]:
        fields = request.fields
        reply = "tap_create_v3_reply"
        used = self._instances(InterfaceKind.TAP)
        tap_id = fields["id"]
        if tap_id == NO_INDEX:
            tap_id = lowest_free(used)
        elif tap_id in used:
            return retval_reply(reply, ApiError.INVALID_INTERFACE, sw_if_index=NO_INDEX)
        if not self._vhost_net_available():
            # tap_create_if opens /dev/vhost-net first; hosts without it answer SYSCALL_ERROR_1.
            return retval_reply(reply, ApiError.SYSCALL_ERROR_1, sw_if_index=NO_INDEX)
        host_if_name = fields["host_if_name"] if fields["host_if_name_set"] else f"tap{tap_id}"
        mac = None if fields["use_random_mac"] else fields["mac_address"]
        interface = self._create(
            InterfaceKind.TAP, f"tap{tap_id}", mac=mac, instance=tap_id, host_if_name=host_if_name,
            host_namespace=fields["host_namespace"] if fields["host_namespace_set"] else "",
            host_bridge=fields["host_bridge"] if fields["host_bridge_set"] else "",
            tap_flags=fields["tap_flags"],
            host_mtu=fields["host_mtu_size"] if fields["host_mtu_set"] else 1500,
            tag=fields["tag"])
        return retval_reply(reply, OK, sw_if_index=interface.sw_if_index)

    def tap_delete_v2(self, request: Request) -> list[Reply]:
        interface = self.get(request.fields["sw_if_index"])
        if interface is None or interface.kind is not InterfaceKind.TAP:
            return retval_reply("tap_delete_v2_reply", ApiError.INVALID_SW_IF_INDEX)
        self.delete(interface.sw_if_index)
        return retval_reply("tap_delete_v2_reply", OK)

    def sw_interface_tap_v2_dump(self, request: Request) -> list[Reply]:
        wanted = request.fields["sw_if_index"]
        return [("sw_interface_tap_v2_details", {
            "sw_if_index": i.sw_if_index, "id": i.instance, "tx_ring_sz": 256, "rx_ring_sz": 256,
            "host_mtu_size": i.host_mtu, "tap_flags": i.tap_flags, "dev_name": i.name,
            "host_if_name": i.host_if_name, "host_namespace": i.host_namespace,
            "host_bridge": i.host_bridge,
        }) for i in self.all() if i.kind is InterfaceKind.TAP and wanted in (NO_INDEX, i.sw_if_index)]

    # af_packet ------------------------------------------------------------------------------------
    def af_packet_create_v3(self, request: Request) -> list[Reply]:
        host_if_name = request.fields["host_if_name"]
        existing = next((i for i in self.all()
                         if i.kind is InterfaceKind.AF_PACKET and i.host_if_name == host_if_name), None)
        if existing is not None:
            # af_packet_create_if answers IF_ALREADY_EXISTS and hands back the existing index.
            return retval_reply("af_packet_create_v3_reply", ApiError.IF_ALREADY_EXISTS,
                                sw_if_index=existing.sw_if_index)
        mac = None if request.fields["use_random_hw_addr"] else request.fields["hw_addr"]
        interface = self._create(InterfaceKind.AF_PACKET, f"host-{host_if_name}", mac=mac,
                                 host_if_name=host_if_name)
        return retval_reply("af_packet_create_v3_reply", OK, sw_if_index=interface.sw_if_index)

    def af_packet_delete(self, request: Request) -> list[Reply]:
        host_if_name = request.fields["host_if_name"]
        interface = next((i for i in self.all()
                          if i.kind is InterfaceKind.AF_PACKET and i.host_if_name == host_if_name), None)
        if interface is None:
            return retval_reply("af_packet_delete_reply", ApiError.SYSCALL_ERROR_1)
        self.delete(interface.sw_if_index)
        return retval_reply("af_packet_delete_reply", OK)

    def af_packet_dump(self, request: Request) -> list[Reply]:
        return [("af_packet_details", {"sw_if_index": i.sw_if_index, "host_if_name": i.host_if_name})
                for i in self.all() if i.kind is InterfaceKind.AF_PACKET]

    # memif ------------------------------------------------------------------------------------------
    def memif_socket_filename_add_del_v2(self, request: Request) -> list[Reply]:
        # As a running 26.06 answers: id 0 is refused (-73); re-adding an id with its own filename
        # is fine, with another one -116; deleting an unknown id -73, one an interface uses -74.
        reply = "memif_socket_filename_add_del_v2_reply"
        socket_id = request.fields["socket_id"]
        filename = request.fields["socket_filename"]
        if request.fields["is_add"]:
            if socket_id == NO_INDEX:
                socket_id = self._free_memif_socket_id()
            elif socket_id == 0:
                return retval_reply(reply, ApiError.INVALID_ARGUMENT, socket_id=socket_id)
            elif socket_id in self.memif_sockets:
                same = self.memif_sockets[socket_id] == filename
                return retval_reply(reply, OK if same else ApiError.ENTRY_ALREADY_EXISTS, socket_id=socket_id)
            self.memif_sockets[socket_id] = filename
            return retval_reply(reply, OK, socket_id=socket_id)
        if socket_id not in self.memif_sockets or socket_id == 0:
            return retval_reply(reply, ApiError.INVALID_ARGUMENT, socket_id=socket_id)
        if any(i.kind is InterfaceKind.MEMIF and i.memif_socket_id == socket_id for i in self.all()):
            return retval_reply(reply, ApiError.UNEXPECTED_INTF_STATE, socket_id=socket_id)
        del self.memif_sockets[socket_id]
        return retval_reply(reply, OK, socket_id=socket_id)

    def _free_memif_socket_id(self) -> int:
        """VPP 26.06 draws a free id from random_u32 seeded with 0 (its first is 1013904223)."""
        while True:
            self._memif_seed = (1664525 * self._memif_seed + 1013904223) & 0xFFFFFFFF
            if self._memif_seed not in self.memif_sockets and self._memif_seed != NO_INDEX:
                return self._memif_seed

    def memif_create(self, request: Request) -> list[Reply]:
        fields = request.fields
        # A refusal leaves sw_if_index 0 (the reply field is never set), as a running 26.06 answers.
        if fields["socket_id"] not in self.memif_sockets:
            return retval_reply("memif_create_reply", ApiError.INVALID_ARGUMENT, sw_if_index=0)
        taken = {(i.memif_socket_id, i.instance) for i in self.all() if i.kind is InterfaceKind.MEMIF}
        if (fields["socket_id"], fields["id"]) in taken:
            return retval_reply("memif_create_reply", ApiError.SUBIF_ALREADY_EXISTS, sw_if_index=0)
        mac = fields["hw_addr"] if any(fields["hw_addr"]) else None
        interface = self._create(InterfaceKind.MEMIF, f"memif{fields['socket_id']}/{fields['id']}", mac=mac,
                                 instance=fields["id"], memif_socket_id=fields["socket_id"],
                                 memif_role=fields["role"], memif_zero_copy=not fields["no_zero_copy"])
        return retval_reply("memif_create_reply", OK, sw_if_index=interface.sw_if_index)

    def memif_delete(self, request: Request) -> list[Reply]:
        interface = self.get(request.fields["sw_if_index"])
        if interface is None or interface.kind is not InterfaceKind.MEMIF:
            return retval_reply("memif_delete_reply", ApiError.INVALID_SW_IF_INDEX)
        self.delete(interface.sw_if_index)
        return retval_reply("memif_delete_reply", OK)

    def memif_dump(self, request: Request) -> list[Reply]:
        return [("memif_details", {
            "sw_if_index": i.sw_if_index, "hw_addr": i.mac, "id": i.instance, "role": i.memif_role,
            # ring and buffer sizes are the connected run's: 1 << 0 and 0 until a peer connects
            "socket_id": i.memif_socket_id, "ring_size": 1, "buffer_size": 0, "zero_copy": i.memif_zero_copy,
            "flags": i.flags, "if_name": i.name,
        }) for i in self.all() if i.kind is InterfaceKind.MEMIF]
