"""BirdApplier against the real `bird -p` and a scripted birdc (no daemon needed)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.bgp.fake_birdc import PARSE_ERROR, RECONFIGURED, FakeBirdc
from tests.bgp.scenarios import mesh3
from vppagent.bgp.apply import BirdApplier
from vppagent.bgp.model import build_bgp_inputs
from vppagent.bgp.render import render_bird_config


@pytest.fixture
def applier(tmp_path: Path, birdc: FakeBirdc, bird_binary: str) -> BirdApplier:
    socket = tmp_path / "run" / "bird.ctl"
    socket.parent.mkdir()
    socket.touch()  # stands in for the daemon's socket; the scripted birdc answers
    return BirdApplier(tmp_path / "etc" / "bird.conf", socket, bird_binary=bird_binary,
                       birdc_binary=str(birdc.path))


def good_config() -> str:
    scenario = mesh3()
    return render_bird_config(build_bgp_inputs(scenario.state(), scenario.bgp_config()))


def test_first_apply_writes_validates_and_reloads(applier: BirdApplier, birdc: FakeBirdc) -> None:
    text = good_config()
    result = applier.apply(text)
    assert (result.ok, result.changed, result.reloaded, result.error) == (True, True, True, None)
    assert result.validate_seconds is not None and result.reload_seconds is not None
    assert applier.config_path.read_text() == text
    # It may contain passwords.
    assert stat.S_IMODE(applier.config_path.stat().st_mode) == 0o600
    assert birdc.commands() == ["configure"]
    assert birdc.calls()[0][:3] == ["-v", "-s", str(applier.socket_path)]
    assert [p.name for p in applier.config_path.parent.iterdir()] == ["bird.conf"]  # no temp left


def test_unchanged_bytes_do_nothing(applier: BirdApplier, birdc: FakeBirdc) -> None:
    text = good_config()
    applier.apply(text)
    result = applier.apply(text)
    assert (result.ok, result.changed, result.reloaded) == (True, False, False)
    assert birdc.commands() == ["configure"]


def test_invalid_config_keeps_last_good_file(applier: BirdApplier, birdc: FakeBirdc) -> None:
    good = good_config()
    applier.apply(good)
    bad = good.replace("router id", "router idd")
    result = applier.apply(bad)
    assert not result.ok and not result.changed
    assert result.error is not None and "syntax error" in result.error and "<new bird.conf>" in result.error
    assert applier.config_path.read_text() == good
    assert birdc.commands() == ["configure"]  # no reload of a config that was never installed
    assert [p.name for p in applier.config_path.parent.iterdir()] == ["bird.conf"]
    assert applier.status()["last_apply"]["error"] == result.error


def test_failed_reload_is_reported_and_retried(applier: BirdApplier, birdc: FakeBirdc) -> None:
    birdc.reply("configure", PARSE_ERROR)
    text = good_config()
    result = applier.apply(text)
    assert not result.ok and result.changed
    assert result.error is not None and "reload failed" in result.error and "syntax error" in result.error
    assert applier.status()["reload_pending"] is True
    birdc.reply("configure", RECONFIGURED)
    retried = applier.apply(text)  # same bytes, but BIRD never took them
    assert (retried.ok, retried.changed, retried.reloaded) == (True, False, True)
    assert [c for c in birdc.commands() if c == "configure"] == ["configure", "configure"]
    assert applier.apply(text).reloaded is False


def test_missing_socket_is_an_error_not_an_exception(applier: BirdApplier) -> None:
    applier.socket_path.unlink()
    result = applier.apply(good_config())
    assert not result.ok and result.changed
    assert result.error is not None and "no BIRD control socket" in result.error
    assert "peers" not in applier.status()


def test_missing_bird_binary(tmp_path: Path, birdc: FakeBirdc) -> None:
    applier = BirdApplier(tmp_path / "bird.conf", tmp_path / "bird.ctl", bird_binary=str(tmp_path / "nope"),
                          birdc_binary=str(birdc.path))
    result = applier.apply(good_config())
    assert not result.ok and result.error is not None and "cannot validate" in result.error
    assert not applier.config_path.exists()


def test_status_reports_sessions(applier: BirdApplier) -> None:
    applier.apply(good_config())
    status = applier.status()
    assert status["config_path"] == str(applier.config_path)
    assert status["last_apply"]["ok"] is True
    assert len(status["config_sha256"]) == 64
    assert status["peers"] == [
        {"name": "Mesh_198_18_0_1", "state": "up", "since": "2026-01-01 10:00:01", "info": "Established"},
        {"name": "Mesh_198_18_0_3", "state": "start", "since": "2026-01-01 10:00:01",
         "info": "Connect Socket: Connection refused"},
    ]
    json.dumps(status)  # the state report is JSON


@pytest.mark.parametrize("where", ["parent is a file", "path is a directory"])
def test_a_config_path_that_cannot_be_written_is_an_error_not_an_exception(
        tmp_path: Path, birdc: FakeBirdc, bird_binary: str, where: str) -> None:
    blocker = tmp_path / "blocker"
    if where == "parent is a file":
        blocker.write_text("not a directory")
        config_path = blocker / "bird.conf"
    else:
        blocker.mkdir()
        config_path = blocker
    applier = BirdApplier(config_path, tmp_path / "bird.ctl", bird_binary=bird_binary, birdc_binary=str(birdc.path))
    result = applier.apply(good_config())
    assert not result.ok and result.error is not None and str(config_path) in result.error, result.error
    assert "\n" not in result.error
    assert blocker.exists() and birdc.commands() == []
