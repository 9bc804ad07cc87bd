"""The Agent gRPC service (proto/vppagent/v1/agent.proto) on a unix socket with mode 0600."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.gen.vppagent.v1 import agent_pb2, agent_pb2_grpc
from vppagent.server.core import AgentCore
from vppagent.unix_socket import prepare_socket_path

log = logging.getLogger(__name__)

# Large snapshots (big IP sets) arrive as single messages: allow what felix-shim allows.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class AgentService(agent_pb2_grpc.AgentServicer):
    def __init__(self, core: AgentCore) -> None:
        self.core = core
        # The Felix release as felix-shim last reported it (SyncBatch carries it; Sync cannot).
        self.felix_wire: agent_pb2.FelixWire | None = None
        core.report_sections["felix_version"] = lambda: self.felix_wire.release if self.felix_wire else None
        core.report_sections["felix_wire"] = self._felix_wire_report

    def Sync(self, request_iterator: Iterator[felix.ToDataplane],
             context: grpc.ServicerContext) -> Iterator[felix.FromDataplane]:
        return self._stream(request_iterator, context)

    def SyncBatch(self, request_iterator: Iterator[agent_pb2.ToDataplaneBatch],
                  context: grpc.ServicerContext) -> Iterator[felix.FromDataplane]:
        return self._stream(self._unbatch(request_iterator), context)

    def _unbatch(self, batches: Iterator[agent_pb2.ToDataplaneBatch]) -> Iterator[felix.ToDataplane]:
        for batch in batches:
            if batch.HasField("felix_wire"):
                self.felix_wire = batch.felix_wire
            yield from batch.messages

    def _felix_wire_report(self) -> dict[str, Any] | None:
        wire = self.felix_wire
        if wire is None:
            return None
        return {"release": wire.release, "how": wire.how, "candidates": list(wire.candidates),
                "calico_version": wire.calico_version or None, "detail": wire.detail,
                "unknown": [{"where": u.where, "frames": u.frames} for u in wire.unknown]}

    def _stream(self, messages: Iterator[felix.ToDataplane],
                context: grpc.ServicerContext) -> Iterator[felix.FromDataplane]:
        handle = self.core.open_stream()
        log.info("Sync stream %d opened by %s", handle.generation, context.peer())

        def pump() -> None:
            # Reads run in their own thread so that statuses can flow back concurrently.
            try:
                for msg in messages:
                    self.core.submit(handle.generation, msg)
            except grpc.RpcError:
                pass
            except Exception:
                log.exception("Sync stream %d: reading failed", handle.generation)
            finally:
                handle.close()

        context.add_callback(handle.close)
        threading.Thread(target=pump, name=f"sync-{handle.generation}", daemon=True).start()
        while True:
            out = handle.outbound.get()
            if out is None:
                log.info("Sync stream %d closed", handle.generation)
                return
            yield out

    def GetState(self, request: agent_pb2.GetStateRequest,
                 context: grpc.ServicerContext) -> agent_pb2.GetStateReply:
        return agent_pb2.GetStateReply(state_json=json.dumps(self.core.state_report(), default=str))

    def SetDriver(self, request: agent_pb2.SetDriverRequest,
                  context: grpc.ServicerContext) -> agent_pb2.SetDriverReply:
        ok, error, previous, seconds = self.core.set_driver(request.driver)
        log.log(logging.INFO if ok else logging.ERROR, "SetDriver %s: ok=%s %s (%.3f s)",
                request.driver, ok, error, seconds)
        return agent_pb2.SetDriverReply(ok=ok, error=error, previous=previous,
                                        active=self.core.driver.name, seconds=seconds)




def listen_private(server: grpc.Server, path: Path) -> None:
    """Bind `server` to unix socket `path` and start it; the socket is 0600 before it answers."""
    prepare_socket_path(path)
    server.add_insecure_port(f"unix:{path}")
    # gRPC creates the socket file itself; a restrictive umask makes it 0600 from the start.
    old_umask = os.umask(0o177)
    try:
        server.start()
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)


def serve(core: AgentCore, path: Path, max_workers: int = 16) -> grpc.Server:
    """Start the Agent service on `path`."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)],
    )
    agent_pb2_grpc.add_AgentServicer_to_server(AgentService(core), server)  # type: ignore[no-untyped-call]
    listen_private(server, path)
    return server
