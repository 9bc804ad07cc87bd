"""The VPP driver (docs/vpp-driver.md). `make_driver("vpp")` calls `create_driver`.

Settings beyond AgentConfig, from the environment:
- VPPAGENT_VPP_API_DIR: `.api.json` directory for VPPs that do not serve `get_api_json`
  (default /usr/share/vpp/api);
- VPPAGENT_VPP_REQUEST_TIMEOUT: seconds one API request may take (default 5);
- VPPAGENT_VPP_CLASSIFIER_MIN_MEMBERS: IP sets at least this large go to classifier tables where
  the list allows it (default 500; 0 keeps every set in ACLs);
- VPPAGENT_VPP_RECLASSIFY_SESSIONS: true (default) turns on the ACL plugin's reclassify-sessions on
  every connection, so an ACL change re-judges established flows; false keeps them (Felix's rule).

The driver's modules are imported by `create_driver`, not here: importing one VPP fact
(`api.errors`, which the emulator shares) must not load the whole driver.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vppagent.config import AgentConfig
    from vppagent.drivers.vpp.driver import VppDriver
    from vppagent.drivers.vpp.pods.interfaces import PodKind

__all__ = ["create_driver", "flag", "pod_kind"]

VHOST_NET = Path("/dev/vhost-net")


def pod_kind(setting: str, vhost_net: Path = VHOST_NET) -> PodKind:
    """`--pod-interface`: auto = tap when /dev/vhost-net exists (VPP's tap needs it), else af_packet."""
    if setting == "tap":
        return "tap"
    if setting == "af_packet":
        return "af_packet"
    return "tap" if vhost_net.exists() else "af_packet"


def flag(name: str, default: bool) -> bool:
    """A true/false setting from the environment; DriverUnavailable naming it when it is neither."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    from vppagent.drivers import DriverUnavailable

    raise DriverUnavailable(f"{name}={os.environ[name]!r}: expected true or false")


def create_driver(config: AgentConfig) -> VppDriver:
    from vppagent.drivers import DriverUnavailable
    from vppagent.drivers.vpp.api.connection import VppConnection, VppUnavailable
    from vppagent.drivers.vpp.driver import DEFAULT_CLASSIFIER_MIN_MEMBERS, VppDriver
    from vppagent.drivers.vpp.services.settings import ServiceSettings

    reclassify = flag("VPPAGENT_VPP_RECLASSIFY_SESSIONS", True)
    conn = VppConnection(config.vpp_api_socket,
                         request_timeout=float(os.environ.get("VPPAGENT_VPP_REQUEST_TIMEOUT", "5")),
                         api_dir=os.environ.get("VPPAGENT_VPP_API_DIR") or None)
    try:
        conn.connect()
    except VppUnavailable as exc:
        raise DriverUnavailable(str(exc)) from None
    min_members = int(os.environ.get("VPPAGENT_VPP_CLASSIFIER_MIN_MEMBERS", DEFAULT_CLASSIFIER_MIN_MEMBERS))
    services = ServiceSettings(snat_ipv4=config.service_snat_ipv4, snat_ipv6=config.service_snat_ipv6,
                               cidrs=tuple(config.service_cidrs), node_ports=config.service_node_ports())
    return VppDriver(conn, pod_interface=pod_kind(config.pod_interface), rule_limit=config.rule_limit,
                     classifier_min_members=min_members, service_settings=services,
                     reclassify_sessions=reclassify)
