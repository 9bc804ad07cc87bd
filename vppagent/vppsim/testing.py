"""Helpers for test suites that run against the emulator (no pytest dependency).

``running_vppsim()`` is what a pytest fixture wraps::

    @pytest.fixture
    def vppsim() -> Iterator[VppSim]:
        with running_vppsim() as sim:
            yield sim
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vppagent.vppsim.release import DEFAULT_RELEASE
from vppagent.vppsim.server import VppSim


@contextlib.contextmanager
def socket_directory() -> Iterator[Path]:
    """A fresh directory under /tmp: AF_UNIX paths must stay under ~107 bytes, pytest's tmp_path may not."""
    directory = Path(tempfile.mkdtemp(prefix="vppsim-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def running_vppsim(vpp_version: str = DEFAULT_RELEASE) -> Iterator[VppSim]:
    """Start an emulator of ``vpp_version`` on a private socket and stop it afterwards."""
    with socket_directory() as directory, VppSim(directory / "api.sock", vpp_version=vpp_version) as sim:
        yield sim
