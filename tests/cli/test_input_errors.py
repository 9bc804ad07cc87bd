"""Every bad input to `vppagent` and `felix-shim` is one line naming the input, exit 2, no traceback.

Run through the installed console scripts, as a user would.
"""

from __future__ import annotations

import json

import pytest

from tests.cli.commands import assert_one_line_usage_error, run

ENDPOINT = "k8s/ns/pod/eth0"
PACKET = "tcp 10.0.0.1:1234 > 10.0.1.2:80"


def _endpoint_update(nets: list[str], policies: list[str] = ()) -> dict:  # type: ignore[assignment]
    return {"workload_endpoint_update": {
        "id": {"orchestrator_id": "k8s", "workload_id": "ns/pod", "endpoint_id": "eth0"},
        "endpoint": {"state": "active", "name": "cali1", "ipv4_nets": nets, "tiers": [
            {"name": "default", "ingress_policies": [{"name": p, "kind": "GlobalNetworkPolicy"} for p in policies]}]}}}


def _allow_ports(name: str, ports: list[int]) -> dict:
    return {"active_policy_update": {"id": {"name": name, "kind": "GlobalNetworkPolicy"}, "policy": {
        "inbound_rules": [{"action": "allow", "protocol": {"name": "tcp"}, "dst_ports": [{"first": p, "last": p}]}
                          for p in ports]}}}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("inputs")
    paths = {
        "binary": d / "latin1.yaml",
        "ints": d / "ints.json",
        "nulls": d / "nulls.json",
        "bad_cidr": d / "bad-cidr.json",
        "good": d / "good.json",
        "bgp": d / "bgp.yaml",
        "packets": d / "packets.txt",
    }
    paths["binary"].write_bytes(b"name: caf\xe9\n\xff\xfe\n")
    paths["ints"].write_text("[1, 2]")
    paths["nulls"].write_text("[null]")
    paths["bad_cidr"].write_text(json.dumps([_endpoint_update(["10.0.1.2/99"])]))
    paths["good"].write_text(json.dumps([_allow_ports("web", [80, 443]),
                                         _endpoint_update(["10.0.1.2/32"], ["web"])]))
    paths["bgp"].write_text("bgp:\n  enabled: true\n  peers:\n    - address: 10.0.0.1\n      as_number: 65001\n"
                            "    - address: 10.0.0.300\n      as_number: 65001\n")
    paths["packets"].write_text(PACKET + "\n")
    paths["bad_config"] = d / "bad_config.json"
    paths["bad_config"].write_text(json.dumps([{"config_update": {"config": {"VXLANPort": "abc"}}},
                                               _endpoint_update(["10.0.1.2/32"])]))
    paths["broken_yaml"] = d / "broken_yaml.yaml"
    paths["broken_yaml"].write_text("- a\n- [b, c\n- d\n")
    paths["two_mistakes"] = d / "two_mistakes.yaml"
    paths["two_mistakes"].write_text("name: x\nnodes: 5\nsteps: 7\n")
    paths["dir"] = d
    return {k: str(v) for k, v in paths.items()}


def _run_dry(f: dict[str, str]) -> list[str]:
    """`run` on sockets of the test's own, so that a run not refused at once serves nobody else's path."""
    return ["run", "--driver", "dry-run", "--socket", f["dir"] + "/a.sock", "--cni-socket", f["dir"] + "/c.sock"]


def _trace(state: str, *more: str) -> list[str]:
    return ["policy", "trace", "--state", state, "--endpoint", ENDPOINT, "--direction", "ingress", *more]


def _compile(state: str, *more: str) -> list[str]:
    return ["policy", "compile", "--state", state, "--endpoint", ENDPOINT, "--direction", "ingress", *more]


# (id, argv built from the files, environment, what the one line must name)
CASES = [
    ("run --config not UTF-8", lambda f: [*_run_dry(f), "--config", f["binary"]], {}, ["binary", "UTF-8"]),
    ("run --config a directory", lambda f: [*_run_dry(f), "--config", f["dir"]], {}, ["dir", "not a file"]),
    ("run bad BGP peer address", lambda f: [*_run_dry(f), "--config", f["bgp"]], {},
     ["bgp.peers[1].address", "10.0.0.300"]),
    ("run --metrics-port not a number", lambda f: [*_run_dry(f), "--metrics-port", "http"], {}, ["--metrics-port"]),
    ("run --rule-limit -1", lambda f: [*_run_dry(f), "--rule-limit", "-1"], {}, ["rule_limit", "-1"]),
    ("VPPAGENT_BATCH_WINDOW_MS bad", lambda f: _run_dry(f), {"VPPAGENT_BATCH_WINDOW_MS": "soon"}, ["batch_window_ms"]),
    ("VPPAGENT_BGP not JSON", lambda f: _run_dry(f), {"VPPAGENT_BGP": "peers: []"}, ["setting bgp", "VPPAGENT_BGP"]),
    ("unknown command", lambda f: ["stat"], {}, ["stat"]),
    ("run --iptables-netns missing", lambda f: [*_run_dry(f), "--iptables-netns", "vpa-no-such-ns"], {},
     ["--iptables-netns", "vpa-no-such-ns"]),
    ("run --socket same as --cni-socket", lambda f: [*_run_dry(f), "--cni-socket", f["dir"] + "/a.sock"], {},
     ["--socket", "--cni-socket"]),
    ("run --socket too long", lambda f: [*_run_dry(f), "--socket", "/tmp/" + "s" * 120], {},
     ["--socket", "107 bytes"]),
    ("run --bird-config relative", lambda f: [*_run_dry(f), "--bird-config", "bird.conf"], {},
     ["bird_config", "absolute", "bird.conf"]),
    ("run --bird-socket too long", lambda f: [*_run_dry(f), "--bird-socket", "/run/" + "b" * 120], {},
     ["bird_socket", "107 bytes"]),
    ("run --config broken YAML", lambda f: [*_run_dry(f), "--config", f["broken_yaml"]], {}, ["broken_yaml", "line 2"]),
    ("state --socket too long", lambda f: ["state", "--socket", "/tmp/" + "s" * 120], {}, ["--socket", "107 bytes"]),
    ("driver set --socket too long", lambda f: ["driver", "set", "dry-run", "--socket", "/tmp/" + "s" * 120], {},
     ["--socket", "107 bytes"]),
    ("state --timeout -1", lambda f: ["state", "--timeout", "-1"], {}, ["--timeout", "-1"]),
    ("state --timeout 0", lambda f: ["state", "--timeout", "0"], {}, ["--timeout"]),
    ("state --timeout nan", lambda f: ["state", "--timeout", "nan"], {}, ["--timeout"]),
    ("driver set --timeout -1", lambda f: ["driver", "set", "iptables", "--timeout", "-1"], {}, ["--timeout"]),
    ("driver set unknown driver", lambda f: ["driver", "set", "ebpf"], {}, ["ebpf"]),
    ("trace --state not UTF-8", lambda f: _trace(f["binary"], "--packet", PACKET), {}, ["--state", "binary"]),
    ("trace --packets not UTF-8", lambda f: _trace(f["good"], "--packets", f["binary"]), {}, ["--packets"]),
    ("trace --packets missing", lambda f: _trace(f["good"], "--packets", f["dir"] + "/none.txt"), {},
     ["--packets", "none.txt"]),
    ("trace --state [1,2]", lambda f: _trace(f["ints"], "--packet", PACKET), {}, ["--state", "message 0"]),
    ("trace --state [null]", lambda f: _trace(f["nulls"], "--packet", PACKET), {}, ["--state", "message 0"]),
    ("trace --state broken YAML", lambda f: _trace(f["broken_yaml"], "--packet", PACKET), {},
     ["--state", "line 2"]),
    ("trace --state a directory", lambda f: _trace(f["dir"], "--packet", PACKET), {}, ["--state"]),
    ("trace endpoint 10.0.1.2/99", lambda f: _trace(f["bad_cidr"], "--packet", PACKET), {},
     ["--state", ENDPOINT, "10.0.1.2/99"]),
    ("trace --rule-limit -1", lambda f: _trace(f["good"], "--packet", PACKET, "--rule-limit", "-1"), {},
     ["--rule-limit", "-1"]),
    ("trace bad packet", lambda f: _trace(f["good"], "--packet", "tcp 10.0.0.1 > 10.0.1.2"), {}, ["10.0.0.1"]),
    ("compile --state [1,2]", lambda f: _compile(f["ints"]), {}, ["--state", "message 0"]),
    ("compile endpoint 10.0.1.2/99", lambda f: _compile(f["bad_cidr"]), {}, [ENDPOINT, "10.0.1.2/99"]),
    ("compile endpoint not in the state",
     lambda f: ["policy", "compile", "--state", f["good"], "--endpoint", "k8s/ns/other/eth0", "--direction", "ingress"],
     {}, ["k8s/ns/other/eth0"]),
    ("compile over the rule limit", lambda f: _compile(f["good"], "--rule-limit", "1"), {}, ["limit of 1"]),
    ("compile with Felix config VXLANPort=abc", lambda f: _compile(f["bad_config"], "--direction", "egress"), {},
     ["--state", "abc"]),
    ("compile --rule-limit -1", lambda f: _compile(f["good"], "--rule-limit", "-1"), {}, ["--rule-limit"]),
    ("lab check not UTF-8", lambda f: ["lab", "check", f["binary"]], {}, ["binary", "UTF-8"]),
    ("lab check with two mistakes", lambda f: ["lab", "check", f["two_mistakes"]], {}, ["nodes", "steps"]),
    ("lab check missing", lambda f: ["lab", "check", f["dir"] + "/none.yaml"], {}, ["none.yaml"]),
    ("lab run --probe-timeout -1", lambda f: ["lab", "run", "--probe-timeout", "-1"], {}, ["--probe-timeout"]),
    ("lab run --metrics-port 70000", lambda f: ["lab", "run", "--metrics-port", "70000"], {}, ["--metrics-port"]),
]


@pytest.mark.parametrize(("make_argv", "env", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_vppagent_input_error_is_one_line_exit_2(files: dict[str, str], make_argv, env, needles) -> None:  # type: ignore[no-untyped-def]
    needles = [files.get(n, n) for n in needles]
    assert_one_line_usage_error(run("vppagent", make_argv(files), env), *needles)


SHIM_CASES = [
    ("log level from env", [], {"VPPAGENT_SHIM_LOG_LEVEL": "loud"}, ["VPPAGENT_SHIM_LOG_LEVEL", "loud"]),
    ("log level flag", ["--log-level", "loud"], {}, ["--log-level", "loud"]),
    ("stream mode from env", [], {"VPPAGENT_SHIM_STREAM_MODE": "bogus"}, ["VPPAGENT_SHIM_STREAM_MODE", "bogus"]),
    ("max frame from env", [], {"VPPAGENT_SHIM_MAX_FRAME_BYTES": "lots"}, ["VPPAGENT_SHIM_MAX_FRAME_BYTES"]),
    ("reconnect cap infinite", ["--reconnect-max-seconds", "inf"], {}, ["--reconnect-max-seconds"]),
    ("reconnect cap from env", [], {"VPPAGENT_SHIM_RECONNECT_MAX_SECONDS": "-1"},
     ["VPPAGENT_SHIM_RECONNECT_MAX_SECONDS"]),
    ("fd 3 not open", ["--in-fd", "97"], {}, ["fd 97"]),
    ("socket path too long", ["--socket", "/tmp/" + "s" * 120], {}, ["--socket", "107"]),
]


@pytest.mark.parametrize(("argv", "env", "needles"), [c[1:] for c in SHIM_CASES], ids=[c[0] for c in SHIM_CASES])
def test_felix_shim_input_error_is_one_line_exit_2(argv: list[str], env: dict[str, str],
                                                  needles: list[str]) -> None:
    assert_one_line_usage_error(run("felix-shim", argv, env), *needles)


def test_trace_claims_no_verdict_when_the_compile_fails(files: dict[str, str]) -> None:
    """The driver would not program an endpoint whose list does not compile: no verdict to give."""
    for extra in ([], ["--json"]):
        proc = run("vppagent", _trace(files["good"], "--packet", PACKET, "--rule-limit", "1", *extra))
        assert proc.returncode == 2, proc.stderr
        assert "verdict" not in proc.stdout and "allow" not in proc.stdout, proc.stdout
        assert proc.stderr.count("\n") == 1 and "does not compile" in proc.stderr and "limit of 1" in proc.stderr


def test_help_names_no_document_outside_the_package() -> None:
    from vppagent.cli import build_parser

    def helps(parser):  # type: ignore[no-untyped-def]
        yield parser.prog, parser.format_help()
        for action in parser._subparsers._group_actions if parser._subparsers else []:
            for child in action.choices.values():
                yield from helps(child)

    found = dict(helps(build_parser()))
    assert len(found) >= 8, sorted(found)
    for prog, text in found.items():
        assert "DESIGN.md" not in text, prog
