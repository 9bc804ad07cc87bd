"""`vppagent lab run [SCENARIO.yaml]` and `vppagent lab down`.

`register(subparsers)` adds the `lab` command to the main CLI; `python -m vppagent.lab.cli run`
works on its own too.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from vppagent.command_line import EXIT_USAGE, OneLineParser, port_number, positive_float, run_quietly

if TYPE_CHECKING:
    from vppagent.lab.scenario import Scenario

EXIT_MISMATCH = 1
EXIT_SETUP = 3  # the lab could not be built or run: not a verdict on the dataplane
EXIT_SKIPPED = 4  # --driver auto chose a driver the scenario cannot run on: nothing was checked
__all__ = ["EXIT_MISMATCH", "EXIT_SETUP", "EXIT_SKIPPED", "EXIT_USAGE", "main", "register"]


def register(subparsers: Any) -> None:
    lab = subparsers.add_parser("lab", help="a cluster in network namespaces: policy checked on real packets")
    sub = lab.add_subparsers(dest="lab_command", required=True)
    run = sub.add_parser("run", help="build the lab, run a scenario, print the connectivity matrix")
    run.add_argument("scenario", nargs="?", type=Path,
                     help="scenario YAML, or a bundled scenario's name: default (the default), services")
    run.add_argument("--driver", default="auto", choices=["auto", "vpp", "iptables", "dry-run"],
                     help="dataplane driver of every agent: vpp (one real VPP per node), iptables (the "
                          "kernel), dry-run; default auto = vpp when the vpp binary is installed")
    run.add_argument("--vpp-api-socket", help="with --driver vpp: use these running VPPs (each with its uplink) "
                                              "instead of starting one per node; {node} is replaced")
    run.add_argument("--json", action="store_true", help="print the results as JSON only")
    run.add_argument("--keep", action="store_true", help="leave the lab running afterwards (see `lab down`)")
    run.add_argument("--probe-timeout", type=positive_float, default=1.0, help="seconds per probe (default 1)")
    run.add_argument("--metrics-port", type=port_number,
                     help="each agent's metrics port, inside its node namespace")
    run.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    run.set_defaults(func=cmd_run)
    down = sub.add_parser("down", help="remove every lab (namespaces, processes, sockets)")
    down.add_argument("prefix", nargs="?", help="only this lab (default: all)")
    down.set_defaults(func=cmd_down)
    check = sub.add_parser("check", help="parse and validate a scenario without running it")
    check.add_argument("scenario", nargs="?", type=Path)
    check.set_defaults(func=cmd_check)


def _usage(exc: Exception) -> int:
    # A scenario with several mistakes lists them all, on one line like every input error.
    print("vppagent lab: " + "; ".join(str(exc).splitlines()), file=sys.stderr)
    return EXIT_USAGE


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM: unwind like Ctrl-C, so the lab is torn down


def services_refusal(scenario: Scenario, requested: str, driver: str,
                     note: str | None = None) -> tuple[int, str] | None:
    """None when `scenario` can run on `driver`. Else a Services scenario on a driver without
    Services: refused (usage) when that driver was asked for; when `--driver auto` chose it, a
    SKIP line saying why, with an exit status of its own (never a pass)."""
    from vppagent.lab.run import services_problem

    problem = services_problem(scenario, driver)
    if problem is None:
        return None
    if requested != "auto":
        return EXIT_USAGE, problem
    return EXIT_SKIPPED, f"SKIP {scenario.name}: {problem}" + (f" ({note})" if note else "")


def cmd_run(args: argparse.Namespace) -> int:
    from vppagent.lab.agents import LabError
    from vppagent.lab.report import LEGEND, ProgressBar, StepResult, format_step, use_color
    from vppagent.lab.run import LabOptions, LabRun, resolve_driver
    from vppagent.lab.scenario import ScenarioError, load_scenario
    from vppagent.lab.topology import TopologyError, netns_problem

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        return _usage(exc)
    if args.driver != "auto" and (refusal := services_refusal(scenario, args.driver, args.driver)) is not None:
        print(f"vppagent lab: {refusal[1]}", file=sys.stderr)  # before anything needs root
        return refusal[0]
    problem = netns_problem()
    if problem is not None:
        print(f"vppagent lab: {problem}", file=sys.stderr)
        return EXIT_SETUP
    driver, driver_note = resolve_driver(args.driver)
    unsupported = services_refusal(scenario, args.driver, driver, driver_note)
    if unsupported is not None:
        exit_status, message = unsupported
        if exit_status == EXIT_USAGE:
            print(f"vppagent lab: {message}", file=sys.stderr)
        elif args.json:
            print(json.dumps({"scenario": scenario.name, "driver": driver, "ok": False, "skipped": message}))
        else:
            print(message)
        return exit_status
    if driver == "vpp" and not args.vpp_api_socket:
        from vppagent.vpprun import vpp_problem

        problem = vpp_problem()
        if problem is not None:
            print(f"vppagent lab: --driver vpp starts one VPP per node: {problem}", file=sys.stderr)
            return EXIT_SETUP
    color = use_color(sys.stdout, args.color) and not args.json
    bar = ProgressBar()
    pods = [pod.name for _, pod in scenario.pods()]
    ports = {pod.name: list(pod.ports) for _, pod in scenario.pods()}
    total = len(scenario.steps) + 1

    def step_done(step: StepResult) -> None:
        bar.clear()
        if not args.json:
            print(format_step(step, total, pods, ports, color) + "\n", flush=True)

    def status(text: str) -> None:
        bar.label = text.split(":")[0] if text.startswith("step") else ""
        bar.message(text)

    options = LabOptions(driver=driver, vpp_api_socket=args.vpp_api_socket, keep=args.keep,
                         probe_timeout=args.probe_timeout, metrics_port=args.metrics_port,
                         status=status, progress=bar.update, step_done=step_done)
    if not args.json:
        print(f"lab: scenario {scenario.name} — {len(scenario.nodes)} nodes, {len(pods)} pods, "
              f"{total - 1} steps; driver {driver}" + (f" ({driver_note})" if driver_note else ""))
        print(LEGEND + "\n")
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    lab = LabRun(scenario, options)
    try:
        result = lab.run()
    except BrokenPipeError:
        raise  # our reader went away: not a setup failure; main() ends quietly (the lab is torn down)
    except (LabError, TopologyError, OSError) as exc:
        bar.clear()
        print(f"vppagent lab: {exc}", file=sys.stderr)
        if lab.saved_logs is not None:
            print(f"vppagent lab: logs kept in {lab.saved_logs}", file=sys.stderr)
        return EXIT_SETUP
    except KeyboardInterrupt:
        bar.clear()
        print("vppagent lab: interrupted; the lab was removed", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    bar.clear()
    if args.json:
        print(json.dumps(result.to_json(), indent=1))
    else:
        for note in result.notes:
            print(f"note: {note}")
        print(result.summary(color))
    return 0 if result.ok else EXIT_MISMATCH


def cmd_down(args: argparse.Namespace) -> int:
    from vppagent.lab.record import STATE_ROOT, all_records, existing_namespaces, teardown

    records = [r for r in all_records() if args.prefix in (None, r.prefix)]
    failed = False
    for record in records:
        problems = teardown(record)
        failed |= bool(problems)
        print(f"lab {record.prefix}: " + ("removed" if not problems else "; ".join(problems)))
    if not records:
        print(f"no labs recorded under {STATE_ROOT}")
    strays = sorted(ns for ns in existing_namespaces() if ns.startswith("vpl") and "-" in ns
                    and not any(ns.startswith(r.prefix + "-") for r in records))
    if strays and args.prefix is None:
        # Without a state file we cannot know they are ours: say so rather than delete them.
        print(f"namespaces that look like a lab's but are not recorded (left alone): {', '.join(strays)}")
    return 1 if failed else 0


def cmd_check(args: argparse.Namespace) -> int:
    from vppagent.lab.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        return _usage(exc)
    steps = list(scenario.snapshots())
    probes = sum(len(p.ports) for _, p in scenario.pods()) * (len(scenario.pods()) - 1)
    services = len({key for step in steps for key in step.objects.services})
    print(f"{scenario.name}: {len(scenario.nodes)} nodes, {len(scenario.pods())} pods, {len(steps)} steps, "
          f"about {probes} probes per step" + (f"; {services} Services (VPP only)" if services else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="vppagent", description="the vppagent lab")
    register(parser.add_subparsers(dest="command", required=True))

    def command() -> int:
        args = parser.parse_args(["lab", *(sys.argv[1:] if argv is None else argv)])
        result: int = args.func(args)
        return result

    return run_quietly(command)


if __name__ == "__main__":
    sys.exit(main())
