"""One connection to VPP's binary API socket through vpp_papi, with the driver's guarantees.

- Definitions: from VPP itself (`get_api_json`, VPP >= 24.06) when it serves them, else from an
  `.api.json` directory (default /usr/share/vpp/api).
- Compatibility: every message of one API layout (`messages.LAYOUTS`) must be in VPP's table with
  its pinned CRC; the connection remembers which layout fits (`layout`), else `VppUnavailable` with
  one line naming the VPP version and, per layout, what is missing or different. The cnat messages
  are checked apart (`services_problem`: None, or why Services cannot be programmed on this VPP).
- Transport: vpp_papi's client with the threadless transport (transport.py): replies are read on
  the caller's thread, under this connection's lock; no reader thread, no queue.
- Bounded: every request waits at most `request_timeout` for each message of its answer (the
  socket's timeout); a timeout, VPP closing the socket or a socket error tears the connection down
  (a reply may still come, so the stream is no longer trustworthy) and raises `VppConnectionLost`.
  A connection starts no thread, so reconnecting any number of times leaves none behind.
- Pipelined: `pipeline` sends many requests with up to `PIPELINE_WINDOW` unanswered, in order (VPP
  applies one client's messages in order), and returns each one's reply or `ApiRefused`.
- Accounting: requests are counted per message, and writes (anything not read-only) separately,
  the same whether sent by `call`, `dump` or `pipeline`.
- Calls are serialised: requests and replies share one socket, and two threads reading it could
  take each other's replies.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vpp_papi import VPPApiClient

from vppagent.drivers.vpp.api.messages import (
    LAYOUTS,
    READ_ONLY,
    SERVICE_FEATURE_MESSAGES,
    ApiLayout,
    group_problems,
    release_of,
    requests,
    services_problem,
    snat_proxy_problem,
)
from vppagent.drivers.vpp.api.transport import PIPELINE_WINDOW, ThreadlessTransport, install, pipelined

log = logging.getLogger(__name__)

DEFAULT_API_DIR = "/usr/share/vpp/api"


class VppUnavailable(RuntimeError):
    """VPP cannot be used by this driver (not reachable, or incompatible); one line says why."""


class VppConnectionLost(RuntimeError):
    """The connection broke or a reply did not come in time; reconnect and resync."""


class ApiRefused(RuntimeError):
    """VPP answered a request with an error retval."""

    def __init__(self, message: str, retval: int, what: str = "") -> None:
        self.message = message
        self.retval = retval
        detail = f" ({what})" if what else ""
        super().__init__(f"VPP refused {message}{detail}: retval {retval}")


@dataclass(frozen=True)
class ApiRequest:
    """One request of a pipeline: as `VppConnection.call`'s arguments."""

    message: str
    fields: dict[str, Any] = field(default_factory=dict)
    accept: tuple[int, ...] = (0,)
    what: str = ""


class VppConnection:
    def __init__(self, socket_path: str | Path, *, request_timeout: float = 5.0,
                 api_dir: str | None = None, client_name: str = "vppagent") -> None:
        self.socket_path = str(socket_path)
        self.request_timeout = request_timeout
        self.api_dir = api_dir
        self.client_name = client_name
        self.version = "unknown"
        self.layout: ApiLayout | None = None
        self.services_problem: str | None = "not connected to VPP"
        self.cnat_features = False  # VPP has cnat's per-interface feature and SNAT policy as pinned
        self.snat_proxy_problem: str | None = "not connected to VPP"  # None: proxy ARP / ND usable
        self.definitions = ""  # "get_api_json", or the directory the definitions came from
        self.requests: Counter[str] = Counter()
        self.writes = 0
        self._client: VPPApiClient | None = None
        self._lock = threading.RLock()

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._client is not None

    def connect(self) -> None:
        """Connect, load definitions, check compatibility. VppUnavailable on any failure."""
        with self._lock:
            self._teardown()
            client = self._open(bootstrap=True)
            self._client = client
            try:
                self.version = self._show_version(client)
                self._check_compatibility(client)
            except BaseException:
                self._teardown()
                raise
            log.info("connected to VPP %s at %s (definitions: %s)", self.version, self.socket_path,
                     self.definitions)

    def _open(self, *, bootstrap: bool) -> VPPApiClient:
        api_dir = self.api_dir or DEFAULT_API_DIR
        if bootstrap:
            client = VPPApiClient(server_address=self.socket_path, bootstrapapi=True,
                                  read_timeout=self.request_timeout, async_thread=False)
        else:
            if not Path(api_dir).is_dir():
                raise VppUnavailable(f"VPP at {self.socket_path} does not serve get_api_json and the "
                                     f"API definition directory {api_dir} does not exist")
            client = VPPApiClient(server_address=self.socket_path, apidir=api_dir,
                                  read_timeout=self.request_timeout, async_thread=False)
        # The stock transport hands each reply from a reader thread through a multiprocessing
        # queue: 270 µs a control_ping on VPP 26.06 here, against 95 µs read on this thread, and
        # 12.7 µs a request pipelined (transport.py). Swapped before connect, vpp_papi unchanged.
        install(client, self.request_timeout, self.socket_path)
        try:
            client.connect(self.client_name)
        except (AttributeError, client.VPPApiError) as exc:
            # Only the bootstrap path gets here: VPP's table has no get_api_json (VPP < 24.06).
            _abandon(client)
            if not bootstrap:
                raise VppUnavailable(f"VPP at {self.socket_path}: {exc}") from None
            log.info("VPP does not serve its API definitions (%s); reading %s", exc, api_dir)
            return self._open(bootstrap=False)
        except Exception as exc:  # refused, absent, timed out, or a broken handshake
            _abandon(client)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
            raise VppUnavailable(f"cannot connect to VPP at {self.socket_path}: {reason}") from None
        self.definitions = "get_api_json" if bootstrap else api_dir
        return client

    def _show_version(self, client: VPPApiClient) -> str:
        if not hasattr(client.api, "show_version"):
            return "(version unknown)"
        try:
            reply = client.api.show_version()
        except OSError as exc:
            raise VppUnavailable(f"VPP at {self.socket_path} does not answer: {exc}") from None
        return str(reply.version)

    def _check_compatibility(self, client: VPPApiClient) -> None:
        by_name: dict[str, str] = {}
        for name_crc in client.transport.message_table:
            name, _, crc = name_crc.rpartition("_")
            by_name[name] = crc
        refusals = []
        for layout in LAYOUTS:
            problems = layout.mismatches(by_name)
            # vpp_papi makes a method only for messages whose definition matches the table.
            unusable = [n for n in requests() if by_name.get(n) == layout.messages[n] and not hasattr(client.api, n)]
            if unusable:
                problems.append("no usable definition for " + ", ".join(unusable))
            if not problems:
                self.layout = layout
                self.services_problem = services_problem(by_name, lambda n: hasattr(client.api, n))
                self.cnat_features = self.services_problem is None and not group_problems(
                    SERVICE_FEATURE_MESSAGES, by_name, lambda n: hasattr(client.api, n))
                self.snat_proxy_problem = snat_proxy_problem(by_name, lambda n: hasattr(client.api, n))
                release = release_of(self.version)
                if release not in layout.releases:
                    log.warning("VPP %s is not a release this driver was tested with (%s); its messages "
                                "match the %s layout, so it is used", self.version,
                                ", ".join(layout.releases), layout.name)
                return
            refusals.append(f"{'; '.join(problems)} (layout {layout.name}, for VPP {'/'.join(layout.releases)})")
        raise VppUnavailable(f"VPP {self.version} at {self.socket_path} is not compatible with "
                             f"the VPP driver: {' | '.join(refusals)}")

    def close(self) -> None:
        """Disconnect politely (VPP frees the registration)."""
        with self._lock:
            client, self._client = self._client, None
            if client is not None:
                try:
                    with contextlib.suppress(Exception):
                        client.disconnect()
                finally:
                    _abandon(client)

    def _teardown(self) -> None:
        """Drop the connection without talking to VPP (it may be gone or stalled)."""
        client, self._client = self._client, None
        if client is not None:
            _abandon(client)

    # -- requests -------------------------------------------------------------------------------
    def call(self, message: str, *, accept: tuple[int, ...] = (0,), what: str = "", **fields: Any) -> Any:
        """Send one request and return its reply; ApiRefused when retval is not in `accept`."""
        reply = self._request(message, fields)
        retval = int(getattr(reply, "retval", 0))
        if retval not in accept:
            raise ApiRefused(message, retval, what)
        return reply

    def dump(self, message: str, **fields: Any) -> list[Any]:
        """All details of a dump: an old-style one (vpp_papi sends the control_ping trailer), or a
        `_reply` + details one (ApiRefused when its reply's retval is not 0, e.g. VPP's "more to
        come" for a cursor: the driver reads none that long, and never a list cut short)."""
        result = _result(ApiRequest(message), self._request(message, fields))
        if isinstance(result, ApiRefused):
            raise result
        return list(result)

    def ping(self) -> None:
        """A liveness check (control_ping); VppConnectionLost if VPP is gone or stalled."""
        self._request("control_ping", {})

    def pipeline(self, requests: Sequence[ApiRequest]) -> list[Any]:
        """Send `requests` in order with up to PIPELINE_WINDOW unanswered; one result per request,
        in order: its reply, or a dump's details (a list), or (retval not accepted) its `ApiRefused`
        as a value. VPP applies one client's requests in order, so a pipeline is ordered like calls
        one by one; a caller that needs a reply before its next request (an index) sends that one
        alone. A request that cannot be sent (a field its message lacks) is ValueError, after what
        was sent before it is answered. VppConnectionLost when the connection fails on the way: the
        requests before the failure may or may not have been applied (a resync reads VPP back)."""
        with self._lock:
            client = self._require()
            try:
                answers = pipelined(client, [(r.message, r.fields) for r in requests], sending=self._count)
            except OSError as exc:
                self._teardown()
                raise VppConnectionLost(f"pipeline of {len(requests)} requests: {exc}") from None
        return [_result(request, answer) for request, answer in zip(requests, answers, strict=True)]

    def _require(self) -> VPPApiClient:
        if self._client is None:
            raise VppConnectionLost("not connected to VPP")
        return self._client

    def _count(self, message: str) -> None:
        self.requests[message] += 1
        if message not in READ_ONLY:
            self.writes += 1

    def _request(self, message: str, fields: dict[str, Any]) -> Any:
        with self._lock:
            client = self._require()
            self._count(message)
            transport: ThreadlessTransport = client.transport
            try:
                # The context from the transport's counter (never 0, which would read as an event's).
                return getattr(client.api, message)(context=transport.next_context(), **fields)
            except OSError as exc:  # VPPIOError (VPP closed the socket), timeouts and socket errors
                self._teardown()
                raise VppConnectionLost(f"{message}: {exc}") from None


def _result(request: ApiRequest, answer: Any) -> Any:
    """A request's result from vpp_papi's answer: the reply, an old-style dump's details (a list),
    a `_reply` + details dump's details; ApiRefused (a value) where the retval is not accepted."""
    if isinstance(answer, list):
        return answer
    # replies are named tuples; vpp_papi gives a `_reply` + details dump as a plain (reply, details)
    reply, details = answer if type(answer) is tuple else (answer, None)
    retval = int(getattr(reply, "retval", 0))
    if retval not in request.accept:
        return ApiRefused(request.message, retval, request.what)
    return reply if details is None else list(details)


def _abandon(client: VPPApiClient) -> None:
    """Close the socket without asking VPP (vpp_papi's disconnect() asks and may wait a full timeout)."""
    transport = client.transport
    if isinstance(transport, ThreadlessTransport):
        transport.close()


__all__ = ["PIPELINE_WINDOW", "ApiRefused", "ApiRequest", "VppConnection", "VppConnectionLost", "VppUnavailable"]
