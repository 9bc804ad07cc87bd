"""Emulator fidelity, measured: scripted API sequences run on the emulator and on a real VPP, every
reply compared field by field (retvals included).

A sequence is a function of a :class:`Recorder`; it makes the calls the driver makes (and the bad
arguments it can send), records every reply, and undoes what it created.  Both sides start fresh
and run the sequences in the same order, so indices (sw_if_index, ACL, table) must agree too.

Not compared, each for its reason (``IGNORED``): the message id (``_0``: dynamic in VPP) and the
context (the client's own counter); VPP's process id and build date; ``stats_index``
of routes and neighbours (VPP's internal counter slots).  Classifier sessions are dumped in VPP's hash
order and compared sorted by their match.  Route dumps are compared for the prefixes a sequence made: VPP
also lists its special entries (multicast, broadcast, interface addresses), which the emulator
does not keep.  Interface dumps are compared for the interfaces a sequence made.

Run ``python -m tests.vppsim.fidelity`` (as root, VPP installed) for the figures.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpp_papi import VPPApiClient

NONE = 0xFFFFFFFF

# (message, field) pairs never compared, and why (see the module docstring).
IGNORED: dict[tuple[str, str], str] = {
    ("control_ping_reply", "vpe_pid"): "VPP's process id",
    ("show_version_reply", "build_date"): "when and where the binary was built",
    ("ip_route_add_del_reply", "stats_index"): "VPP's internal counter slot",
    ("ip_route_details", "stats_index"): "VPP's internal counter slot",
    ("ip_route_v2_details", "stats_index"): "VPP's internal counter slot",
    ("ip_neighbor_add_del_reply", "stats_index"): "VPP's internal counter slot",
}
_ALWAYS_IGNORED = ("_0", "context")


def plain(value: Any) -> Any:
    """vpp_papi's reply objects as plain data: dicts, lists, ints, str, bytes."""
    if hasattr(value, "_asdict"):
        return {key: plain(item) for key, item in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, enum.Enum):
        return int(value.value)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network
                  | ipaddress.IPv6Network | ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        return str(value)
    if isinstance(value, bool | int | str | bytes | float) or value is None:
        return value
    return str(value)  # MACAddress and the like


@dataclass
class Step:
    """One call (or one recorded observation) and what came back, as plain data."""

    label: str
    message: str  # the reply or details message name, for IGNORED
    value: Any


@dataclass
class Recorder:
    """Runs calls on one target and records every reply."""

    client: VPPApiClient
    steps: list[Step] = field(default_factory=list)

    def __call__(self, message: str, **fields: Any) -> Any:
        reply = getattr(self.client.api, message)(**fields)
        label = f"{message}({_brief(fields)})"
        if isinstance(reply, list):
            name = type(reply[0]).__name__ if reply else "details"
            self.steps.append(Step(label, name, [plain(item) for item in reply]))
        else:
            self.steps.append(Step(label, type(reply).__name__, plain(reply)))
        return reply

    def quiet(self, message: str, **fields: Any) -> Any:
        """A call whose reply is not compared (dumps filtered afterwards with :meth:`record`)."""
        return getattr(self.client.api, message)(**fields)

    def record(self, label: str, message: str, value: Any) -> None:
        self.steps.append(Step(label, message, plain(value)))


def _brief(fields: dict[str, Any]) -> str:
    text = ", ".join(f"{key}={value!r}" for key, value in fields.items())
    return text if len(text) <= 90 else text[:87] + "..."


@dataclass
class Comparison:
    fields: int = 0
    differences: list[str] = field(default_factory=list)


def compare(emulator: list[Step], real: list[Step]) -> Comparison:
    """Every field of every recorded reply, side by side."""
    result = Comparison()
    labels = [s.label for s in emulator], [s.label for s in real]
    if labels[0] != labels[1]:  # a value read back earlier went into a later call
        first = next(i for i, pair in enumerate(zip(*labels, strict=False)) if pair[0] != pair[1])
        result.differences.append(f"step {first} differs: emulator {labels[0][first]} vs VPP {labels[1][first]}")
        return result
    for ours, theirs in zip(emulator, real, strict=True):
        _compare_value(ours.message, ours.value, theirs.value, ours.label, result)
    return result


def _compare_value(message: str, ours: Any, theirs: Any, where: str, result: Comparison) -> None:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs)):
            if key in _ALWAYS_IGNORED or (message, key) in IGNORED:
                continue
            _compare_value(message, ours.get(key), theirs.get(key), f"{where}.{key}", result)
        return
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            result.fields += 1
            result.differences.append(f"{where}: {len(ours)} items (emulator) vs {len(theirs)} (VPP): "
                                      f"{_short(ours)} vs {_short(theirs)}")
            return
        for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _compare_value(message, a, b, f"{where}[{index}]", result)
        return
    result.fields += 1
    if ours != theirs:
        result.differences.append(f"{where}: emulator {_short(ours)} vs VPP {_short(theirs)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


Sequence = Callable[[Recorder], None]
SEQUENCES: dict[str, Sequence] = {}


def sequence(function: Sequence) -> Sequence:
    SEQUENCES[function.__name__.removeprefix("seq_")] = function
    return function


def run_both(emulator: VPPApiClient, real: VPPApiClient, run: Sequence) -> Comparison:
    ours, theirs = Recorder(emulator), Recorder(real)
    run(ours)
    run(theirs)
    return compare(ours.steps, theirs.steps)


def all_sequences() -> Iterator[tuple[str, Sequence]]:
    # By module name: run as ``python -m``, this file is __main__, not the registry the sequences fill.
    import tests.vppsim.fidelity as registry
    from tests.vppsim import fidelity_sequences  # noqa: F401  (registers them)

    yield from registry.SEQUENCES.items()


def main() -> None:
    """Run every sequence on a fresh emulator and a fresh private VPP; print the figures."""
    from tests.realvpp import PrivateVpp
    from vppagent.vppsim.testing import running_vppsim

    with running_vppsim() as sim, PrivateVpp() as vpp:
        sim.faults.no_vhost_net = not Path("/dev/vhost-net").exists()  # as the host the real VPP runs on
        emulator = VPPApiClient(server_address=str(sim.socket_path), bootstrapapi=True, read_timeout=5)
        real = VPPApiClient(server_address=vpp.socket_path, bootstrapapi=True, read_timeout=5)
        emulator.connect("fidelity")
        real.connect("fidelity")
        total_fields = total_steps = 0
        differences: list[str] = []
        names = []
        for name, run in all_sequences():
            ours, theirs = Recorder(emulator), Recorder(real)
            run(ours)
            run(theirs)
            comparison = compare(ours.steps, theirs.steps)
            names.append(name)
            total_steps += len(ours.steps)
            total_fields += comparison.fields
            differences += [f"{name}: {d}" for d in comparison.differences]
        emulator.disconnect()
        real.disconnect()
    print(f"{len(names)} sequences, {total_steps} replies, {total_fields} fields compared, "
          f"{len(differences)} differences")
    for difference in differences:
        print("  " + difference)


if __name__ == "__main__":
    main()
