"""A client for the Agent service: what the CLI, the lab, the benchmarks and the tests ask the agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc

from vppagent.gen.vppagent.v1 import agent_pb2, agent_pb2_grpc


def get_state(socket: str | Path, timeout: float = 5.0) -> dict[str, Any]:
    """The agent's state report (DESIGN.md section 4); grpc.RpcError when no agent answers."""
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        stub = agent_pb2_grpc.AgentStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.GetState(agent_pb2.GetStateRequest(), timeout=timeout)
    report: dict[str, Any] = json.loads(reply.state_json)
    return report


def try_get_state(socket: str | Path, timeout: float = 5.0) -> dict[str, Any] | None:
    """get_state, or None while no agent answers (for polling during start-up)."""
    try:
        return get_state(socket, timeout)
    except grpc.RpcError:
        return None


def set_driver(socket: str | Path, driver: str, timeout: float = 60.0) -> agent_pb2.SetDriverReply:
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        stub = agent_pb2_grpc.AgentStub(channel)  # type: ignore[no-untyped-call]
        reply: agent_pb2.SetDriverReply = stub.SetDriver(agent_pb2.SetDriverRequest(driver=driver),
                                                         timeout=timeout)
    return reply
