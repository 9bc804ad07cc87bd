"""Messages to Felix carry only what Felix's release knows."""

from __future__ import annotations

import random

import pytest

from felix_shim.releases.decoder import FelixDecoder, unknown_fields
from felix_shim.releases.differences import RELEASES
from felix_shim.releases.downgrade import from_dataplane_for
from felix_shim.releases.schema import schema
from tests.felixver.generate import fill
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.server.status import _remove_message, _update_message
from vppagent.state.model import Kind, WorkloadKey

WEP = WorkloadKey("k8s", "prod/pod1", "eth0")


def agent_messages() -> list[felix.FromDataplane]:
    """What the agent writes today (vppagent.server.status and the heartbeat), plus the rest."""
    return [
        _update_message((Kind.WORKLOAD_ENDPOINT, WEP), "up"),
        _update_message((Kind.HOST_ENDPOINT, "eth0"), "error"),
        _remove_message((Kind.WORKLOAD_ENDPOINT, WEP)),
        _remove_message((Kind.HOST_ENDPOINT, "eth0")),
        felix.FromDataplane(process_status_update=felix.ProcessStatusUpdate(iso_timestamp="2026-12-06T10:00:00Z",
                                                                            uptime=12.5)),
        felix.FromDataplane(dataplane_in_sync=felix.DataplaneInSync()),
        felix.FromDataplane(wireguard_status_update=felix.WireguardStatusUpdate(public_key="k", ip_version=4)),
    ]


@pytest.mark.parametrize("release", RELEASES)
def test_agent_messages_reach_every_release_whole(release: str) -> None:
    cls = schema(release).from_dataplane
    for number, msg in enumerate(agent_messages(), 1):
        msg.sequence_number = number
        data = from_dataplane_for(release, msg.SerializeToString())
        assert data is not None
        theirs = cls.FromString(data)
        assert unknown_fields(theirs) == []
        assert theirs.SerializeToString(deterministic=True) == msg.SerializeToString(deterministic=True)


@pytest.mark.parametrize("release", RELEASES)
def test_random_v333_messages_decode_without_unknown_fields(release: str) -> None:
    """Every FromDataplane payload with every field (the endpoint of a status update included)."""
    rng = random.Random(release)
    cls = schema(release).from_dataplane
    kept = 0
    for _ in range(300):
        msg = felix.FromDataplane()
        fill(msg, rng, "3.33")
        data = from_dataplane_for(release, msg.SerializeToString())
        if data is None:
            assert msg.WhichOneof("payload") is None
            continue
        kept += 1
        theirs = cls.FromString(data)
        assert unknown_fields(theirs) == [], (release, msg)
        assert theirs.WhichOneof("payload") == msg.WhichOneof("payload")
    assert kept > 200


def test_what_older_releases_do_not_know_is_left_out() -> None:
    status = felix.WorkloadEndpointStatusUpdate(id=felix.WorkloadEndpointID(workload_id="prod/pod1"),
                                                status=felix.EndpointStatus(status="up"),
                                                endpoint=felix.WorkloadEndpoint(name="cali1", tiers=[
                                                    felix.TierInfo(name="default", ingress_policies=[
                                                        felix.PolicyID(name="p", kind="NetworkPolicy")])]))
    raw = felix.FromDataplane(workload_endpoint_status_update=status).SerializeToString()
    v329 = schema("3.29").from_dataplane.FromString(from_dataplane_for("3.29", raw))  # no endpoint field
    assert v329.workload_endpoint_status_update.status.status == "up"
    assert unknown_fields(v329) == []
    v331 = schema("3.31").from_dataplane.FromString(from_dataplane_for("3.31", raw))  # tiers held names
    assert v331.workload_endpoint_status_update.endpoint.name == "cali1"
    assert list(v331.workload_endpoint_status_update.endpoint.tiers[0].ingress_policies) == []
    future = felix.FromDataplane(sequence_number=3).SerializeToString() + b"\xa2\x06\x00"  # field 100
    assert from_dataplane_for("3.31", future) is None


def test_the_decoder_writes_for_the_oldest_release_still_possible() -> None:
    decoder = FelixDecoder()
    raw = agent_messages()[0].SerializeToString()
    assert decoder.candidates[-1] == "3.28" and decoder.for_felix(raw) == from_dataplane_for("3.28", raw)
    assert FelixDecoder("3.33").for_felix(raw) is raw
