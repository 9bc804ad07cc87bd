"""The binary-API socket server: VPP's ``socksvr`` as vpp_papi and govpp see it.

Transport facts (VPP 25.10 ``src/vlibmemory/socket_api.c``, vpp_papi
``vpp_transport_socket.py``): AF_UNIX stream socket; every message in either
direction is preceded by a 16-byte header ``>QII`` (0, data length, 0).  A client
registers with ``sockclnt_create`` (id 15) and receives ``sockclnt_create_reply``
(id 16) with its client index (registration pool index with bit 31 set) and the
message table of ``name_crc`` strings.  Requests naming an unknown message id or
another client index are ignored, as VPP's handlers do.  Malformed input (a frame
too large to be a message, or a message that does not decode) is logged and the
offending client is dropped; other clients are unaffected.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

from vppagent.unix_socket import prepare_socket_path
from vppagent.vppsim.codec import ApiDefinitions, load_definitions
from vppagent.vppsim.evaluator import connect as connect_endpoints
from vppagent.vppsim.evaluator import evaluate as evaluate_packet
from vppagent.vppsim.faults import Faults
from vppagent.vppsim.handlers import Reply, Request
from vppagent.vppsim.packet import ConnectResult, Direction, Packet, Verdict
from vppagent.vppsim.pool import Pool
from vppagent.vppsim.release import DEFAULT_RELEASE, release
from vppagent.vppsim.state import SimConfig, SimState

log = logging.getLogger(__name__)

FRAME_HEADER = struct.Struct(">QII")
# Larger than any message VPP would accept from a client; beyond it the stream is garbage.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
SOCK_API_REG_HANDLE_BIT = 1 << 31


class _Garbage(Exception):
    """The client's byte stream cannot be VPP API messages."""


class _Connection:
    def __init__(self, sock: socket.socket, pool_index: int) -> None:
        self.sock = sock
        self.pool_index = pool_index
        self.send_lock = threading.Lock()
        self.registered = False
        self.closed = False

    @property
    def client_index(self) -> int:
        return self.pool_index | SOCK_API_REG_HANDLE_BIT

    def send(self, frame: bytes) -> None:
        with self.send_lock:
            if not self.closed:
                try:
                    self.sock.sendall(frame)
                except OSError:
                    self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class VppSim:
    """An emulated VPP (release ``vpp_version``) on ``socket_path``.  A context manager, or start/stop."""

    def __init__(self, socket_path: str | os.PathLike[str], *, vpp_version: str = DEFAULT_RELEASE,
                 definitions: ApiDefinitions | None = None) -> None:
        self.socket_path = Path(socket_path)
        self.release = release(vpp_version)
        self.definitions = definitions or load_definitions(self.release.api_dir)
        self.config = SimConfig()
        self.state = SimState(self.definitions, self.config, self.release)
        self.faults = Faults(self.config)
        self._lock = threading.RLock()
        self._listener: socket.socket | None = None
        # Registration pool: entry 0 is the listening socket itself, as in VPP, so the
        # first client gets pool index 1.
        self._registrations: Pool[_Connection | None] = Pool()
        self._threads: list[threading.Thread] = []
        self._running = False

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> VppSim:
        with self._lock:
            self._running = True
            self._listen()
        return self

    def _listen(self) -> None:
        prepare_socket_path(self.socket_path)  # a leftover socket only: never a file, never a live VPP's
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        listener.listen(64)
        self._listener = listener
        self._registrations = Pool()
        self._registrations.add(None)
        thread = threading.Thread(target=self._accept_loop, args=(listener,), name="vppsim-accept", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        with self._lock:
            self._running = False
            self._close_listener()
            self._drop_all_clients()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2)
        self._threads.clear()

    def __enter__(self) -> VppSim:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def restart(self, *, downtime: float = 0.0) -> None:
        """Emulate a VPP restart: every connection closes and all state is gone.

        With ``downtime`` the socket disappears for that many seconds, as while VPP boots.
        Clients must reconnect and get a new registration (client index).
        """
        with self._lock:
            self._drop_all_clients()
            with self.state.lock:
                self.state = SimState(self.definitions, self.config, self.release)
            if downtime > 0:
                self._close_listener()
                timer = threading.Timer(downtime, self._relisten)
                timer.daemon = True
                timer.start()
            else:
                self._registrations = Pool()
                self._registrations.add(None)

    def _relisten(self) -> None:
        with self._lock:
            if self._running and self._listener is None:
                self._listen()

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        if self.socket_path.exists():
            self.socket_path.unlink()

    def _drop_all_clients(self) -> None:
        for _, connection in list(self._registrations.items()):
            if connection is not None:
                connection.close()

    @property
    def client_count(self) -> int:
        with self._lock:
            return sum(1 for _, c in self._registrations.items() if c is not None and c.registered)

    # -- dataplane helpers ------------------------------------------------------------------------
    def evaluate(self, sw_if_index: int, direction: Direction, packet: Packet) -> Verdict:
        return evaluate_packet(self.state, sw_if_index, direction, packet)

    def connect(self, source: tuple[int, str], destination: tuple[int, str], proto: int | str,
                port: int, *, source_port: int = 40000) -> ConnectResult:
        return connect_endpoints(self.state, source, destination, proto, port, source_port=source_port)

    # -- per-client I/O ---------------------------------------------------------------------------
    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                connection = _Connection(sock, self._registrations.add_at_next())
                self._registrations.add(connection)
            thread = threading.Thread(target=self._serve, args=(connection,), name="vppsim-client", daemon=True)
            thread.start()
            with self._lock:
                # Keep only live threads so a long-running emulator does not accumulate them.
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _serve(self, connection: _Connection) -> None:
        try:
            while not connection.closed:
                message = self._read_message(connection)
                if message is None:
                    break
                self._dispatch(connection, message)
        except _Garbage as garbage:
            log.warning("vppsim: dropping client %#x: %s", connection.client_index, garbage)
        except OSError:
            pass
        finally:
            connection.close()
            with self._lock:
                if self._registrations.get(connection.pool_index) is connection:
                    self._registrations.remove(connection.pool_index)
            with self.state.lock:
                self.state.forget_client(connection.client_index)

    @staticmethod
    def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
        chunks = bytearray()
        while len(chunks) < size:
            chunk = sock.recv(size - len(chunks))
            if not chunk:
                return None
            chunks += chunk
        return bytes(chunks)

    def _read_message(self, connection: _Connection) -> bytes | None:
        header = self._read_exactly(connection.sock, FRAME_HEADER.size)
        if header is None:
            return None
        _, length, _ = FRAME_HEADER.unpack(header)
        if length < 2 or length > MAX_MESSAGE_BYTES:
            raise _Garbage(f"frame length {length}")
        return self._read_exactly(connection.sock, length)

    def _send(self, connection: _Connection, name: str, fields: dict[str, Any]) -> None:
        body = self.definitions.encode(name, fields)
        connection.send(FRAME_HEADER.pack(0, len(body), 0) + body)

    def _dispatch(self, connection: _Connection, raw: bytes) -> None:
        msg_id = int.from_bytes(raw[:2], "big")
        name = self.definitions.name_by_id.get(msg_id)
        if name is None:
            log.warning("vppsim: no handler for msg id %d", msg_id)
            return
        if name == "sockclnt_create":
            self._handshake(connection, self._decode(name, raw))
            return
        check = self.state.pre_decode_checks.get(name)
        early = check(raw) if check else None
        if early:
            self._send_replies(connection, name, early, early[0][1].get("context", 0))
            return
        fields = self._decode(name, raw)
        if fields.get("client_index") != connection.client_index:
            # vl_api_client_index_to_registration fails: VPP handlers return without replying.
            log.warning("vppsim: %s with unknown client index %#x ignored", name, fields.get("client_index", 0))
            return
        request = Request(name, fields, raw, connection.client_index)
        if name == "sockclnt_delete":
            self._delete_registration(connection, request)
            return
        handler = self.state.handlers.get(name)
        if handler is None:
            log.warning("vppsim: message %s is in the table but not emulated; no reply", name)
            return
        rejected = self.faults.take_rejection(name, fields)
        if rejected is not None and (reply_name := self.definitions.reply_name(name)) is not None:
            replies: list[Reply] = [(reply_name, {"retval": rejected})]
            events = []
        else:
            with self.state.lock:
                replies = handler(request)
                events = self.state.take_events()
        stall = self.faults.take_stall(name)
        if stall:
            time.sleep(stall)
        drop_after = self.faults.take_mid_dump_drop(name) if self.definitions.is_old_style_dump(name) else None
        if drop_after is not None:
            self._send_replies(connection, name, replies[:drop_after], request.context)
            connection.close()
            return
        self._send_replies(connection, name, replies, request.context)
        for event in events:
            with self._lock:
                target = self._registrations.get(event.client_index & ~SOCK_API_REG_HANDLE_BIT)
            if target is not None and target.registered:
                self._send(target, *event.reply)

    def _decode(self, name: str, raw: bytes) -> dict[str, Any]:
        try:
            return self.definitions.decode(name, raw)
        except Exception as error:  # any codec failure means the bytes are not this message
            raise _Garbage(f"undecodable {name}: {error!r}") from error

    def _send_replies(self, connection: _Connection, request_name: str, replies: list[Reply],
                      context: int) -> None:
        for reply_name, fields in replies:
            if "context" in self.definitions.messages[reply_name].field_by_name:
                fields = {"context": context, **fields}
            self._send(connection, reply_name, fields)

    def _handshake(self, connection: _Connection, fields: dict[str, Any]) -> None:
        overrides = self.faults.table_crc_overrides()
        table = []
        for message, msg_id in sorted(self.definitions.id_by_name.items(), key=lambda item: item[1]):
            crc = overrides.get(message, self.definitions.crc(message))
            if crc is not None:
                table.append({"index": msg_id, "name": f"{message}_{crc}"})
        connection.registered = True
        self._send(connection, "sockclnt_create_reply", {
            "context": fields["context"], "response": 0, "index": connection.client_index,
            "count": len(table), "message_table": table})

    def _delete_registration(self, connection: _Connection, request: Request) -> None:
        index = request.fields["index"] & ~SOCK_API_REG_HANDLE_BIT
        with self._lock:
            known = self._registrations.get(index) is not None
        # socket_api.c answers 1 (sic) when it frees the registration, -1 for an unknown index.
        self._send(connection, "sockclnt_delete_reply", {"context": request.context,
                                                         "response": 1 if known else -1})
        if known:
            connection.close()
