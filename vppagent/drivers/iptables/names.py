"""Kernel names for Felix objects, and the packet-mark bits the chains use.

Chain and IP set names are our prefix plus a hash of Felix's name (≤ 28 and ≤ 31 characters);
endpoint chains keep the interface name, which must be a valid Linux name of plain characters.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

from vppagent.drivers.iptables.table import CHAIN_PREFIX, MAX_CHAIN_NAME
from vppagent.state.ipset import IPSetType
from vppagent.state.model import PolicyKey

IPSET_PREFIX = "vpa"
IPSET_TEMP_PREFIX = "vpt"
IPSET_NAME_RE = re.compile(r"^vp[at][46][inp]-[A-Za-z0-9_-]+$")
_IFACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
_TYPE_LETTER = {IPSetType.IP: "i", IPSetType.NET: "n", IPSetType.IP_AND_PORT: "p"}


def short_hash(text: str, length: int) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:length]


def _fit(prefix: str, identity: str) -> str:
    return CHAIN_PREFIX + prefix + short_hash(identity, MAX_CHAIN_NAME - len(CHAIN_PREFIX) - len(prefix))


# Names are pure functions of their arguments and are asked for once per reference (every
# endpoint chain names its policies' chains): cached, so each is hashed once.
@lru_cache(maxsize=1 << 16)
def policy_chain(key: PolicyKey, inbound: bool) -> str:
    return _fit("pi-" if inbound else "po-", f"{key.namespace}\0{key.name}\0{key.kind}")


@lru_cache(maxsize=1 << 16)
def profile_chain(name: str, inbound: bool) -> str:
    return _fit("pri-" if inbound else "pro-", name)


class BadInterfaceName(ValueError):
    pass


def check_interface(name: str) -> str:
    if not _IFACE_RE.match(name):
        raise BadInterfaceName(f"interface name {name!r} is not a valid Linux interface name")
    return name


@lru_cache(maxsize=1 << 16)
def endpoint_chain(prefix: str, iface: str) -> str:
    """Per-endpoint chains keep the interface name (≤ 15 chars), like Felix's cali-tw-<iface>."""
    name = f"{CHAIN_PREFIX}{prefix}{check_interface(iface)}"
    return name if len(name) <= MAX_CHAIN_NAME else _fit(prefix, iface)


@lru_cache(maxsize=1 << 16)
def ipset_name(set_id: str, set_type: IPSetType, family: int, temp: bool = False) -> str:
    """≤ 31 chars (ipset's limit); the type is part of the name so a type change is a new set."""
    head = f"{IPSET_TEMP_PREFIX if temp else IPSET_PREFIX}{family}{_TYPE_LETTER[set_type]}-"
    return head + short_hash(set_id, 22)


@dataclass(frozen=True)
class Marks:
    """Mark bits, allocated from Felix's IptablesMarkMask (lowest bits first, as Felix does)."""

    accept: int
    passed: int
    scratch0: int
    scratch1: int

    @property
    def all(self) -> int:
        return self.accept | self.passed | self.scratch0 | self.scratch1

    @staticmethod
    def from_mask(mask: int) -> Marks:
        bits = [1 << i for i in range(32) if mask & (1 << i)]
        if len(bits) < 4:
            raise ValueError(f"IptablesMarkMask {mask:#x} has fewer than 4 bits")
        return Marks(*bits[:4])


def hexmark(value: int) -> str:
    return f"{value:#x}"


# The mark matches and targets below appear in almost every rule; there are a handful of bits.
@lru_cache(maxsize=256)
def set_mark(bits: int) -> str:
    return f"-j MARK --set-xmark {hexmark(bits)}/{hexmark(bits)}"


@lru_cache(maxsize=256)
def clear_mark(bits: int) -> str:
    return f"-j MARK --set-xmark 0x0/{hexmark(bits)}"


@lru_cache(maxsize=256)
def mark_set(bits: int) -> str:
    return f"-m mark --mark {hexmark(bits)}/{hexmark(bits)}"


@lru_cache(maxsize=256)
def mark_clear(bits: int) -> str:
    return f"-m mark --mark 0x0/{hexmark(bits)}"
