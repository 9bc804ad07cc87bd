"""Which iptables backend to program, nf_tables or legacy, from Felix's `IptablesBackend`.

`auto` picks the backend that already holds rules; when neither or both do, the one the
`iptables` command itself defaults to. Never both (docs/kernel-driver.md says why).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from vppagent.drivers.iptables.runner import CommandError, Runner

BackendName = Literal["nft", "legacy"]


@dataclass(frozen=True)
class Backend:
    name: BackendName

    def save(self, family: int) -> str:
        return f"{'ip6' if family == 6 else 'ip'}tables-{self.name}-save"

    def restore(self, family: int) -> str:
        return f"{'ip6' if family == 6 else 'ip'}tables-{self.name}-restore"

    def iptables(self, family: int) -> str:
        return f"{'ip6' if family == 6 else 'ip'}tables-{self.name}"


def _has_rules(runner: Runner, name: BackendName) -> bool:
    """Whether the backend holds any rule, in either family; read as it comes and stopped at
    the first rule (a restarting agent's own rules: tens of MB of iptables-save at 10,000
    endpoints)."""
    for family in (4, 6):
        try:
            if runner.stream([Backend(name).save(family)], _any_rule, timeout=30):
                return True
        except CommandError:
            continue
    return False


def _any_rule(lines: Iterator[str]) -> bool:
    return any(line.startswith("-A ") for line in lines)


def detect_backend(runner: Runner, requested: str = "auto") -> Backend:
    """The backend to program, from Felix's `IptablesBackend` (auto, nft or legacy)."""
    wanted = requested.strip().lower()
    if wanted in ("nft", "legacy"):
        return Backend(wanted)  # type: ignore[arg-type]
    legacy_rules = _has_rules(runner, "legacy")
    nft_rules = _has_rules(runner, "nft")
    if legacy_rules and not nft_rules:
        return Backend("legacy")
    if nft_rules and not legacy_rules:
        return Backend("nft")
    try:
        version = runner.run(["iptables", "--version"], timeout=10).stdout
    except CommandError:
        version = ""
    return Backend("legacy" if "legacy" in version else "nft")
