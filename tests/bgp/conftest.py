"""Fixtures for the BGP tests: the bird binary (skipped if absent) and namespace fabrics (root only)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.bgp.cluster import Cluster
from tests.bgp.fake_birdc import FakeBirdc
from tests.bgp.netns import Fabric, netns_usable


@pytest.fixture(scope="session")
def bird_binary() -> str:
    path = shutil.which("bird")
    if path is None:
        pytest.skip("bird (BIRD 2, Debian package bird2) is not installed")
    return path


@pytest.fixture(scope="session")
def netns_ok(bird_binary: str) -> None:
    reason = netns_usable()
    if reason is not None:
        pytest.skip(f"real-BIRD tests skipped: {reason}")
    if shutil.which("birdc") is None or shutil.which("ping") is None:
        pytest.skip("real-BIRD tests need birdc (bird2) and ping (iputils-ping)")


@pytest.fixture
def make_cluster(netns_ok: None, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Build Cluster(fabric of N nodes); every BIRD is stopped (by pid) before namespaces go."""
    clusters: list[Cluster] = []

    def make(nodes: int = 3, **kwargs: object) -> Cluster:
        fabric = Fabric(nodes)
        cluster = Cluster(fabric, tmp_path / fabric.prefix, **kwargs)  # type: ignore[arg-type]
        clusters.append(cluster)
        fabric.build()
        return cluster

    try:
        yield make
    finally:
        for cluster in clusters:
            try:
                cluster.close()
            finally:
                cluster.fabric.destroy()


@pytest.fixture
def birdc(tmp_path: Path) -> FakeBirdc:
    tools = tmp_path / "tools"
    tools.mkdir()
    return FakeBirdc(tools)
