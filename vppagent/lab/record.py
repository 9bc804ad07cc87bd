"""What a lab run made, written down before it is made, so that anything can be undone later.

Each run owns /run/vppagent-lab/<prefix>/ (sockets, configs, logs) with `state.json` listing its
namespaces and the processes it started (pid plus kernel start time, so a recycled pid is never
signalled). `teardown` removes a run's things in the safe order: our processes by pid, then any
process still inside one of our namespaces (an orphaned bird, say), then the namespaces, then the
directory. A run killed half-way leaves a state file; the next run or `lab down` finishes the job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

STATE_ROOT = Path(os.environ.get("VPPAGENT_LAB_STATE_DIR", "/run/vppagent-lab"))
STATE_FILE = "state.json"
# Stopped first to last: Felix's side, then agents (SIGTERM lets them stop their bird), then the
# pods' listeners, then the VPPs the agents programmed, then anything else.
ROLE_ORDER = ("shim", "agent", "listener", "vpp")
_SAVE_LOCK = threading.RLock()  # agents may be (re)started from several threads


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot); None if no such process is
    running (a zombie counts as gone: it holds nothing but its exit status)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses, so split after it:
    # then field 3 (state) is first and field 22 (start time) is 20th.
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else int(fields[19])


@dataclass
class ProcessRecord:
    pid: int
    start_time: int | None
    role: str
    name: str

    def alive(self) -> bool:
        return self.start_time is not None and process_start_time(self.pid) == self.start_time


@dataclass
class LabRecord:
    prefix: str
    workdir: str
    owner_pid: int
    owner_start: int | None
    keep: bool = False
    namespaces: list[str] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return Path(self.workdir) / STATE_FILE

    @staticmethod
    def create(prefix: str, keep: bool = False) -> LabRecord:
        workdir = STATE_ROOT / prefix
        workdir.mkdir(parents=True, exist_ok=False)
        record = LabRecord(prefix, str(workdir), os.getpid(), process_start_time(os.getpid()), keep)
        record.save()
        return record

    def save(self) -> None:
        with _SAVE_LOCK:
            temp = self.path.with_suffix(".tmp")
            temp.write_text(json.dumps(asdict(self), indent=1))
            temp.replace(self.path)

    @staticmethod
    def load(path: Path) -> LabRecord:
        data = json.loads(path.read_text())
        data["processes"] = [ProcessRecord(**p) for p in data.get("processes", [])]
        return LabRecord(**data)

    def add_namespace(self, name: str) -> None:
        """Called before `ip netns add`: a crash between the two leaves a name to ignore, not a leak."""
        with _SAVE_LOCK:
            self.namespaces.append(name)
            self.save()

    def add_process(self, pid: int, role: str, name: str) -> None:
        with _SAVE_LOCK:
            self.processes.append(ProcessRecord(pid, process_start_time(pid), role, name))
            self.save()

    def owner_alive(self) -> bool:
        return self.owner_start is not None and process_start_time(self.owner_pid) == self.owner_start


def all_records() -> list[LabRecord]:
    records = []
    for path in sorted(STATE_ROOT.glob(f"*/{STATE_FILE}")):
        try:
            records.append(LabRecord.load(path))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("unreadable lab state %s: %s", path, exc)
    return records


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(records: list[ProcessRecord], timeout: float) -> list[ProcessRecord]:
    deadline = time.monotonic() + timeout
    alive = [p for p in records if p.alive()]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if p.alive()]
    return alive


def stop_processes(records: list[ProcessRecord], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL whatever is left after `grace` seconds; only processes that are
    still the ones we started (same pid and start time)."""
    alive = [p for p in records if p.alive()]
    for proc in alive:
        _signal(proc.pid, signal.SIGTERM)
    for proc in _wait_gone(alive, grace):
        _signal(proc.pid, signal.SIGKILL)
    _wait_gone(alive, 2.0)


def namespace_pids(namespace: str) -> list[int]:
    proc = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True,
                          timeout=10, check=False)
    return [int(word) for word in proc.stdout.split() if word.isdigit()]


def existing_namespaces() -> set[str]:
    proc = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10, check=False)
    return {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}


def teardown(record: LabRecord) -> list[str]:
    """Remove everything `record` lists; returns what could not be removed (empty when clean)."""
    problems: list[str] = []
    for role in (*ROLE_ORDER, *sorted({p.role for p in record.processes} - set(ROLE_ORDER))):
        stop_processes([p for p in record.processes if p.role == role])
    present = existing_namespaces()
    ours = [ns for ns in record.namespaces if ns in present and ns.startswith(record.prefix + "-")]
    # Anything still running inside our namespaces was started by this lab (bird under a killed
    # agent, a listener whose pid was not yet recorded): it goes before its namespace does.
    leftovers = [pid for ns in ours for pid in namespace_pids(ns) if pid != os.getpid()]
    for pid in leftovers:
        _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 3.0
    while leftovers and time.monotonic() < deadline:
        leftovers = [pid for pid in leftovers if process_start_time(pid) is not None]
        time.sleep(0.02)
    for ns in reversed(ours):
        proc = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True, timeout=10, check=False)
        if proc.returncode != 0:
            problems.append(f"namespace {ns}: {proc.stderr.strip()}")
    if not problems:
        shutil.rmtree(record.workdir, ignore_errors=True)
    return problems
