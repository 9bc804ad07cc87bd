"""BgpManager: state in, bird.conf out; waits for this node's metadata; ignores unrelated changes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bgp import states as m
from tests.bgp.fake_birdc import FakeBirdc
from vppagent.bgp import bench
from vppagent.bgp.config import BgpConfig
from vppagent.bgp.manager import BgpManager
from vppagent.gen.felix import felixbackend_pb2 as felix


def make_manager(tmp_path: Path, birdc_path: Path, bird_binary: str) -> BgpManager:
    config = BgpConfig(enabled=True, config_path=tmp_path / "bird.conf", socket_path=tmp_path / "bird.ctl",
                       bird_binary=bird_binary, birdc_binary=str(birdc_path))
    config.socket_path.touch()
    return BgpManager(config)


def test_update_flow(tmp_path: Path, birdc: FakeBirdc, bird_binary: str) -> None:
    manager = make_manager(tmp_path, birdc.path, bird_binary)
    state = m.state_of([m.config_msg("node1")])
    waiting = manager.update(state)
    assert not waiting.ok and waiting.error is not None and "node1" in waiting.error
    assert not manager.config.config_path.exists()

    m.state_of([m.host_msg("node1", "198.18.0.1"), m.host_msg("node2", "198.18.0.2"), m.pool_msg("10.244.0.0/16"),
                m.block_msg("10.244.1.0/26", "node1", local=True)], state)
    first = manager.update(state)
    assert first.ok and first.changed and first.reloaded
    assert first.render_seconds is not None and first.validate_seconds is not None
    assert "route 10.244.1.0/26 blackhole;" in manager.config.config_path.read_text()

    # An IP set or policy change does not touch BGP: no write, no reload.
    state.apply(felix.ToDataplane(ipset_update=felix.IPSetUpdate(id="s", members=["10.0.0.1"])))
    unchanged = manager.update(state)
    assert (unchanged.ok, unchanged.changed, unchanged.reloaded) == (True, False, False)
    assert birdc.commands().count("configure") == 1

    status = manager.status()
    json.dumps(status)
    assert status["hostname"] == "node1" and status["router_id"] == "198.18.0.1"
    assert status["local_blocks"] == ["10.244.1.0/26"]
    assert status["last_update"]["ok"] is True and status["configured_peers"] == 1
    manager.close()


def test_bench_scenarios_render_and_validate(bird_binary: str) -> None:
    line = bench.run("mesh500", bird_binary, repeat=1)
    assert "sessions= 499" in line and "validate=" in line
