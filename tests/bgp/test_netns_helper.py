"""The namespace fixture skips with a reason (rather than failing) where it cannot run."""

from __future__ import annotations

import pytest

from tests.bgp import netns


def test_not_root_gives_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert netns.netns_usable() == "needs root for network namespaces"


def test_names_are_prefixed_per_run_and_fabric() -> None:
    a, b = netns.Fabric(2), netns.Fabric(2)
    assert a.prefix != b.prefix
    assert a.node(1).startswith(f"vab{netns.os.getpid()}") and a.node(1) != b.node(1)
