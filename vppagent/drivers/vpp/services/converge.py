"""Make VPP hold the desired Services' translations: read (when not known), plan, write.

Writes come before deletes (a frontend moved between VIPs never has neither). A refused write fails
the Service that owns the translation, naming it; the rest go on, and what VPP held for the failed
one stays. After each write `held` is kept true, so a pass against a VPP that already matches
writes nothing.

Removed backends: a write replaces the translation's paths, so new flows never choose a removed
backend; flows cnat already holds a session for keep their backend until the session expires
(cnat's own timers: 30 s, an established TCP connection 1 h; checked on VPP 26.06,
docs/services.md). cnat has no API to end one flow's session.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused
from vppagent.drivers.vpp.api.types import CnatDetails
from vppagent.drivers.vpp.services.plan import plan_translations
from vppagent.drivers.vpp.services.translations import TranslationKey, wanted_translations
from vppagent.services.model import ServiceEntry

log = logging.getLogger(__name__)


def read_translations(calls: VppCalls) -> dict[TranslationKey, CnatDetails]:
    return {d.translation.key: d for d in calls.cnat_translations()}


@dataclass
class ServicesPass:
    failed: dict[str, str] = field(default_factory=dict)  # service name -> why it is not programmed
    writes: int = 0
    deletes: int = 0


def converge_services(calls: VppCalls, held: dict[TranslationKey, CnatDetails],
                      services: Mapping[str, ServiceEntry], made: set[TranslationKey]) -> ServicesPass:
    """Converge `held` (what VPP holds, kept true) to `services`; `made` gains what was written."""
    wanted = wanted_translations(services)
    result = ServicesPass(failed=dict(wanted.failed))
    plan = plan_translations(held, wanted, made)
    for old_id, translation in plan.recreate:
        try:
            calls.cnat_translation_del(old_id)
        except ApiRefused as exc:
            result.failed.setdefault(wanted.owners[translation.key], str(exc))
            continue
        held.pop(translation.key, None)
        result.deletes += 1
        plan.writes.append(translation)
    for translation in plan.writes:
        owner = wanted.owners[translation.key]
        try:
            new_id = calls.cnat_translation_update(translation, what=f"service {owner} {translation.text()}")
        except ApiRefused as exc:
            result.failed.setdefault(owner, str(exc))
            continue
        held[translation.key] = CnatDetails(new_id, translation)
        made.add(translation.key)
        result.writes += 1
    for translation_id, key in plan.deletes:
        try:
            calls.cnat_translation_del(translation_id)
        except ApiRefused as exc:
            log.warning("stale cnat translation %s not deleted: %s", held[key].translation.text(), exc)
            continue
        held.pop(key, None)
        made.discard(key)
        result.deletes += 1
    return result
