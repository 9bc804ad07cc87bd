"""Fixtures for felix-shim tests (harness in tests/shim/harness.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.shim.harness import FakeAgent, ShimProcess, pump_from_shim, shim_command
from vppagent.lab.felix_standin import AS_FELIX_CHILD


@pytest.fixture
def socket_path() -> Iterator[Path]:
    # A per-test directory of its own, short because unix socket paths are limited to ~107
    # bytes and pytest's tmp_path embeds the (long) test name.
    directory = Path(tempfile.mkdtemp(prefix="shim-", dir="/tmp"))
    yield directory / "agent.sock"
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def fake_agent(socket_path: Path) -> Iterator[FakeAgent]:
    agent = FakeAgent(socket_path).start()
    yield agent
    agent.stop()


@pytest.fixture
def spawn_shim() -> Iterator[Callable[..., ShimProcess]]:
    spawned: list[ShimProcess] = []

    def spawn(socket_path: Path, *args: str, env: dict[str, str] | None = None) -> ShimProcess:
        felix_to_shim_read, felix_to_shim_write = os.pipe()
        shim_to_felix_read, shim_to_felix_write = os.pipe()
        log_path = socket_path.parent / f"shim-{len(spawned)}.log"
        child_env = {**os.environ, "VPPAGENT_SOCKET": str(socket_path), **(env or {})}
        command = [sys.executable, "-c", AS_FELIX_CHILD, str(felix_to_shim_read), str(shim_to_felix_write)]
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [*command, *shim_command(), "--reconnect-max-seconds", "0.5", *args],
                pass_fds=(felix_to_shim_read, shim_to_felix_write),
                stdin=subprocess.DEVNULL,
                stderr=log_file,
                env=child_env,
            )
        # Like Felix: close our copies of the child's ends so EOF propagates both ways.
        os.close(felix_to_shim_read)
        os.close(shim_to_felix_write)
        shim = ShimProcess(proc, log_path, os.fdopen(felix_to_shim_write, "wb"), os.fdopen(shim_to_felix_read, "rb"))
        threading.Thread(target=pump_from_shim, args=(shim,), daemon=True).start()
        spawned.append(shim)
        return shim

    yield spawn
    for shim in spawned:
        if shim.proc.poll() is None:
            shim.proc.send_signal(signal.SIGKILL)
            shim.proc.wait()
        for stream in (shim.to_shim, shim.from_shim):
            with contextlib.suppress(OSError):
                stream.close()

