"""What the desired Services need in VPP: one cnat translation per frontend (pure, no I/O).

Each frontend (VIP:port/protocol of `ServiceEntry`, vppagent/services/model.py) with at least one
backend for it (`ServiceEntry.backends_for`: its address family, and this node's backends only for
outside frontends under `externalTrafficPolicy: Local`) becomes a translation to those backends,
sorted (cnat hashes onto the paths in the order given, so a stable order keeps flows where they
are). ClientIP affinity is cnat's Maglev load-balancing on the source address alone. Node-port
frontends are node addresses: their translations are "real IP" ones, so that other traffic to the
node keeps working. A frontend with no backend gets no translation (cnat cannot hold one without
paths), so its traffic follows VPP's routes; kube-proxy would reject it (docs/services.md).

A frontend two Services claim (the API server does not allow it, but input is not trusted) goes to
the first by name; the other Service fails naming both.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.types import CnatBackend, CnatTranslation
from vppagent.services.model import ServiceEntry

PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
TranslationKey = tuple[Address, int, int]  # VIP, port, IP protocol number


@dataclass
class WantedTranslations:
    translations: dict[TranslationKey, CnatTranslation] = field(default_factory=dict)
    owners: dict[TranslationKey, str] = field(default_factory=dict)  # key -> service name
    failed: dict[str, str] = field(default_factory=dict)  # service name -> why not programmed
    # VIP addresses of cluster, external and load-balancer frontends: a translation on one of these,
    # any port, is a Service's (the ownership rule, plan.py); node addresses are not among them.
    service_addresses: set[Address] = field(default_factory=set)


def wanted_translations(services: Mapping[str, ServiceEntry]) -> WantedTranslations:
    out = WantedTranslations()
    for name in sorted(services):
        entry = services[name]
        if entry.error:
            continue  # unreadable: nothing is programmed for it (the model's error stands)
        mine: dict[TranslationKey, CnatTranslation] = {}
        for port in entry.ports:
            for frontend in port.frontends:
                vip = ipaddress.ip_address(frontend.ip)
                if frontend.kind != "nodeport":
                    out.service_addresses.add(vip)
                backends = tuple(sorted(CnatBackend(ipaddress.ip_address(b.ip), b.port)
                                        for b in entry.backends_for(port, frontend)))
                if not backends:
                    continue
                translation = CnatTranslation(vip, frontend.port, PROTOCOL_NUMBERS[frontend.protocol], backends,
                                              affinity=entry.affinity_timeout is not None,
                                              real_ip=frontend.kind == "nodeport")
                mine[translation.key] = translation
        clash = sorted({out.owners[k] for k in mine if k in out.owners})
        if clash:
            texts = ", ".join(sorted(mine[k].text() for k in mine if k in out.owners))
            out.failed[name] = f"frontend {texts} is also service {', '.join(clash)}'s"
            continue
        out.translations.update(mine)
        out.owners.update(dict.fromkeys(mine, name))
    return out
