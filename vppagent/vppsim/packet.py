"""Packets and verdicts for the emulator's packet evaluator."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from enum import Enum

from vppagent.vppsim.addresses import IPAddress

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMP6 = 58

PROTOCOL_NUMBERS = {"icmp": PROTO_ICMP, "tcp": PROTO_TCP, "udp": PROTO_UDP, "icmp6": PROTO_ICMP6,
                    "icmpv6": PROTO_ICMP6, "sctp": 132}

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10

# ICMP types whose answer the ACL plugin's reflect sessions admit (request → reply),
# after the ``icmp4_invmap``/``icmp6_invmap`` tables in the plugin's session code.
ICMP4_REPLY_TYPE = {8: 0, 13: 14, 15: 16, 17: 18}
ICMP6_REPLY_TYPE = {128: 129}


class Direction(Enum):
    """Direction relative to VPP: INPUT = entering VPP from the interface (pod egress)."""

    INPUT = "input"
    OUTPUT = "output"


def parse_protocol(proto: int | str) -> int:
    if isinstance(proto, int):
        return proto
    return PROTOCOL_NUMBERS[proto.lower()]


@dataclass(frozen=True)
class Packet:
    """An IP packet as far as ACLs and classifier tables can see it.

    ``sport``/``dport`` hold the ICMP type/code for ICMP and ICMPv6, as VPP's ACL
    rules do.  Protocols other than TCP, UDP and ICMP carry no ports in VPP's
    5-tuple, so the evaluator ignores ``sport``/``dport`` for them.
    """

    src: IPAddress
    dst: IPAddress
    proto: int
    sport: int = 0
    dport: int = 0
    tcp_flags: int = 0

    @classmethod
    def make(cls, src: str | IPAddress, dst: str | IPAddress, proto: int | str, sport: int = 0,
             dport: int = 0, tcp_flags: int | None = None) -> Packet:
        protocol = parse_protocol(proto)
        source = ipaddress.ip_address(src)
        destination = ipaddress.ip_address(dst)
        if source.version != destination.version:
            raise ValueError(f"mixed address families: {source} → {destination}")
        if tcp_flags is None:
            tcp_flags = TCP_SYN if protocol == PROTO_TCP else 0
        return cls(source, destination, protocol, sport, dport, tcp_flags)

    @property
    def is_ip6(self) -> bool:
        return self.src.version == 6

    @property
    def has_ports(self) -> bool:
        return self.proto in (PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMP6)

    def reply(self, tcp_flags: int | None = None) -> Packet:
        """The answer the destination sends back (ICMP echo request → echo reply)."""
        if self.proto in (PROTO_ICMP, PROTO_ICMP6):
            table = ICMP6_REPLY_TYPE if self.is_ip6 else ICMP4_REPLY_TYPE
            return replace(self, src=self.dst, dst=self.src, sport=table.get(self.sport, self.sport))
        flags = tcp_flags if tcp_flags is not None else (
            TCP_SYN | TCP_ACK if self.proto == PROTO_TCP and self.tcp_flags & TCP_SYN else self.tcp_flags)
        return replace(self, src=self.dst, dst=self.src, sport=self.dport, dport=self.sport, tcp_flags=flags)


@dataclass(frozen=True)
class Verdict:
    """What happened to a packet at one interface/direction, and why."""

    permitted: bool
    reason: str
    acl_index: int | None = None
    rule_index: int | None = None
    session_created: bool = False

    def __bool__(self) -> bool:
        return self.permitted


@dataclass(frozen=True)
class Hop:
    sw_if_index: int
    direction: Direction
    verdict: Verdict


@dataclass
class PathResult:
    """A packet's way through a sequence of interface/direction checks."""

    packet: Packet
    hops: list[Hop] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return all(hop.verdict.permitted for hop in self.hops)

    @property
    def dropped_at(self) -> Hop | None:
        return next((hop for hop in self.hops if not hop.verdict.permitted), None)


@dataclass
class ConnectResult:
    """Outcome of :func:`connect`: the request (SYN) and, if it got through, the reply."""

    request: PathResult
    reply: PathResult | None

    @property
    def established(self) -> bool:
        return self.request.delivered and self.reply is not None and self.reply.delivered

    def __bool__(self) -> bool:
        return self.established
