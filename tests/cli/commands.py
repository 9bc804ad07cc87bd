"""The console scripts as a user runs them, and what a one-line input error looks like."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

EXIT_USAGE = 2


def script(name: str) -> list[str]:
    """The installed console script `name` beside this interpreter, else the module it runs."""
    path = Path(sys.executable).with_name(name)
    if path.exists():
        return [str(path)]
    return [sys.executable, "-m", {"vppagent": "vppagent.cli", "felix-shim": "felix_shim"}[name]]


def run(name: str, args: Sequence[str], env: Mapping[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*script(name), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def assert_one_line_usage_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, nothing on stdout, exactly one line on stderr naming every needle, no traceback."""
    where = f"exit {proc.returncode}, stderr:\n{proc.stderr}"
    assert proc.returncode == EXIT_USAGE, where
    assert "Traceback" not in proc.stderr, where
    assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1, where
    for needle in needles:
        assert needle in proc.stderr, f"{needle!r} not named; {where}"
    assert proc.stdout == "", f"stdout: {proc.stdout!r}"
