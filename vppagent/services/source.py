"""The service source: list+watch of Services and EndpointSlices from the Kubernetes API server.

One thread per resource kind runs the usual reflector loop with the official `kubernetes` client:
list (remember the list's resourceVersion) -> watch from that resourceVersion with bookmarks
(each event and bookmark moves it on) -> when the server ends the watch, watch again from where it
stopped; on 410 Gone (an HTTP status or an ERROR event: the version was compacted away) list again;
on any other failure wait with doubling backoff and list again. Requests go through the client's
API functions with `_preload_content=False`, so the model reads the API's own JSON.

Once both kinds have been listed, every change updates the desired services (`index`, which
re-reads only the service the change belongs to) and calls `on_change` with them when they differ
from the last ones given. An API server that cannot
be reached (or refuses) is logged as one line when the outage starts (and one when it ends); the threads keep
retrying and the rest of the agent is not held up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vppagent.services.index import ServiceIndex
from vppagent.services.model import ServiceEntry, object_key

log = logging.getLogger("vppagent.services")

KINDS = ("services", "endpointslices")


class ServicesConfigError(Exception):
    """No usable API server configuration; the message is one line."""


class _Gone(Exception):
    """The watched resourceVersion is too old (410): list again."""


def load_api_client(kubeconfig: Path | None, connect_timeout: float = 5.0) -> Any:
    """An ApiClient from `kubeconfig`, else the in-cluster config, else $KUBECONFIG (or ~/.kube/config).

    The client's own retries are off: the source's backoff decides when to try again.
    """
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    if kubeconfig is None:
        try:
            in_cluster: Any = config.load_incluster_config  # untyped in the client
            in_cluster(client_configuration=configuration)
        except ConfigException:
            kubeconfig = Path(os.path.expanduser(os.environ.get("KUBECONFIG") or "~/.kube/config"))
    if kubeconfig is not None:
        if not kubeconfig.is_file():
            raise ServicesConfigError(
                f"service source: no in-cluster config and kubeconfig {kubeconfig} is not a file"
            )
        try:
            from_file: Any = config.load_kube_config  # untyped in the client
            from_file(config_file=str(kubeconfig), client_configuration=configuration)
        except (ConfigException, OSError, ValueError, TypeError) as exc:
            raise ServicesConfigError(f"service source: kubeconfig {kubeconfig}: {_first_line(exc)}") from None
    configuration.retries = False
    return client.ApiClient(configuration)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def describe_error(exc: BaseException) -> str:
    """A short reason for a failed request: the socket error or the HTTP status, not the whole chain."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason or ''}".strip()
    reason = getattr(exc, "reason", None)  # urllib3's MaxRetryError wraps the real cause
    if isinstance(reason, BaseException):
        exc = reason
    text = _first_line(exc)
    marker = "[Errno"
    return text[text.index(marker):].rstrip("')\"") if marker in text else f"{type(exc).__name__}: {text}"


@dataclass(frozen=True)
class Backoff:
    """Waits between failed attempts: initial, doubling up to maximum."""

    initial: float = 0.5
    maximum: float = 30.0

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(delay * 2, self.maximum)


class KubernetesServiceSource:
    """Lists and watches Services and EndpointSlices; reports the desired services on each change."""

    def __init__(
        self,
        api_client: Any,
        on_change: Callable[[dict[str, ServiceEntry]], None],
        *,
        node_name: str = "",
        node_addresses: tuple[str, ...] = (),
        watch_timeout: int = 300,
        connect_timeout: float = 5.0,
        backoff: Backoff | None = None,
    ) -> None:
        from kubernetes import client

        self._on_change = on_change
        self._watch_timeout = watch_timeout
        # A read that outlasts the server's own watch timeout means a dead connection.
        self._request_timeout = (connect_timeout, watch_timeout + 30.0)
        self._backoff = backoff or Backoff()
        self._host = str(getattr(api_client.configuration, "host", "?"))
        self._list_calls: dict[str, Callable[..., Any]] = {
            "services": client.CoreV1Api(api_client).list_service_for_all_namespaces,
            "endpointslices": client.DiscoveryV1Api(api_client).list_endpoint_slice_for_all_namespaces,
        }
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._index = ServiceIndex(node_addresses, node_name)
        self._listed: set[str] = set()
        self._failing: dict[str, str] = {}  # kind -> why its last attempt failed
        self._last_error: str | None = None
        self._published: dict[str, ServiceEntry] | None = None
        self._responses: dict[str, Any] = {}
        self._threads = [
            threading.Thread(target=self._run, args=(kind,), name=f"services-{kind}", daemon=True) for kind in KINDS
        ]
        self.lists = {kind: 0 for kind in KINDS}  # how many times each kind was listed (for the report)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ends the threads: open watch streams are shut down, backoff waits end."""
        self._stop.set()
        with self._lock:
            responses = list(self._responses.values())
        for response in responses:
            _shutdown(response)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    def status(self) -> dict[str, Any]:
        """`services_source` of the state report: connected once both kinds listed and none failing."""
        with self._lock:
            connected = self._listed == set(KINDS) and not self._failing
            return {"connected": connected, "last_error": self._last_error}

    def set_node(self, name: str, addresses: tuple[str, ...]) -> None:
        """This node's name (for externalTrafficPolicy Local) and addresses (node-port frontends)."""
        with self._lock:
            if self._index.set_node(name, addresses):
                self._publish()

    def services(self) -> dict[str, ServiceEntry]:
        """The desired services last given to `on_change` (empty before the first)."""
        with self._lock:
            return dict(self._published or {})

    # --- one reflector per kind ---------------------------------------------------------------------

    def _run(self, kind: str) -> None:
        delays = self._backoff.delays()
        while not self._stop.is_set():
            try:
                version = self._list(kind)
                delays = self._backoff.delays()
                while not self._stop.is_set():
                    version = self._watch(kind, version)
            except _Gone:
                log.info("service source: %s resourceVersion expired (410 Gone), listing again", kind)
                continue
            except Exception as exc:
                if self._stop.is_set():
                    return
                self._failed(kind, describe_error(exc))
                self._stop.wait(next(delays))

    def _list(self, kind: str) -> str:
        response = self._list_calls[kind](_preload_content=False, _request_timeout=self._request_timeout)
        body = json.loads(response.data)
        version = str(body["metadata"]["resourceVersion"])
        objects = {object_key(item): item for item in body.get("items") or []}
        with self._lock:
            if kind == "services":
                self._index.replace(services=objects)
            else:
                self._index.replace(slices=objects)
            self._listed.add(kind)
            self.lists[kind] += 1
            self._succeeded(kind)
            self._publish()
        return version

    def _watch(self, kind: str, version: str) -> str:
        """Follows one watch stream from `version`; returns the version to watch from next."""
        from kubernetes.client.exceptions import ApiException

        try:
            response = self._list_calls[kind](
                watch=True, resource_version=version, allow_watch_bookmarks=True,
                timeout_seconds=self._watch_timeout, _preload_content=False, _request_timeout=self._request_timeout,
            )
        except ApiException as exc:
            if exc.status == 410:
                raise _Gone() from None
            raise
        with self._lock:
            self._responses[kind] = response
        try:
            if self._stop.is_set():
                return version
            for line in _lines(response):
                version = self._apply(kind, json.loads(line), version)
        finally:
            with self._lock:
                self._responses.pop(kind, None)
            response.release_conn()
        return version

    def _apply(self, kind: str, event: Mapping[str, Any], version: str) -> str:
        kind_of_event = event.get("type")
        obj = event.get("object") or {}
        if kind_of_event == "ERROR":
            if obj.get("code") == 410:
                raise _Gone()
            raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
        new_version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if kind_of_event == "BOOKMARK":
            return new_version
        key = object_key(obj)
        with self._lock:
            if kind_of_event == "DELETED":
                self._index.remove_service(key) if kind == "services" else self._index.remove_slice(key)
            elif kind_of_event in ("ADDED", "MODIFIED"):
                self._index.put_service(key, obj) if kind == "services" else self._index.put_slice(key, obj)
            else:
                return version
            self._succeeded(kind)
            self._publish()
        return new_version

    # --- status and publishing (callers hold the lock) -----------------------------------------------

    def _failed(self, kind: str, reason: str) -> None:
        with self._lock:
            line = f"service source: cannot list or watch {kind} at {self._host} ({reason}); retrying"
            if not self._failing:
                log.warning("%s with backoff", line)
            self._failing[kind] = reason
            self._last_error = line

    def _succeeded(self, kind: str) -> None:
        if self._failing.pop(kind, None) is not None and not self._failing:
            log.info("service source: API server at %s reached again", self._host)

    def _publish(self) -> None:
        if self._listed != set(KINDS):
            return
        entries = self._index.entries
        if entries != self._published:
            self._published = dict(entries)
            self._on_change(dict(entries))


def _lines(response: Any) -> Iterator[bytes]:
    """Newline-delimited JSON from a streamed HTTP body, whatever the chunk boundaries."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=True):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())
    if pending.strip():
        yield pending


def _shutdown(response: Any) -> None:
    """Unblocks a thread reading `response` (urllib3 >= 2.3 shuts the socket's read side)."""
    with contextlib.suppress(Exception):  # already released or closed: nothing is blocked on it
        response.shutdown()
