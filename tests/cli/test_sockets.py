"""`run --socket` / `--cni-socket`: only a socket is ever replaced, and only one nobody listens on."""

from __future__ import annotations

import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agentproc import AgentProcess
from tests.cli.commands import assert_one_line_usage_error, run
from vppagent.unix_socket import SocketPathError, prepare_socket_path


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # Short: unix socket paths are limited to 107 bytes and pytest's tmp_path is long.
    directory = Path(tempfile.mkdtemp(prefix="vpa-sock-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _run_dry(sockdir: Path, *extra: str) -> list[str]:
    return ["run", "--driver", "dry-run", "--socket", str(sockdir / "agent.sock"),
            "--cni-socket", str(sockdir / "cni.sock"), *extra]


@pytest.mark.parametrize("flag", ["--socket", "--cni-socket"])
def test_a_regular_file_at_the_socket_path_is_refused_and_kept(sockdir: Path, flag: str) -> None:
    victim = sockdir / ("agent.sock" if flag == "--socket" else "cni.sock")
    victim.write_text("precious\n")
    proc = run("vppagent", _run_dry(sockdir))
    assert_one_line_usage_error(proc, flag, str(victim), "not a socket")
    assert victim.read_text() == "precious\n"


def test_a_directory_or_a_symlink_at_the_socket_path_is_refused(sockdir: Path) -> None:
    (sockdir / "agent.sock").mkdir()
    assert_one_line_usage_error(run("vppagent", _run_dry(sockdir)), "--socket", "not a socket")
    assert (sockdir / "agent.sock").is_dir()
    (sockdir / "agent.sock").rmdir()
    target = sockdir / "target.txt"
    target.write_text("kept")
    (sockdir / "cni.sock").symlink_to(target)
    assert_one_line_usage_error(run("vppagent", _run_dry(sockdir)), "--cni-socket", "not a socket")
    assert (sockdir / "cni.sock").is_symlink() and target.read_text() == "kept"


def test_a_live_socket_is_not_stolen(sockdir: Path) -> None:
    path = sockdir / "agent.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        listener.listen(4)
        proc = run("vppagent", _run_dry(sockdir))
        assert_one_line_usage_error(proc, "--socket", str(path), "another agent listens")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(str(path))  # still the first listener's
        probe.close()
    finally:
        listener.close()


def test_a_stale_socket_is_replaced_and_the_new_one_is_private(sockdir: Path) -> None:
    for name in ("agent.sock", "cni.sock"):
        leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        leftover.bind(str(sockdir / name))  # bound, never listening, closed: a killed agent's leftover
        leftover.close()
    agent = AgentProcess(sockdir / "agent.sock", sockdir / "agent.log", ["--driver", "dry-run"])
    try:
        agent.start()
        for name in ("agent.sock", "cni.sock"):
            mode = (sockdir / name).stat().st_mode
            assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)
    finally:
        agent.stop()


def test_prepare_socket_path_names_the_problem(sockdir: Path) -> None:
    regular = sockdir / "file"
    regular.write_text("x")
    with pytest.raises(SocketPathError, match="not a socket"):
        prepare_socket_path(regular)
    with pytest.raises(SocketPathError, match="107"):
        prepare_socket_path(sockdir / ("s" * 120))
    with pytest.raises(SocketPathError, match="cannot create"):
        prepare_socket_path(regular / "agent.sock")
    assert regular.read_text() == "x"


def test_a_metrics_port_in_use_is_one_line_and_the_agent_stops(sockdir: Path) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        proc = run("vppagent", _run_dry(sockdir, "--metrics-port", port))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]  # after the agent's own start-up log lines
        assert "--metrics-port" in last and port in last, proc.stderr
    finally:
        taken.close()
