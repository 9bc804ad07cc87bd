"""Desired services kept up to date object by object (pure, no I/O).

A watch event touches one Service or one EndpointSlice; re-reading every object on each event costs
about half a second at 5000 Services on this project's test machine. `ServiceIndex` keeps each
object parsed once and recomputes only the entry the change belongs to: a Service's own entry, or
the entry of the Service an EndpointSlice is labelled with (before and after the change).
`desired_services` is the same index filled at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from vppagent.services.model import (
    EndpointSliceSpec,
    ServiceEntry,
    ServiceFormatError,
    ServiceSpec,
    parse_endpoint_slice,
    parse_service,
    service_entry,
    slice_owner,
)

_ParsedService = ServiceSpec | str | None  # str: why it cannot be read; None: nothing to serve
_ParsedSlice = EndpointSliceSpec | str | None


class ServiceIndex:
    """NAMESPACE/NAME -> ServiceEntry (`entries`) for the objects put in, keyed as the caller keys them.

    Each change returns whether `entries` changed. A Service that cannot be read is an error entry;
    an EndpointSlice that cannot be read puts its error (the first by slice key) on its Service.
    """

    def __init__(self, node_addresses: Iterable[str] = (), node: str = "") -> None:
        self._node_addresses = tuple(node_addresses)
        self._node = node
        self._services: dict[str, _ParsedService] = {}
        self._service_keys: dict[str, str] = {}  # owner NAMESPACE/NAME -> the caller's key
        self._slices: dict[str, tuple[str, _ParsedSlice]] = {}  # key -> (owner, parsed)
        self._owned: dict[str, set[str]] = {}  # owner -> slice keys
        self.entries: dict[str, ServiceEntry] = {}

    # --- changes --------------------------------------------------------------------------------------

    def replace(
        self, services: Mapping[str, Mapping[str, Any]] | None = None,
        slices: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> bool:
        """Every object of one kind (or both) at once, as after a list."""
        if services is not None:
            self._services.clear()
            self._service_keys.clear()
            for key, obj in services.items():
                self._store_service(key, obj)
        if slices is not None:
            self._slices.clear()
            self._owned.clear()
            for key, obj in slices.items():
                self._store_slice(key, obj)
        return self._refresh(list(self._services), full=True)

    def put_service(self, key: str, obj: Mapping[str, Any]) -> bool:
        self._drop_service(key)
        self._store_service(key, obj)
        return self._refresh([key])

    def remove_service(self, key: str) -> bool:
        self._drop_service(key)
        return self._refresh([key])

    def put_slice(self, key: str, obj: Mapping[str, Any]) -> bool:
        before = self._drop_slice(key)
        after = self._store_slice(key, obj)
        return self._refresh_owners([before, after])

    def remove_slice(self, key: str) -> bool:
        return self._refresh_owners([self._drop_slice(key)])

    def set_node(self, node: str, node_addresses: Iterable[str]) -> bool:
        if (node, tuple(node_addresses)) == (self._node, self._node_addresses):
            return False  # asked after every apply: most often nothing changed
        self._node, self._node_addresses = node, tuple(node_addresses)
        return self._refresh(list(self._services), full=True)

    # --- storage --------------------------------------------------------------------------------------

    def _store_service(self, key: str, obj: Mapping[str, Any]) -> None:
        try:
            parsed: _ParsedService = parse_service(obj)
        except ServiceFormatError as exc:
            parsed = str(exc)
        self._services[key] = parsed
        if isinstance(parsed, ServiceSpec):
            self._service_keys[parsed.key] = key

    def _drop_service(self, key: str) -> None:
        parsed = self._services.pop(key, None)
        if isinstance(parsed, ServiceSpec) and self._service_keys.get(parsed.key) == key:
            del self._service_keys[parsed.key]

    def _store_slice(self, key: str, obj: Mapping[str, Any]) -> str:
        try:
            parsed: _ParsedSlice = parse_endpoint_slice(obj)
        except ServiceFormatError as exc:
            parsed = str(exc)
        owner = slice_owner(obj)
        self._slices[key] = (owner, parsed)
        self._owned.setdefault(owner, set()).add(key)
        return owner

    def _drop_slice(self, key: str) -> str | None:
        owner, _ = self._slices.pop(key, (None, None))
        if owner is not None:
            self._owned[owner].discard(key)
            if not self._owned[owner]:
                del self._owned[owner]
        return owner

    # --- entries --------------------------------------------------------------------------------------

    def _refresh_owners(self, owners: Iterable[str | None]) -> bool:
        keys = [self._service_keys[o] for o in set(owners) if o is not None and o in self._service_keys]
        return self._refresh(keys)

    def _refresh(self, keys: Iterable[str], full: bool = False) -> bool:
        """Recomputes the entries of `keys`; `full`: also drops entries of services no longer present."""
        changed = False
        for key in keys:
            entry = self._entry(key)
            if entry is None:
                changed |= self.entries.pop(key, None) is not None
            elif self.entries.get(key) != entry:
                self.entries[key] = entry
                changed = True
        if full:
            for key in self.entries.keys() - self._services.keys():
                del self.entries[key]
                changed = True
        return changed

    def _entry(self, key: str) -> ServiceEntry | None:
        parsed = self._services.get(key)
        if parsed is None:
            return None
        if isinstance(parsed, str):
            return ServiceEntry(name=key, error=parsed)
        slices = [self._slices[k][1] for k in sorted(self._owned.get(parsed.key, ()))]
        errors = [s for s in slices if isinstance(s, str)]
        if errors:
            return ServiceEntry(name=key, error=errors[0])
        ready = [s for s in slices if isinstance(s, EndpointSliceSpec)]
        entry = service_entry(parsed, ready, self._node_addresses, self._node)
        return entry if entry.name == key else ServiceEntry(
            key, entry.ports, entry.affinity_timeout, entry.external_local, entry.node, entry.error)


def desired_services(
    services: Mapping[str, Mapping[str, Any]],
    slices: Mapping[str, Mapping[str, Any]],
    node_addresses: Iterable[str] = (),
    node: str = "",
) -> dict[str, ServiceEntry]:
    """Key -> entry, from the raw Service and EndpointSlice objects (keyed NAMESPACE/NAME)."""
    index = ServiceIndex(node_addresses, node)
    index.replace(services, slices)
    return index.entries
