"""The service source inside `vppagent run` (--services kubernetes): built, started, reported.

Every change of the desired services goes to the agent (`AgentCore.set_services`), whose worker
hands them to the driver: the VPP driver programs them as cnat translations, the others leave them
(the kernel driver to kube-proxy). The state report (`services`, `services_source`, DESIGN §4)
says per Service whether the active driver holds it: "up" only when it does (or, with a driver that
does not program Services, when the Service could be read); `services_source.programmed` says
whether the active driver programs Services at all.
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
        self._core: AgentCore | None = None

    def _changed(self, entries: dict[str, ServiceEntry]) -> None:
        log.debug("services: %d desired", len(entries))
        if self._core is not None:
            self._core.set_services(entries)

    def start(self, core: AgentCore) -> None:
        """Hands changes to `core`; reports through its state report; takes the node's name and
        addresses after each apply."""
        self._core = core
        core.report_sections["services"] = lambda: self.report(core)
        core.report_sections["services_source"] = lambda: self._source.status() | {
            "programmed": core.driver.programs_services}
        core.on_applied.append(lambda c: self._source.set_node(*node_identity(c.store.effective, node_name())))
        self._source.start()

    def stop(self) -> None:
        self._source.stop()

    def report(self, core: AgentCore) -> list[dict[str, Any]]:
        """Called under the core's lock (its state report)."""
        driver = core.driver
        errors = driver.service_errors() if driver.programs_services else {}
        rows = []
        for name, entry in sorted(self._source.services().items()):
            row = entry.report()
            if row["status"] == "up" and driver.programs_services:
                if core.services is None or core.services.get(name) != entry:
                    row |= {"status": "error", "error": "not handed to the driver yet"}
                elif name in errors:
                    row |= {"status": "error", "error": errors[name]}
            rows.append(row)
        return rows


def service_source(kubeconfig: Path | None) -> ServiceRunner:
    """A runner for the API server `kubeconfig` names (or in-cluster, else $KUBECONFIG); ServicesConfigError."""
    client = load_api_client(kubeconfig)
    return ServiceRunner(lambda on_change: KubernetesServiceSource(client, on_change, node_name=node_name()))
