"""Lab tests: the scenario model and Felix feed need nothing; `root` tests build real labs and are
skipped (with the reason) without root, network namespaces, BIRD, iptables or ipset."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vppagent.lab.topology import netns_problem

_HERE = Path(__file__).parent
_problem: list[str | None] = []


def lab_problem() -> str | None:
    if not _problem:
        reason = netns_problem()
        if reason is None and shutil.which("ping") is None:
            reason = "ping (iputils-ping) is not installed"
        _problem.append(reason)
    return _problem[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    ours = [item for item in items if "root" in item.keywords and _HERE in item.path.parents]
    if not ours:
        return
    reason = lab_problem()
    if reason is not None:
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=f"lab tests skipped: {reason}"))
