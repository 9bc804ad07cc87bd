"""`vppagent lab run` end to end, as a user runs it: real namespaces, agents, BIRD, felix-shim, probes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.lab.scenarios import SMALL
from vppagent.lab.record import STATE_ROOT, existing_namespaces
from vppagent.vpprun import vpp_problem

pytestmark = pytest.mark.root


def lab(*args: str, timeout: float = 110) -> tuple[int, dict[str, Any], float]:
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "vppagent.lab.cli", "run", "--json", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr)
        pytest.fail(f"lab run {args} still running after {timeout} s; stderr:\n{stderr[-3000:]}")
    took = time.monotonic() - started
    assert proc.stdout.strip(), f"no JSON (rc {proc.returncode}); stderr:\n{proc.stderr[-3000:]}"
    report: dict[str, Any] = json.loads(proc.stdout)
    if "--keep" in args:
        return proc.returncode, report, took
    # Whatever the verdict, the lab removed what it made.
    assert not {ns for ns in existing_namespaces() if ns.startswith(report["prefix"] + "-")}
    assert not (STATE_ROOT / report["prefix"]).exists()
    return proc.returncode, report, took


def cells(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(cell, step=step["name"]) for step in report["steps"] for cell in step["probes"]]


def test_default_scenario_on_the_kernel_driver_has_no_mismatch() -> None:
    rc, report, took = lab("--driver", "iptables")
    mismatches = [c for c in cells(report) if not c["ok"]]
    assert rc == 0 and report["ok"] and not mismatches, mismatches[:5]
    print(f"default scenario: {took:.1f} s (set-up {report['setup_seconds']} s), {report['probes']} probes")
    steps = [(s["program_seconds"], s["probe_seconds"]) for s in report["steps"]]
    assert took < 60, f"the default scenario took {took:.1f} s: set-up {report['setup_seconds']} s, steps {steps}"
    assert report["steps"][0]["name"] == "initial" and len(report["steps"]) == 4
    assert all(len(s["probes"]) == 40 for s in report["steps"])
    by_flow = {(c["step"], c["from"], c["to"], c["port"]): c for c in cells(report)}
    allowed = by_flow[("initial", "backend-1", "db", "tcp/5432")]  # node-a -> node-b
    denied = by_flow[("initial", "frontend-1", "db", "tcp/5432")]
    assert allowed["actual"] and allowed["written"] is True and allowed["detail"] == "ok"
    assert not denied["actual"] and denied["written"] is False and denied["detail"] in ("refused", "timeout")
    # The ipset change took effect on the wire, both ways.
    assert not by_flow[("quarantine backend-2", "backend-2", "db", "tcp/5432")]["actual"]
    assert by_flow[("release backend-2, let toolbox reach the database", "backend-2", "db", "tcp/5432")]["actual"]
    assert any(c["port"].startswith("udp/") and c["actual"] for c in cells(report))
    assert any(c["port"].startswith("udp/") and not c["actual"] for c in cells(report))


def test_a_wrong_written_expectation_fails_the_run(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(SMALL.replace("{from: client, to: db, port: 5432, allowed: false}",
                                   "{from: client, to: db, port: 5432, allowed: true}"))
    rc, report, _ = lab(str(wrong), "--driver", "iptables")
    assert rc == 1 and not report["ok"]
    bad = [c for c in cells(report) if not c["ok"]]
    assert [(c["step"], c["from"], c["to"], c["port"]) for c in bad] == [("initial", "client", "db", "tcp/5432")]
    assert bad[0]["written"] is True and bad[0]["expected"] is False and bad[0]["actual"] is False


def test_dry_run_shows_every_denied_flow_getting_through(tmp_path: Path) -> None:
    """The dry-run driver enforces nothing: exactly the flows the evaluator denies must show up as
    mismatches, all connected. A probe that did not really connect could not produce this."""
    small = tmp_path / "small.yaml"
    small.write_text(SMALL)
    rc, report, _ = lab(str(small), "--driver", "dry-run")
    assert rc == 1
    everything = cells(report)
    denied = {(c["step"], c["from"], c["to"], c["port"]) for c in everything if not c["expected"]}
    mismatched = {(c["step"], c["from"], c["to"], c["port"]) for c in everything if not c["ok"]}
    assert denied and mismatched == denied
    assert all(c["actual"] and c["detail"] == "ok" for c in everything)
    assert ("initial", "client", "db", "tcp/5432") in denied
    assert ("initial", "db", "web", "tcp/80") in denied, "the uplink's forward policy"
    assert ("client joins web-pods", "client", "db", "tcp/5432") not in denied


def test_metrics_of_a_kept_lab_show_what_the_agent_did(tmp_path: Path) -> None:
    """Issue 8: the metrics port during the lab shows the listed metrics with non-zero values."""
    import urllib.request

    from vppagent.netns import call_in_netns

    scenario = tmp_path / "small.yaml"
    scenario.write_text(SMALL)
    proc = subprocess.run([sys.executable, "-m", "vppagent.lab.cli", "run", "--json", "--keep", "--driver",
                           "iptables", "--metrics-port", "9311", str(scenario)],
                          capture_output=True, text=True, timeout=110, check=False)
    report = json.loads(proc.stdout)
    try:
        assert proc.returncode == 0, proc.stderr[-2000:]
        text = call_in_netns(f"{report['prefix']}-n1", lambda: urllib.request.urlopen(
            "http://127.0.0.1:9311/metrics", timeout=5).read().decode())
        values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                  for line in text.splitlines() if line.startswith("vppagent_")}
        for name in ('vppagent_messages_received_total{type="workload_endpoint_update"}',
                     'vppagent_messages_received_total{type="in_sync"}', "vppagent_apply_seconds_count",
                     "vppagent_resyncs_total", 'vppagent_objects_programmed{kind="policies"}',
                     'vppagent_endpoints{status="up"}', 'vppagent_driver{driver="iptables"}', "vppagent_in_sync"):
            assert values.get(name, 0) > 0, f"{name} is {values.get(name)}"
    finally:
        subprocess.run([sys.executable, "-m", "vppagent.lab.cli", "down", report["prefix"]],
                       capture_output=True, timeout=60, check=False)
    assert not {ns for ns in existing_namespaces() if ns.startswith(report["prefix"] + "-")}


def vppctl(prefix: str, node: str, command: str) -> str:
    socket = STATE_ROOT / prefix / node / "vpp" / "cli.sock"
    return subprocess.run(["vppctl", "-s", str(socket), command], capture_output=True, text=True, timeout=10,
                          check=True).stdout


@pytest.mark.skipif(vpp_problem() is not None, reason=f"no VPP for the lab: {vpp_problem()}")
def test_default_scenario_on_real_vpp_has_no_mismatch_and_crosses_vpp_on_both_ends() -> None:
    """`--driver auto` picks VPP when it is installed: one VPP per node, the fabric link as its uplink.
    Kept after the run to see that pod traffic really went through VPP, not the node's kernel."""
    rc, report, took = lab("--keep", timeout=150)
    prefix = report["prefix"]
    try:
        mismatches = [c for c in cells(report) if not c["ok"]]
        assert rc == 0 and report["ok"] and report["driver"] == "vpp" and not mismatches, mismatches[:5]
        print(f"default scenario on VPP: {took:.1f} s (set-up {report['setup_seconds']} s)")
        assert all(len(s["probes"]) == 40 for s in report["steps"]) and len(report["steps"]) == 4
        nodes = {"node-a": 1, "node-b": 2, "node-c": 3}
        for node in nodes:
            assert subprocess.run(["ip", "netns", "exec", f"{prefix}-{node}", "cat", "/proc/sys/net/ipv4/ip_forward"],
                                  capture_output=True, text=True, check=True).stdout.strip() == "0"
            placement = vppctl(prefix, node, "show interface rx-placement")
            assert "host-eth0 queue 0 (interrupt)" in placement and "(polling)" not in placement, placement
            for other, other_index in nodes.items():
                if other == node:
                    continue
                # Felix's RouteUpdate for the other node's block, used: VPP forwarded packets on it.
                fib = vppctl(prefix, node, f"show ip fib 10.65.{other_index}.0/24")
                assert f"via 198.18.0.{other_index} host-eth0" in fib, fib
                forwarded = re.search(r"forwarding:.*?to:\[(\d+):", fib, re.S)
                assert forwarded and int(forwarded.group(1)) > 0, fib
    finally:
        subprocess.run([sys.executable, "-m", "vppagent.lab.cli", "down", prefix], capture_output=True, timeout=60,
                       check=False)
    assert not {ns for ns in existing_namespaces() if ns.startswith(prefix + "-")}
    assert not (STATE_ROOT / prefix).exists()
    leftover = subprocess.run(["pgrep", "-f", f"vpp -c {STATE_ROOT / prefix}/"], capture_output=True, text=True,
                              check=False).stdout.split()
    assert not leftover, f"VPPs of lab {prefix} still running: {leftover}"


@pytest.mark.skipif(vpp_problem() is not None, reason=f"no VPP for the lab: {vpp_problem()}")
def test_the_uplinks_forward_policy_holds_on_vpp(tmp_path: Path) -> None:
    """The small scenario's applyOnForward host endpoint names n1's eth0; on VPP that is the
    af_packet uplink host-eth0, and db -> web must be denied there."""
    small = tmp_path / "small.yaml"
    small.write_text(SMALL)
    rc, report, _ = lab(str(small), "--driver", "vpp", timeout=150)
    mismatches = [c for c in cells(report) if not c["ok"]]
    assert rc == 0 and report["driver"] == "vpp" and not mismatches, mismatches[:5]
    by_flow = {(c["step"], c["from"], c["to"], c["port"]): c for c in cells(report)}
    assert not by_flow[("initial", "db", "web", "tcp/80")]["actual"]
    assert by_flow[("initial", "client", "web", "tcp/80")]["actual"]


def service_cells(report: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(step, client, frontend) -> the cell: expect, answers {backend or "no answer": flows}, ok."""
    return {(step["name"], c["from"], c["to"]): c for step in report["steps"] for c in step["services"]}


def answered(cells: dict[tuple[str, str, str], dict[str, Any]], step: str, frontend: str) -> set[str]:
    return {who for (s, _, f), c in cells.items() if (s, f) == (step, frontend) for who in c["answers"]
            if who != "no answer"}


@pytest.mark.skipif(vpp_problem() is not None, reason=f"no VPP for the lab: {vpp_problem()}")
def test_the_services_scenario_on_real_vpp() -> None:
    """The bundled Services scenario: the agents program what the lab's API server serves, and
    which backend answered each flow agrees with the oracle, step by step."""
    rc, report, took = lab("services", "--driver", "vpp", timeout=150)
    problems = [c for s in report["steps"] for c in s["services"] if not c["ok"]]
    problems += [p for s in report["steps"] for p in s["service_problems"]]
    assert rc == 0 and report["ok"] and not problems, problems[:5]
    print(f"services scenario on VPP: {took:.1f} s (set-up {report['setup_seconds']} s), {report['probes']} probes, "
          f"{report['service_flows']} flows to Services")
    cells = service_cells(report)
    initial, out, back = (s["name"] for s in report["steps"])
    # spread over both backends, on both protocols; the backend's policy keeps intruder out
    assert answered(cells, initial, "web:80/tcp") == answered(cells, initial, "web:53/udp") == {"web-1", "web-2"}
    assert cells[(initial, "intruder", "web:80/tcp")]["answers"] == {"no answer": 8}
    assert cells[(back, "intruder", "web:80/tcp")]["expect"] == "answer"
    # a removed backend gets no new flow; the other one gets them all
    assert answered(cells, out, "web:80/tcp") == answered(cells, out, "web:53/udp") == {"web-1"}
    assert cells[(out, "client-a", "web:80/tcp")]["answers"] == {"web-1": 8}
    # NodePorts from the host on the nodes' network: Local serves each node's own backend
    # (each cell is ok: every answer came from the source the oracle says the backend sees)
    assert cells[(initial, "outside", "web-local@node-a:30080/tcp")]["answers"] == {"web-1": 8}
    assert cells[(initial, "outside", "web-local@node-b:30080/tcp")]["answers"] == {"web-2": 8}
    assert "web-1 answers (sees 198.18.0.250)" in cells[(initial, "outside", "web-local@node-a:30080/tcp")]["reason"]
    assert cells[(initial, "outside", "api@node-a:30090/tcp")]["answers"] == {"api-1": 8}
    # a backend on another node, source-NATed by the node the flow came in through: api's policy lets
    # node-b's address in, db's lets in the outside host only (so db answers through its own node only)
    remote = cells[(initial, "outside", "api@node-b:30090/tcp")]
    assert remote["answers"] == {"api-1": 8} and "api-1 answers (sees 198.18.0.202)" in remote["reason"]
    assert cells[(initial, "outside", "db@node-b:30432/tcp")]["answers"] == {"db-1": 8}
    denied = cells[(initial, "outside", "db@node-a:30432/tcp")]
    assert denied["expect"] == "no answer" and denied["answers"] == {"no answer": 8}
    assert "node-a's source-NAT address 198.18.0.201" in denied["reason"]
    # session affinity: one backend per client
    for (step, client, frontend), cell in cells.items():
        if frontend == "web-sticky:80/tcp" and cell["expect"] == "answer":
            assert len(cell["answers"]) == 1, (step, client, cell)
    # a removed Service answers nobody
    assert all(c["answers"] == {"no answer": 8} for (s, _, f), c in cells.items() if s == back and f.startswith("api"))
