"""The kernel (iptables + ipset + routes) driver; `make_driver` calls `create_driver`.

Two settings are not in AgentConfig yet and come from the environment:
- iptables_netns (--iptables-netns, VPPAGENT_IPTABLES_NETNS): program this named network namespace
  (/run/netns/NAME) instead of the agent's own; CNI pods are made there too;
- iptables_backend (VPPAGENT_IPTABLES_BACKEND): nft or legacy, overriding Felix's IptablesBackend.
"""

from __future__ import annotations

import shutil

from vppagent.config import AgentConfig
from vppagent.drivers.iptables.driver import IptablesDriver

__all__ = ["IptablesDriver", "create_driver"]



def create_driver(config: AgentConfig) -> IptablesDriver:
    from vppagent.drivers import DriverUnavailable

    missing = [t for t in ("ipset", "ip") if shutil.which(t) is None]
    if shutil.which("iptables-nft-restore") is None and shutil.which("iptables-legacy-restore") is None:
        missing.append("iptables-nft-restore or iptables-legacy-restore")
    if missing:
        raise DriverUnavailable(
            f"iptables driver: missing {', '.join(missing)} (Debian: apt-get install iptables ipset iproute2)")
    backend = None if config.iptables_backend in (None, "auto") else config.iptables_backend
    try:
        return IptablesDriver(netns=config.iptables_netns, backend=backend,
                              manage_remote_routes=config.bgp_settings() is None)
    except RuntimeError as exc:
        raise DriverUnavailable(f"iptables driver: {exc}") from None
