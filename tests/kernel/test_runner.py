"""NetnsRunner in the test's own namespace (no root): a big input reaches the child whole (it
goes as a memory file, not through a pipe) and failures carry the child's stderr either way."""

from __future__ import annotations

import sys

import pytest

from vppagent.drivers.iptables.runner import BIG_INPUT, CommandError, NetnsRunner

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
