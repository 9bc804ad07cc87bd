"""vpp_papi's socket transport without its reader thread, and pipelined requests over it.

Why: vpp_papi 2.4's socket transport reads the socket on a thread of its own and hands every
message to the caller through a `multiprocessing.Queue` (pickled, written to a pipe by a feeder
thread, read back). Measured on VPP 26.06 here (2026-12-06, main thread, interrupt mode), that
hand-over is most of a request's cost: `control_ping` took 270 µs through it, 95 µs read on the
caller's thread; with 64 requests in flight 125-138 µs against 12.7 µs a request.
`classify_add_del_session` took 290-360 µs synchronously through it, so the cost is the client's.

`ThreadlessTransport` reads on the caller's thread: the socket's timeout is the request timeout
(a stalled VPP raises `TimeoutError`, a closed socket makes `read` return None, and vpp_papi turns
that into `VPPIOError`: all `OSError`, as with the stock transport). No thread, no queue: a
connection that is dropped leaves nothing running. vpp_papi's request methods (`_call_vpp`,
dumps included) drive it through `read`. It is installed on a client before `connect`
(`install`); vpp_papi itself is not changed. It relies on vpp_papi's message definitions
(`messages`, `id_msgdef`, `decode_incoming_msg`) and the base transport's framing (`_read`), as
in the 2.x releases pyproject.toml allows.

A message no request asked for (an event, context 0) is skipped with a debug log: the driver
subscribes to nothing, and such a message must not be taken for a reply.

`pipelined` sends requests with up to `window` unanswered at once and returns their answers in
request order: replies, and dumps' details (an old-style dump goes with its control_ping trailer,
as vpp_papi sends it). VPP handles one client's messages in order, so the answers come in order;
one that does not (another context or message) means the stream is not what we think: `OSError`.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from vpp_papi import VPPApiClient
from vpp_papi.vpp_transport_socket import VppTransport, VppTransportSocketIOError

log = logging.getLogger(__name__)

PIPELINE_WINDOW = 64  # requests in flight: 64 gave 12.7 µs a control_ping on VPP 26.06 here (95 µs one by one)
SOCKCLNT_CREATE_ID = 15  # the socket API's fixed ids for the registration handshake
SOCKCLNT_CREATE_REPLY_ID = 16
HANDSHAKE_CONTEXT = 124
CONTEXT_LIMIT = 1 << 32
RECEIVE_CHUNK = 1 << 16
FRAME_HEADER = struct.Struct(">QII")  # every frame: 0, the message's length, 0



_REPLY_HEAD = struct.Struct(">HIi")  # every reply: _vl_msg_id, context, retval (network order)


@functools.cache
def _failed_reply(name: str) -> type[Any]:
    """A reply type named as VPP's (callers match replies by type name) holding context and retval."""
    return collections.namedtuple(name, ["context", "retval"])

class ThreadlessTransport(VppTransport):  # type: ignore[misc]  # vpp_papi is untyped
    """vpp_papi's socket transport, read on the caller's thread (module docstring)."""

    def __init__(self, parent: VPPApiClient, read_timeout: float, server_address: str) -> None:
        # Not the base's __init__: it makes two multiprocessing queues this transport never uses.
        self.connected = False
        self.read_timeout = read_timeout if read_timeout > 0 else None
        self.parent = parent
        self.server_address = server_address
        self.header = FRAME_HEADER  # the base's `_read` unpacks frames with it
        self.message_table: dict[str, int] = {}
        self.message_thread = None  # the base's reader thread: never started here
        self.socket: socket.socket | None = None
        self.socket_index = 0
        self.do_async = False
        self._context = 0
        self._received = bytearray()  # bytes read from the socket, not yet handed out as messages
        self._context_offsets: dict[int, int | None] = {}
        self._requests: dict[str, tuple[Any, int, Answer]] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def connect(self, name: str, pfx: Any, msg_handler: Any, rx_qlen: int, do_async: bool = False) -> int:
        if do_async:
            raise NotImplementedError("the threadless transport is synchronous")
        if self.socket is not None:
            raise VppTransportSocketIOError(1, "connected already: disconnect first")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.read_timeout)
        try:
            sock.connect(self.server_address)
            self.socket, self.connected = sock, True
            self._received.clear()
            self._context_offsets.clear()
            self._requests.clear()
            create = self.parent.messages["sockclnt_create"]
            self.write(create.pack({"_vl_msg_id": SOCKCLNT_CREATE_ID, "name": name, "context": HANDSHAKE_CONTEXT}))
            msg = self._read()
            if not msg:
                raise VppTransportSocketIOError(2, "VPP closed the connection during the handshake")
            if int.from_bytes(msg[:2], "big") != SOCKCLNT_CREATE_REPLY_ID:
                raise VppTransportSocketIOError(2, "the handshake's reply is not sockclnt_create_reply")
            reply, _ = self.parent.messages["sockclnt_create_reply"].unpack(msg)
        except BaseException:
            self.close()
            sock.close()
            raise
        self.socket_index = reply.index
        self.message_table = {m.name: m.index for m in reply.message_table}
        return 0

    def disconnect(self) -> int:
        """Tell VPP (it frees the registration; may wait a full timeout if VPP stalls), then close."""
        rv = 0
        try:
            if self.connected:
                rv = self.parent.api.sockclnt_delete(index=self.socket_index)
        except (OSError, self.parent.VPPApiError):
            pass
        finally:
            self.close()
        return rv

    def close(self) -> None:
        """Drop the socket without talking to VPP (it may be gone or stalled)."""
        self.connected = False
        sock, self.socket = self.socket, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.message_table = {}

    # -- the wire -------------------------------------------------------------------------------
    def write(self, buf: bytes) -> None:
        self.write_frames(self.header.pack(0, len(buf), 0) + buf)

    def _read(self) -> bytes | None:
        """One whole message (framing as the base's `_read`); None when VPP closed the socket.
        Reads what the socket has, up to 64 KiB at a time: pipelined replies come many to a read."""
        received = self._received
        while True:
            if len(received) >= FRAME_HEADER.size:
                _, length, _ = FRAME_HEADER.unpack_from(received)
                end = FRAME_HEADER.size + length
                if len(received) >= end:
                    msg = bytes(received[FRAME_HEADER.size:end])
                    del received[:end]
                    return msg
            assert self.socket is not None
            chunk = self.socket.recv(RECEIVE_CHUNK)
            if not chunk:
                return None
            received += chunk

    def write_many(self, bufs: list[bytes]) -> None:
        """Several messages in one send (one wake-up of VPP, not one per message)."""
        if bufs:
            self.write_frames(b"".join(self.header.pack(0, len(buf), 0) + buf for buf in bufs))

    def write_frames(self, frames: bytes) -> None:
        if not self.connected or self.socket is None:
            raise VppTransportSocketIOError(1, "Not connected")
        try:
            self.socket.sendall(frames)
        except OSError as err:
            raise VppTransportSocketIOError(1, f"Sendall error: {err!r}") from None

    def read(self, timeout: float | None = None) -> bytes | None:
        """The next message that answers a request; None when VPP closed the connection.
        TimeoutError when none came within the timeout (the socket's: the request timeout)."""
        if not self.connected or self.socket is None:
            raise VppTransportSocketIOError(1, "Not connected")
        if timeout is not None and timeout != self.read_timeout:
            self.socket.settimeout(timeout)
        try:
            while True:
                msg = self._read()
                if not msg:
                    return None
                if not self._unasked(msg):
                    return msg
        finally:
            if timeout is not None and timeout != self.read_timeout and self.socket is not None:
                self.socket.settimeout(self.read_timeout)

    def _unasked(self, msg: bytes) -> bool:
        """True for a message that answers no request: one without a context field, or context 0."""
        msg_id = int.from_bytes(msg[:2], "big")
        offset = self._context_offsets.get(msg_id, -1)
        if offset == -1:
            msgdef = self.parent.id_msgdef[msg_id] if msg_id < len(self.parent.id_msgdef) else None
            if msgdef is None:
                return False  # not defined (yet): vpp_papi refuses it when it decodes it, as before
            offset = self._context_offsets[msg_id] = _context_offset(msgdef)
        if offset is not None and int.from_bytes(msg[offset:offset + 4], "big") != 0:
            return False
        log.debug("VPP sent message id %d (%s) that answers no request; skipped", msg_id,
                  self.parent.id_names[msg_id] if msg_id < len(self.parent.id_names) else "?")
        return True

    # -- requests -------------------------------------------------------------------------------
    def next_context(self) -> int:
        """A request's context: 1 .. 2**32 - 1 (0 is an event's, never a reply's)."""
        self._context = self._context % (CONTEXT_LIMIT - 1) + 1
        return self._context

    def pack(self, message: str, fields: Mapping[str, Any]) -> tuple[list[bytes], int, Answer]:
        """One request packed: (its messages: the request, and a control_ping trailer after an
        old-style dump; its context; what answers it)."""
        found = self._requests.get(message)
        if found is None:
            found = self._requests[message] = self._request_of(message)
        msgdef, msg_id, answer = found
        context = self.next_context()
        args = dict(fields)
        self.parent.validate_args(msgdef, args)
        args.update(_vl_msg_id=msg_id, client_index=self.socket_index, context=context)
        bodies = [msgdef.pack(args)]
        if answer.trailer:
            bodies.append(self.parent.control_ping_msgdef.pack({
                "_vl_msg_id": self.parent.control_ping_index, "client_index": self.socket_index, "context": context}))
        return bodies, context, answer

    def receive(self, context: int, answer: Answer) -> Any:
        """The answer to the request sent with `context` (the next to come): its reply; an old-style
        dump's details (a list); a `_reply` + details dump's (reply, details), as vpp_papi returns
        them. OSError when the stream is not that."""
        details = []
        while True:
            msg = self.read()
            if msg is None:
                raise self.parent.VPPIOError(2, "VPP API client: read failed")
            reply = self._decode(msg)
            name = type(reply).__name__
            if int(getattr(reply, "context", -1)) == context:
                if name == answer.details:
                    details.append(reply)
                    continue
                if name == answer.reply:
                    if answer.details is None:
                        return reply
                    return details if answer.trailer else (reply, details)
            raise VppTransportSocketIOError(2, f"expected {answer.details or answer.reply} with context {context}, "
                                               f"got {name} with context {getattr(reply, 'context', None)}")

    def _decode(self, msg: bytes) -> Any:
        """The message decoded by vpp_papi, or, where that fails on a reply that says it failed,
        only what every reply starts with (message id, context, retval). VPP 26.06 sends some
        error replies without their variable-length part set: `classify_table_info` of a table
        that is gone allocates its reply uninitialised and sets only those three, so its
        `mask_length` is whatever the buffer held (seen: 0xfe7f..., a 42-byte message)."""
        try:
            return self.parent.decode_incoming_msg(msg)
        except (struct.error, IndexError, ValueError):
            if len(msg) < _REPLY_HEAD.size:
                raise
            msg_id, context, retval = _REPLY_HEAD.unpack_from(msg)
            msgdef = self.parent.id_msgdef[msg_id] if msg_id < len(self.parent.id_msgdef) else None
            if retval == 0 or msgdef is None or "retval" not in msgdef.fields:
                raise
            return _failed_reply(msgdef.name)(context=context, retval=retval)

    def _request_of(self, message: str) -> tuple[Any, int, Answer]:
        msgdef = self.parent.messages.get(message)
        service = self.parent.services.get(message)
        if msgdef is None or service is None:
            raise ValueError(f"{message} is not a request VPP's definitions know")
        msg_id = self.get_msg_index(f"{message}_{msgdef.crc[2:]}")
        if not msg_id:
            raise ValueError(f"{message} is not in VPP's message table with the CRC of its definition")
        if not service.get("stream"):
            return msgdef, msg_id, Answer(str(service["reply"]))
        if "stream_msg" in service:
            return msgdef, msg_id, Answer(str(service["reply"]), str(service["stream_msg"]))
        return msgdef, msg_id, Answer("control_ping_reply", str(service["reply"]), trailer=True)


class Answer(NamedTuple):
    """What answers a request: a reply; or details ended by a reply (`trailer`: the control_ping
    reply after an old-style dump, which the request is sent with)."""

    reply: str
    details: str | None = None
    trailer: bool = False


def _context_offset(msgdef: Any) -> int | None:
    """Where a message's context field starts (after `_vl_msg_id`, and `client_index` in requests);
    None when it has none (an event)."""
    offset = 0
    for name, packer in zip(msgdef.fields, msgdef.packers, strict=False):
        if name == "context":
            return offset
        offset += int(packer.size)
    return None


def install(client: VPPApiClient, read_timeout: float, server_address: str) -> None:
    """Give `client` the threadless transport (before `connect`). The stock transport's queues
    were made (never used, no feeder thread): their pipes are closed now, not when collected."""
    stock = client.transport
    client.transport = ThreadlessTransport(client, read_timeout, server_address)
    for queue in (getattr(stock, "sque", None), getattr(stock, "q", None)):
        if queue is not None:
            with contextlib.suppress(Exception):
                queue.close()


def pipelined(client: VPPApiClient, requests: Iterable[tuple[str, Mapping[str, Any]]], *,
              window: int = PIPELINE_WINDOW, sending: Callable[[str], None] | None = None) -> list[Any]:
    """Send every request with at most `window` unanswered; their answers in request order (as
    `ThreadlessTransport.receive`: a reply, or a dump's details). `sending(message)` is called
    before each is sent. OSError when the connection fails (what was sent may or may not have
    been applied).

    Requests go out in bursts of up to half the window (one send each: a send per message cost
    ~24 µs of wake-ups here), the next burst once half the window is answered."""
    transport = client.transport
    if not isinstance(transport, ThreadlessTransport):
        raise TypeError("pipelined requests need the threadless transport (install)")
    burst = max(1, window // 2)
    replies: list[Any] = []
    pending: deque[tuple[int, Answer]] = deque()
    waiting = iter(requests)
    done = False
    while not done or pending:
        packed: list[bytes] = []
        while not done and len(pending) < window:
            item = next(waiting, None)
            if item is None:
                done = True
                break
            message, fields = item
            try:
                bodies, context, answer = transport.pack(message, fields)
            except Exception:
                # a request that cannot be sent (a dump, a field VPP's definition lacks): what
                # was sent before it is answered first, so the stream stays in step
                transport.write_many(packed)
                for sent in pending:
                    transport.receive(*sent)
                raise
            if sending is not None:
                sending(message)
            packed += bodies
            pending.append((context, answer))
        if packed:
            transport.write_many(packed)
        # at the end: every reply; else until a burst can go out
        until = 0 if done else window - burst
        while len(pending) > until:
            replies.append(transport.receive(*pending.popleft()))
    return replies
