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


@dataclass
class StepResult:
    index: int
    name: str
    cells: list[Cell]
    program_seconds: float
    probe_seconds: float

    @property
    def mismatches(self) -> list[Cell]:
        return [c for c in self.cells if not c.ok]

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "mismatches": len(self.mismatches),
                "program_seconds": round(self.program_seconds, 3), "probe_seconds": round(self.probe_seconds, 3),
                "probes": [c.to_json() for c in self.cells]}


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
        return sum(len(s.mismatches) for s in self.steps)

    @property
    def probes(self) -> int:
        return sum(len(s.cells) for s in self.steps)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.probes > 0

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "driver": self.driver, "prefix": self.prefix, "ok": self.ok,
                "probes": self.probes, "mismatches": self.mismatches, "seconds": round(self.seconds, 3),
                "setup_seconds": round(self.setup_seconds, 3), "notes": self.notes,
                "steps": [s.to_json() for s in self.steps]}

    def summary(self, color: bool = False) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        if color:
            verdict = f"{BOLD}{GREEN if self.ok else RED}{verdict}{RESET}"
        return (f"{verdict} {self.scenario}: initial state + {max(0, len(self.steps) - 1)} steps, "
                f"{self.probes} probes, "
                f"{self.mismatches} mismatches; driver {self.driver}; {self.seconds:.1f} s "
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
    title = (f"step {step.index + 1}/{total_steps}: {step.name}  ({len(step.cells)} probes, "
             f"{len(step.mismatches)} mismatches; programmed in {step.program_seconds:.2f} s, "
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
    for cell in step.mismatches:
        lines.append(("  " + (f"{RED}MISMATCH{RESET} " if color else "MISMATCH ")) + cell.explain())
    return "\n".join(lines)


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
