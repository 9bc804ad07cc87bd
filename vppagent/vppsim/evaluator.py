"""Packet evaluation over the emulated state: what VPP's ACL plugin and classifier would do.

Conventions (DESIGN.md §7): pod egress is VPP *input* on the pod's interface, pod
ingress is VPP *output* on it.  Routing is not modelled: :func:`connect` is told the
interface of each endpoint.
"""

from __future__ import annotations

from vppagent.vppsim.packet import (
    PROTO_ICMP,
    PROTO_ICMP6,
    ConnectResult,
    Direction,
    Hop,
    Packet,
    PathResult,
    Verdict,
    parse_protocol,
)
from vppagent.vppsim.state import SimState

Endpoint = tuple[int, str]  # (sw_if_index of the endpoint's interface, its IP address)


def evaluate(state: SimState, sw_if_index: int, direction: Direction, packet: Packet) -> Verdict:
    """Verdict for ``packet`` crossing ``sw_if_index`` in ``direction``; reflect sessions are updated."""
    with state.lock:
        return state.evaluate(sw_if_index, direction, packet)


def send(state: SimState, packet: Packet, source_if: int, destination_if: int) -> PathResult:
    """``packet`` enters VPP from ``source_if`` (input features) and leaves through ``destination_if``."""
    result = PathResult(packet)
    for sw_if_index, direction in ((source_if, Direction.INPUT), (destination_if, Direction.OUTPUT)):
        verdict = evaluate(state, sw_if_index, direction, packet)
        result.hops.append(Hop(sw_if_index, direction, verdict))
        if not verdict.permitted:
            break
    return result


def connect(state: SimState, source: Endpoint, destination: Endpoint, proto: int | str, port: int, *,
            source_port: int = 40000) -> ConnectResult:
    """Open a connection from ``source`` to ``destination``: the SYN (or datagram, or echo
    request; for ICMP ``port`` is the type) and, if it arrives, the answer."""
    protocol = parse_protocol(proto)
    if protocol in (PROTO_ICMP, PROTO_ICMP6):
        request = Packet.make(source[1], destination[1], protocol, sport=port, dport=0)
    else:
        request = Packet.make(source[1], destination[1], protocol, sport=source_port, dport=port)
    outbound = send(state, request, source[0], destination[0])
    if not outbound.delivered:
        return ConnectResult(outbound, None)
    inbound = send(state, request.reply(), destination[0], source[0])
    return ConnectResult(outbound, inbound)
