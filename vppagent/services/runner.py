"""The service source inside `vppagent run` (--services kubernetes): built, started, reported.

The desired services are kept for the state report (`services`, `services_source`, DESIGN §4).
No driver programs them yet (the VPP cnat translations are still to come, docs/services.md), so
`services_source.programmed` says false: the report shows what would be programmed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vppagent.services.model import ServiceEntry
from vppagent.services.source import KubernetesServiceSource, ServicesConfigError, load_api_client
from vppagent.state.model import DataplaneState

if TYPE_CHECKING:
    from vppagent.server.core import AgentCore

__all__ = ["ServiceRunner", "ServicesConfigError", "service_source"]

log = logging.getLogger("vppagent.services")


def node_name() -> str:
    """This node's Kubernetes name until Felix says it: $NODENAME as calico-node sets it, else the host name."""
    return os.environ.get("NODENAME") or socket.gethostname()


def node_identity(state: DataplaneState, fallback: str) -> tuple[str, tuple[str, ...]]:
    """This node's name (Felix's FelixHostname, else `fallback`) and the addresses Felix's
    HostMetadata gives it (a prefix length is dropped; what is not an address is left out)."""
    name = state.config.get("FelixHostname") or fallback
    metadata = state.host_metadata.get(name)
    addresses = []
    for text in (metadata.ipv4_addr, metadata.ipv6_addr) if metadata is not None else ():
        with contextlib.suppress(ValueError):
            if text:
                addresses.append(str(ipaddress.ip_interface(text.strip()).ip))
    return name, tuple(addresses)


class ServiceRunner:
    def __init__(self, source_factory: Callable[[Callable[[dict[str, ServiceEntry]], None]], KubernetesServiceSource]):
        self._source = source_factory(self._changed)

    def _changed(self, entries: dict[str, ServiceEntry]) -> None:
        log.debug("services: %d desired", len(entries))

    def start(self, core: AgentCore) -> None:
        """Reports through `core`'s state report; takes the node's name and addresses after each apply."""
        core.report_sections["services"] = self.report
        core.report_sections["services_source"] = lambda: self._source.status() | {"programmed": False}
        core.on_applied.append(lambda c: self._source.set_node(*node_identity(c.store.effective, node_name())))
        self._source.start()

    def stop(self) -> None:
        self._source.stop()

    def report(self) -> list[dict[str, Any]]:
        return [entry.report() for _, entry in sorted(self._source.services().items())]


def service_source(kubeconfig: Path | None) -> ServiceRunner:
    """A runner for the API server `kubeconfig` names (or in-cluster, else $KUBECONFIG); ServicesConfigError."""
    client = load_api_client(kubeconfig)
    return ServiceRunner(lambda on_change: KubernetesServiceSource(client, on_change, node_name=node_name()))
