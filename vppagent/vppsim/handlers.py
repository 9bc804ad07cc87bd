"""The contract between the server and the emulated VPP subsystems."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Fields = dict[str, Any]
# A reply, detail or event: message name and its fields (``_vl_msg_id`` is filled in by the server,
# ``context`` too unless the handler sets it).
Reply = tuple[str, Fields]


@dataclass(frozen=True)
class Request:
    """A decoded request from one connected client."""

    name: str
    fields: Fields
    raw: bytes
    client_index: int

    @property
    def context(self) -> int:
        context: int = self.fields.get("context", 0)
        return context


Handler = Callable[[Request], list[Reply]]


def retval_reply(name: str, retval: int, **fields: Any) -> list[Reply]:
    """The common one-message answer: ``<name>`` carrying ``retval`` (and any extra fields)."""
    return [(name, {"retval": int(retval), **fields})]
