"""The typed values the calls (calls.py) take and return: VPP objects as the driver reasons about
them, with no message field names. All immutable or plain data; no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from vppagent.policy.model import IPAddress, IPNetwork

# An ACL rule's action (`is_permit` in `vl_api_acl_rule_t`).
DENY = 0
PERMIT = 1
PERMIT_REFLECT = 2


class AclRule(NamedTuple):
    action: int
    src: IPNetwork
    dst: IPNetwork
    proto: int
    sport: tuple[int, int]
    dport: tuple[int, int]
    tcp_flags_mask: int = 0
    tcp_flags_value: int = 0

    def text(self) -> str:
        return (f"{self.action} {self.src} {self.dst} {self.proto} {self.sport[0]}-{self.sport[1]} "
                f"{self.dport[0]}-{self.dport[1]} {self.tcp_flags_mask}/{self.tcp_flags_value}")


@dataclass(frozen=True)
class AclContent:
    """What one VPP ACL holds: its rules in order, and a digest of them (content equality is
    rule equality, never a guess from a tag)."""

    rules: tuple[AclRule, ...]
    digest: str

    @staticmethod
    def of(rules: Iterable[AclRule]) -> AclContent:
        ordered = tuple(rules)
        return AclContent.of_texts(ordered, [r.text() for r in ordered])

    @staticmethod
    def of_texts(rules: tuple[AclRule, ...], texts: Iterable[str]) -> AclContent:
        """`of` for rules whose `text()` the caller has already (rules restricted from one list)."""
        return AclContent(rules, hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16])

    def __len__(self) -> int:
        return len(self.rules)


# A zero-rule ACL: VPP applies it as "drop everything".
DENY_ALL = AclContent.of(())


@dataclass(frozen=True)
class AclDetails:
    index: int
    tag: str
    content: AclContent


@dataclass(frozen=True)
class RouteTarget:
    """A single-path route: through an interface (attached) or via a next hop."""

    sw_if_index: int | None = None
    next_hop: IPAddress | None = None

    def __str__(self) -> str:
        return f"dev {self.sw_if_index}" if self.sw_if_index is not None else f"via {self.next_hop}"


@dataclass(frozen=True)
class InterfaceDetails:
    sw_if_index: int
    name: str
    tag: str
    dev_type: str


@dataclass(frozen=True)
class TapDetails:
    sw_if_index: int
    host_namespace: str
    host_if_name: str


@dataclass(frozen=True)
class AfPacketDetails:
    sw_if_index: int
    host_if_name: str


@dataclass(frozen=True)
class ClassifyTableInfo:
    index: int
    mask: bytes
    next_table: int
    miss_next: int
    nbuckets: int


@dataclass(frozen=True)
class ClassifySession:
    match: bytes
    hit_next: int
    opaque: int


@dataclass(frozen=True)
class SessionWrite:
    """One classifier session to add (or delete): an item of `VppBatches.classify_sessions_write`."""

    table: int
    match: bytes
    hit_next: int
    opaque: int
    add: bool = True


@dataclass(frozen=True)
class ClassifyTableAdd:
    """A new classifier table matching from the IP header (an item of `VppBatches.classify_tables_add`)."""

    mask: bytes
    next_table: int
    miss_next: int
    nbuckets: int
    memory_size: int
    what: str = "classifier table"


@dataclass(frozen=True)
class InterfaceTable:
    """A classifier table attached (or detached) as an interface's input ACL in one family."""

    sw_if_index: int
    family: int
    table: int
    add: bool = True
    what: str = ""


@dataclass(frozen=True, order=True)
class CnatBackend:
    """One path of a cnat translation: the backend the VIP is rewritten to (no source rewrite)."""

    ip: IPAddress
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.ip.version == 6 else f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class CnatTranslation:
    """A cnat translation as the driver programs it: VIP:port/protocol -> backends.

    `affinity`: client-IP affinity (load-balancing by the source address alone, Maglev); a dump
    reads it back as the load-balancing type. `real_ip`: the VIP is an address VPP owns (a node
    address: node ports), so other traffic to it must keep working; a dump does not give it back,
    so it is not compared."""

    vip: IPAddress
    port: int
    proto: int  # IANA protocol number: 6, 17, 132
    backends: tuple[CnatBackend, ...]
    affinity: bool = False
    real_ip: bool = False

    @property
    def key(self) -> tuple[IPAddress, int, int]:
        return (self.vip, self.port, self.proto)

    def same_as(self, other: CnatTranslation) -> bool:
        """Equal in everything a dump shows."""
        return (self.key, self.backends, self.affinity) == (other.key, other.backends, other.affinity)

    def text(self) -> str:
        vip = f"[{self.vip}]" if self.vip.version == 6 else str(self.vip)
        return f"{vip}:{self.port}/{PROTOCOL_NAMES.get(self.proto, self.proto)}"


@dataclass(frozen=True)
class CnatDetails:
    id: int
    translation: CnatTranslation


PROTOCOL_NAMES = {6: "tcp", 17: "udp", 132: "sctp"}
