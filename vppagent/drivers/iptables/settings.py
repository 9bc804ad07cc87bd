"""The Felix parameters (ConfigUpdate) the kernel driver acts on, parsed once per config change.

Felix sends only explicitly set keys, with case-insensitive names; defaults are Felix's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vppagent.drivers.iptables.names import Marks

# Felix's failsafe syntax and defaults: one parser for the evaluator and every driver.
from vppagent.policy.catalog import DEFAULT_FAILSAFE_IN, DEFAULT_FAILSAFE_OUT, Failsafe, parse_failsafes


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes", "on")


FELIX_MARKS = Marks.from_mask(0xFFFF0000)


@dataclass(frozen=True)
class Settings:
    interface_prefixes: tuple[str, ...] = ("cali",)
    marks: Marks = FELIX_MARKS
    deny_action: str = "-j DROP"
    endpoint_to_host_action: str = "DROP"  # DROP, ACCEPT or RETURN
    failsafe_in: tuple[Failsafe, ...] = parse_failsafes(DEFAULT_FAILSAFE_IN)
    failsafe_out: tuple[Failsafe, ...] = parse_failsafes(DEFAULT_FAILSAFE_OUT)
    vxlan_port: int = 4789
    allow_vxlan_from_workloads: bool = False
    allow_ipip_from_workloads: bool = False
    conntrack_invalid_drop: bool = True
    ipv6: bool = True
    backend: str = "auto"
    refresh_interval: float = 90.0
    route_refresh_interval: float = 90.0

    @staticmethod
    def from_config(config: Mapping[str, str]) -> Settings:
        """Unparseable values fall back to Felix's defaults rather than failing the dataplane."""
        cfg = {k.lower(): v.strip() for k, v in config.items()}

        def get(name: str, default: str) -> str:
            return cfg.get(name.lower(), default) or default

        def number(name: str, default: float) -> float:
            try:
                return float(get(name, str(default)))
            except ValueError:
                return default

        try:
            marks = Marks.from_mask(int(get("IptablesMarkMask", "0xffff0000"), 0))
        except ValueError:
            marks = Marks.from_mask(0xFFFF0000)
        try:
            failsafe_in = parse_failsafes(get("FailsafeInboundHostPorts", DEFAULT_FAILSAFE_IN))
        except ValueError:
            failsafe_in = parse_failsafes(DEFAULT_FAILSAFE_IN)
        try:
            failsafe_out = parse_failsafes(get("FailsafeOutboundHostPorts", DEFAULT_FAILSAFE_OUT))
        except ValueError:
            failsafe_out = parse_failsafes(DEFAULT_FAILSAFE_OUT)
        to_host = get("DefaultEndpointToHostAction", "DROP").upper()
        prefixes = tuple(p.strip() for p in get("InterfacePrefix", "cali").split(",") if p.strip())
        return Settings(
            interface_prefixes=prefixes or ("cali",),
            marks=marks,
            deny_action="-j REJECT" if get("IptablesFilterDenyAction", "DROP").upper() == "REJECT" else "-j DROP",
            endpoint_to_host_action=to_host if to_host in ("ACCEPT", "RETURN") else "DROP",
            failsafe_in=failsafe_in,
            failsafe_out=failsafe_out,
            vxlan_port=int(number("VXLANPort", 4789)),
            allow_vxlan_from_workloads=_truthy(get("AllowVXLANPacketsFromWorkloads", "false")),
            allow_ipip_from_workloads=_truthy(get("AllowIPIPPacketsFromWorkloads", "false")),
            conntrack_invalid_drop=not _truthy(get("DisableConntrackInvalidCheck", "false")),
            ipv6=_truthy(get("Ipv6Support", "true")),
            backend=get("IptablesBackend", "auto").lower(),
            refresh_interval=number("IptablesRefreshInterval", 90.0),
            route_refresh_interval=number("RouteRefreshInterval", 90.0),
        )
