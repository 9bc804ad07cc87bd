from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from vppagent.config import AgentConfig
from vppagent.drivers.dryrun import DryRunDriver
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.gen.vppagent.v1 import agent_pb2, agent_pb2_grpc
from vppagent.server.core import AgentCore
from vppagent.server.grpc_service import serve


@dataclass
class FelixStream:
    """A client Sync stream standing in for felix-shim: send() messages, read statuses."""

    stub: Any
    outbox: queue.SimpleQueue[felix.ToDataplane | None] = field(default_factory=queue.SimpleQueue)
    received: list[felix.FromDataplane] = field(default_factory=list)

    def start(self) -> FelixStream:
        def requests() -> Iterator[felix.ToDataplane]:
            while (msg := self.outbox.get()) is not None:
                yield msg

        self.call = self.stub.Sync(requests())

        def read() -> None:
            try:
                for msg in self.call:
                    self.received.append(msg)
            except grpc.RpcError:
                pass

        threading.Thread(target=read, daemon=True).start()
        return self

    def send(self, *msgs: felix.ToDataplane) -> None:
        for m in msgs:
            self.outbox.put(m)

    def close(self) -> None:
        self.outbox.put(None)

    def end(self) -> None:
        """End the call: a request thread left blocked keeps gRPC busy, and gRPC's fork handlers
        then hang any later subprocess start in this test process."""
        self.close()
        self.call.cancel()


@dataclass
class AgentHarness:
    core: AgentCore
    socket: Path
    stub: Any
    streams: list[FelixStream] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        reply = self.stub.GetState(agent_pb2.GetStateRequest(), timeout=5)
        return json.loads(reply.state_json)  # type: ignore[no-any-return]

    def stream(self) -> FelixStream:
        stream = FelixStream(self.stub).start()
        self.streams.append(stream)
        return stream


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentHarness]:
    sock = tmp_path / "run" / "agent.sock"
    config = AgentConfig(socket=sock, driver="dry-run", batch_window_ms=5)
    core = AgentCore(config, DryRunDriver(), "test", driver_factory=lambda name: DryRunDriver(name=name))
    core.start()
    server = serve(core, sock)
    channel = grpc.insecure_channel(f"unix:{sock}")
    harness = AgentHarness(core, sock, agent_pb2_grpc.AgentStub(channel))  # type: ignore[no-untyped-call]
    try:
        yield harness
    finally:
        for stream in harness.streams:
            stream.end()
        channel.close()
        server.stop(0).wait(1)
        core.stop()
