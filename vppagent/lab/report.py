"""Results of a lab run: the matrix per step (expected vs actual), a progress bar, a summary line,
and the JSON form."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from vppagent.lab.scenario_objects import Port

GREEN, RED, DIM, BOLD, MISMATCH, RESET = "\033[32m", "\033[31m", "\033[2m", "\033[1m", "\033[1;97;41m", "\033[0m"
CONNECTED, BLOCKED, SELF = "✓", "✗", "·"


@dataclass(frozen=True)
class Cell:
    """One probe: what the reference evaluator expected, what happened, and any written expectation."""

    source: str
    target: str
    port: Port
    expected: bool
    actual: bool
    written: bool | None
    reason: str  # the evaluator's explanation
    detail: str  # the probe's outcome: ok, refused, timeout, …
    source_port: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.actual == self.expected and (self.written is None or self.written == self.expected)

    def explain(self) -> str:
        verdict = "allow" if self.expected else "deny"
        text = (f"{self.source} -> {self.target} {self.port} (from port {self.source_port}): evaluator says "
                f"{verdict} [{self.reason}]; probe {'connected' if self.actual else self.detail}")
        if self.written is not None and self.written != self.expected:
            text += f"; the scenario expects {'allow' if self.written else 'deny'}"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "port": str(self.port), "expected": self.expected,
                "actual": self.actual, "written": self.written, "ok": self.ok, "reason": self.reason,
                "detail": self.detail, "source_port": self.source_port, "seconds": round(self.seconds, 4)}


@dataclass(frozen=True)
class ServiceCell:
    """Several new flows from one client to one Service frontend: who answered each, and what the
    oracle allowed (service_checks.py)."""

    source: str  # a pod, or "outside" (the host on the nodes' network)
    frontend: str  # Frontend.label()
    service: str
    expect: str  # "answer", "no answer" or "either" (some candidates answer, some may not)
    reason: str  # the oracle's explanation
    answers: tuple[tuple[str, int], ...]  # (backend or "no answer", flows), sorted
    problems: tuple[str, ...]  # what went wrong, flow by flow

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def answered(self) -> bool:
        return any(who != NO_ANSWER for who, _ in self.answers)

    def flows(self) -> int:
        return sum(n for _, n in self.answers)

    def explain(self) -> str:
        got = ", ".join(f"{who} x{n}" for who, n in self.answers)
        return (f"{self.source} -> {self.frontend}: expected {self.expect} [{self.reason}]; got {got}: "
                + "; ".join(dict.fromkeys(self.problems)))

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.frontend, "service": self.service, "expect": self.expect,
                "reason": self.reason, "answers": dict(self.answers), "ok": self.ok, "problems": list(self.problems)}


NO_ANSWER = "no answer"


@dataclass
class StepResult:
    index: int
    name: str
    cells: list[Cell]
    program_seconds: float
    probe_seconds: float
    services: list[ServiceCell] = field(default_factory=list)
    service_problems: list[str] = field(default_factory=list)  # across flows: spread, affinity

    @property
    def mismatches(self) -> list[Cell]:
        return [c for c in self.cells if not c.ok]

    @property
    def service_mismatches(self) -> int:
        return sum(not c.ok for c in self.services) + len(self.service_problems)

    @property
    def probes(self) -> int:
        return len(self.cells) + len(self.services)

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name,
                "mismatches": len(self.mismatches) + self.service_mismatches,
                "program_seconds": round(self.program_seconds, 3), "probe_seconds": round(self.probe_seconds, 3),
                "probes": [c.to_json() for c in self.cells], "services": [c.to_json() for c in self.services],
                "service_problems": self.service_problems}


@dataclass
class LabResult:
    scenario: str
    driver: str
    prefix: str
    steps: list[StepResult] = field(default_factory=list)
    setup_seconds: float = 0.0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> int:
        return sum(len(s.mismatches) + s.service_mismatches for s in self.steps)

    @property
    def probes(self) -> int:
        return sum(s.probes for s in self.steps)

    @property
    def service_flows(self) -> int:
        return sum(c.flows() for s in self.steps for c in s.services)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.probes > 0

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "driver": self.driver, "prefix": self.prefix, "ok": self.ok,
                "probes": self.probes, "service_flows": self.service_flows, "mismatches": self.mismatches,
                "seconds": round(self.seconds, 3),
                "setup_seconds": round(self.setup_seconds, 3), "notes": self.notes,
                "steps": [s.to_json() for s in self.steps]}

    def summary(self, color: bool = False) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        if color:
            verdict = f"{BOLD}{GREEN if self.ok else RED}{verdict}{RESET}"
        return (f"{verdict} {self.scenario}: initial state + {max(0, len(self.steps) - 1)} steps, "
                f"{self.probes} probes" + (f" ({self.service_flows} flows to Services)" if self.service_flows else "")
                + f", {self.mismatches} mismatches; driver {self.driver}; {self.seconds:.1f} s "
                f"(set-up {self.setup_seconds:.1f} s)")


def use_color(stream: TextIO, choice: str = "auto") -> bool:
    if choice != "auto":
        return choice == "always"
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def format_step(step: StepResult, total_steps: int, pods: list[str], ports: dict[str, list[Port]],
                color: bool) -> str:
    """The matrix: a row per source pod, a column per destination pod and port."""
    columns = [(pod, port) for pod in pods for port in ports.get(pod, [])]
    cells = {(c.source, c.target, c.port): c for c in step.cells}
    width = max([3, *(len(pod) for pod, _ in columns), *(len(str(port)) for _, port in columns)]) + 1
    label = max([10, *(len(p) for p in pods)]) + 2
    mismatches = len(step.mismatches) + step.service_mismatches
    title = (f"step {step.index + 1}/{total_steps}: {step.name}  ({step.probes} probes, "
             f"{mismatches} mismatches; programmed in {step.program_seconds:.2f} s, "
             f"probed in {step.probe_seconds:.2f} s)")
    lines = [f"{BOLD}{title}{RESET}" if color else title,
             (" " * label + "".join(pod.ljust(width) for pod, _ in columns)).rstrip(),
             ("from \\ to".ljust(label) + "".join(str(port).ljust(width) for _, port in columns)).rstrip()]
    for source in pods:
        row = [source.ljust(label)]
        for target, port in columns:
            cell = cells.get((source, target, port))
            row.append(_cell(cell, width, color) if cell else (SELF.ljust(width) if source == target else
                                                               " " * width))
        lines.append("".join(row).rstrip())
    lines += _service_lines(step, color)
    mismatch = "  " + (f"{RED}MISMATCH{RESET} " if color else "MISMATCH ")
    for cell in step.mismatches:
        lines.append(mismatch + cell.explain())
    lines += [mismatch + c.explain() for c in step.services if not c.ok]
    lines += [mismatch + problem for problem in step.service_problems]
    return "\n".join(lines)


def _service_lines(step: StepResult, color: bool) -> list[str]:
    """A row per Service frontend: each client's verdict and the backends that answered."""
    if not step.services:
        return []
    frontends = list(dict.fromkeys(c.frontend for c in step.services))
    width = max(len(f) for f in frontends) + 2
    lines = ["services".ljust(width) + "client: verdict (who answered)"]
    for frontend in frontends:
        cells = [c for c in step.services if c.frontend == frontend]
        parts = []
        for cell in cells:
            who = ", ".join(f"{name} x{n}" for name, n in cell.answers if name != NO_ANSWER)
            symbol = CONNECTED if cell.answered else BLOCKED
            if not cell.ok:
                symbol = f"{MISMATCH}{symbol}!{RESET}" if color else symbol + "!"
            elif color:
                symbol = f"{GREEN if cell.answered else DIM}{symbol}{RESET}"
            parts.append(f"{cell.source} {symbol}" + (f" ({who})" if who else ""))
        lines.append(frontend.ljust(width) + "  ".join(parts))
    return lines


def _cell(cell: Cell, width: int, color: bool) -> str:
    symbol = CONNECTED if cell.actual else BLOCKED
    if not cell.ok:
        text = (symbol + "!").ljust(width)
        return f"{MISMATCH}{text.rstrip()}{RESET}" + " " * (width - len(text.rstrip())) if color else text
    if not color:
        return symbol.ljust(width)
    return f"{GREEN if cell.actual else DIM}{symbol}{RESET}" + " " * (width - 1)


LEGEND = (f"{CONNECTED} connected   {BLOCKED} refused or timed out   {SELF} same pod   "
          "! differs from the reference evaluator (or from the scenario's expect)")


class ProgressBar:
    """`[#####-----] 12/40 step 1/3` on stderr, redrawn in place on a terminal."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = ""
        self.started = time.monotonic()

    def update(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        filled = round(24 * done / total)
        self.stream.write(f"\r  probing {self.label} [{'#' * filled}{'-' * (24 - filled)}] {done}/{total}")
        if done >= total:
            self.stream.write("\r\033[K")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A phase of the run: redrawn in place on a terminal, else one timestamped line each
        (so a CI log shows where a run spent its time or stopped)."""
        if self.enabled:
            self.stream.write(f"\r\033[K  {text}")
        else:
            self.stream.write(f"[{time.monotonic() - self.started:6.2f} s] {text}\n")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()
