"""The `vppagent` command: run the agent; ask a running agent for its state or to swap its driver;
trace and compile Calico policy from a saved state; build and check a lab in network namespaces.

A bad input is reported in one line naming it, with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

import grpc

from vppagent.command_line import (
    EXIT_USAGE,
    OneLineParser,
    port_number,
    positive_float,
    run_quietly,
    socket_path_problem,
)
from vppagent.config import DEFAULT_SOCKET, AgentConfig, ConfigError, load_config


def _add_run(sub: Any) -> None:
    run = sub.add_parser("run", help="run the agent")
    # Every default is None: an unset flag must not override env or file (flags > env > file).
    run.add_argument("--config", help="YAML file with the same keys (env VPPAGENT_CONFIG)")
    run.add_argument("--socket", help=f"agent gRPC socket (default {DEFAULT_SOCKET})")
    run.add_argument("--driver", help="auto|vpp|iptables|dry-run (default auto)")
    run.add_argument("--vpp-api-socket", help="VPP binary API socket (default /run/vpp/api.sock)")
    run.add_argument("--cni-socket", help="CNI dataplane socket")
    run.add_argument("--iptables-netns", help="iptables driver: program this named netns")
    run.add_argument("--pod-interface", help="tap|af_packet|auto (VPP pod attachment)")
    run.add_argument("--bird-config", help="BIRD config file to generate (enables BGP)")
    run.add_argument("--bird-socket", help="BIRD control socket")
    run.add_argument("--bird-run", action="store_const", const=True, help="supervise the bird process")
    run.add_argument("--metrics-port", type=port_number, help="Prometheus metrics port")
    run.add_argument("--log-level", help="debug|info|warning|error")
    run.add_argument("--batch-window-ms", type=float, help="quiet time ending a batch (default 10)")
    run.add_argument("--rule-limit", type=int, help="max flat rules per endpoint direction")
    run.add_argument("--services", help="off|kubernetes: Kubernetes Services from the API server (default off)")
    run.add_argument("--kubeconfig", help="service source kubeconfig (default in-cluster, else $KUBECONFIG)")
    run.add_argument("--service-cidrs", help="the cluster's service CIDRs, comma-separated (ownership of translations)")
    run.add_argument("--service-node-port-range", help="the cluster's NodePort range (default 30000-32767)")
    run.add_argument("--service-snat-ipv4", help="VPP-only source address for flows to other nodes' backends")
    run.add_argument("--service-snat-ipv6", help="VPP-only IPv6 source address for flows to other nodes' backends")


def _agent_socket(args: argparse.Namespace) -> str:
    return str(args.socket or os.environ.get("VPPAGENT_SOCKET") or DEFAULT_SOCKET)


def _usage(message: str) -> int:
    print(f"vppagent: {message}", file=sys.stderr)
    return EXIT_USAGE


def _check_socket_paths(config: AgentConfig) -> str | None:
    """Why the agent cannot serve on its socket paths (one line naming the flag), or None.

    Checked before any driver starts, so a refused path leaves the dataplane untouched.
    """
    from vppagent.unix_socket import SocketPathError, prepare_socket_path

    if config.socket == config.cni_socket:
        return f"--socket and --cni-socket are both {config.socket}; each needs its own path"
    for flag, path in (("--socket", config.socket), ("--cni-socket", config.cni_socket)):
        try:
            prepare_socket_path(path)
        except SocketPathError as exc:
            return f"{flag} {exc}"
    return None


def _check_netns(config: AgentConfig) -> str | None:
    """A named namespace that does not exist would fail every apply later: say so now."""
    from vppagent.netns import netns_path

    if config.iptables_netns is None:
        return None
    path = netns_path(config.iptables_netns)
    if not path.exists():
        return f"--iptables-netns {config.iptables_netns}: no such network namespace ({path} does not exist)"
    return None


def cmd_run(args: argparse.Namespace) -> int:
    flags = {k: getattr(args, k) for k in AgentConfig.model_fields if hasattr(args, k)}
    try:
        config = load_config(flags)
    except ConfigError as exc:
        return _usage(str(exc))
    problem = _check_socket_paths(config) or _check_netns(config)
    if problem is not None:
        return _usage(problem)
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if config.services == "kubernetes":  # a config that cannot be used is refused before the dataplane
        from vppagent.services.runner import ServicesConfigError, service_source

        try:
            services = service_source(config.kubeconfig)
        except ServicesConfigError as exc:
            return _usage(str(exc))
    from vppagent.drivers import DriverUnavailable, make_driver
    from vppagent.server.cni_service import serve_cni
    from vppagent.server.core import AgentCore
    from vppagent.server.grpc_service import serve

    try:
        driver, reason = make_driver(config.driver, config)
    except DriverUnavailable as exc:
        print(f"vppagent: {exc}", file=sys.stderr)
        return 1
    logging.getLogger("vppagent").info("driver %s (%s)", driver.name, reason)
    core = AgentCore(config, driver, reason, driver_factory=lambda name: make_driver(name, config)[0])
    core.start()
    servers = []
    try:
        servers.append(serve(core, config.socket))
        servers.append(serve_cni(core, config.cni_socket))
    except (RuntimeError, OSError) as exc:
        print(f"vppagent: cannot serve: {exc}", file=sys.stderr)
        for server in servers:
            server.stop(0)
        core.stop()
        return 1
    if config.services == "kubernetes":
        services.start(core)
    bgp = config.bgp_settings()
    if bgp is not None:
        from vppagent.bgp.manager import BgpManager

        manager = BgpManager(bgp)
        core.on_applied.append(lambda c: manager.update(c.store.effective))
        core.report_sections["bgp"] = manager.status
    if config.metrics_port is not None:
        from vppagent.server.metrics import serve_metrics

        try:
            serve_metrics(core.metrics, config.metrics_port)
        except OSError as exc:
            for server in servers:
                server.stop(0)
            core.stop()
            if bgp is not None:
                manager.close()
            return _usage(f"--metrics-port {config.metrics_port}: cannot listen: {exc.strerror or exc}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger("vppagent").info("serving on %s", config.socket)
    stop.wait()
    for server in servers:
        server.stop(grace=0.5).wait(1)
    core.stop()
    if bgp is not None:
        manager.close()
    return 0


def _no_agent(args: argparse.Namespace, exc: grpc.RpcError) -> int:
    detail = exc.details() if hasattr(exc, "details") else str(exc)
    print(f"vppagent: no agent answers on {_agent_socket(args)} ({detail})", file=sys.stderr)
    return 1


def _bad_client_socket(args: argparse.Namespace) -> int | None:
    problem = socket_path_problem(_agent_socket(args))
    return None if problem is None else _usage(f"--socket {_agent_socket(args)} {problem}")


def cmd_state(args: argparse.Namespace) -> int:
    from vppagent.server.client import get_state

    if (refused := _bad_client_socket(args)) is not None:
        return refused
    try:
        report = get_state(_agent_socket(args), timeout=args.timeout)
    except grpc.RpcError as exc:
        return _no_agent(args, exc)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(format_state(report))
    return 0


def format_state(report: dict[str, Any]) -> str:
    """The human view of the state report: first whether the dataplane answers and how the
    endpoints stand, then the details."""
    dataplane = report.get("dataplane") or {}
    if dataplane.get("reachable") is None:
        reach = "not known yet (the driver has not reported)"
    elif dataplane["reachable"]:
        reach = f"reachable (since {dataplane.get('since')})"
    else:
        reach = f"unreachable since {dataplane.get('since')}: {dataplane.get('reason')}"
    eps = report.get("endpoints") or {}
    last = report.get("last_apply") or {}
    if last.get("ok") is None:
        applied = "never (nothing applied yet)"
    else:
        applied = f"{last.get('seconds')} s, " + ("ok" if last["ok"] else "FAILED") + (
            f", {last['failed']} object(s) not programmed" if last.get("failed") else "") + (
            f": {last['error']}" if last.get("error") else "")
    lines = [
        f"dataplane  {report['driver']} {reach}",
        f"endpoints  {eps.get('up', 0)} up, {eps.get('error', 0)} in error, {eps.get('waiting', 0)} waiting, "
        f"{eps.get('down', 0)} down",
        f"driver     {report['driver']}  ({report.get('driver_reason', '')})",
        f"in sync    {'yes' if report['in_sync'] else 'no'}",
        _felix_line(report.get("felix_wire")),
        "objects    " + ", ".join(f"{k} {v}" for k, v in report["counts"].items() if v or k in (
            "ipsets", "policies", "profiles", "workload_endpoints", "host_endpoints", "routes")),
        f"last apply {applied}",
    ]
    weps = report.get("workload_endpoints", [])
    if weps:
        lines.append("")
        lines.append(f"{'WORKLOAD':<40} {'INTERFACE':<16} {'STATUS':<8} ERROR")
        for ep in weps:
            wid = f"{ep['orchestrator_id']}/{ep['workload_id']}/{ep['endpoint_id']}"
            lines.append(f"{wid:<40} {ep['name']:<16} {ep['status']:<8} {ep['error'] or ''}")
    heps = report.get("host_endpoints", [])
    if heps:
        lines.append("")
        lines.append(f"{'HOST ENDPOINT':<40} {'INTERFACE':<16} {'STATUS':<8} ERROR")
        for ep in heps:
            lines.append(f"{ep['endpoint_id']:<40} {ep['name']:<16} {ep['status']:<8} {ep['error'] or ''}")
    for held in report.get("held_back", []):
        lines.append(f"held back  {held['kind']} {held['key']}: {held['reason']}")
    return "\n".join(lines)


def _felix_line(wire: dict[str, Any] | None) -> str:
    if not wire:
        return "felix      release not reported (felix-shim not connected, or per-message Sync)"
    unknown = sum(u["frames"] for u in wire.get("unknown", []))
    return (f"felix      {wire['release']} ({wire['how']}: {wire['detail']})"
            + (f"; {unknown} frames with unknown fields, see --json" if unknown else ""))


def cmd_driver_set(args: argparse.Namespace) -> int:
    from vppagent.server.client import set_driver

    if (refused := _bad_client_socket(args)) is not None:
        return refused
    try:
        reply = set_driver(_agent_socket(args), args.name, timeout=args.timeout)
    except grpc.RpcError as exc:
        return _no_agent(args, exc)
    if not reply.ok:
        print(f"vppagent: driver stays {reply.active}: {reply.error}", file=sys.stderr)
        return 1
    print(f"driver {reply.previous} -> {reply.active} in {reply.seconds:.3f} s")
    if reply.error:
        print(f"vppagent: {reply.error}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="vppagent", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    state = sub.add_parser("state", help="print the running agent's state report")
    state.add_argument("--json", action="store_true", help="machine-readable output")
    driver = sub.add_parser("driver", help="dataplane driver control")
    dsub = driver.add_subparsers(dest="driver_command", required=True)
    dset = dsub.add_parser("set", help="swap the dataplane driver at runtime")
    dset.add_argument("name", choices=["vpp", "iptables", "dry-run"])
    for p in (state, dset):
        p.add_argument("--socket", help=f"agent socket (env VPPAGENT_SOCKET, default {DEFAULT_SOCKET})")
        p.add_argument("--timeout", type=positive_float, default=5.0, help="seconds to wait for the agent")
    state.set_defaults(func=cmd_state)
    dset.set_defaults(func=cmd_driver_set)
    sub.choices["run"].set_defaults(func=cmd_run)
    from vppagent.lab.cli import register as register_lab
    from vppagent.policy.cli import register as register_policy

    register_policy(sub)
    register_lab(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    def command() -> int:
        args = build_parser().parse_args(argv)
        result: int = args.func(args)
        return result

    return run_quietly(command)


if __name__ == "__main__":
    sys.exit(main())
