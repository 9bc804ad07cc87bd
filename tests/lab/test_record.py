"""The state file and teardown: processes by pid (never a recycled one), namespaces, the directory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.scenarios import SMALL
from vppagent.lab import record as record_module
from vppagent.lab.record import LabRecord, ProcessRecord, all_records, existing_namespaces, stop_processes, teardown
from vppagent.lab.scenario import parse_scenario
from vppagent.lab.topology import Topology, new_prefix


@pytest.fixture
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "state"
    monkeypatch.setattr(record_module, "STATE_ROOT", root)
    return root


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_state_file_round_trips(state_root: Path, sleeper: subprocess.Popen[bytes]) -> None:
    rec = LabRecord.create(new_prefix())
    rec.add_namespace(f"{rec.prefix}-x")
    rec.add_process(sleeper.pid, "listener", "sleeper")
    (loaded,) = all_records()
    assert loaded == rec
    assert loaded.owner_alive()
    assert loaded.processes[0].alive()


def test_a_recycled_pid_is_never_signalled(state_root: Path, sleeper: subprocess.Popen[bytes]) -> None:
    real = record_module.process_start_time(sleeper.pid)
    assert real is not None
    stop_processes([ProcessRecord(sleeper.pid, real + 1, "listener", "not ours any more")], grace=0.2)
    assert sleeper.poll() is None, "a process with another start time was signalled"
    stop_processes([ProcessRecord(sleeper.pid, real, "listener", "ours")], grace=2.0)
    assert sleeper.wait(5) is not None


def test_teardown_without_namespaces_kills_by_pid_and_removes_the_directory(
        state_root: Path, sleeper: subprocess.Popen[bytes]) -> None:
    rec = LabRecord.create(new_prefix())
    rec.add_process(sleeper.pid, "agent", "sleeper")
    assert teardown(rec) == []
    assert sleeper.wait(5) is not None
    assert not Path(rec.workdir).exists() and all_records() == []


@pytest.mark.root
def test_topology_up_and_down_leaves_nothing(state_root: Path) -> None:
    sc = parse_scenario(SMALL)
    rec = LabRecord.create(new_prefix())
    topo = Topology(sc, rec)
    try:
        topo.build()
        present = existing_namespaces()
        assert {topo.fabric, topo.node_ns("n1"), topo.node_ns("n2"), topo.pod_ns("db")} <= present
        ping = subprocess.run(["ip", "netns", "exec", topo.node_ns("n1"), "ping", "-c1", "-W2",
                               str(sc.node_address("n2"))], capture_output=True, timeout=10, check=False)
        assert ping.returncode == 0, "nodes reach each other over the fabric"
        forward = subprocess.run(["ip", "netns", "exec", topo.node_ns("n2"), "cat", "/proc/sys/net/ipv4/ip_forward"],
                                 capture_output=True, text=True, timeout=10, check=True)
        assert forward.stdout.strip() == "1"
        # One process we record, one we do not (as a bird left behind by a killed agent would be).
        recorded = subprocess.Popen(["ip", "netns", "exec", topo.pod_ns("web"), "sleep", "60"])
        rec.add_process(recorded.pid, "listener", "recorded")
        stray = subprocess.Popen(["ip", "netns", "exec", topo.node_ns("n2"), "sleep", "60"])
    except BaseException:
        teardown(rec)
        raise
    assert teardown(rec) == []
    assert recorded.wait(5) is not None and stray.wait(5) is not None
    assert not {ns for ns in existing_namespaces() if ns.startswith(rec.prefix)}
    assert not Path(rec.workdir).exists()
