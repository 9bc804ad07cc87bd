"""`vppagent policy trace` and `vppagent policy compile` (also `python -m vppagent.policy.cli`).

trace: "why was this packet dropped?" For each packet, the reference evaluator's verdict with the
deciding tier / policy / rule, and the compiled list's verdict with the matching flat rule.
compile: the flat first-match list for one endpoint and direction, as the VPP driver programs it.

--state FILE is a JSON or YAML list of ToDataplane messages in protobuf's JSON mapping (proto
field names or lowerCamelCase). --endpoint is ORCH/WORKLOAD/ENDPOINT, or a host endpoint id
(`hep:ID`, or just ID when it names a host endpoint in the state).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml
from google.protobuf import json_format

from vppagent.command_line import (
    EXIT_USAGE,
    OneLineParser,
    UsageError,
    describe_yaml_error,
    positive_int,
    read_text_file,
    run_quietly,
)
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.catalog import Catalog, parse_workload_key
from vppagent.policy.compile import (
    DEFAULT_RULE_LIMIT,
    CompiledList,
    compile_endpoint,
    compile_host_endpoint,
    first_match,
)
from vppagent.policy.evaluate import Verdict, host_endpoint_verdict, verdict
from vppagent.policy.model import PolicyError
from vppagent.policy.packet import Packet, PacketError
from vppagent.state.model import DataplaneState


def load_state(path: str) -> DataplaneState:
    text = read_text_file(path, "--state")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"--state {path}: not valid JSON or YAML: {describe_yaml_error(exc)}") from None
    if not isinstance(data, list):
        raise UsageError(f"--state {path}: expected a list of ToDataplane messages")
    state = DataplaneState()
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise UsageError(f"--state {path}: message {index} is {entry!r}, not a ToDataplane mapping")
        try:
            state.apply(json_format.ParseDict(entry, felix.ToDataplane()))
        except (json_format.ParseError, ValueError, TypeError) as exc:
            raise UsageError(f"--state {path}: message {index}: {_first_line(exc)}") from None
    return state


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _endpoint(cat: Catalog, text: str) -> tuple[str, str]:
    """("hep", id) or ("workload", key text)."""
    if text.startswith("hep:"):
        return "hep", text[4:]
    if text in cat.state.host_endpoints:
        return "hep", text
    try:
        parse_workload_key(text)
    except PolicyError as exc:
        raise UsageError(f"--endpoint: {exc}") from None
    return "workload", text


def _check_endpoint(cat: Catalog, kind: str, endpoint: str, state_path: str) -> None:
    """UsageError naming the --state file when the endpoint is missing or cannot be parsed."""
    try:
        if kind == "hep":
            cat.host_endpoint(endpoint)
        else:
            cat.workload(endpoint)
    except PolicyError as exc:
        raise UsageError(f"--state {state_path}: {exc}") from None
    except ValueError as exc:  # a field Felix would never send, e.g. a CIDR with a /99
        what = "host endpoint" if kind == "hep" else "workload endpoint"
        raise UsageError(f"--state {state_path}: {what} {endpoint}: {_first_line(exc)}") from None


def _compile(cat: Catalog, kind: str, endpoint: str, direction: str, limit: int) -> CompiledList:
    if kind == "hep":
        return compile_host_endpoint(cat, endpoint, direction, rule_limit=limit)
    return compile_endpoint(cat, endpoint, direction, rule_limit=limit)


def _read_packets(args: argparse.Namespace) -> list[Packet]:
    texts: list[str] = list(args.packet or [])
    if args.packets:
        lines = read_text_file(args.packets, "--packets").splitlines()
        texts += [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not texts:
        raise UsageError("give at least one --packet or a --packets FILE")
    try:
        return [Packet.parse(t) for t in texts]
    except PacketError as exc:
        raise UsageError(str(exc)) from None


def trace(args: argparse.Namespace) -> int:
    cat = Catalog(load_state(args.state))
    kind, endpoint = _endpoint(cat, args.endpoint)
    packets = _read_packets(args)
    _check_endpoint(cat, kind, endpoint, args.state)
    try:
        compiled = _compile(cat, kind, endpoint, args.direction, args.rule_limit)
    except PolicyError as exc:
        # A driver does not program an endpoint whose list does not compile: it keeps what it had
        # and reports the endpoint in error, so there is no verdict to claim for any packet.
        raise UsageError(f"{endpoint} {args.direction} does not compile, so no verdict: {exc}") from None
    results: list[dict[str, Any]] = []
    disagree = 0
    for pkt in packets:
        v: Verdict = (host_endpoint_verdict(cat, endpoint, args.direction, pkt) if kind == "hep"
                      else verdict(cat, endpoint, args.direction, pkt))
        row: dict[str, Any] = {
            "packet": str(pkt), "verdict": v.action, "compiled_verdict": None, "tier": v.tier,
            "policy": v.policy, "profile": v.profile, "rule_index": v.rule_index, "reason": v.reason,
            "compiled_rule_index": None, "compiled_rule": None}
        fm = first_match(compiled, pkt)
        row["compiled_verdict"] = fm.action
        row["compiled_rule_index"] = fm.index
        if fm.index is not None:
            rule = compiled.rules[fm.index]
            row["compiled_rule"] = f"{rule}    # {rule.origin}"
        disagree += fm.action != v.action
        results.append(row)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for row in results:
            print(row["packet"])
            print(f"  verdict:  {Verdict(row['verdict'], row['reason'], row['tier'], row['policy'], row['profile'], row['rule_index']).describe()}")  # noqa: E501
            if row["compiled_rule_index"] is None:
                print(f"  compiled: {row['compiled_verdict']} (default)")
            else:
                print(f"  compiled: {row['compiled_verdict']} (flat rule {row['compiled_rule_index']}: "
                      f"{row['compiled_rule']})")
    if disagree:
        print(f"error: the compiled list disagrees with the evaluator on {disagree} packet(s)", file=sys.stderr)
        return 1
    return 0


def compile_command(args: argparse.Namespace) -> int:
    cat = Catalog(load_state(args.state))
    kind, endpoint = _endpoint(cat, args.endpoint)
    _check_endpoint(cat, kind, endpoint, args.state)
    compiled = _compile(cat, kind, endpoint, args.direction, args.rule_limit)  # PolicyError: exit 2
    if args.json:
        print(json.dumps({
            "endpoint": compiled.endpoint, "direction": compiled.direction,
            "default_action": compiled.default_action, "source_rules": compiled.source_rules,
            "expansion_factor": round(compiled.expansion_factor, 3), "fingerprint": compiled.fingerprint(),
            "rules": [{"is_permit": r.is_permit, "family": r.family, "src_prefix": str(r.src),
                       "dst_prefix": str(r.dst), "proto": r.proto,
                       "srcport_or_icmptype_first": r.srcport_or_icmptype.first,
                       "srcport_or_icmptype_last": r.srcport_or_icmptype.last,
                       "dstport_or_icmpcode_first": r.dstport_or_icmpcode.first,
                       "dstport_or_icmpcode_last": r.dstport_or_icmpcode.last,
                       "origin": r.origin} for r in compiled.rules]}, indent=2))
    else:
        print(f"# {compiled.endpoint} {compiled.direction}: {len(compiled.rules)} rules from "
              f"{compiled.source_rules} source rules (expansion {compiled.expansion_factor:.2f})")
        print(compiled.render())
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", required=True, metavar="FILE",
                   help="JSON or YAML list of ToDataplane messages (protobuf JSON mapping)")
    p.add_argument("--endpoint", required=True, help="ORCH/WORKLOAD/ENDPOINT, or hep:ID for a host endpoint")
    p.add_argument("--direction", required=True, choices=("ingress", "egress"),
                   help="ingress = traffic to the workload (inbound rules)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--rule-limit", type=positive_int, default=DEFAULT_RULE_LIMIT,
                   help="refuse longer compiled lists (default %(default)s)")


def _guarded(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            result: int = func(args)
            return result
        except (UsageError, PolicyError) as exc:  # PolicyError here: the state lacks what was asked for
            print(f"vppagent policy: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except ValueError as exc:
            # The state file is the only input left: a value Felix would not send (a port that is
            # not a number, say) that the policy core could not use.
            print(f"vppagent policy: --state {args.state}: {_first_line(exc)}", file=sys.stderr)
            return EXIT_USAGE
    return run


def register(subparsers: Any) -> None:
    """Add `policy trace` and `policy compile` to the vppagent CLI; each sets `func(args) -> int`."""
    policy = subparsers.add_parser("policy", help="trace and compile Calico policy (no agent needed)")
    sub = policy.add_subparsers(dest="policy_command", required=True)
    t = sub.add_parser("trace", help="why was this packet allowed or dropped?")
    _common(t)
    t.add_argument("--packet", action="append", metavar="PACKET",
                   help='e.g. "tcp 10.0.0.1:1234 > 10.0.0.2:80", "icmp 10.0.0.1 > 10.0.0.2 type 8 code 0"')
    t.add_argument("--packets", metavar="FILE", help="one packet per line")
    t.set_defaults(func=_guarded(trace))
    c = sub.add_parser("compile", help="print the flat first-match list for an endpoint and direction")
    _common(c)
    c.set_defaults(func=_guarded(compile_command))


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone: `python -m vppagent.policy.cli [policy] trace|compile ...`."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] != ["policy"]:
        words.insert(0, "policy")
    parser = OneLineParser(prog="vppagent")
    register(parser.add_subparsers(dest="command", required=True))

    def command() -> int:
        args = parser.parse_args(words)
        result: int = args.func(args)
        return result

    return run_quietly(command)


if __name__ == "__main__":
    sys.exit(main())
