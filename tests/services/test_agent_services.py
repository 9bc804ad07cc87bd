"""`vppagent run --services kubernetes` as a process (dry-run driver) against the API server stand-in."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.agentproc import AgentProcess, wait_for
from tests.services.test_source import free_port, publish_dns
from vppagent.lab.apiserver import StandInApiServer


def run_agent(tmp_path: Path, *args: str) -> AgentProcess:
    agent = AgentProcess(tmp_path / "agent.sock", tmp_path / "agent.log", ["--driver", "dry-run", *args])
    agent.start()
    return agent


def test_state_reports_services_and_the_source(tmp_path: Path) -> None:
    api = StandInApiServer().start()
    publish_dns(api, "10.65.0.2", "10.65.0.3")
    agent = run_agent(tmp_path, "--services", "kubernetes",
                      "--kubeconfig", str(api.write_kubeconfig(tmp_path / "kubeconfig")))
    try:
        state = wait_for(lambda: (s := agent.state())["services"] and s, what="services in the state report")
        assert state["services"] == [{
            "name": "kube-system/dns", "frontends": ["10.96.0.10:53/udp"],
            "backends": ["10.65.0.2:53", "10.65.0.3:53"], "status": "up", "error": None,
        }]
        assert state["services_source"] == {"connected": True, "last_error": None, "programmed": False}
    finally:
        agent.stop()
        api.stop()


def test_unreachable_api_server_leaves_the_agent_running(tmp_path: Path) -> None:
    kubeconfig = StandInApiServer(port=free_port()).write_kubeconfig(tmp_path / "kubeconfig")  # nothing listens
    agent = run_agent(tmp_path, "--services", "kubernetes", "--kubeconfig", str(kubeconfig))
    try:
        source = wait_for(lambda: (s := agent.state()["services_source"])["last_error"] and s,
                          what="the source's error in the state report")
        assert source["connected"] is False and "Connection refused" in source["last_error"]
        time.sleep(2.0)  # retries go on at the backoff's pace (0.5, 1, ... s)
        assert agent.proc is not None and agent.proc.poll() is None and agent.state()["driver"] == "dry-run"
        log = agent.log.read_text()
        assert log.count("service source: cannot list or watch") == 1, agent.tail()
    finally:
        agent.stop()


def test_services_are_off_by_default(tmp_path: Path) -> None:
    agent = run_agent(tmp_path)
    try:
        state = agent.state()
        assert "services" not in state and "services_source" not in state
    finally:
        agent.stop()


def test_missing_kubeconfig_is_one_line_and_status_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vppagent.cli", "run", "--driver", "dry-run", "--socket", str(tmp_path / "a.sock"),
         "--cni-socket", str(tmp_path / "c.sock"), "--services", "kubernetes", "--kubeconfig", str(tmp_path / "no")],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "kubeconfig" in result.stderr and "/no" in result.stderr
