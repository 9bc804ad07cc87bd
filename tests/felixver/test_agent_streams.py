"""Each release's hand-written stream through felix-shim and a running agent (dry-run driver).

One agent; per release two felix-shims one after the other, as Felix restarts would start them:
first the release's content in the v3.33 form, then the release's own stream. The agent resyncs
the second snapshot against the first by diff and calls its driver only for a difference, so no
driver call says the release's stream became exactly the v3.33 state. Then the deltas,
`vppagent state` (JSON key and the human line), and the frames the agent wrote to Felix, read
with the release's own schema.
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


def synced_on_new_stream(agent: AgentProcess, messages_before: int) -> dict[str, Any]:
    """The report once the new stream's InSync is folded and applied. The agent handles a new
    stream's start before its messages, so a grown message count means `in_sync` is this stream's."""
    def ready() -> dict[str, Any] | None:
        report = agent.state()
        return report if report["counters"]["messages"] > messages_before and report["in_sync"] else None
    return wait_for(ready, timeout=30, what="agent in sync on the new stream")  # type: ignore[no-any-return]


@pytest.mark.parametrize("release", RELEASES)
def test_release_stream_through_the_agent(release: str, agent: AgentProcess, tmp_path: Path) -> None:
    full = stream(release, release)
    snapshot_end = [m.WhichOneof("payload") for m in full].index("in_sync") + 1
    reference = stream("3.33", release)
    ref_end = [m.WhichOneof("payload") for m in reference].index("in_sync") + 1

    first = feed(agent, reference[:ref_end], tmp_path / "shim-reference.log")
    synced_on_new_stream(agent, agent.state()["counters"]["messages"])
    assert first.close() == 0

    counters = agent.state()["counters"]
    shim = feed(agent, full[:snapshot_end], tmp_path / "shim.log")
    report = synced_on_new_stream(agent, counters["messages"])
    # The agent resyncs a new stream's snapshot by diff and calls the driver only for a change:
    # no apply and no resync means the release's snapshot became exactly the v3.33 state.
    after = report["counters"]
    assert (after["applies"], after["resyncs"]) == (counters["applies"], counters["resyncs"]), report["last_apply"]
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
