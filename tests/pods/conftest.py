from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


@pytest.fixture
def netns_factory() -> Iterator:  # type: ignore[type-arg]
    """Create uniquely named network namespaces; delete exactly those afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip`")
    prefix = f"vpp{uuid.uuid4().hex[:6]}"
    made: list[str] = []

    def make(suffix: str) -> str:
        name = f"{prefix}-{suffix}"
        try:
            _run("ip", "netns", "add", name)
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"cannot create network namespaces here: {exc.stderr.decode().strip()}")
        made.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    yield make
    for name in reversed(made):
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)
