"""Differences between two dataplane states, per object kind: what a driver must change."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vppagent.state.model import DataplaneState, Kind


@dataclass
class StateDiff:
    """Objects to create or replace (`upserts`, new values) and keys to delete (`removes`)."""

    upserts: dict[Kind, dict[Any, Any]] = field(default_factory=dict)
    removes: dict[Kind, set[Any]] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not any(self.upserts.values()) and not any(self.removes.values())

    def count(self) -> int:
        return sum(len(v) for v in self.upserts.values()) + sum(len(v) for v in self.removes.values())

    def kinds(self) -> set[Kind]:
        return {k for k, v in self.upserts.items() if v} | {k for k, v in self.removes.items() if v}

    def summary(self) -> dict[str, dict[str, list[str]]]:
        """JSON-friendly: {"upserts": {kind: [key, ...]}, "removes": {...}} (keys as strings)."""
        return {
            "upserts": {k.value: sorted(map(key_text, v)) for k, v in self.upserts.items() if v},
            "removes": {k.value: sorted(map(key_text, v)) for k, v in self.removes.items() if v},
        }


def key_text(key: Any) -> str:
    """PolicyKey and WorkloadKey print themselves; other tuple keys join with '/'."""
    if isinstance(key, tuple) and type(key).__str__ is tuple.__str__:
        return "/".join(map(str, key))
    return str(key)


def diff_states(
    old: DataplaneState, new: DataplaneState, only: Iterable[tuple[Kind, Any]] | None = None
) -> StateDiff:
    """What turns `old` into `new`. With `only`, look at just those (kind, key) pairs."""
    result = StateDiff()
    if only is None:
        pairs: Iterable[tuple[Kind, Any]] = (
            (kind, key) for kind in Kind for key in old.tables[kind].keys() | new.tables[kind].keys()
        )
    else:
        pairs = only
    for kind, key in pairs:
        before = old.tables[kind].get(key)
        after = new.tables[kind].get(key)
        if after is None:
            if before is not None:
                result.removes.setdefault(kind, set()).add(key)
        elif before is None or before != after:
            result.upserts.setdefault(kind, {})[key] = after
    return result
