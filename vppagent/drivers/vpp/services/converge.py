"""Make VPP hold the desired Services' translations: read (when not known), plan, write.

Writes come before deletes (a frontend moved between VIPs never has neither). A refused write fails
the Service that owns the translation, naming it; the rest go on, and what VPP held for the failed
one stays. After each write `held` is kept true, so a pass against a VPP that already matches
writes nothing.

Removed backends: a write replaces the translation's paths, so new flows never choose a removed
backend; flows cnat already holds a session for keep their backend until the session expires
(cnat's own timers: 30 s, an established TCP connection 1 h; checked on VPP 26.06,
docs/services.md). cnat has no API to end one flow's session.

Source NAT (`enable_cnat`, VPP 26.06): cnat's per-interface feature on every interface but local0
and the pod gateway, before any translation is written, and cnat's Kubernetes source-NAT policy with
the pod interfaces as pods' and the source addresses of `ServiceSettings` (settings.py). A flow cnat
sends back to the pod it came from (hairpin), or from a non-pod interface out of another non-pod
interface (outside to a backend on another node), leaves with that source; the answer comes back
to VPP, which translates it back. Flows from pods to others and from outside to pods here keep
their source.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused
from vppagent.drivers.vpp.api.types import CnatDetails
from vppagent.drivers.vpp.programmed import InterfaceInfo, Programmed
from vppagent.drivers.vpp.services.plan import Ownership, plan_translations
from vppagent.drivers.vpp.services.proxy import Uplink
from vppagent.drivers.vpp.services.settings import NO_SETTINGS, ServiceSettings
from vppagent.drivers.vpp.services.translations import Address, TranslationKey, wanted_translations
from vppagent.drivers.vpp.tags import GATEWAY_TAG
from vppagent.services.model import ServiceEntry

log = logging.getLogger(__name__)


def _outside(programmed: Programmed) -> list[InterfaceInfo]:
    """Interfaces cnat acts on, pods' included: all but local0 and the pod gateway."""
    return [info for info in sorted(programmed.interfaces.values(), key=lambda i: i.sw_if_index)
            if not info.is_local and info.tag != GATEWAY_TAG]


def enable_cnat(calls: VppCalls, programmed: Programmed, done: set[tuple[int, str]], settings: ServiceSettings,
                *, setup: bool, retired: set[Address]) -> tuple[set[tuple[int, str]], bool]:
    """cnat's feature (and, for pods, its source-NAT pod table) on interfaces not yet done on this
    connection (`done`: (sw_if_index, name)); the source-NAT addresses and policy with `setup`.
    Returns what is done, and whether the policy is set. A refusal costs source NAT only: logged,
    retried on the next pass. The interfaces' writes go as one pipeline after the setup's replies;
    an interface is done when all of its writes were applied (a refused one is written again next
    pass, the others are not).

    cnat keeps the FIB entry of a source-NAT address it is told to replace (`cnat_set_snat` overwrites
    the address, never frees the old one's client), so addresses that differ from what cnat holds are
    set after releasing cnat's entry (all zero: `cnat_snat_cleanup` frees both addresses' entries and
    the entry's policy and pod table, set again here). What cnat held and the configuration no longer
    names is added to `retired` (its proxy ARP / ND entries are ours to remove: proxy.py)."""
    released = False
    try:
        if setup:
            wanted = settings.snat_addresses()
            held = calls.cnat_snat_addresses()
            if held is not None and (str(held[0]), str(held[1])) != wanted:
                retired.update(a for a in held if int(a) != 0 and str(a) not in wanted)
                calls.cnat_snat_release()
                released = True
                log.info("cnat source NAT addresses %s, %s replaced by %s, %s", held[0], held[1], *wanted)
            calls.cnat_snat_k8s(*wanted)
    except ApiRefused as exc:
        _not_set(exc)
        if released:  # cnat forgot its pod table: the pods go in again next time
            done = done - {(i.sw_if_index, i.name) for i in _outside(programmed) if i.is_pod}
        return done, False
    outside = [(info, (info.sw_if_index, info.name)) for info in _outside(programmed)]
    features = [info.sw_if_index for info, ident in outside if ident not in done]
    pods = [info.sw_if_index for info, ident in outside if info.is_pod and (ident not in done or released)]
    refused: set[int] = set()
    if features or pods:
        feature_outcomes, pod_outcomes = calls.batches.cnat_interfaces_write(features, pods)
        for sw_if_index, outcome in (*zip(features, feature_outcomes, strict=True),
                                     *zip(pods, pod_outcomes, strict=True)):
            if outcome is not None:
                _not_set(outcome)
                refused.add(sw_if_index)
    return {ident for info, ident in outside if info.sw_if_index not in refused}, True


def _not_set(exc: ApiRefused) -> None:
    log.warning("cnat feature or source NAT not set (hairpin and flows to other nodes will not work): %s", exc)


def uplinks(programmed: Programmed) -> list[Uplink]:
    """The interfaces holding node addresses, with their subnets as read with the interfaces: neither
    pods' nor the pod gateway."""
    return [Uplink(info.sw_if_index, info.name, tuple(programmed.interface_prefixes.get(info.sw_if_index, ())))
            for info in _outside(programmed) if not info.is_pod]


def read_translations(calls: VppCalls) -> dict[TranslationKey, CnatDetails]:
    return {d.translation.key: d for d in calls.cnat_translations()}


def node_addresses(programmed: Programmed) -> frozenset[Address]:
    """The addresses VPP holds on interfaces that are not pods' nor the pod gateway (uplinks: where
    node ports are), as read with the interfaces."""
    return frozenset(prefix.ip for uplink in uplinks(programmed) for prefix in uplink.prefixes)


@dataclass
class ServicesPass:
    failed: dict[str, str] = field(default_factory=dict)  # service name -> why it is not programmed
    writes: int = 0
    deletes: int = 0


def converge_services(calls: VppCalls, held: dict[TranslationKey, CnatDetails],
                      services: Mapping[str, ServiceEntry], made: set[TranslationKey],
                      settings: ServiceSettings = NO_SETTINGS,
                      node_addresses: frozenset[Address] = frozenset()) -> ServicesPass:
    """Converge `held` (what VPP holds, kept true) to `services`; `made` gains what was written.
    `settings` and `node_addresses` widen what is ours (plan.py). Three steps, each one pipeline
    whose replies are all read before the next is sent: the deletes of translations made again,
    the writes, the deletes of stale ones."""
    wanted = wanted_translations(services)
    result = ServicesPass(failed=dict(wanted.failed))
    plan = plan_translations(held, wanted, Ownership(made, settings, node_addresses))
    if plan.recreate:
        outcomes = calls.batches.cnat_translations_del(
            [(old_id, f"service {wanted.owners[t.key]} {t.text()} (its load balancing changes)")
             for old_id, t in plan.recreate])
        for (_, translation), refused in zip(plan.recreate, outcomes, strict=True):
            if refused is not None:
                result.failed.setdefault(wanted.owners[translation.key], str(refused))
                continue
            held.pop(translation.key, None)
            result.deletes += 1
            plan.writes.append(translation)
    if plan.writes:
        written = calls.batches.cnat_translations_update(
            [(t, f"service {wanted.owners[t.key]} {t.text()}") for t in plan.writes])
        for translation, new_id in zip(plan.writes, written, strict=True):
            if isinstance(new_id, ApiRefused):
                result.failed.setdefault(wanted.owners[translation.key], str(new_id))
                continue
            held[translation.key] = CnatDetails(new_id, translation)
            made.add(translation.key)
            result.writes += 1
    if plan.deletes:
        outcomes = calls.batches.cnat_translations_del([(translation_id, "") for translation_id, _ in plan.deletes])
        for (_, key), refused in zip(plan.deletes, outcomes, strict=True):
            if refused is not None:
                log.warning("stale cnat translation %s not deleted: %s", held[key].translation.text(), refused)
                continue
            held.pop(key, None)
            made.discard(key)
            result.deletes += 1
    return result
