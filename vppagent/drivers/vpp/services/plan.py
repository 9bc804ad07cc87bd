"""Which translations to write and which to delete (pure): wanted against what VPP holds.

Ownership (cnat translations carry no tag, and a dump gives back no spare field to mark them: flags,
`is_real_ip` and the flow hash read back as zero): a translation VPP holds is the agent's when
- its VIP:port/protocol is a frontend the desired Services want (adopted, after an agent restart
  too, and corrected in place when it differs), or
- the driver programmed it itself (`made`: kept for the driver's life, across VPP reconnects), or
- its VIP address is a cluster, external or load-balancer address of a desired Service (any port:
  a Service address is the Service's alone; this finds a port removed while the agent was down), or
- with the cluster's service CIDRs configured (`ServiceSettings`): its VIP lies in one of them, or
  its VIP is a node address (one VPP holds on an interface that is not a pod's) and its port is in
  the NodePort range. The cluster reserves both for Services, so this finds, with no state kept,
  the translations of a Service deleted while the agent was not running.
Everything else is left alone: translations made by others, and, without service CIDRs configured
(a known gap), those of a Service deleted while the agent was not running.
A translation whose load-balancing type must change (affinity turned on or off) is deleted and
made again: VPP keeps the type of an existing translation on update.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.types import CnatDetails, CnatTranslation
from vppagent.drivers.vpp.services.settings import NO_SETTINGS, ServiceSettings
from vppagent.drivers.vpp.services.translations import Address, TranslationKey, WantedTranslations


@dataclass
class TranslationPlan:
    writes: list[CnatTranslation] = field(default_factory=list)  # create, or replace the paths
    recreate: list[tuple[int, CnatTranslation]] = field(default_factory=list)  # delete id, then write
    deletes: list[tuple[int, TranslationKey]] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.writes or self.recreate or self.deletes)


@dataclass(frozen=True)
class Ownership:
    """What, beside the desired Services, says a translation is ours: what the driver made, the
    cluster's Service ranges, and the node's addresses (those VPP holds on interfaces not pods')."""

    made: AbstractSet[TranslationKey] = frozenset()
    settings: ServiceSettings = NO_SETTINGS
    node_addresses: AbstractSet[Address] = frozenset()

    def in_cluster_ranges(self, key: TranslationKey) -> bool:
        if not self.settings.cidrs:
            return False  # without the cluster's ranges nothing tells a Service's address from another's
        vip, port, _ = key
        return self.settings.in_service_cidrs(vip) or (vip in self.node_addresses
                                                        and self.settings.is_node_port(port))


def is_ours(key: TranslationKey, wanted: WantedTranslations, ownership: Ownership) -> bool:
    return (key in wanted.translations or key in ownership.made or key[0] in wanted.service_addresses
            or ownership.in_cluster_ranges(key))


def plan_translations(held: Mapping[TranslationKey, CnatDetails], wanted: WantedTranslations,
                      ownership: Ownership) -> TranslationPlan:
    plan = TranslationPlan()
    for key, translation in sorted(wanted.translations.items(), key=lambda item: _order(item[0])):
        current = held.get(key)
        if current is None:
            plan.writes.append(translation)
        elif current.translation.affinity != translation.affinity:
            plan.recreate.append((current.id, translation))
        elif not current.translation.same_as(translation):
            plan.writes.append(translation)
    plan.deletes = [(details.id, key) for key, details in sorted(held.items(), key=lambda item: _order(item[0]))
                    if key not in wanted.translations and is_ours(key, wanted, ownership)]
    return plan


def _order(key: TranslationKey) -> tuple[int, int, int, int]:
    return (key[0].version, int(key[0]), key[1], key[2])
