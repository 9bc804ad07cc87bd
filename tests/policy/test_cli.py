"""`policy trace` / `policy compile` through the CLI entry point."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format

from vppagent.policy.catalog import Catalog
from vppagent.policy.cli import main
from vppagent.policy.evaluate import verdict
from vppagent.policy.generate import Case, random_case, random_packets
from vppagent.policy.packet import Packet


def _write_case(tmp_path: Path, seed: int, n: int, *, camel: bool = False) -> tuple[Path, Path, Case, list[Packet]]:
    rng = random.Random(seed)
    case = random_case(rng)
    packets = random_packets(rng, case, n)
    state = tmp_path / ("state.yaml" if camel else "state.json")
    dicts = [json_format.MessageToDict(m, preserving_proto_field_name=not camel) for m in case.messages]
    state.write_text(yaml.safe_dump(dicts) if camel else json.dumps(dicts))
    packet_file = tmp_path / "packets.txt"
    packet_file.write_text("# comment\n" + "\n".join(str(p) for p in packets) + "\n")
    return state, packet_file, case, packets


def test_trace_json_1000_packets_agrees_with_evaluator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state, packet_file, case, packets = _write_case(tmp_path, 11, 1000)
    start = time.perf_counter()
    rc = main(["trace", "--state", str(state), "--endpoint", str(case.endpoint),
               "--direction", case.direction, "--packets", str(packet_file), "--json"])
    elapsed = time.perf_counter() - start
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1000 and elapsed < 10
    cat = Catalog(case.state)
    for row, pkt in zip(rows, packets, strict=True):
        v = verdict(cat, case.endpoint, case.direction, pkt)
        assert row["packet"] == str(pkt)
        assert (row["verdict"], row["compiled_verdict"]) == (v.action, v.action)
        assert (row["tier"], row["policy"], row["rule_index"]) == (v.tier, v.policy, v.rule_index)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_trace_text_and_yaml_camel_case_state(tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: int) -> None:
    state, _, case, _ = _write_case(tmp_path, seed, 1, camel=True)
    rc = main(["policy", "trace", "--state", str(state), "--endpoint", str(case.endpoint),
               "--direction", "ingress", "--packet", "tcp 10.65.1.1:1234 > 10.65.0.2:80",
               "--packet", "icmp 10.65.1.1 > 10.65.0.2 type 8 code 0", "--packet", "udp [fd65:1::1]:5 > [fd65::2]:53"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("verdict:") == 3 and out.count("compiled:") == 3


def test_compile_json_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state, _, case, _ = _write_case(tmp_path, 21, 1)
    assert main(["compile", "--state", str(state), "--endpoint", str(case.endpoint),
                 "--direction", "egress", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["default_action"] in ("allow", "deny") and len(doc["fingerprint"]) == 64
    for r in doc["rules"]:
        assert set(r) >= {"is_permit", "src_prefix", "dst_prefix", "proto", "srcport_or_icmptype_first",
                          "dstport_or_icmpcode_last"}


@pytest.mark.parametrize(("argv", "message"), [
    (["--endpoint", "k8s/x", "--packet", "tcp 1.1.1.1:1 > 2.2.2.2:2"], "ORCHESTRATOR/WORKLOAD/ENDPOINT"),
    (["--endpoint", "k8s/a/b", "--packet", "tcp 1.1.1.1 > 2.2.2.2:2"], "needs a port"),
    (["--endpoint", "k8s/a/b"], "at least one --packet"),
])
def test_trace_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    state = tmp_path / "s.json"
    state.write_text("[]")
    rc = main(["trace", "--state", str(state), "--direction", "ingress", *argv])
    assert rc == 2 and message in capsys.readouterr().err


def test_trace_reports_missing_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "s.json"
    state.write_text("[]")
    assert main(["trace", "--state", str(state), "--direction", "ingress", "--endpoint", "k8s/a/b",
                 "--packet", "tcp 1.1.1.1:1 > 2.2.2.2:2"]) == 2
    assert "workload endpoint k8s/a/b is not in the state" in capsys.readouterr().err
