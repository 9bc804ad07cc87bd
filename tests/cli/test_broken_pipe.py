"""Output cut short by the reader (`vppagent state | head -3`) ends the command quietly."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.agentproc import AgentProcess
from tests.cli.commands import script
from vppagent.command_line import EXIT_BROKEN_PIPE


def run_into_closed_pipe(name: str, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader is already gone: every write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([*script(name), *args], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL, timeout=60)
    finally:
        os.close(write_end)


def assert_quiet_end(proc: subprocess.CompletedProcess[str], *also_allowed: int) -> None:
    assert proc.stderr == "", proc.stderr
    assert proc.returncode in (EXIT_BROKEN_PIPE, *also_allowed), proc.returncode


# argparse ignores a failed write of its help text and exits 0; what must not happen is the
# "Exception ignored ... BrokenPipeError" (exit 120) of Python's flush at exit.
HELP_EXIT = 0


@pytest.fixture(scope="module")
def agent() -> Iterator[AgentProcess]:
    directory = Path(tempfile.mkdtemp(prefix="vpa-pipe-", dir="/tmp"))
    process = AgentProcess(directory / "agent.sock", directory / "agent.log", ["--driver", "dry-run"])
    process.start()
    yield process
    process.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_state_into_a_closed_pipe(agent: AgentProcess, json_flag: list[str]) -> None:
    assert_quiet_end(run_into_closed_pipe("vppagent", ["state", "--socket", str(agent.socket), *json_flag]))


def test_lab_check_into_a_closed_pipe() -> None:
    assert_quiet_end(run_into_closed_pipe("vppagent", ["lab", "check"]))


@pytest.mark.parametrize(("name", "args"), [("vppagent", ["--help"]), ("vppagent", ["policy", "compile", "--help"]),
                                            ("felix-shim", ["--help"])])
def test_help_into_a_closed_pipe(name: str, args: list[str]) -> None:
    assert_quiet_end(run_into_closed_pipe(name, args), HELP_EXIT)


def test_lab_run_output_cut_short_ends_quietly(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A reader that goes away mid-run (`vppagent lab run | head`) is no setup failure (exit 3)."""
    from vppagent.lab import cli as lab_cli

    def cut_short(self: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("vppagent.lab.topology.netns_problem", lambda: None)
    monkeypatch.setattr("vppagent.lab.run.LabRun.run", cut_short)
    assert lab_cli.main(["run", "--json"]) == EXIT_BROKEN_PIPE
    assert capsys.readouterr().err == ""


def test_ctrl_c_while_waiting_for_the_agent_ends_quietly() -> None:
    """Ctrl-C on a `vppagent state` that waits for an agent that does not answer: exit 130, no traceback."""
    import signal
    import socket

    from vppagent.command_line import EXIT_INTERRUPTED

    directory = Path(tempfile.mkdtemp(prefix="vpa-int-", dir="/tmp"))
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # accepts, never speaks gRPC
    try:
        mute.bind(str(directory / "mute.sock"))
        mute.listen(4)
        mute.settimeout(60)
        proc = subprocess.Popen([*script("vppagent"), "state", "--socket", str(directory / "mute.sock"),
                                 "--timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            connection, _ = mute.accept()  # the command is inside its request now
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=30)
            connection.close()
        finally:
            proc.kill()
        assert (proc.returncode, err) == (EXIT_INTERRUPTED, ""), err
    finally:
        mute.close()
        shutil.rmtree(directory, ignore_errors=True)
