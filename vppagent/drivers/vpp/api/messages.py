"""The VPP API messages the driver uses, pinned per API layout (the CRCs it was written for).

The driver builds every request field by field (calls.py), so a VPP whose definition of one of these
messages differs (another CRC) would be sent bytes it reads differently. At connect time every
entry must be in VPP's message table as `<name>_<crc>`; otherwise the driver refuses to start and
names what is missing or different (GoVPP's compatibility check, done the same way).

Services (cnat translations, `SERVICE_MESSAGES`) are an optional group: a VPP without the cnat
plugin, or with other CRCs for these, still runs the driver; only Services then cannot be programmed
(`VppConnection.services_problem` says why, and every Service reports it as its error). Proxy
ARP / ND for the source-NAT address (`SNAT_PROXY_MESSAGES`) are a third group
(`VppConnection.snat_proxy_problem`).

`LAYOUTS` lists each pinned CRC table with the VPP releases known to carry exactly it; the
connection uses the one VPP's table fits (docs/vpp-driver.md, "Connection": why, and how a release
that changes a message gets a layout of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

# Requests and the replies/details they produce (control_ping_reply ends every old-style dump).
REQUIRED_MESSAGES: Final[dict[str, str]] = {
    "control_ping": "51077d14",
    "control_ping_reply": "f6b0b8ca",
    "show_version": "51077d14",
    "show_version_reply": "c919bde1",
    # the CLI: the ACL plugin's reclassify-sessions setting has no binary API (driver.py)
    "cli_inband": "f8377302",
    "cli_inband_reply": "05879051",
    # ACL plugin (acl.api 2.0.1)
    "acl_add_replace": "ee5c2f18",
    "acl_add_replace_reply": "ac407b0c",
    "acl_del": "ef34fea4",
    "acl_del_reply": "e8d4e804",
    "acl_dump": "ef34fea4",
    "acl_details": "95babae0",
    "acl_interface_set_acl_list": "473982bd",
    "acl_interface_set_acl_list_reply": "e8d4e804",
    "acl_interface_list_dump": "f9e6675e",
    "acl_interface_list_details": "e695d256",
    # interfaces
    "sw_interface_dump": "aa610c27",
    "sw_interface_details": "6c221fc7",
    "sw_interface_set_flags": "f5aec1b8",
    "sw_interface_set_flags_reply": "e8d4e804",
    "sw_interface_tag_add_del": "426f8bc1",
    "sw_interface_tag_add_del_reply": "e8d4e804",
    "ip_address_dump": "2d033de4",
    # IP on pod interfaces (pods/ip.py)
    "create_loopback": "42bb5d22",
    "create_loopback_reply": "5383d31f",
    "sw_interface_add_del_address": "5463d73b",
    "sw_interface_add_del_address_reply": "e8d4e804",
    "sw_interface_set_unnumbered": "154a6439",
    "sw_interface_set_unnumbered_reply": "e8d4e804",
    "sw_interface_ip6_enable_disable": "ae6cfcfb",
    "sw_interface_ip6_enable_disable_reply": "e8d4e804",
    "ip_neighbor_add_del": "0607c257",
    "ip_neighbor_add_del_reply": "1992deab",
    "ip_address_details": "ee29b797",
    # FIB
    "ip_route_add_del": "b8ecfe0d",
    "ip_route_add_del_reply": "1992deab",
    "ip_route_dump": "b9d2e09e",
    "ip_route_details": "bda8f315",
    # routes read back filtered by FIB source (only API-made ones: docs/vpp-driver.md, "Routes")
    "ip_route_v2_dump": "d16f72e6",
    "ip_route_v2_details": "b09aa6c0",
    # rx-mode of pod interfaces (interrupt: a polled interface keeps VPP's main loop busy)
    "sw_interface_set_rx_mode": "b04d1cfe",
    "sw_interface_set_rx_mode_reply": "e8d4e804",
    "sw_interface_rx_placement_dump": "f9e6675e",
    "sw_interface_rx_placement_details": "9e44a7ce",
    # pod attachments
    "tap_create_v3": "3f3fd1df",
    "tap_create_v3_reply": "5383d31f",
    "tap_delete_v2": "f9e6675e",
    "tap_delete_v2_reply": "e8d4e804",
    "sw_interface_tap_v2_dump": "f9e6675e",
    "sw_interface_tap_v2_details": "1e2b2a47",
    "af_packet_create_v3": "b3a809d4",
    "af_packet_create_v3_reply": "5383d31f",
    "af_packet_delete": "863fa648",
    "af_packet_delete_reply": "e8d4e804",
    "af_packet_dump": "51077d14",
    "af_packet_details": "58c7c042",
    # classifier (large IP sets; the source guard on pod input: guard/)
    "classify_add_del_table": "6849e39e",
    "classify_add_del_table_reply": "05486349",
    "classify_add_del_session": "f20879f0",
    "classify_add_del_session_reply": "e8d4e804",
    "classify_table_ids": "51077d14",
    "classify_table_ids_reply": "d1d20e1d",
    "classify_table_info": "0cca2cd9",
    "classify_table_info_reply": "4a573c0e",
    "classify_session_dump": "0cca2cd9",
    "classify_session_details": "60e3ef94",
    "classify_table_by_interface": "f9e6675e",
    "classify_table_by_interface_reply": "ed4197db",
    "input_acl_set_interface": "de7ad708",
    "input_acl_set_interface_reply": "e8d4e804",
    "output_acl_set_interface": "de7ad708",
    "output_acl_set_interface_reply": "e8d4e804",
}

# cnat plugin (cnat.api 0.3.0 in 25.10 and 26.06: these six have the same CRCs in both). Not
# pinned here, on purpose: the enum values of `cnat_endpoint_tuple_flags` (CNAT_EPT_NO_NAT is 1 in
# 25.10, 2 in 26.06: an enum value does not change a CRC) and the SNAT messages (cnat_set_snat_policy
# differs between the two); the driver sends no flags and no SNAT configuration (docs/services.md).
SERVICE_MESSAGES: Final[dict[str, str]] = {
    "cnat_translation_update": "f8d40bc5",
    "cnat_translation_update_reply": "e2fc8294",
    "cnat_translation_del": "3a91bde5",
    "cnat_translation_del_reply": "e8d4e804",
    "cnat_translation_dump": "51077d14",
    "cnat_translation_details": "1a5140b7",
}

# cnat's per-interface feature and its Kubernetes source-NAT policy (26.06: feature_cnat_enable_disable
# is new, cnat_set_snat_policy's policy enum gained a value): used for hairpin when VPP has exactly
# these; without them Services are programmed all the same, without hairpin (docs/services.md).
SERVICE_FEATURE_MESSAGES: Final[dict[str, str]] = {
    "feature_cnat_enable_disable": "5501adee",
    "feature_cnat_enable_disable_reply": "e8d4e804",
    "cnat_set_snat_addresses": "d997e96c",
    "cnat_set_snat_addresses_reply": "e8d4e804",
    "cnat_set_snat_policy": "37a3ce23",
    "cnat_set_snat_policy_reply": "e8d4e804",
    "cnat_snat_policy_add_del_if": "4ebb8d02",
    "cnat_snat_policy_add_del_if_reply": "e8d4e804",
    # read back before the addresses are set, so that a changed address releases the old one
    "cnat_get_snat_addresses": "51077d14",
    "cnat_get_snat_addresses_reply": "879513c1",
}

# Proxy ARP and ND proxy (arp.api 1.0.0, ip6_nd.api 1.0.0: the same CRCs in 25.10 and 26.06): VPP answers
# ARP / neighbour solicitations for the Services' source-NAT address on the uplink whose subnet holds
# it (services/proxy.py; `ip6nd_proxy_dump` is not used: VPP sends its details under a wrong id).
# Without them Services are programmed all the same; those reached from outside report that the
# address is not announced (docs/services.md, "Source NAT").
SNAT_PROXY_MESSAGES: Final[dict[str, str]] = {
    "proxy_arp_add_del": "1823c3e7",
    "proxy_arp_add_del_reply": "e8d4e804",
    "proxy_arp_dump": "51077d14",
    "proxy_arp_details": "5b948673",
    "proxy_arp_intfc_enable_disable": "ae6cfcfb",
    "proxy_arp_intfc_enable_disable_reply": "e8d4e804",
    "proxy_arp_intfc_dump": "51077d14",
    "proxy_arp_intfc_details": "f6458e5f",
    "ip6nd_proxy_add_del": "c2e4a686",
    "ip6nd_proxy_add_del_reply": "e8d4e804",
}

# Requests that change nothing in VPP: everything else counts as a write (a `cli_inband` that
# changes something is counted by `VppCalls.cli`).
READ_ONLY: Final[frozenset[str]] = frozenset({
    "cli_inband",
    "control_ping", "show_version", "acl_dump", "acl_interface_list_dump", "sw_interface_dump",
    "ip_address_dump", "ip_route_dump", "sw_interface_tap_v2_dump", "af_packet_dump", "classify_table_ids",
    "classify_table_info", "classify_session_dump", "classify_table_by_interface", "cnat_translation_dump",
    "ip_route_v2_dump", "sw_interface_rx_placement_dump", "cnat_get_snat_addresses",
    "proxy_arp_dump", "proxy_arp_intfc_dump",
})


@dataclass(frozen=True)
class ApiLayout:
    """One pinned set of message CRCs and the VPP releases known to carry exactly these."""

    name: str
    releases: tuple[str, ...]
    messages: Mapping[str, str]

    def mismatches(self, table: Mapping[str, str]) -> list[str]:
        """What VPP's message table (name -> CRC) lacks or defines otherwise; [] when it fits."""
        problems = []
        missing = [n for n in self.messages if n not in table]
        different = [f"{n} (VPP {table[n]}, driver {crc})" for n, crc in self.messages.items()
                     if n in table and table[n] != crc]
        if missing:
            problems.append("missing " + ", ".join(missing))
        if different:
            problems.append("CRC differs for " + ", ".join(different))
        return problems


LAYOUTS: Final[tuple[ApiLayout, ...]] = (ApiLayout("25.10", ("25.10", "26.06"), REQUIRED_MESSAGES),)


def release_of(version: str) -> str | None:
    """The release ("26.06") in a show_version string ("26.06.0-release", "v25.10-rc0~12-g..."), if any."""
    head = version.lstrip("v").split("-", 1)[0].split("~", 1)[0]
    parts = head.split(".")
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        return f"{int(parts[0]):02d}.{int(parts[1]):02d}"
    return None


def requests(messages: Mapping[str, str] = REQUIRED_MESSAGES) -> list[str]:
    """The request messages (what the driver sends), in table order."""
    return [n for n in messages if not n.endswith(("_reply", "_details"))]


def group_problems(messages: Mapping[str, str], table: Mapping[str, str], usable: Callable[[str], bool]) -> list[str]:
    """What VPP's message table (name -> CRC) lacks or defines otherwise of `messages`;
    `usable(name)`: the client has a method for that request."""
    problems = ApiLayout("group", (), messages).mismatches(table)
    unusable = [n for n in requests(messages) if table.get(n) == messages[n] and not usable(n)]
    if unusable:
        problems.append("no usable definition for " + ", ".join(unusable))
    return problems


def services_problem(table: Mapping[str, str], usable: Callable[[str], bool]) -> str | None:
    """Why this VPP cannot program Services, or None when it can."""
    problems = group_problems(SERVICE_MESSAGES, table, usable)
    return f"VPP's cnat plugin cannot be used for Services: {'; '.join(problems)}" if problems else None


def snat_proxy_problem(table: Mapping[str, str], usable: Callable[[str], bool]) -> str | None:
    """Why this VPP cannot announce the source-NAT address (proxy ARP / ND), or None when it can."""
    problems = group_problems(SNAT_PROXY_MESSAGES, table, usable)
    return f"VPP's proxy ARP / ND messages cannot be used: {'; '.join(problems)}" if problems else None
