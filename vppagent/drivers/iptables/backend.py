"""Which iptables backend to program, nf_tables or legacy, from Felix's `IptablesBackend`.

`auto` picks the backend that already holds rules; when neither or both do, the one the
`iptables` command itself defaults to. Never both (docs/kernel-driver.md says why).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from vppagent.drivers.iptables.runner import CommandError, Runner

BackendName = Literal["nft", "legacy"]
_RULE_LINE = re.compile(r"^-A ", re.MULTILINE)


@dataclass(frozen=True)
class Backend:
    name: BackendName

    def save(self, family: int) -> str:
        return f"{'ip6' if family == 6 else 'ip'}tables-{self.name}-save"

    def restore(self, family: int) -> str:
        return f"{'ip6' if family == 6 else 'ip'}tables-{self.name}-restore"

    def iptables(self, family: int) -> str:
        return f"{'ip6' if family == 6 else 'ip'}tables-{self.name}"


def _rule_count(runner: Runner, name: BackendName) -> int:
    total = 0
    for family in (4, 6):
        try:
            out = runner.run([Backend(name).save(family)], timeout=30).stdout
        except CommandError:
            continue
        total += len(_RULE_LINE.findall(out))
    return total


def detect_backend(runner: Runner, requested: str = "auto") -> Backend:
    """The backend to program, from Felix's `IptablesBackend` (auto, nft or legacy)."""
    wanted = requested.strip().lower()
    if wanted in ("nft", "legacy"):
        return Backend(wanted)  # type: ignore[arg-type]
    legacy_rules = _rule_count(runner, "legacy")
    nft_rules = _rule_count(runner, "nft")
    if legacy_rules and not nft_rules:
        return Backend("legacy")
    if nft_rules and not legacy_rules:
        return Backend("nft")
    try:
        version = runner.run(["iptables", "--version"], timeout=10).stdout
    except CommandError:
        version = ""
    return Backend("legacy" if "legacy" in version else "nft")
