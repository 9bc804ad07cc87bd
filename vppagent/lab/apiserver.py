"""A small Kubernetes API server over real HTTP on 127.0.0.1: Services and EndpointSlices only.

The lab serves its scenario's Services to the agents with it (`vppagent lab run`, one listener on
127.0.0.1 inside each node's network namespace, so an agent reaches it as a local address and
nothing outside the lab can), and the service source's tests use it as the API server.

It speaks the parts of the protocol a list+watch client relies on (Kubernetes API concepts:
"Efficient detection of changes"): a list answers the collection with its resourceVersion; a watch
(`?watch=true&resourceVersion=N`) streams newline-delimited JSON events after N over a chunked
response until `timeoutSeconds`; `allowWatchBookmarks=true` watches get BOOKMARK events when the
test calls `bookmark()`; a watch from a version older than the compaction floor gets 410 Gone (an
ERROR event carrying a Status with code 410, as API servers send it, or the HTTP status when
`gone_as_http_status` is set). Every response closes its connection, so `stop()` leaves nothing
answering on the port. It binds only loopback addresses: no authentication is checked.

PyPI's kmock was evaluated for this (issue 17) and not used: its emulator answers lists with a
fixed resourceVersion, replays every object as ADDED on each watch whatever resourceVersion was
asked for, and sends neither bookmarks nor 410 by itself - the behaviours these tests exist for.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from vppagent.netns import call_in_netns

SERVICES = "/api/v1/services"
ENDPOINTSLICES = "/apis/discovery.k8s.io/v1/endpointslices"
_LIST_KINDS = {SERVICES: ("v1", "ServiceList"), ENDPOINTSLICES: ("discovery.k8s.io/v1", "EndpointSliceList")}


@dataclass
class _Watcher:
    path: str
    sent: int  # events after this version are still to send
    bookmarks: bool
    bookmark_seen: int
    expire_seen: int
    queue: list[dict[str, Any]] = field(default_factory=list)


class StandInApiServer:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.gone_as_http_status = False
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, query) of every request
        self._cond = threading.Condition()
        self._version = 1
        self._floor = 0
        self._objects: dict[str, dict[str, dict[str, Any]]] = {path: {} for path in _LIST_KINDS}
        self._history: list[tuple[int, str, dict[str, Any]]] = []
        self._bookmark_gen = 0
        self._expire_gen = 0
        self._held = False
        self._closing = False
        self._servers: list[ThreadingHTTPServer] = []

    # --- the owner's side ---------------------------------------------------------------------------

    def start(self) -> StandInApiServer:
        """Listens on 127.0.0.1:`port` (0: a free one, then `port` says which) of this namespace."""
        self.port = self.listen(port=self.port)
        return self

    def listen(self, netns: str | Path | None = None, port: int = 0) -> int:
        """One more listener, on 127.0.0.1 of the network namespace `netns` (a name or a path; None:
        this process's); returns its port. All listeners serve the same objects."""
        server = call_in_netns(netns, lambda: ThreadingHTTPServer(("127.0.0.1", port), _handler(self)))
        server.daemon_threads = True
        with self._cond:
            self._closing = False
        self._servers.append(server)
        # The socket stays in its namespace whichever thread accepts on it.
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return int(server.server_address[1])

    def stop(self) -> None:
        """Stops answering: every listening socket and every open watch stream are closed."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()

    @property
    def url(self) -> str:
        return url_of(self.port)

    def write_kubeconfig(self, path: Path, port: int | None = None) -> Path:
        """A kubeconfig naming this server (at `port`, default the one `start` chose)."""
        server = url_of(self.port if port is None else port)
        path.write_text(json.dumps({  # JSON is YAML
            "apiVersion": "v1", "kind": "Config", "current-context": "standin",
            "clusters": [{"name": "standin", "cluster": {"server": server}}],
            "users": [{"name": "standin", "user": {"token": "test-token"}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin"}}],
        }))
        return path

    def put(self, path: str, obj: dict[str, Any]) -> int:
        """Creates or replaces an object; returns its new resourceVersion."""
        with self._cond:
            self._version += 1
            obj = json.loads(json.dumps(obj))
            obj["metadata"]["resourceVersion"] = str(self._version)
            key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
            kind = "MODIFIED" if key in self._objects[path] else "ADDED"
            self._objects[path][key] = obj
            self._history.append((self._version, path, {"type": kind, "object": obj}))
            self._cond.notify_all()
            return self._version

    def delete(self, path: str, namespace: str, name: str) -> int:
        with self._cond:
            self._version += 1
            obj = self._objects[path].pop(f"{namespace}/{name}")
            obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._version)}}
            self._history.append((self._version, path, {"type": "DELETED", "object": obj}))
            self._cond.notify_all()
            return self._version

    def bookmark(self) -> None:
        """Every open watch that allowed bookmarks gets one at the current resourceVersion."""
        with self._cond:
            self._bookmark_gen += 1
            self._cond.notify_all()

    def hold(self, held: bool) -> None:
        """While held, open watches receive no events (a watch falling behind)."""
        with self._cond:
            self._held = held
            self._cond.notify_all()

    def compact(self) -> None:
        """History up to now is gone: open watches get 410 and end, older versions are refused."""
        with self._cond:
            self._floor = self._version
            self._expire_gen += 1
            self._cond.notify_all()

    def count(self, path: str, watch: bool) -> int:
        return sum(1 for p, q in self.requests if p == path and (q.get("watch") in ("true", "1")) == watch)

    # --- the HTTP side ------------------------------------------------------------------------------

    def list_body(self, path: str) -> dict[str, Any]:
        api_version, kind = _LIST_KINDS[path]
        with self._cond:
            return {"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": str(self._version)},
                    "items": list(self._objects[path].values())}

    def open_watch(self, path: str, query: dict[str, str]) -> _Watcher | None:
        """A watcher from the query's resourceVersion, or None when that version is compacted away."""
        version = int(query.get("resourceVersion") or 0)
        with self._cond:
            if version < self._floor:
                return None
            return _Watcher(path, version, query.get("allowWatchBookmarks") == "true",
                            self._bookmark_gen, self._expire_gen)

    def next_events(self, watcher: _Watcher, deadline: float) -> list[dict[str, Any]] | None:
        """Waits for what `watcher` should send next; None when the stream must end."""
        with self._cond:
            while True:
                if self._closing or time.monotonic() >= deadline:
                    return None
                if watcher.expire_seen != self._expire_gen:
                    watcher.expire_seen = self._expire_gen
                    if watcher.sent < self._floor:
                        return [gone_event()]
                events: list[dict[str, Any]] = []
                if not self._held:
                    events = [e for v, p, e in self._history if p == watcher.path and v > watcher.sent]
                    watcher.sent = max([watcher.sent] + [v for v, p, _ in self._history if p == watcher.path])
                if watcher.bookmark_seen != self._bookmark_gen:
                    watcher.bookmark_seen = self._bookmark_gen
                    if watcher.bookmarks:
                        api_version, kind = _LIST_KINDS[watcher.path]
                        events.append({"type": "BOOKMARK", "object": {
                            "apiVersion": api_version, "kind": kind.removesuffix("List"),
                            "metadata": {"resourceVersion": str(self._version)}}})
                if events:
                    return events
                self._cond.wait(min(0.2, max(0.0, deadline - time.monotonic())))


def url_of(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def gone_status() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "message": "too old resource version", "reason": "Expired", "code": 410}


def gone_event() -> dict[str, Any]:
    return {"type": "ERROR", "object": gone_status()}


def _handler(api: StandInApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            api.requests.append((url.path, query))
            if url.path not in _LIST_KINDS:
                self._json(404, {"kind": "Status", "code": 404, "message": f"no {url.path}"})
            elif query.get("watch") in ("true", "1"):
                self._watch(url.path, query)
            else:
                self._json(200, api.list_body(url.path))

        def _json(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True

        def _watch(self, path: str, query: dict[str, str]) -> None:
            watcher = api.open_watch(path, query)
            if watcher is None and api.gone_as_http_status:
                self._json(410, gone_status())
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                if watcher is None:
                    self._chunk(json.dumps(gone_event()).encode() + b"\n")
                else:
                    deadline = time.monotonic() + float(query.get("timeoutSeconds") or 60)
                    while (events := api.next_events(watcher, deadline)) is not None:
                        self._chunk(b"".join(json.dumps(e).encode() + b"\n" for e in events))
                        if events[-1]["type"] == "ERROR":
                            break
                self.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client went away
                pass

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler
