"""The ACL plugin: ACL pool, per-interface ACL vectors, reflect sessions, and matching.

Behaviour follows VPP 25.10 ``src/plugins/acl/acl.c`` (handlers, ``acl_add_list``,
``acl_del_list``, ``acl_interface_set_inout_acl_list``, ``acl_interface_add_del_inout_acl``)
and ``public_inlines.h``/``fa_node.c`` (matching, sessions), cross-checked with traffic on
a real VPP 25.10 (``vpp-acl-semantics-verified.md``).  Not emulated: session timeouts and
limits, non-first fragments, MACIP ACLs, lookup contexts of other plugins (``-149`` never occurs).

``reclassify_sessions`` (the CLI's ``set acl-plugin reclassify-sessions``, off by default) is
emulated as ``acl.c`` and ``dataplane_node.c`` have it: while on, binding a list (any
``acl_interface_set_acl_list`` / ``acl_interface_add_del``, even of the same list) bumps that
(interface, direction)'s policy epoch instead of clearing sessions, and replacing an ACL in place
bumps the epoch of every (interface, direction) it is bound to. A session keeps the epoch it was
made in; a packet that finds a session of an older epoch in the direction that made it deletes it
and is judged again by the ACLs (a packet the other way still passes on it).

Clearing an interface's sessions (its set of bound ACL indices changes, it is deleted, or the CLI's
``clear acl-plugin sessions``) is one round of VPP's session cleaner (``sess_mgmt_node.c``,
``acl_fa_check_idle_sessions``): per timeout list (UDP/other idle, TCP idle, TCP transient), at
most ``CLEAR_BATCH`` sessions from its oldest are checked; those of the interfaces being cleared go,
the others are queued again at the end. VPP 26.06 then counts the lists left to swipe, stops at its
first timeout list (never used, so always empty) and ends the clear there: an interface with more
sessions keeps the rest (measured on VPP 26.06: 4,758 sessions, 100 deleted per rebind and per CLI
clear; tests/realvpp/test_gate_transition.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vppagent.drivers.vpp.api.errors import NO_INDEX, OK, ApiError
from vppagent.vppsim.addresses import InvalidPrefix, IPNetwork, decode_prefix, encode_prefix
from vppagent.vppsim.codec import ApiDefinitions, field_offset, read_u32
from vppagent.vppsim.handlers import Handler, Reply, Request, retval_reply
from vppagent.vppsim.interfaces import InterfaceTable
from vppagent.vppsim.packet import (
    ICMP4_REPLY_TYPE,
    ICMP6_REPLY_TYPE,
    PROTO_ICMP,
    PROTO_ICMP6,
    PROTO_TCP,
    Direction,
    Packet,
    Verdict,
)
from vppagent.vppsim.pool import Pool

ACTION_DENY = 0
ACTION_PERMIT = 1
ACTION_PERMIT_REFLECT = 2

ACL_PLUGIN_VERSION = (1, 4)
# fa_node.h / acl.c: fa_max_deleted_sessions_per_interval ("Sessions per interval: ... max 100")
CLEAR_BATCH = 100
# fa_node.h: acl_timeout_e (0 is never used); a session's list, by what it has seen
TIMEOUT_UDP_IDLE, TIMEOUT_TCP_IDLE, TIMEOUT_TCP_TRANSIENT = 1, 2, 3
_SEEN_MASK = 0x17  # RST, FIN, ACK, SYN
_ESTABLISHED = 0x12  # SYN and ACK seen, no RST or FIN
# fa_node.h: ACL_FA_CONN_TABLE_DEFAULT_MAX_ENTRIES
CONN_TABLE_DEFAULT_MAX_ENTRIES = 500_000
# fa_node.h: FA_POLICY_EPOCH_MASK (the epoch's counter bits; the top bit says input)
POLICY_EPOCH_MASK = 0x7FFF

# ICMP type pairs whose reverse direction a session admits (both ways, for the reverse lookup).
_ICMP4_INVERSE = {**ICMP4_REPLY_TYPE, **{reply: request for request, reply in ICMP4_REPLY_TYPE.items()}}
_ICMP6_INVERSE = {**ICMP6_REPLY_TYPE, **{reply: request for request, reply in ICMP6_REPLY_TYPE.items()}}


class RuleRejected(Exception):
    def __init__(self, retval: ApiError) -> None:
        super().__init__(retval.name)
        self.retval = retval


@dataclass(frozen=True)
class AclRule:
    action: int
    src: IPNetwork
    dst: IPNetwork
    proto: int
    sport: tuple[int, int]
    dport: tuple[int, int]
    tcp_flags_mask: int
    tcp_flags_value: int

    @classmethod
    def from_wire(cls, rule: dict[str, Any]) -> AclRule:
        """Validate like ``acl_add_list``'s consistency loop, then convert."""
        try:
            src = decode_prefix(rule["src_prefix"], strict=True)
        except InvalidPrefix:
            raise RuleRejected(ApiError.INVALID_SRC_ADDRESS) from None
        try:
            dst = decode_prefix(rule["dst_prefix"], strict=True)
        except InvalidPrefix:
            raise RuleRejected(ApiError.INVALID_DST_ADDRESS) from None
        if src.version != dst.version:
            # A rule is one address family; VPP reports the mix against the source prefix.
            raise RuleRejected(ApiError.INVALID_SRC_ADDRESS)
        sport = (rule["srcport_or_icmptype_first"], rule["srcport_or_icmptype_last"])
        dport = (rule["dstport_or_icmpcode_first"], rule["dstport_or_icmpcode_last"])
        if sport[0] > sport[1] or dport[0] > dport[1]:
            raise RuleRejected(ApiError.INVALID_VALUE_2)
        return cls(rule["is_permit"], src, dst, rule["proto"], sport, dport, rule["tcp_flags_mask"],
                   rule["tcp_flags_value"])

    def to_wire(self) -> dict[str, Any]:
        return {
            "is_permit": self.action,
            "src_prefix": encode_prefix(self.src.network_address, self.src.prefixlen),
            "dst_prefix": encode_prefix(self.dst.network_address, self.dst.prefixlen),
            "proto": self.proto,
            "srcport_or_icmptype_first": self.sport[0],
            "srcport_or_icmptype_last": self.sport[1],
            "dstport_or_icmpcode_first": self.dport[0],
            "dstport_or_icmpcode_last": self.dport[1],
            "tcp_flags_mask": self.tcp_flags_mask,
            "tcp_flags_value": self.tcp_flags_value,
        }

    def matches(self, packet: Packet) -> bool:
        if packet.src.version != self.src.version:
            return False
        if packet.src not in self.src or packet.dst not in self.dst:
            return False
        if self.proto == 0:
            return True  # proto 0: any protocol, ports and flags ignored
        if packet.proto != self.proto:
            return False
        sport, dport = (packet.sport, packet.dport) if packet.has_ports else (0, 0)
        if not (self.sport[0] <= sport <= self.sport[1] and self.dport[0] <= dport <= self.dport[1]):
            return False
        if self.proto == PROTO_TCP:
            return (packet.tcp_flags & self.tcp_flags_mask) == self.tcp_flags_value
        return True


@dataclass
class Acl:
    tag: str
    rules: list[AclRule]


SessionKey = tuple[bool, int, int, int, int, int]


def session_key(packet: Packet, direction: Direction) -> SessionKey:
    """The 5-tuple a session is stored and found under.

    The plugin keys sessions as seen in the input direction: output packets are
    reversed before lookup, so a session created by an input packet A→B admits
    B→A on output (and more A→B on input).  ICMP "ports" are type/code; reversing
    maps the type through the request/reply table so an echo reply finds the
    echo request's session.
    """
    src, dst, sport, dport = packet.src, packet.dst, packet.sport, packet.dport
    if not packet.has_ports:
        sport = dport = 0
    if direction is Direction.OUTPUT:
        src, dst = dst, src
        if packet.proto in (PROTO_ICMP, PROTO_ICMP6):
            table = _ICMP6_INVERSE if packet.is_ip6 else _ICMP4_INVERSE
            sport = table.get(sport, sport)
        else:
            sport, dport = dport, sport
    return (packet.is_ip6, int(src), int(dst), packet.proto, sport, dport)


@dataclass
class Tracked:
    """What the cleaner knows of one session: the direction that made it, the TCP flags seen each
    way (made / back), and so its timeout list."""

    made: Direction
    seen: list[int]
    proto: int
    epoch: int = 0  # the policy epoch of (interface, `made`) when it was made

    def timeout_list(self) -> int:
        if self.proto != PROTO_TCP:
            return TIMEOUT_UDP_IDLE
        established = all(flags & _SEEN_MASK == _ESTABLISHED for flags in self.seen)
        return TIMEOUT_TCP_IDLE if established else TIMEOUT_TCP_TRANSIENT


Tracking = tuple[int, SessionKey]  # (sw_if_index, key)


@dataclass
class InterfaceAcls:
    input: list[int] = field(default_factory=list)
    output: list[int] = field(default_factory=list)

    def vector(self, is_input: bool) -> list[int]:
        return self.input if is_input else self.output


class AclPlugin:
    def __init__(self, definitions: ApiDefinitions, interfaces: InterfaceTable) -> None:
        self._definitions = definitions
        self._interfaces = interfaces
        self.acls: Pool[Acl] = Pool()
        self.bindings: dict[int, InterfaceAcls] = {}
        self.sessions: dict[int, set[SessionKey]] = {}
        # the cleaner's view: each session's record, and per timeout list the sessions oldest first
        self._tracked: dict[Tracking, Tracked] = {}
        self._lists: dict[int, dict[Tracking, None]] = {t: {} for t in (TIMEOUT_UDP_IDLE, TIMEOUT_TCP_IDLE,
                                                                          TIMEOUT_TCP_TRANSIENT)}
        self.etype_whitelists: dict[int, tuple[list[int], list[int]]] = {}
        self.interface_counters_enabled = False
        self.reclassify_sessions = False
        self.epochs: dict[tuple[int, bool], int] = {}  # (sw_if_index, is_input) -> policy epoch
        self.session_adds = 0  # as fa_session_total_adds/_dels ("Sessions total" of the CLI's show)
        self.session_dels = 0

    # -- bookkeeping ------------------------------------------------------------------------------
    def binding(self, sw_if_index: int) -> InterfaceAcls:
        return self.bindings.setdefault(sw_if_index, InterfaceAcls())

    def clear_sessions(self, sw_if_index: int | None = None) -> None:
        """Every session (of one interface): a test's reset, not what VPP's clear does (`clear_round`)."""
        for tracking in [t for t in self._tracked if sw_if_index in (None, t[0])]:
            self._forget(tracking)

    def clear_round(self, interfaces: set[int] | None = None) -> None:
        """One round of VPP's session cleaner for `interfaces` (None: every interface with sessions,
        as the CLI's clear): see the module docstring."""
        for queue in self._lists.values():
            checked = list(queue)[:CLEAR_BATCH]
            for tracking in checked:
                del queue[tracking]
                if interfaces is None or tracking[0] in interfaces:
                    self._forget(tracking, queued=False)
                else:
                    queue[tracking] = None  # queued again, at the end

    def _forget(self, tracking: Tracking, *, queued: bool = True) -> None:
        tracked = self._tracked.pop(tracking)
        self.session_dels += 1
        if queued:
            del self._lists[tracked.timeout_list()][tracking]
        keys = self.sessions.get(tracking[0])
        if keys is not None:
            keys.discard(tracking[1])
            if not keys:
                del self.sessions[tracking[0]]

    def _track(self, sw_if_index: int, key: SessionKey, direction: Direction, packet: Packet) -> None:
        """A packet made or hit a session: the flags it carries are seen; a session whose timeout
        list changes moves to that list's end (acl_fa_restart_timer_for_session)."""
        tracking = (sw_if_index, key)
        tracked = self._tracked.get(tracking)
        flags = packet.tcp_flags if packet.proto == PROTO_TCP else 0
        if tracked is None:
            tracked = Tracked(direction, [flags, 0], packet.proto,
                              self.epochs.get((sw_if_index, direction is Direction.INPUT), 0))
            self._tracked[tracking] = tracked
            self._lists[tracked.timeout_list()][tracking] = None
            self.session_adds += 1
            return
        before = tracked.timeout_list()
        tracked.seen[0 if direction is tracked.made else 1] |= flags
        after = tracked.timeout_list()
        if after != before:
            del self._lists[before][tracking]
            self._lists[after][tracking] = None

    def _bump_epoch(self, sw_if_index: int, is_input: bool) -> None:
        """acl.c ``increment_policy_epoch``."""
        key = (sw_if_index, is_input)
        self.epochs[key] = (self.epochs.get(key, 0) + 1) & POLICY_EPOCH_MASK

    def _is_used(self, acl_index: int, is_input: bool) -> bool:
        return any(acl_index in b.vector(is_input) for b in self.bindings.values())

    def on_interface_deleted(self, sw_if_index: int) -> None:
        # acl_sw_interface_add_del: unapply both directions and drop the interface's sessions.
        self.bindings.pop(sw_if_index, None)
        self.etype_whitelists.pop(sw_if_index, None)
        self.clear_round({sw_if_index})
        if not self.sessions.get(sw_if_index):
            self.sessions.pop(sw_if_index, None)

    def _set_vector(self, sw_if_index: int, is_input: bool, acls: list[int],
                    may_clear_sessions: list[bool]) -> int:
        """``acl_interface_set_inout_acl_list`` for one direction."""
        seen: set[int] = set()
        for acl_index in acls:
            if acl_index not in self.acls:
                return ApiError.NO_SUCH_ENTRY
            if acl_index in seen:
                return ApiError.ENTRY_ALREADY_EXISTS
            seen.add(acl_index)
        binding = self.binding(sw_if_index)
        changed = set(binding.vector(is_input)) ^ seen
        if is_input:
            binding.input = list(acls)
        else:
            binding.output = list(acls)
        if self.reclassify_sessions:  # every binding is a new policy epoch; nothing is cleared
            self._bump_epoch(sw_if_index, is_input)
        # Sessions go when the *set* of bound indices changes (order does not count), once per call.
        elif changed and may_clear_sessions[0]:
            self.clear_round({sw_if_index})
            may_clear_sessions[0] = False
        return OK

    # -- handlers ---------------------------------------------------------------------------------
    def handlers(self) -> dict[str, Handler]:
        return {
            "acl_plugin_get_version": self.acl_plugin_get_version,
            "acl_plugin_get_conn_table_max_entries": self.acl_plugin_get_conn_table_max_entries,
            "acl_add_replace": self.acl_add_replace,
            "acl_del": self.acl_del,
            "acl_interface_add_del": self.acl_interface_add_del,
            "acl_interface_set_acl_list": self.acl_interface_set_acl_list,
            "acl_dump": self.acl_dump,
            "acl_interface_list_dump": self.acl_interface_list_dump,
            "acl_stats_intf_counters_enable": self.acl_stats_intf_counters_enable,
            "acl_interface_set_etype_whitelist": self.acl_interface_set_etype_whitelist,
            "acl_interface_etype_whitelist_dump": self.acl_interface_etype_whitelist_dump,
        }

    def pre_decode_checks(self) -> dict[str, Any]:
        return {"acl_add_replace": self.check_acl_add_replace_length}

    def check_acl_add_replace_length(self, raw: bytes) -> list[Reply] | None:
        """``verify_message_len``: a message shorter than its rule count answers INVALID_VALUE."""
        message = self._definitions.messages["acl_add_replace"]
        if len(raw) < message.size:
            return None  # not even the fixed part: garbage, the server drops the client
        count = read_u32(raw, field_offset(message, "count"))
        rule_size = message.packers[message.fields.index("r")].size
        if len(raw) >= message.size + count * rule_size:
            return None
        return retval_reply("acl_add_replace_reply", ApiError.INVALID_VALUE,
                            acl_index=read_u32(raw, field_offset(message, "acl_index")),
                            context=read_u32(raw, field_offset(message, "context")))

    def acl_plugin_get_version(self, request: Request) -> list[Reply]:
        major, minor = ACL_PLUGIN_VERSION
        return [("acl_plugin_get_version_reply", {"major": major, "minor": minor})]

    def acl_plugin_get_conn_table_max_entries(self, request: Request) -> list[Reply]:
        return [("acl_plugin_get_conn_table_max_entries_reply",
                 {"conn_table_max_entries": CONN_TABLE_DEFAULT_MAX_ENTRIES})]

    def acl_add_replace(self, request: Request) -> list[Reply]:
        acl_index = request.fields["acl_index"]
        message = self._definitions.messages["acl_add_replace"]
        tag_offset = field_offset(message, "tag")
        if 0 not in request.raw[tag_offset:tag_offset + 64]:
            # A tag must be a C string inside string[64]: 63 characters at most.
            return retval_reply("acl_add_replace_reply", ApiError.INVALID_VALUE, acl_index=acl_index)
        try:
            rules = [AclRule.from_wire(rule) for rule in request.fields["r"]]
        except RuleRejected as rejected:
            return retval_reply("acl_add_replace_reply", rejected.retval, acl_index=acl_index)
        acl = Acl(request.fields["tag"], rules)
        if acl_index == NO_INDEX:
            acl_index = self.acls.add(acl)
        elif acl_index in self.acls:
            # Replace in place: bindings stay, sessions stay; with reclassify_sessions every
            # (interface, direction) it is bound to gets a new policy epoch.
            existing = self.acls.get(acl_index)
            assert existing is not None
            existing.tag, existing.rules = acl.tag, acl.rules
            if self.reclassify_sessions:
                for sw_if_index, binding in self.bindings.items():
                    for is_input in (False, True):
                        if acl_index in binding.vector(is_input):
                            self._bump_epoch(sw_if_index, is_input)
        else:
            return retval_reply("acl_add_replace_reply", ApiError.NO_SUCH_ENTRY, acl_index=acl_index)
        return retval_reply("acl_add_replace_reply", OK, acl_index=acl_index)

    def acl_del(self, request: Request) -> list[Reply]:
        acl_index = request.fields["acl_index"]
        if acl_index not in self.acls:
            retval: int = ApiError.NO_SUCH_ENTRY
        elif self._is_used(acl_index, is_input=True):
            retval = ApiError.ACL_IN_USE_INBOUND
        elif self._is_used(acl_index, is_input=False):
            retval = ApiError.ACL_IN_USE_OUTBOUND
        else:
            self.acls.remove(acl_index)
            retval = OK
        return retval_reply("acl_del_reply", retval)

    def acl_interface_add_del(self, request: Request) -> list[Reply]:
        sw_if_index = request.fields["sw_if_index"]
        acl_index = request.fields["acl_index"]
        is_input = bool(request.fields["is_input"])
        if not self._interfaces.exists(sw_if_index):
            return retval_reply("acl_interface_add_del_reply", ApiError.INVALID_SW_IF_INDEX)
        vector = list(self.binding(sw_if_index).vector(is_input))
        if request.fields["is_add"]:
            if acl_index in vector:
                return retval_reply("acl_interface_add_del_reply", ApiError.ACL_IN_USE_INBOUND
                                    if is_input else ApiError.ACL_IN_USE_OUTBOUND)
            vector.append(acl_index)
        else:
            if acl_index not in vector:
                return retval_reply("acl_interface_add_del_reply", ApiError.NO_SUCH_ENTRY)
            # vec_del1: the last element moves into the hole, reordering the vector.
            hole = vector.index(acl_index)
            last = vector.pop()
            if hole < len(vector):
                vector[hole] = last
        retval = self._set_vector(sw_if_index, is_input, vector, [True])
        return retval_reply("acl_interface_add_del_reply", retval)

    def acl_interface_set_acl_list(self, request: Request) -> list[Reply]:
        sw_if_index = request.fields["sw_if_index"]
        acls: list[int] = request.fields["acls"]
        if not self._interfaces.exists(sw_if_index):
            return retval_reply("acl_interface_set_acl_list_reply", ApiError.INVALID_SW_IF_INDEX)
        if any(acl_index not in self.acls for acl_index in acls):
            return retval_reply("acl_interface_set_acl_list_reply", ApiError.NO_SUCH_ENTRY)
        n_input = request.fields["n_input"]
        may_clear = [True]
        # The handler applies the output list first and then `rv = rv || set_input(...)`: C's `||`
        # skips the input list after an output failure and turns any failure into 1.
        retval = self._set_vector(sw_if_index, False, acls[n_input:], may_clear)
        retval = int(bool(retval) or bool(self._set_vector(sw_if_index, True, acls[:n_input], may_clear)))
        return retval_reply("acl_interface_set_acl_list_reply", retval)

    def acl_dump(self, request: Request) -> list[Reply]:
        wanted = request.fields["acl_index"]
        return [("acl_details", {"acl_index": index, "tag": acl.tag, "count": len(acl.rules),
                                 "r": [rule.to_wire() for rule in acl.rules]})
                for index, acl in self.acls.items() if wanted in (NO_INDEX, index)]

    def acl_interface_list_dump(self, request: Request) -> list[Reply]:
        wanted = request.fields["sw_if_index"]
        indices = self._all_interfaces() if wanted == NO_INDEX else (
            [wanted] if self._interfaces.exists(wanted) else [])
        details: list[Reply] = []
        for sw_if_index in indices:
            binding = self.bindings.get(sw_if_index, InterfaceAcls())
            acls = binding.input + binding.output
            details.append(("acl_interface_list_details", {
                "sw_if_index": sw_if_index, "count": len(acls) & 0xFF, "n_input": len(binding.input) & 0xFF,
                "acls": acls}))
        return details

    def _all_interfaces(self) -> list[int]:
        return [interface.sw_if_index for interface in self._interfaces.all()]

    def acl_stats_intf_counters_enable(self, request: Request) -> list[Reply]:
        self.interface_counters_enabled = bool(request.fields["enable"])
        # acl.c answers with REPLY_MACRO (VL_API_ACL_DEL_REPLY): the reply carries acl_del_reply's id.
        return retval_reply("acl_del_reply", OK)

    def acl_interface_set_etype_whitelist(self, request: Request) -> list[Reply]:
        sw_if_index = request.fields["sw_if_index"]
        if not self._interfaces.exists(sw_if_index):
            return retval_reply("acl_interface_set_etype_whitelist_reply", ApiError.INVALID_SW_IF_INDEX)
        n_input = request.fields["n_input"]
        whitelist: list[int] = request.fields["whitelist"]
        self.etype_whitelists[sw_if_index] = (whitelist[:n_input], whitelist[n_input:])
        return retval_reply("acl_interface_set_etype_whitelist_reply", OK)

    def acl_interface_etype_whitelist_dump(self, request: Request) -> list[Reply]:
        wanted = request.fields["sw_if_index"]
        details: list[Reply] = []
        for sw_if_index in self._all_interfaces():
            if wanted not in (NO_INDEX, sw_if_index):
                continue
            inbound, outbound = self.etype_whitelists.get(sw_if_index, ([], []))
            if inbound or outbound:
                details.append(("acl_interface_etype_whitelist_details", {
                    "sw_if_index": sw_if_index, "count": len(inbound) + len(outbound),
                    "n_input": len(inbound), "whitelist": inbound + outbound}))
        return details

    # -- dataplane --------------------------------------------------------------------------------
    def evaluate(self, sw_if_index: int, direction: Direction, packet: Packet) -> Verdict:
        """``acl-plugin-{in,out}-ip{4,6}-fa``: sessions first, then first match over the vector."""
        is_input = direction is Direction.INPUT
        vector = self.bindings.get(sw_if_index, InterfaceAcls()).vector(is_input)
        if not vector:
            return Verdict(True, "no ACL applied")
        key = session_key(packet, direction)
        sessions = self.sessions.setdefault(sw_if_index, set())
        if key in sessions:
            self._track(sw_if_index, key, direction, packet)
            tracked = self._tracked[(sw_if_index, key)]
            if not (self.reclassify_sessions and direction is tracked.made
                    and tracked.epoch != self.epochs.get((sw_if_index, is_input), 0)):
                return Verdict(True, "existing session")
            self._forget((sw_if_index, key))  # stale_session_deleted: judged again below
            sessions = self.sessions.setdefault(sw_if_index, set())
        for acl_index in vector:
            acl = self.acls.get(acl_index)
            assert acl is not None
            for rule_index, rule in enumerate(acl.rules):
                if not rule.matches(packet):
                    continue
                if rule.action == ACTION_DENY:
                    return Verdict(False, "deny rule", acl_index, rule_index)
                created = rule.action == ACTION_PERMIT_REFLECT
                if created:
                    sessions.add(key)
                    self._track(sw_if_index, key, direction, packet)
                return Verdict(True, "permit+reflect rule" if created else "permit rule", acl_index,
                               rule_index, session_created=created)
        return Verdict(False, "no rule matched (implicit deny)")
