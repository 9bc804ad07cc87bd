"""BirdSupervisor with stand-in processes: restart after a crash, backoff, stop by pid."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from tests.bgp.netns import wait_for
from vppagent.bgp.supervisor import BirdSupervisor

SLEEPER = [sys.executable, "-c", "import sys, time; print(sys.argv[1:], flush=True); time.sleep(60)"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): treat an exited-but-unreaped child as dead.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_restarts_after_sigkill_with_restart_argv_and_stops(tmp_path: Path) -> None:
    log = tmp_path / "bird.log"
    supervisor = BirdSupervisor([*SLEEPER, "first"], restart_argv=[*SLEEPER, "again"], log_path=log,
                                backoff_initial=0.05)
    supervisor.start()
    try:
        first = supervisor.pid
        assert first is not None and alive(first)
        assert wait_for(lambda: "first" in log.read_text(), 5) is not None
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: supervisor.pid not in (None, first), 5) is not None
        assert supervisor.restarts == 1
        assert supervisor.last_exit_code == -signal.SIGKILL
        second = supervisor.pid
        assert second is not None
        assert wait_for(lambda: "again" in log.read_text(), 5) is not None
    finally:
        supervisor.stop()
    assert not alive(second)
    assert supervisor.pid is None
    time.sleep(0.2)
    assert supervisor.restarts == 1  # stopping is not a crash


def test_crash_loop_backs_off(tmp_path: Path) -> None:
    supervisor = BirdSupervisor([sys.executable, "-c", "raise SystemExit(3)"], backoff_initial=0.05,
                                backoff_max=0.4)
    supervisor.start()
    time.sleep(1.5)
    supervisor.stop()
    # Without backoff this would be hundreds; with 0.05 doubling to 0.4 it is a handful.
    assert 2 <= supervisor.restarts <= 8
    assert supervisor.last_exit_code == 3


def test_missing_binary_is_reported(tmp_path: Path) -> None:
    supervisor = BirdSupervisor([str(tmp_path / "no-bird")], backoff_initial=0.05)
    supervisor.start()
    try:
        assert not supervisor.running
        assert supervisor.last_error is not None and "cannot start" in supervisor.last_error
    finally:
        supervisor.stop()
