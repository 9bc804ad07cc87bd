"""The packet a verdict is asked about, and its one-line text form.

Text syntax (what `policy trace --packet` reads and `str(Packet)` writes):
    tcp 10.0.0.1:1234 > 10.0.0.2:80
    udp [fd00::1]:53 > [fd00::2]:53
    icmp 10.0.0.1 > 10.0.0.2 type 8 code 0        (code defaults to 0)
    icmpv6 fd00::1 > fd00::2 type 128
    47 10.0.0.1 > 10.0.0.2                        (a protocol number; "proto 47 …" also works)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from vppagent.policy.model import (
    ICMP_FOR_FAMILY,
    MAX_PORT,
    PORT_PROTOCOLS,
    PROTOCOL_NAMES,
    PROTOCOL_NUMBERS,
    IPAddress,
)


class PacketError(ValueError):
    """A packet description that cannot be parsed or is not a valid packet."""


@dataclass(frozen=True)
class Packet:
    """A flow's first packet. Ports are meaningful for tcp/udp/sctp, type and code for the
    family's ICMP; the other fields stay 0.

    IP protocol 0 is refused: a VPP ACL rule with protocol 0 means "any protocol", so such a
    packet could not be told apart (IPv6 hop-by-hop headers are skipped by VPP anyway).
    """

    proto: int
    src: IPAddress
    dst: IPAddress
    src_port: int = 0
    dst_port: int = 0
    icmp_type: int = 0
    icmp_code: int = 0

    def __post_init__(self) -> None:
        if self.src.version != self.dst.version:
            raise PacketError(f"source {self.src} and destination {self.dst} differ in family")
        if not 1 <= self.proto <= 255:
            raise PacketError(f"IP protocol {self.proto} outside 1-255")
        if not (0 <= self.src_port <= MAX_PORT and 0 <= self.dst_port <= MAX_PORT):
            raise PacketError("ports must be 0-65535")
        if not (0 <= self.icmp_type <= 255 and 0 <= self.icmp_code <= 255):
            raise PacketError("ICMP type and code must be 0-255")
        if not self.has_ports and (self.src_port or self.dst_port):
            raise PacketError(f"protocol {self.proto} has no ports")
        if not self.is_icmp and (self.icmp_type or self.icmp_code):
            raise PacketError(f"protocol {self.proto} has no ICMP type/code in IPv{self.family}")

    @property
    def family(self) -> int:
        return self.src.version

    @property
    def has_ports(self) -> bool:
        return self.proto in PORT_PROTOCOLS

    @property
    def is_icmp(self) -> bool:
        return self.proto == ICMP_FOR_FAMILY[self.family]

    def __str__(self) -> str:
        name = PROTOCOL_NAMES.get(self.proto, str(self.proto))
        if self.has_ports:
            return f"{name} {_hostport(self.src, self.src_port)} > {_hostport(self.dst, self.dst_port)}"
        if self.is_icmp:
            return f"{name} {self.src} > {self.dst} type {self.icmp_type} code {self.icmp_code}"
        return f"{name} {self.src} > {self.dst}"

    @staticmethod
    def parse(text: str) -> Packet:
        try:
            return _parse(text)
        except PacketError as exc:
            raise PacketError(f"packet {text.strip()!r}: {exc}") from None
        except ValueError as exc:
            raise PacketError(f"packet {text.strip()!r}: {exc}") from None


def _hostport(addr: IPAddress, port: int) -> str:
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


def _split_hostport(token: str, want_port: bool) -> tuple[IPAddress, int]:
    if token.startswith("["):
        host, _, rest = token[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif token.count(":") == 1:
        host, _, port = token.partition(":")
    else:
        host, port = token, None
    addr = ipaddress.ip_address(host)
    if want_port and port is None:
        raise PacketError(f"{token!r} needs a port (write {_hostport(addr, 80)})")
    if not want_port and port is not None:
        raise PacketError(f"{token!r}: this protocol has no ports")
    return addr, int(port) if port is not None else 0


def _parse(text: str) -> Packet:
    words = text.split()
    if words and words[0].lower() == "proto":
        words = words[1:]
    if len(words) < 4 or words[2] != ">":
        raise PacketError("expected 'PROTO SRC > DST [type T [code C]]'")
    proto_word = words[0].lower()
    proto = int(proto_word) if proto_word.isdigit() else PROTOCOL_NUMBERS.get(proto_word, -1)
    if proto < 0:
        raise PacketError(f"unknown protocol {words[0]!r}")
    ports = proto in PORT_PROTOCOLS
    src, sport = _split_hostport(words[1], ports)
    dst, dport = _split_hostport(words[3], ports)
    extra = words[4:]
    fields = {"type": 0, "code": 0}
    if len(extra) % 2:
        raise PacketError(f"trailing {extra[-1]!r}")
    for key, value in zip(extra[::2], extra[1::2], strict=True):
        if key not in fields:
            raise PacketError(f"unknown field {key!r} (only 'type' and 'code')")
        fields[key] = int(value)
    return Packet(proto, src, dst, sport, dport, fields["type"], fields["code"])
