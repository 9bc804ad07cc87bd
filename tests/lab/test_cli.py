"""The `lab` command's wiring and the parts that need no namespaces."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from vppagent.lab.cli import EXIT_USAGE, cmd_run, main, register
from vppagent.lab.report import Cell, LabResult, StepResult, format_step
from vppagent.lab.scenario_objects import Port


def test_register_adds_lab_run_and_down_to_a_parent_parser() -> None:
    parser = argparse.ArgumentParser(prog="vppagent")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["lab", "run", "s.yaml", "--driver", "dry-run", "--json", "--keep"])
    assert args.func is cmd_run and args.scenario == Path("s.yaml") and args.json and args.keep
    assert parser.parse_args(["lab", "down"]).prefix is None
    with pytest.raises(SystemExit):
        parser.parse_args(["lab", "run", "--driver", "bogus"])


def test_check_describes_the_default_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 0
    assert capsys.readouterr().out.startswith("default: 3 nodes, 6 pods, 4 steps")


def test_a_broken_scenario_is_a_usage_error_before_anything_is_built(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes: [{name: a, pods: [{name: p, ports: [80]}]}]\nipsets: {s: [ghost]}\n")
    assert main(["run", str(bad)]) == EXIT_USAGE
    assert "bad.yaml: initial state: unknown pod (or CIDR) in ipset s 'ghost'" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.yaml")]) == EXIT_USAGE


def test_matrix_marks_mismatches_and_the_summary_fails() -> None:
    tcp80 = Port("tcp", 80)
    good = Cell("a", "b", tcp80, True, True, None, "rule", "ok", 40000, 0.01)
    bad = Cell("b", "a", tcp80, False, True, False, "end of tier", "ok", 40001, 0.01)
    step = StepResult(0, "initial", [good, bad], 0.1, 0.2)
    text = format_step(step, 1, ["a", "b"], {"a": [tcp80], "b": [tcp80]}, color=False)
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[3:5]}
    assert rows == {"a": ["·", "✓"], "b": ["✓!", "·"]}
    assert "MISMATCH b -> a tcp/80 (from port 40001): evaluator says deny [end of tier]; probe connected" in text
    result = LabResult("t", "iptables", "vplx", [step])
    assert not result.ok and result.mismatches == 1 and result.summary().startswith("FAIL t: initial state + 0")
    assert result.to_json()["steps"][0]["probes"][1]["ok"] is False
    assert not LabResult("t", "iptables", "vplx", []).ok, "a run that probed nothing is no pass"


def test_without_root_the_lab_says_why_and_builds_nothing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from vppagent.lab import topology
    from vppagent.lab.cli import EXIT_SETUP

    monkeypatch.setattr("vppagent.lab.topology.os.geteuid", lambda: 1000)
    assert topology.netns_problem() == "the lab needs root (network namespaces, iptables, BIRD)"
    assert main(["run"]) == EXIT_SETUP
    assert "the lab needs root" in capsys.readouterr().err


def test_driver_auto_is_the_default_and_picks_vpp_when_it_can_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from vppagent.lab import run

    parser = argparse.ArgumentParser(prog="vppagent")
    register(parser.add_subparsers(dest="command", required=True))
    assert parser.parse_args(["lab", "run"]).driver == "auto"
    monkeypatch.setattr(run, "vpp_problem", lambda: None)
    assert run.resolve_driver("auto")[0] == "vpp"
    monkeypatch.setattr(run, "vpp_problem", lambda: "the vpp binary is not installed")
    driver, note = run.resolve_driver("auto")
    assert driver == "iptables" and note is not None and "the vpp binary is not installed" in note
    assert run.resolve_driver("iptables") == ("iptables", None)
    assert run.resolve_driver("vpp") == ("vpp", None), "asked for explicitly: no fallback"
