"""Test harness for felix-shim: an in-test Agent server and a shim spawned the way Felix does."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import grpc

from felix_shim.framing import FrameReader, encode_frame
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.gen.vppagent.v1 import agent_pb2, agent_pb2_grpc

# Generated since agent.proto gained SyncBatch; felix-shim encodes it by hand (same wire bytes).
ToDataplaneBatch = agent_pb2.ToDataplaneBatch


def _batch_items(batch: agent_pb2.ToDataplaneBatch) -> list[felix.ToDataplane]:
    return list(batch.messages)


@dataclass
class AgentStream:
    """One Sync/SyncBatch stream as the fake agent saw it."""

    method: str
    received: list[felix.ToDataplane] = field(default_factory=list)
    outgoing: queue.SimpleQueue[felix.FromDataplane | None] = field(default_factory=queue.SimpleQueue)
    ended: threading.Event = field(default_factory=threading.Event)


class FakeAgent:
    """A minimal vppagent.v1.Agent: records what each stream receives, sends what tests ask."""

    def __init__(self, socket_path: Path, *, batch: bool = True) -> None:
        self.socket_path = socket_path
        self.batch = batch
        self.streams: list[AgentStream] = []
        self._cond = threading.Condition()
        self._server: grpc.Server | None = None

    # -- servicer ---------------------------------------------------------------------------
    def _serve(
        self, method: str, requests: Iterator[Any], unpack: Callable[[Any], Iterable[felix.ToDataplane]]
    ) -> Iterator[felix.FromDataplane]:
        stream = AgentStream(method)
        with self._cond:
            self.streams.append(stream)
            self._cond.notify_all()

        def consume() -> None:
            try:
                for request in requests:
                    messages = list(unpack(request))
                    with self._cond:
                        stream.received.extend(messages)
                        self._cond.notify_all()
            except grpc.RpcError:
                pass
            finally:
                stream.ended.set()
                stream.outgoing.put(None)
                with self._cond:
                    self._cond.notify_all()

        threading.Thread(target=consume, daemon=True).start()
        while (response := stream.outgoing.get()) is not None:
            yield response

    def start(self) -> FakeAgent:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8),
            options=[("grpc.max_receive_message_length", 80 * 1024 * 1024)],
        )
        agent = self

        class Servicer(agent_pb2_grpc.AgentServicer):
            def Sync(self, request_iterator: Any, context: Any) -> Iterator[felix.FromDataplane]:
                return agent._serve("Sync", request_iterator, lambda m: [m])

            def SyncBatch(self, request_iterator: Any, context: Any) -> Iterator[felix.FromDataplane]:
                if not agent.batch:  # behave like an agent built before SyncBatch existed
                    context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
                return agent._serve("SyncBatch", request_iterator, _batch_items)

        agent_pb2_grpc.add_AgentServicer_to_server(Servicer(), server)  # type: ignore[no-untyped-call]
        server.add_insecure_port(f"unix:{self.socket_path}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None

    # -- test helpers -----------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"timed out waiting for {what or predicate}; streams: {self.summary()}")

    def wait_for_stream(self, count: int = 1, timeout: float = 5.0) -> AgentStream:
        self.wait_for(lambda: len(self.streams) >= count, timeout, f"{count} stream(s)")
        return self.streams[count - 1]

    def wait_for_messages(self, stream: AgentStream, count: int, timeout: float = 5.0) -> list[felix.ToDataplane]:
        self.wait_for(lambda: len(stream.received) >= count, timeout, f"{count} messages")
        return list(stream.received)

    def summary(self) -> str:
        return ", ".join(f"{s.method}:{len(s.received)}{'(ended)' if s.ended.is_set() else ''}" for s in self.streams)




def shim_command() -> list[str]:
    script = Path(sys.executable).with_name("felix-shim")
    return [str(script)] if script.exists() else [sys.executable, "-m", "felix_shim"]


@dataclass
class ShimProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path
    to_shim: BinaryIO
    from_shim: BinaryIO
    from_felix_frames: queue.SimpleQueue[felix.FromDataplane | None] = field(default_factory=queue.SimpleQueue)

    def send(self, *messages: felix.ToDataplane) -> None:
        self.to_shim.write(b"".join(encode_frame(m.SerializeToString()) for m in messages))
        self.to_shim.flush()

    def send_raw(self, data: bytes) -> None:
        self.to_shim.write(data)
        self.to_shim.flush()

    def close_input(self) -> None:
        self.to_shim.close()

    def next_from_shim(self, timeout: float = 5.0) -> felix.FromDataplane | None:
        return self.from_felix_frames.get(timeout=timeout)

    def stderr_text(self) -> str:
        return self.log_path.read_text()

    def wait(self, timeout: float = 5.0) -> int:
        return self.proc.wait(timeout)


def pump_from_shim(shim: ShimProcess) -> None:
    reader = FrameReader(shim.from_shim)
    try:
        while (payload := reader.read_frame()) is not None:
            shim.from_felix_frames.put(felix.FromDataplane.FromString(payload))
    except (OSError, ValueError):
        pass
    shim.from_felix_frames.put(None)
