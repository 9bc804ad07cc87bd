"""Each release's hand-written stream through felix-shim and a running agent (dry-run driver).

One agent; per release two felix-shims one after the other, as Felix restarts would start them:
first the release's content in the v3.33 form, then the release's own stream. The agent resyncs
the second snapshot against the first by diff, so an empty resync diff says the release's stream
became exactly the v3.33 state. Then the deltas, `vppagent state` (JSON key and the human line),
and the frames the agent wrote to Felix, read with the release's own schema.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from felix_shim.framing import encode_frame
from felix_shim.releases.decoder import unknown_fields
from felix_shim.releases.differences import RELEASES
from felix_shim.releases.schema import schema
from tests.agentproc import AgentProcess, wait_for
from tests.felixver.streams import stream
from vppagent.lab.felix_standin import FelixStandIn


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    tmp = tmp_path_factory.mktemp("felixver-agent")
    a = AgentProcess(tmp / "run" / "agent.sock", tmp / "agent.log", ["--driver", "dry-run"])
    a.start()
    yield a
    a.stop()


def feed(agent: AgentProcess, messages: list[Any], log: Path) -> FelixStandIn:
    shim = FelixStandIn(agent.socket, log_path=log)
    shim.send_raw(b"".join(encode_frame(m.SerializeToString()) for m in messages))
    return shim


def in_sync_with(agent: AgentProcess, resyncs: int) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        report = agent.state()
        done = report["in_sync"] and report["counters"]["resyncs"] + report["counters"]["applies"] >= resyncs
        return report if done and report.get("felix_wire") else None
    return wait_for(ready, timeout=30, what="agent in sync on the new stream")  # type: ignore[no-any-return]


@pytest.mark.parametrize("release", RELEASES)
def test_release_stream_through_the_agent(release: str, agent: AgentProcess, tmp_path: Path) -> None:
    full = stream(release, release)
    snapshot_end = [m.WhichOneof("payload") for m in full].index("in_sync") + 1
    reference = stream("3.33", release)
    ref_end = [m.WhichOneof("payload") for m in reference].index("in_sync") + 1

    before = agent.state()["counters"]
    first = feed(agent, reference[:ref_end], tmp_path / "shim-reference.log")
    wait_for(lambda: agent.state()["counters"]["streams"] > before["streams"], what="reference stream")
    in_sync_with(agent, before["resyncs"] + before["applies"] + 1)
    assert first.close() == 0

    counters = agent.state()["counters"]
    shim = feed(agent, full[:snapshot_end], tmp_path / "shim.log")
    wait_for(lambda: agent.state()["counters"]["streams"] > counters["streams"], what="release stream")
    wait_for(lambda: (agent.state().get("felix_wire") or {}).get("candidates") == [release]
             or agent.state()["felix_version"] == release, what=f"felix_version {release}")
    report = in_sync_with(agent, counters["resyncs"] + counters["applies"] + 1)
    resync = report["last_resync"]
    assert resync["upserts"] == {} and resync["removes"] == {}, resync  # the same state, exactly
    assert report["felix_version"] == release
    assert report["felix_wire"]["how"] in ("detected", "hinted") and report["felix_wire"]["unknown"] == []
    assert report["workload_endpoints"][0]["status"] == "up"

    shim.send_raw(b"".join(encode_frame(m.SerializeToString()) for m in full[snapshot_end:]))
    wait_for(lambda: agent.state()["counts"]["routes"] == 1, what="deltas applied")
    final = agent.state()
    assert final["counts"]["host_metadata"] == 0 and final["counts"]["policies"] == 1

    human = subprocess.run([sys.executable, "-m", "vppagent.cli", "state", "--socket", str(agent.socket)],
                           capture_output=True, text=True, timeout=30, check=True).stdout
    assert f"felix      {release} (" in human
    machine = json.loads(subprocess.run(
        [sys.executable, "-m", "vppagent.cli", "state", "--json", "--socket", str(agent.socket)],
        capture_output=True, text=True, timeout=30, check=True).stdout)
    assert machine["felix_version"] == release

    wait_for(lambda: shim.statuses().get("prod/pod1") == "up", what="status frame on fd 4")
    cls = schema(release).from_dataplane
    for msg in shim.received:
        theirs = cls.FromString(msg.SerializeToString())
        assert unknown_fields(theirs) == [] and theirs.WhichOneof("payload") is not None
    assert shim.close() == 0
