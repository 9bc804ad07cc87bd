"""Regenerate the vendored VPP API definitions of one release (``api/<release>/``).

Development-time tool only: the emulator and the tests read the files it writes and never a VPP
tree.  Usage (the paths are where this project's definitions came from)::

    python -m vppagent.vppsim.api.vendor --release 25.10 --source /work/shared/vpp-api
    python -m vppagent.vppsim.api.vendor --release 26.06 --source /usr/share/vpp/api

``--source`` is a VPP ``share/vpp/api`` tree (``core/`` and ``plugins/``) as the release's packages
install it; a module is looked up in either (``tapv2`` is core in 25.10, a plugin in 26.06).  Each
output file keeps its module's types, enums, unions, aliases, options and ``vl_api_version``
untouched and only drops the messages (and services) the emulator does not serve, so every kept
message's layout and CRC is exactly the release's; the JSON is written without indentation.
``memclnt`` is kept whole: its message order fixes the ids VPP gives the bootstrap messages
(``sockclnt_create`` = 15).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# Module → messages kept.  ``None`` keeps the module whole.  The order of the modules is the order
# the emulator numbers messages in (core before plugins, like VPP).
KEPT_MESSAGES: dict[str, list[str] | None] = {
    "memclnt": None,
    "vlib": ["cli_inband", "cli_inband_reply"],
    "vpe": ["show_version", "show_version_reply"],
    "interface": [
        "sw_interface_dump",
        "sw_interface_details",
        "sw_interface_set_flags",
        "sw_interface_set_flags_reply",
        "sw_interface_add_del_address",
        "sw_interface_add_del_address_reply",
        "sw_interface_tag_add_del",
        "sw_interface_tag_add_del_reply",
        "sw_interface_set_table",
        "sw_interface_set_table_reply",
        "sw_interface_set_unnumbered",
        "sw_interface_set_unnumbered_reply",
        "want_interface_events",
        "want_interface_events_reply",
        "sw_interface_event",
        "create_loopback",
        "create_loopback_reply",
        "create_loopback_instance",
        "create_loopback_instance_reply",
        "delete_loopback",
        "delete_loopback_reply",
        "sw_interface_set_rx_mode",
        "sw_interface_set_rx_mode_reply",
        "sw_interface_rx_placement_dump",
        "sw_interface_rx_placement_details",
    ],
    "ip": [
        "ip_table_add_del",
        "ip_table_add_del_reply",
        "ip_table_dump",
        "ip_table_details",
        "ip_route_add_del",
        "ip_route_add_del_reply",
        "ip_route_dump",
        "ip_route_details",
        "ip_route_v2_dump",
        "ip_route_v2_details",
        "ip_address_dump",
        "ip_address_details",
        "sw_interface_ip6_enable_disable",
        "sw_interface_ip6_enable_disable_reply",
    ],
    "ip_neighbor": ["ip_neighbor_add_del", "ip_neighbor_add_del_reply"],
    "tapv2": [
        "tap_create_v3",
        "tap_create_v3_reply",
        "tap_delete_v2",
        "tap_delete_v2_reply",
        "sw_interface_tap_v2_dump",
        "sw_interface_tap_v2_details",
    ],
    "classify": [
        "classify_add_del_table",
        "classify_add_del_table_reply",
        "classify_add_del_session",
        "classify_add_del_session_reply",
        "classify_table_ids",
        "classify_table_ids_reply",
        "classify_table_by_interface",
        "classify_table_by_interface_reply",
        "classify_table_info",
        "classify_table_info_reply",
        "classify_session_dump",
        "classify_session_details",
        "input_acl_set_interface",
        "input_acl_set_interface_reply",
        "output_acl_set_interface",
        "output_acl_set_interface_reply",
    ],
    "acl": [
        "acl_plugin_get_version",
        "acl_plugin_get_version_reply",
        "acl_plugin_get_conn_table_max_entries",
        "acl_plugin_get_conn_table_max_entries_reply",
        "acl_add_replace",
        "acl_add_replace_reply",
        "acl_del",
        "acl_del_reply",
        "acl_interface_add_del",
        "acl_interface_add_del_reply",
        "acl_interface_set_acl_list",
        "acl_interface_set_acl_list_reply",
        "acl_dump",
        "acl_details",
        "acl_interface_list_dump",
        "acl_interface_list_details",
        "acl_stats_intf_counters_enable",
        "acl_stats_intf_counters_enable_reply",
        "acl_interface_set_etype_whitelist",
        "acl_interface_set_etype_whitelist_reply",
        "acl_interface_etype_whitelist_dump",
        "acl_interface_etype_whitelist_details",
    ],
    "af_packet": [
        "af_packet_create_v3",
        "af_packet_create_v3_reply",
        "af_packet_delete",
        "af_packet_delete_reply",
        "af_packet_dump",
        "af_packet_details",
    ],
    "memif": [
        "memif_socket_filename_add_del_v2",
        "memif_socket_filename_add_del_v2_reply",
        "memif_create",
        "memif_create_reply",
        "memif_delete",
        "memif_delete_reply",
        "memif_dump",
        "memif_details",
    ],
    "cnat": [
        "cnat_translation_update",
        "cnat_translation_update_reply",
        "cnat_translation_del",
        "cnat_translation_del_reply",
        "cnat_translation_dump",
        "cnat_translation_details",
        "cnat_set_snat_addresses",
        "cnat_set_snat_addresses_reply",
        "cnat_set_snat_policy",
        "cnat_set_snat_policy_reply",
        "cnat_snat_policy_add_del_if",
        "cnat_snat_policy_add_del_if_reply",
        "feature_cnat_enable_disable",
        "feature_cnat_enable_disable_reply",
        "cnat_get_snat_addresses",
        "cnat_get_snat_addresses_reply",
    ],
    # proxy ARP / ND for the Services' source-NAT address (services/proxy.py)
    "arp": [
        "proxy_arp_add_del",
        "proxy_arp_add_del_reply",
        "proxy_arp_dump",
        "proxy_arp_details",
        "proxy_arp_intfc_enable_disable",
        "proxy_arp_intfc_enable_disable_reply",
        "proxy_arp_intfc_dump",
        "proxy_arp_intfc_details",
    ],
    "ip6_nd": [
        "ip6nd_proxy_add_del",
        "ip6nd_proxy_add_del_reply",
        "ip6nd_proxy_dump",
        "ip6nd_proxy_details",
    ],
}
# Kept where the release has them (26.06 added cnat's per-interface feature API).
OPTIONAL_MESSAGES = frozenset({"feature_cnat_enable_disable", "feature_cnat_enable_disable_reply"})

# Keys vpp_papi does not read; dropped to keep the vendored files small.
_DROPPED_KEYS = ("counters", "paths")
_TYPE_KEYS = ("types", "unions", "enums", "enumflags")


def trim_module(definition: dict[str, object], kept: list[str] | None) -> dict[str, object]:
    """Return ``definition`` with only the ``kept`` messages and their services."""
    trimmed = {key: value for key, value in definition.items() if key not in _DROPPED_KEYS}
    if kept is None:
        return trimmed
    messages = definition["messages"]
    assert isinstance(messages, list)
    by_name = {message[0]: message for message in messages}
    kept = [name for name in kept if name in by_name or name not in OPTIONAL_MESSAGES]
    missing = [name for name in kept if name not in by_name]
    if missing:
        raise SystemExit(f"messages missing from the source definitions: {missing}")
    trimmed["messages"] = [message for message in messages if message[0] in kept]
    services = definition.get("services", {})
    assert isinstance(services, dict)
    trimmed["services"] = {name: service for name, service in services.items() if name in kept}
    used = _used_type_names(trimmed)
    for key in _TYPE_KEYS:
        entries = trimmed.get(key, [])
        assert isinstance(entries, list)
        trimmed[key] = [entry for entry in entries if entry[0] in used]
    aliases = trimmed.get("aliases", {})
    assert isinstance(aliases, dict)
    trimmed["aliases"] = {name: alias for name, alias in aliases.items() if name in used}
    return trimmed


def _type_name(field: object) -> str | None:
    """``["vl_api_address_t", "dst"]`` → ``address``; None for a base type or anything else."""
    if isinstance(field, list) and field and isinstance(field[0], str):
        return str(field[0]).removeprefix("vl_api_").removesuffix("_t")
    return None


def _used_type_names(definition: dict[str, Any]) -> set[str]:
    """Names of the types, unions, enums and aliases the kept messages reach, directly or not."""
    fields_of: dict[str, list[object]] = {}
    for key in _TYPE_KEYS:
        for entry in definition.get(key, []):
            fields_of[entry[0]] = entry[1:]
    for name, alias in definition.get("aliases", {}).items():
        fields_of[name] = [[alias["type"]]]
    used: set[str] = set()
    pending = [field for message in definition["messages"] for field in message[1:]]
    while pending:
        name = _type_name(pending.pop())
        if name is not None and name in fields_of and name not in used:
            used.add(name)
            pending.extend(fields_of[name])
    return used


def find_module(source: Path, module: str) -> Path:
    for part in ("core", "plugins"):
        candidate = source / part / f"{module}.api.json"
        if candidate.is_file():
            return candidate
    raise SystemExit(f"{module}.api.json is in neither {source}/core nor {source}/plugins")


def vendor(release: str, source: Path, out_root: Path) -> None:
    out_dir = out_root / release
    out_dir.mkdir(exist_ok=True)
    for module, kept in KEPT_MESSAGES.items():
        trimmed = trim_module(json.loads(find_module(source, module).read_text()), kept)
        (out_dir / f"{module}.api.json").write_text(json.dumps(trimmed, separators=(",", ":")) + "\n")
        print(f"{release}/{module}.api.json: {len(trimmed['messages'])} messages")  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", required=True, help="the release the source tree is, e.g. 26.06")
    parser.add_argument("--source", type=Path, required=True, help="VPP share/vpp/api directory")
    args = parser.parse_args()
    vendor(args.release, args.source, Path(__file__).parent)


if __name__ == "__main__":
    main()
