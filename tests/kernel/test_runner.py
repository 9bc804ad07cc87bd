"""NetnsRunner in the test's own namespace (no root): a big input reaches the child whole (it
goes as a memory file, not through a pipe), so does an input given as pieces, and failures
carry the child's stderr either way; a streamed output reaches its reader as it is written."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vppagent.drivers.iptables.runner import BIG_INPUT, NETNS_DIR, CommandError, NetnsRunner

FAIL_WITH_INPUT = "import sys; data = sys.stdin.read(); sys.stderr.write(f'bad {len(data)}'); sys.exit(3)"


@pytest.mark.parametrize("size", [10, BIG_INPUT + 1, 3 << 20])
def test_input_of_any_size_reaches_the_child_whole(size: int) -> None:
    runner = NetnsRunner()
    try:
        text = ("x" * 99 + "\n") * (size // 100 + 1)
        assert runner.run(["cat"], stdin=text).stdout == text
        with pytest.raises(CommandError) as failed:
            runner.run([sys.executable, "-c", FAIL_WITH_INPUT], stdin=text)
    finally:
        runner.close()
    assert failed.value.returncode == 3 and failed.value.stderr == f"bad {len(text)}"


def test_an_input_given_as_pieces_reaches_the_child_joined_and_in_order() -> None:
    pieces = [f"piece {i} " + "y" * (i % 300) + "\n" for i in range(20_000)]  # several MB, many buffers
    produced: list[int] = []

    def lazily() -> Iterator[str]:
        for i, piece in enumerate(pieces):
            produced.append(i)
            yield piece

    runner = NetnsRunner()
    try:
        out = runner.run(["cat"], stdin=lazily()).stdout
        empty = runner.run(["cat"], stdin=iter(())).stdout
    finally:
        runner.close()
    assert out == "".join(pieces) and produced == list(range(len(pieces)))
    assert empty == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: setns into a named network namespace")
def test_a_missing_namespace_is_an_error_and_is_not_created() -> None:
    """pyroute2's setns creates a missing namespace unless told not to: the runner must refuse
    instead, or an agent would program an empty namespace and report its endpoints up."""
    name = f"vpa-missing-{os.getpid()}"
    try:
        with pytest.raises(RuntimeError, match="cannot enter network namespace"):
            NetnsRunner(name)
        assert not (NETNS_DIR / name).exists()
    finally:  # only if the runner created it: remove what the test caused
        if (NETNS_DIR / name).exists():
            subprocess.run(["ip", "netns", "delete", name], check=False)


def test_a_streamed_output_reaches_consume_line_by_line_while_the_command_runs(tmp_path: Path) -> None:
    # The command writes its second line only once consume has seen the first (a file consume
    # creates): were the output handed over only at the end, the command would wait until killed.
    go = tmp_path / "go"
    script = ("import os, sys, time; print('first', flush=True)\n"
              f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
              "print('second'); print('x' * 200000)")
    runner = NetnsRunner()

    def consume(lines: Iterator[str]) -> list[str]:
        out = []
        for line in lines:
            out.append(line)
            go.touch()
        return out

    try:
        got = runner.stream([sys.executable, "-c", script], consume, timeout=60)
    finally:
        runner.close()
    assert got == ["first\n", "second\n", "x" * 200000 + "\n"]


def test_a_streamed_command_that_fails_or_hangs_is_an_error_and_stopping_early_ends_it() -> None:
    runner = NetnsRunner()
    try:
        with pytest.raises(CommandError) as failed:
            fail = "import sys; print('partial'); sys.stderr.write('broken'); sys.exit(4)"
            runner.stream([sys.executable, "-c", fail], list)
        assert failed.value.returncode == 4 and failed.value.stderr == "broken"
        with pytest.raises(CommandError, match="timed out"):
            runner.stream(["sleep", "30"], list, timeout=0.3)
        # `yes` never ends by itself: consume taking one line must end it, not hang.
        assert runner.stream(["yes"], next, timeout=30) == "y\n"
    finally:
        runner.close()
