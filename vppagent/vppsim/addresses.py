"""Conversions between VPP's address/prefix wire structures and :mod:`ipaddress` objects."""

from __future__ import annotations

import ipaddress
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

AF_IP4 = 0  # vl_api_address_family_t ADDRESS_IP4
AF_IP6 = 1  # vl_api_address_family_t ADDRESS_IP6


class InvalidPrefix(ValueError):
    """A prefix VPP's ``ip_prefix_decode2`` refuses: bad family, length or host bits set."""


def decode_address(address: dict[str, Any]) -> IPAddress:
    """``vl_api_address_t`` → address.  The union arm is chosen by ``af``, as VPP does."""
    family = address["af"]
    if family == AF_IP4:
        return ipaddress.IPv4Address(address["un"]["ip4"])
    if family == AF_IP6:
        return ipaddress.IPv6Address(address["un"]["ip6"])
    raise InvalidPrefix(f"address family {family}")


def decode_prefix(prefix: dict[str, Any], *, strict: bool) -> IPNetwork:
    """``vl_api_prefix_t`` → network.

    ``strict`` mirrors ``ip_prefix_validate``: the length must fit the family and
    no host bits may be set.
    """
    address = decode_address(prefix["address"])
    length = prefix["len"]
    if length > address.max_prefixlen:
        raise InvalidPrefix(f"prefix length {length} for {address}")
    try:
        return ipaddress.ip_network((address, length), strict=strict)
    except ValueError as error:
        raise InvalidPrefix(str(error)) from error


def decode_interface_prefix(prefix: dict[str, Any]) -> IPInterface:
    """``vl_api_address_with_prefix_t`` (address plus length, host bits allowed)."""
    address = decode_address(prefix["address"])
    if prefix["len"] > address.max_prefixlen:
        raise InvalidPrefix(f"prefix length {prefix['len']} for {address}")
    return ipaddress.ip_interface((address, prefix["len"]))


def address_union(address: IPAddress) -> dict[str, bytes]:
    return {"ip4": address.packed} if address.version == 4 else {"ip6": address.packed}


def encode_address(address: IPAddress) -> dict[str, Any]:
    return {"af": AF_IP4 if address.version == 4 else AF_IP6, "un": address_union(address)}


def encode_prefix(address: IPAddress, length: int) -> dict[str, Any]:
    return {"address": encode_address(address), "len": length}
