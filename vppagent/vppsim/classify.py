"""The vnet classifier: tables of (mask, match) sessions, chains, and in/out ACL attachment.

Semantics after VPP 25.10 ``src/vnet/classify/{classify_api.c,vnet_classify.c,in_out_acl.c}``
and ``src/vnet/ip/ip_in_out_acl.c``: a lookup masks the packet bytes starting at
``skip_n_vectors * 16`` from the table's origin and looks the result up exactly.  The origin
(``ip_in_out_acl_inline``): with ``current_data_flag`` 0 the buffer's data (``b->data``: the
Ethernet header of a received frame), with 1 (CLASSIFY_FLAG_USE_CURR_DATA) the current data (the IP
header on the ip4/ip6 input arcs) plus ``current_data_offset``; on output the node then adds
``save_rewrite_length``, and since the rewrite was prepended where the received frame's Ethernet
header was, flag 0 matches from the IP header there and flag 1 from the IP header + offset.  A miss walks
``next_table_index``; at the end of the chain ``miss_next_index`` decides (0 = drop, ~0 = permit).
A hit uses the session's ``hit_next_index`` (0 = drop, ~0 = continue).  An attachment is two
things, as in VPP: the per-interface table record (what ``classify_table_by_interface`` reads) and
the ip4/ip6-inacl (outacl) feature on the interface; a deleted interface loses its features but not
its record, so a new interface given the same index inherits a record with the feature off (it
classifies nothing, and an add on it answers 0 and changes nothing: found on 26.06).  Not emulated:
``advance``/``opaque_index``/``action``/metadata, buckets and memory limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.errors import NO_INDEX, OK, ApiError
from vppagent.vppsim.handlers import Handler, Reply, Request, retval_reply
from vppagent.vppsim.interfaces import InterfaceTable
from vppagent.vppsim.packet import Direction, Packet, Verdict
from vppagent.vppsim.pool import Pool

VECTOR_SIZE = 16  # sizeof (u32x4)
ETHERNET_HEADER = 14  # where the IP header (the buffer's current data on the IP arcs) starts
ACL_NEXT_INDEX_DENY = 0
SESSION_NEXT_INDEX_MASK = 0xFFFF
ETHERTYPE_IP4 = 0x0800
ETHERTYPE_IP6 = 0x86DD


@dataclass(frozen=True)
class ClassifySession:
    hit_next_index: int
    opaque_index: int
    advance: int


@dataclass
class ClassifyTable:
    mask: bytes
    skip_n_vectors: int
    match_n_vectors: int
    next_table_index: int
    miss_next_index: int
    current_data_flag: int = 0
    current_data_offset: int = 0
    nbuckets: int = 2
    sessions: dict[bytes, ClassifySession] = field(default_factory=dict)  # masked key → session

    def packet_key(self, frame: bytes, direction: Direction) -> bytes:
        """The key of a packet, from the table's origin in ``frame`` (Ethernet header first)."""
        if direction is Direction.OUTPUT:
            origin = ETHERNET_HEADER + (self.current_data_offset if self.current_data_flag else 0)
        else:
            origin = ETHERNET_HEADER + self.current_data_offset if self.current_data_flag else 0
        return self.key(frame[origin:] if origin >= 0 else bytes(-origin) + frame)

    @property
    def nbuckets_rounded(self) -> int:
        """``vnet_classify_new_table`` rounds the bucket count up to a power of two."""
        return 1 << max(self.nbuckets - 1, 0).bit_length()

    def key(self, data: bytes) -> bytes:
        """Masked key of bytes that start at the table's origin (a session's match does)."""
        start = self.skip_n_vectors * VECTOR_SIZE
        window = data[start:start + len(self.mask)].ljust(len(self.mask), b"\x00")
        return bytes(a & b for a, b in zip(window, self.mask, strict=True))


@dataclass
class ClassifierAttachment:
    ip4: int = NO_INDEX
    ip6: int = NO_INDEX
    l2: int = NO_INDEX


def packet_bytes(packet: Packet) -> bytes:
    """The bytes a classifier table sees: an Ethernet header, then the IP header and L4 ports."""
    ethernet = bytes(12) + (ETHERTYPE_IP6 if packet.is_ip6 else ETHERTYPE_IP4).to_bytes(2, "big")
    ports = (packet.sport.to_bytes(2, "big") + packet.dport.to_bytes(2, "big")) if packet.has_ports else bytes(4)
    if packet.is_ip6:
        # version/class/flow(4) payload length(2) next header(1) hop limit(1) src(16) dst(16)
        header = bytes([0x60, 0, 0, 0, 0, 0, packet.proto, 64]) + packet.src.packed + packet.dst.packed
    else:
        # version/ihl tos length(2) id(2) flags/frag(2) ttl proto checksum(2) src(4) dst(4)
        header = bytes([0x45, 0, 0, 0, 0, 0, 0, 0, 64, packet.proto, 0, 0]) + packet.src.packed + packet.dst.packed
    tcp_flags = bytes(9) + bytes([packet.tcp_flags]) if packet.proto == 6 else b""
    return ethernet + header + ports + tcp_flags


class Classifier:
    def __init__(self, interfaces: InterfaceTable) -> None:
        self._interfaces = interfaces
        self.tables: Pool[ClassifyTable] = Pool()
        self.attachments: dict[tuple[int, Direction], ClassifierAttachment] = {}  # the records
        self.enabled: set[tuple[int, Direction, str]] = set()  # (sw_if_index, direction, kind) with the feature on

    def on_interface_deleted(self, sw_if_index: int) -> None:
        """The interface's features go; in_out_acl keeps its per-interface table indices.

        A running 26.06 reports the table attached to a deleted loopback for the next interface that
        gets the same index (``classify_table_by_interface``), with ip4-inacl off there (``show
        interface features``), and a new add on it answers 0 and changes nothing; only a delete
        naming that table clears it.
        """
        self.enabled = {e for e in self.enabled if e[0] != sw_if_index}

    def handlers(self) -> dict[str, Handler]:
        return {
            "classify_add_del_table": self.classify_add_del_table,
            "classify_add_del_session": self.classify_add_del_session,
            "classify_table_ids": self.classify_table_ids,
            "classify_table_by_interface": self.classify_table_by_interface,
            "classify_table_info": self.classify_table_info,
            "classify_session_dump": self.classify_session_dump,
            "input_acl_set_interface": self.input_acl_set_interface,
            "output_acl_set_interface": self.output_acl_set_interface,
        }

    def classify_add_del_table(self, request: Request) -> list[Reply]:
        # As a running 26.06 answers (classify_api.c, vnet_classify_add_del_table): the mask must be
        # match_n_vectors (> 0) vectors long, for a delete too (any such mask will do); a delete of a free index is
        # NO_SUCH_TABLE; an add naming a free index makes a new table; a new table needs memory
        # (INVALID_MEMORY_SIZE) and buckets.  Only a successful add reports the table's index and
        # vector counts; every other reply carries ~0 in all three.
        fields = request.fields
        reply = "classify_add_del_table_reply"
        refused = {"new_table_index": NO_INDEX, "skip_n_vectors": NO_INDEX, "match_n_vectors": NO_INDEX}
        table_index = fields["table_index"]
        match_n_vectors = fields["match_n_vectors"]
        mask: bytes = fields["mask"]
        if match_n_vectors == 0 or len(mask) != match_n_vectors * VECTOR_SIZE:
            return retval_reply(reply, ApiError.INVALID_VALUE, **refused)
        if not fields["is_add"]:
            if table_index not in self.tables:
                return retval_reply(reply, ApiError.NO_SUCH_TABLE, **refused)
            self._delete_table(table_index, chain=bool(fields["del_chain"]))
            return retval_reply(reply, OK, **refused)
        table = self.tables.get(table_index)
        if table is not None:
            # Modifying an existing table changes only its chaining (a running 26.06 keeps the miss action).
            table.next_table_index = fields["next_table_index"]
            return retval_reply(reply, OK, new_table_index=table_index, skip_n_vectors=table.skip_n_vectors,
                                match_n_vectors=table.match_n_vectors)
        if fields["memory_size"] == 0:
            return retval_reply(reply, ApiError.INVALID_MEMORY_SIZE, **refused)
        if fields["nbuckets"] == 0:
            return retval_reply(reply, ApiError.INVALID_VALUE, **refused)
        table = ClassifyTable(mask, fields["skip_n_vectors"], match_n_vectors, fields["next_table_index"],
                              fields["miss_next_index"], fields["current_data_flag"], fields["current_data_offset"],
                              fields["nbuckets"])
        new_index = self.tables.add(table)
        return retval_reply(reply, OK, new_table_index=new_index, skip_n_vectors=table.skip_n_vectors,
                            match_n_vectors=table.match_n_vectors)

    def _delete_table(self, table_index: int, *, chain: bool) -> None:
        while table_index in self.tables:
            table = self.tables.remove(table_index)
            if not chain:
                return
            table_index = table.next_table_index

    def classify_add_del_session(self, request: Request) -> list[Reply]:
        fields = request.fields
        reply = "classify_add_del_session_reply"
        table = self.tables.get(fields["table_index"])
        if table is None:
            return retval_reply(reply, ApiError.NO_SUCH_TABLE)
        match: bytes = fields["match"]
        needed = (table.skip_n_vectors + table.match_n_vectors) * VECTOR_SIZE
        if len(match) < needed:
            return retval_reply(reply, ApiError.INVALID_VALUE)
        key = table.key(match)
        if fields["is_add"]:
            # The entry keeps the next index in 16 bits: ~0 reads back as 65535 (still "no next node").
            table.sessions[key] = ClassifySession(fields["hit_next_index"] & SESSION_NEXT_INDEX_MASK,
                                                  fields["opaque_index"], fields["advance"])
        elif table.sessions.pop(key, None) is None:
            return retval_reply(reply, ApiError.NO_SUCH_ENTRY)
        return retval_reply(reply, OK)

    def classify_table_ids(self, request: Request) -> list[Reply]:
        ids = [index for index, _ in self.tables.items()]
        return retval_reply("classify_table_ids_reply", OK, count=len(ids), ids=ids)

    def classify_table_by_interface(self, request: Request) -> list[Reply]:
        # classify_api.c reads only the INPUT table group: output attachments are not reported.
        reply = "classify_table_by_interface_reply"
        sw_if_index = request.fields["sw_if_index"]
        if not self._interfaces.exists(sw_if_index):
            return retval_reply(reply, ApiError.INVALID_SW_IF_INDEX, sw_if_index=sw_if_index,
                                l2_table_id=NO_INDEX, ip4_table_id=NO_INDEX, ip6_table_id=NO_INDEX)
        attachment = self.attachments.get((sw_if_index, Direction.INPUT), ClassifierAttachment())
        return retval_reply(reply, OK, sw_if_index=sw_if_index, l2_table_id=attachment.l2,
                            ip4_table_id=attachment.ip4, ip6_table_id=attachment.ip6)

    def classify_table_info(self, request: Request) -> list[Reply]:
        reply = "classify_table_info_reply"
        table_id = request.fields["table_id"]
        table = self.tables.get(table_id)
        if table is None:
            return retval_reply(reply, ApiError.CLASSIFY_TABLE_NOT_FOUND, table_id=0, nbuckets=0,
                                match_n_vectors=0, skip_n_vectors=0, active_sessions=0, next_table_index=0,
                                miss_next_index=0, mask_length=0, mask=b"")
        return retval_reply(reply, OK, table_id=table_id, nbuckets=table.nbuckets_rounded,
                            match_n_vectors=table.match_n_vectors, skip_n_vectors=table.skip_n_vectors,
                            active_sessions=len(table.sessions), next_table_index=table.next_table_index,
                            miss_next_index=table.miss_next_index, mask_length=len(table.mask), mask=table.mask)

    def classify_session_dump(self, request: Request) -> list[Reply]:
        # One detail per session (the stored key: the match window, masked); none for an unknown table.
        table_id = request.fields["table_id"]
        table = self.tables.get(table_id)
        if table is None:
            return []
        return [("classify_session_details", {
            "retval": 0, "table_id": table_id, "hit_next_index": session.hit_next_index,
            "advance": session.advance, "opaque_index": session.opaque_index,
            "match_length": len(key), "match": key}) for key, session in table.sessions.items()]

    def input_acl_set_interface(self, request: Request) -> list[Reply]:
        return self._set_interface(request, Direction.INPUT, "input_acl_set_interface_reply")

    def output_acl_set_interface(self, request: Request) -> list[Reply]:
        return self._set_interface(request, Direction.OUTPUT, "output_acl_set_interface_reply")

    def _set_interface(self, request: Request, direction: Direction, reply: str) -> list[Reply]:
        fields = request.fields
        sw_if_index = fields["sw_if_index"]
        if not self._interfaces.exists(sw_if_index):
            return retval_reply(reply, ApiError.INVALID_SW_IF_INDEX)
        wanted = {"ip4": fields["ip4_table_index"], "ip6": fields["ip6_table_index"],
                  "l2": fields["l2_table_index"]}
        attachment = self.attachments.setdefault((sw_if_index, direction), ClassifierAttachment())
        # vnet_set_in_out_acl_intfc, per kind in order ip4, ip6, l2: a delete must name the attached
        # table (else NO_SUCH_TABLE, stopping there); an add while one is attached answers 0 at once,
        # leaving that table (and any later kind) as it was.
        for kind, index in wanted.items():
            if index == NO_INDEX:
                continue
            if index not in self.tables:
                return retval_reply(reply, ApiError.NO_SUCH_TABLE)
            current = getattr(attachment, kind)
            if not fields["is_add"]:
                if current != index:
                    return retval_reply(reply, ApiError.NO_SUCH_TABLE)
                setattr(attachment, kind, NO_INDEX)
                self.enabled.discard((sw_if_index, direction, kind))
            elif current != NO_INDEX:
                return retval_reply(reply, OK)
            else:
                setattr(attachment, kind, index)
                self.enabled.add((sw_if_index, direction, kind))
        return retval_reply(reply, OK)

    def evaluate(self, sw_if_index: int, direction: Direction, packet: Packet) -> Verdict:
        """``ip{4,6}-inacl`` / ``ip{4,6}-outacl`` for one packet."""
        attachment = self.attachments.get((sw_if_index, direction))
        kind = "ip6" if packet.is_ip6 else "ip4"
        table_index = NO_INDEX if attachment is None else getattr(attachment, kind)
        if table_index == NO_INDEX or (sw_if_index, direction, kind) not in self.enabled:
            return Verdict(True, "no classifier table")
        data = packet_bytes(packet)
        while True:
            table = self.tables.get(table_index)
            if table is None:
                return Verdict(True, "classifier table gone")
            hit = table.sessions.get(table.packet_key(data, direction))
            if hit is not None:
                permitted = hit.hit_next_index != ACL_NEXT_INDEX_DENY
                return Verdict(permitted, f"classifier hit in table {table_index}")
            if table.next_table_index == NO_INDEX:
                permitted = table.miss_next_index != ACL_NEXT_INDEX_DENY
                return Verdict(permitted, f"classifier miss at end of chain (table {table_index})")
            table_index = table.next_table_index
