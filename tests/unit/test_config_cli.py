from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vppagent.config import ConfigError, load_config


def test_precedence_flags_env_file_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "agent.yaml"
    conf.write_text("driver: iptables\nmetrics_port: 9100\nbatch_window_ms: 7\n")
    cfg = load_config({"config": str(conf), "driver": None})
    assert (cfg.driver, cfg.metrics_port, cfg.batch_window_ms) == ("iptables", 9100, 7.0)
    monkeypatch.setenv("VPPAGENT_DRIVER", "dry-run")
    cfg = load_config({"config": str(conf)})
    assert cfg.driver == "dry-run" and cfg.metrics_port == 9100
    cfg = load_config({"config": str(conf), "driver": "vpp"})
    assert cfg.driver == "vpp"
    monkeypatch.delenv("VPPAGENT_DRIVER")
    assert str(load_config({}).socket) == "/run/vppagent/agent.sock"


@pytest.mark.parametrize(("flags", "env", "needle"), [
    ({"driver": "bogus"}, {}, "driver"),
    ({}, {"VPPAGENT_METRICS_PORT": "99999"}, "metrics_port"),
    ({"config": "/nonexistent.yaml"}, {}, "does not exist"),
    ({}, {"VPPAGENT_VPP_CONNECT_TIMEOUT": "inf"}, "vpp_connect_timeout"),
    ({"batch_window_ms": float("nan")}, {}, "batch_window_ms"),
])
def test_bad_values_are_one_clear_line(flags: dict, env: dict, needle: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        load_config(flags)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_unknown_yaml_key_rejected(tmp_path: Path) -> None:
    conf = tmp_path / "agent.yaml"
    conf.write_text("drivr: vpp\n")
    with pytest.raises(ConfigError, match="drivr"):
        load_config({"config": str(conf)})


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vppagent.cli", *args], capture_output=True, text=True,
                          timeout=30, env=env)


def test_run_with_bad_value_exits_2() -> None:
    proc = run_cli("run", "--driver", "nope")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "driver" in proc.stderr


def test_state_without_agent_fails_clearly(tmp_path: Path) -> None:
    proc = run_cli("state", "--json", "--socket", str(tmp_path / "none.sock"), "--timeout", "1")
    assert proc.returncode == 1
    assert "no agent answers on" in proc.stderr


def test_bgp_section_and_shorthand_flags(tmp_path: Path) -> None:
    conf = tmp_path / "agent.yaml"
    conf.write_text("bgp:\n  as_number: 65010\n  node_mesh: false\n")
    cfg = load_config({"config": str(conf)})
    assert cfg.bgp.as_number == 65010 and cfg.bgp_settings() is None, "BGP stays off until asked for"
    cfg = load_config({"config": str(conf), "bird_config": str(tmp_path / "bird.conf"), "bird_run": True})
    bgp = cfg.bgp_settings()
    assert bgp is not None and bgp.enabled and bgp.run_bird and bgp.config_path == tmp_path / "bird.conf"
    assert bgp.as_number == 65010 and not bgp.node_mesh
    conf.write_text("bgp:\n  as_numbr: 1\n")
    with pytest.raises(ConfigError, match="as_numbr"):
        load_config({"config": str(conf)})


def test_an_empty_config_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPPAGENT_CONFIG", "")
    assert load_config({}).config is None


def test_log_level_in_any_case_as_felix_shim_takes_it() -> None:
    assert load_config({"log_level": "DEBUG"}).log_level == "debug"
