"""The emulator's --socket follows the agent's rule: only a leftover socket is replaced."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vppagent.unix_socket import SocketPathError
from vppagent.vppsim import VppSim


def test_a_regular_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    path.write_text("not a socket")
    with pytest.raises(SocketPathError, match="not a socket"):
        VppSim(path).start()
    assert path.read_text() == "not a socket"
    run = subprocess.run([sys.executable, "-m", "vppagent.vppsim", "--socket", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "not a socket" in run.stderr, run.stderr
    assert path.read_text() == "not a socket"


def test_a_live_emulator_is_not_taken_over_and_a_leftover_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    with VppSim(path), pytest.raises(SocketPathError, match="listens"):
        VppSim(path).start()
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(path))  # bound, never listening: what a killed process leaves
    leftover.close()
    with VppSim(path) as sim:
        assert sim.socket_path.is_socket()
