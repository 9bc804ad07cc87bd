"""The ACL plugin: its ACL pool, each interface's ACL vectors, the API handlers, and the dataplane
node that judges a packet (sessions first, then first match over the interface's vector).

Behaviour follows VPP 25.10 ``src/plugins/acl/acl.c`` (handlers, ``acl_add_list``,
``acl_del_list``, ``acl_interface_set_inout_acl_list``, ``acl_interface_add_del_inout_acl``)
and ``fa_node.c``, cross-checked with traffic on a real VPP 25.10
(``vpp-acl-semantics-verified.md``). Beside it: acl_rules.py (a rule's wire form and matching) and
acl_sessions.py (reflect sessions, policy epochs, the session cleaner). Not emulated: session
timeouts and limits, non-first fragments, MACIP ACLs, lookup contexts of other plugins (``-149``
never occurs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vppagent.drivers.vpp.api.errors import NO_INDEX, OK, ApiError
from vppagent.vppsim.acl_rules import ACTION_DENY, ACTION_PERMIT_REFLECT, Acl, AclRule, RuleRejected
from vppagent.vppsim.acl_sessions import SessionKey, SessionTable, session_key
from vppagent.vppsim.codec import ApiDefinitions, field_offset, read_u32
from vppagent.vppsim.handlers import Handler, Reply, Request, retval_reply
from vppagent.vppsim.interfaces import InterfaceTable
from vppagent.vppsim.packet import Direction, Packet, Verdict
from vppagent.vppsim.pool import Pool

ACL_PLUGIN_VERSION = (1, 4)
# fa_node.h: ACL_FA_CONN_TABLE_DEFAULT_MAX_ENTRIES
CONN_TABLE_DEFAULT_MAX_ENTRIES = 500_000


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
        self.session_table = SessionTable()
        self.etype_whitelists: dict[int, tuple[list[int], list[int]]] = {}
        self.interface_counters_enabled = False
        self.reclassify_sessions = False

    # -- bookkeeping ------------------------------------------------------------------------------
    def binding(self, sw_if_index: int) -> InterfaceAcls:
        return self.bindings.setdefault(sw_if_index, InterfaceAcls())

    @property
    def sessions(self) -> dict[int, set[SessionKey]]:
        """Each interface's sessions (acl_sessions.py holds them)."""
        return self.session_table.by_interface

    def clear_sessions(self, sw_if_index: int | None = None) -> None:
        """Every session (of one interface): a test's reset, not what VPP's clear does."""
        self.session_table.clear(sw_if_index)

    def _is_used(self, acl_index: int, is_input: bool) -> bool:
        return any(acl_index in b.vector(is_input) for b in self.bindings.values())

    def on_interface_deleted(self, sw_if_index: int) -> None:
        # acl_sw_interface_add_del: unapply both directions and drop the interface's sessions.
        self.bindings.pop(sw_if_index, None)
        self.etype_whitelists.pop(sw_if_index, None)
        self.session_table.interface_deleted(sw_if_index)

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
            self.session_table.bump_epoch(sw_if_index, is_input)
        # Sessions go when the *set* of bound indices changes (order does not count), once per call.
        elif changed and may_clear_sessions[0]:
            self.session_table.clear_round({sw_if_index})
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
                            self.session_table.bump_epoch(sw_if_index, is_input)
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
        if self.session_table.admits(sw_if_index, key, direction, packet, reclassify=self.reclassify_sessions):
            return Verdict(True, "existing session")
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
                    self.session_table.make(sw_if_index, key, direction, packet)
                return Verdict(True, "permit+reflect rule" if created else "permit rule", acl_index,
                               rule_index, session_created=created)
        return Verdict(False, "no rule matched (implicit deny)")
