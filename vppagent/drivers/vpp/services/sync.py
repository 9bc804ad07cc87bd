"""The Services the driver was given, kept in step with VPP across passes and connections.

What the driver holds for Services between its calls: the Services last given (None: never given,
so nothing is touched), the translations VPP holds (read once per connection or resync) and those
this driver made, cnat's source-NAT setup and per-interface feature on this connection, the proxy
ARP / ND entries (proxy.py `SnatProxy`), and what failed per Service. `converge` runs after every
pass of the driver and alone when the Services change; one pass is converge.py's. A Service is
"up" only once VPP holds its translations; while VPP cannot be reached every Service names why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import VppConnection
from vppagent.drivers.vpp.api.types import CnatDetails
from vppagent.drivers.vpp.programmed import Programmed
from vppagent.drivers.vpp.services.converge import (
    converge_services,
    enable_cnat,
    node_addresses,
    read_translations,
    uplinks,
)
from vppagent.drivers.vpp.services.proxy import SnatProxy
from vppagent.drivers.vpp.services.settings import ServiceSettings
from vppagent.drivers.vpp.services.translations import TranslationKey
from vppagent.services.model import ServiceEntry


class ServicesSync:
    def __init__(self, conn: VppConnection, calls: VppCalls, settings: ServiceSettings) -> None:
        self.conn, self.calls, self.settings = conn, calls, settings
        self.given: dict[str, ServiceEntry] | None = None  # None: never given (nothing to touch)
        self.translations: dict[TranslationKey, CnatDetails] | None = None  # held by VPP; None: unread
        self.made: set[TranslationKey] = set()
        self.failures: dict[str, str] = {}
        self.down: str | None = None  # why no Service can be held now (VPP unreachable)
        self.cnat_setup = False  # on this connection: cnat's source NAT policy set
        self.cnat_interfaces: set[tuple[int, str]] = set()  # on this connection: cnat's feature enabled
        self.snat_proxy = SnatProxy()  # proxy ARP / ND for the source-NAT address (proxy.py)
        self.stats: dict[str, int] | None = None  # the last pass's, for the driver's status

    def connected(self) -> None:
        """A new connection (maybe a new VPP): what VPP holds is read again, cnat set up again."""
        self.translations = None
        self.cnat_setup, self.cnat_interfaces = False, set()
        self.snat_proxy.connected()

    def give(self, services: Mapping[str, ServiceEntry]) -> None:
        """The Services to hold from now on; each fails as "not programmed yet" until a pass holds it."""
        self.given = dict(services)
        self.failures = dict.fromkeys(self.given, "not programmed yet")

    def errors(self) -> dict[str, str]:
        """Why each Service given is not held (none: all are)."""
        if self.given is None:
            return {}
        if self.down is not None:
            return dict.fromkeys(self.given, self.down)
        return dict(self.failures)

    def converge(self, programmed: Programmed | None, *, reread: bool, removing: bool = False) -> None:
        """The Services' translations (converge.py); VPP without a usable cnat plugin fails every
        Service with the reason, and the rest of the driver runs on."""
        if self.given is None:
            return
        services = {} if removing else self.given
        problem = self.conn.services_problem
        if problem is not None:
            self.failures = {name: problem for name, entry in services.items() if not entry.error}
            return
        if self.conn.cnat_features and programmed is not None:
            if not removing:
                self.cnat_interfaces, self.cnat_setup = enable_cnat(
                    self.calls, programmed, self.cnat_interfaces, self.settings,
                    setup=not self.cnat_setup, retired=self.snat_proxy.retired)
            self.snat_proxy.converge(self.calls, self.conn.snat_proxy_problem, self.settings,
                                     uplinks(programmed), reread=reread, removing=removing)
        if reread or self.translations is None:
            self.translations = read_translations(self.calls)
        nodes = frozenset() if programmed is None else node_addresses(programmed)
        result = converge_services(self.calls, self.translations, services, self.made, self.settings, nodes)
        proxy_error = self.snat_proxy.last.error
        if proxy_error is not None and not removing:  # the Services reached from outside need the address
            for name, entry in services.items():
                if not entry.error and any(f.kind != "cluster" for p in entry.ports for f in p.frontends):
                    result.failed.setdefault(name, proxy_error)
        self.failures = result.failed
        self.stats = {"translations": len(self.translations), "made": len(self.made), "writes": result.writes,
                      "deletes": result.deletes, "failed": len(result.failed)}

    def status(self) -> dict[str, Any]:
        return {"cnat_features": self.conn.cnat_features, "snat_proxy": self.snat_proxy.status()}
