"""The ACL plugin's reflect sessions: how a packet finds one, policy epochs, and VPP's cleaner.

Behaviour follows VPP 25.10 ``src/plugins/acl/fa_node.c`` and ``sess_mgmt_node.c``, cross-checked
with traffic on a real VPP (``vpp-acl-semantics-verified.md``). Not emulated: session timeouts and
limits. The plugin that makes sessions when a permit+reflect rule matches is acl.py.

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

from dataclasses import dataclass

from vppagent.vppsim.packet import (
    ICMP4_REPLY_TYPE,
    ICMP6_REPLY_TYPE,
    PROTO_ICMP,
    PROTO_ICMP6,
    PROTO_TCP,
    Direction,
    Packet,
)

# fa_node.h / acl.c: fa_max_deleted_sessions_per_interval ("Sessions per interval: ... max 100")
CLEAR_BATCH = 100
# fa_node.h: acl_timeout_e (0 is never used); a session's list, by what it has seen
TIMEOUT_UDP_IDLE, TIMEOUT_TCP_IDLE, TIMEOUT_TCP_TRANSIENT = 1, 2, 3
_SEEN_MASK = 0x17  # RST, FIN, ACK, SYN
_ESTABLISHED = 0x12  # SYN and ACK seen, no RST or FIN
# fa_node.h: FA_POLICY_EPOCH_MASK (the epoch's counter bits; the top bit says input)
POLICY_EPOCH_MASK = 0x7FFF

# ICMP type pairs whose reverse direction a session admits (both ways, for the reverse lookup).
_ICMP4_INVERSE = {**ICMP4_REPLY_TYPE, **{reply: request for request, reply in ICMP4_REPLY_TYPE.items()}}
_ICMP6_INVERSE = {**ICMP6_REPLY_TYPE, **{reply: request for request, reply in ICMP6_REPLY_TYPE.items()}}

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


class SessionTable:
    """Every interface's sessions, what the cleaner knows of each, and the policy epochs."""

    def __init__(self) -> None:
        self.by_interface: dict[int, set[SessionKey]] = {}
        # the cleaner's view: each session's record, and per timeout list the sessions oldest first
        self._tracked: dict[Tracking, Tracked] = {}
        self._lists: dict[int, dict[Tracking, None]] = {t: {} for t in (TIMEOUT_UDP_IDLE, TIMEOUT_TCP_IDLE,
                                                                          TIMEOUT_TCP_TRANSIENT)}
        self.epochs: dict[tuple[int, bool], int] = {}  # (sw_if_index, is_input) -> policy epoch
        self.adds = 0  # as fa_session_total_adds/_dels ("Sessions total" of the CLI's show)
        self.dels = 0

    def clear(self, sw_if_index: int | None = None) -> None:
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

    def admits(self, sw_if_index: int, key: SessionKey, direction: Direction, packet: Packet, *,
               reclassify: bool) -> bool:
        """A session of the interface lets `packet` through (and sees its flags). With `reclassify`,
        a session of an older policy epoch met in the direction that made it is deleted instead
        (stale_session_deleted), and the packet is judged again by the ACLs."""
        if key not in self.by_interface.setdefault(sw_if_index, set()):
            return False
        self._track(sw_if_index, key, direction, packet)
        tracked = self._tracked[(sw_if_index, key)]
        if not (reclassify and direction is tracked.made
                and tracked.epoch != self.epochs.get((sw_if_index, direction is Direction.INPUT), 0)):
            return True
        self._forget((sw_if_index, key))
        self.by_interface.setdefault(sw_if_index, set())  # listed, if empty, as VPP's show lists it
        return False

    def make(self, sw_if_index: int, key: SessionKey, direction: Direction, packet: Packet) -> None:
        """A permit+reflect rule matched: the session is made (or seen again)."""
        self.by_interface.setdefault(sw_if_index, set()).add(key)
        self._track(sw_if_index, key, direction, packet)

    def bump_epoch(self, sw_if_index: int, is_input: bool) -> None:
        """acl.c ``increment_policy_epoch``."""
        key = (sw_if_index, is_input)
        self.epochs[key] = (self.epochs.get(key, 0) + 1) & POLICY_EPOCH_MASK

    def interface_deleted(self, sw_if_index: int) -> None:
        self.clear_round({sw_if_index})
        if not self.by_interface.get(sw_if_index):
            self.by_interface.pop(sw_if_index, None)

    def _forget(self, tracking: Tracking, *, queued: bool = True) -> None:
        tracked = self._tracked.pop(tracking)
        self.dels += 1
        if queued:
            del self._lists[tracked.timeout_list()][tracking]
        keys = self.by_interface.get(tracking[0])
        if keys is not None:
            keys.discard(tracking[1])
            if not keys:
                del self.by_interface[tracking[0]]

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
            self.adds += 1
            return
        before = tracked.timeout_list()
        tracked.seen[0 if direction is tracked.made else 1] |= flags
        after = tracked.timeout_list()
        if after != before:
            del self._lists[before][tracking]
            self._lists[after][tracking] = None
