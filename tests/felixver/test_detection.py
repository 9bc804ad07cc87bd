"""Which release a stream is, from the stream itself; forcing it; unknown and undecodable frames."""

from __future__ import annotations

import io

import pytest
from google.protobuf import json_format

from felix_shim.config import parse_config
from felix_shim.framing import FrameError, FrameReader, encode_frame
from felix_shim.outbox import varint
from felix_shim.releases.decoder import FelixDecoder, UndecodableFrame, release_of_version
from felix_shim.releases.differences import RELEASES
from felix_shim.releases.schema import schema
from tests.felixver.streams import stream
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.gen.vppagent.v1 import agent_pb2
from vppagent.state.model import DataplaneState

# Releases whose every field is also in the next release: a stream of theirs that uses none of the
# next release's additions reads the same as that release, so only CalicoVersion can tell.
INDISTINCT = {"3.28": ["3.29", "3.28"], "3.30": ["3.31", "3.30"]}


def decode_all(decoder: FelixDecoder, messages: list[object]) -> DataplaneState:
    state = DataplaneState()
    for msg in messages:
        state.apply(decoder.decode(msg.SerializeToString())[1])  # type: ignore[attr-defined]
    return state


def tag(cls: type, field: str) -> bytes:
    """The wire key of a length-delimited field."""
    return varint(cls.DESCRIPTOR.fields_by_name[field].number << 3 | 2)  # type: ignore[attr-defined]


def wire_report(decoder: FelixDecoder) -> agent_pb2.FelixWire:
    return agent_pb2.FelixWire.FromString(decoder.report_bytes())


@pytest.mark.parametrize("release", RELEASES)
def test_each_release_is_found_and_read_as_its_v333_twin(release: str) -> None:
    decoder = FelixDecoder()
    state = decode_all(decoder, stream(release, release))
    reference = decode_all(FelixDecoder(), stream("3.33", release))
    assert state.tables == reference.tables
    report = wire_report(decoder)
    assert (report.release, report.calico_version) == (release, f"v{release}.2")
    assert report.how == ("hinted" if release in INDISTINCT else "detected"), report.detail
    assert not report.unknown


@pytest.mark.parametrize("release", RELEASES)
def test_without_calico_version_the_wire_alone_decides(release: str) -> None:
    decoder = FelixDecoder()
    state = decode_all(decoder, stream(release, release, calico_version=False))
    assert state.tables == decode_all(FelixDecoder(), stream("3.33", release, calico_version=False)).tables
    assert decoder.candidates == INDISTINCT.get(release, [release])
    report = wire_report(decoder)
    assert report.how == ("assumed" if release in INDISTINCT else "detected")
    assert report.release == decoder.candidates[0]


def test_the_release_settles_in_the_snapshot() -> None:
    decoder = FelixDecoder()
    messages = stream("3.31", "3.31", calico_version=False)
    snapshot = messages[:[m.WhichOneof("payload") for m in messages].index("in_sync") + 1]
    for msg in snapshot:
        decoder.decode(msg.SerializeToString())
    assert decoder.candidates == ["3.31"] and decoder.frames == len(snapshot)


@pytest.mark.parametrize("release", ["3.31", "3.28"])
def test_forcing_a_release(release: str) -> None:
    decoder = FelixDecoder(release)
    state = decode_all(decoder, stream(release, release, calico_version=False))
    assert state.tables == decode_all(FelixDecoder(), stream("3.33", release, calico_version=False)).tables
    report = wire_report(decoder)
    assert (report.release, report.how, list(report.candidates)) == (release, "forced", [release])


def test_felix_version_flag_and_environment() -> None:
    assert parse_config([], env={}).forced_release is None
    assert parse_config([], env={"VPPAGENT_FELIX_VERSION": "v3.30"}).forced_release == "3.30"
    assert parse_config(["--felix-version", "3.29"], env={"VPPAGENT_FELIX_VERSION": "3.30"}).forced_release == "3.29"
    assert parse_config(["--felix-version", "auto"], env={"VPPAGENT_FELIX_VERSION": "3.30"}).forced_release is None
    with pytest.raises(SystemExit):
        parse_config(["--felix-version", "3.27"], env={})
    with pytest.raises(SystemExit):
        parse_config([], env={"VPPAGENT_FELIX_VERSION": "latest"})
    with pytest.raises(ValueError, match=r"unsupported Felix release '3\.4'"):
        FelixDecoder("3.4")
    assert release_of_version("v3.31.2") == "3.31" and release_of_version("v3.99.0") is None


def test_a_future_field_is_counted_and_reported_once_never_fatal(caplog: pytest.LogCaptureFixture) -> None:
    decoder = FelixDecoder()
    messages = stream("3.33", "3.33")
    wep = next(m for m in messages if m.WhichOneof("payload") == "workload_endpoint_update")
    future_field = b"\xba\x06\x03abc"  # WorkloadEndpoint field 103, length-delimited
    endpoint = wep.workload_endpoint_update.endpoint.SerializeToString() + future_field
    head = felix.ToDataplane(sequence_number=wep.sequence_number).SerializeToString()
    update = felix.WorkloadEndpointUpdate(id=wep.workload_endpoint_update.id).SerializeToString()
    inner = update + tag(felix.WorkloadEndpointUpdate, "endpoint") + varint(len(endpoint)) + endpoint
    raw = head + tag(felix.ToDataplane, "workload_endpoint_update") + varint(len(inner)) + inner
    future_payload = felix.ToDataplane(sequence_number=99).SerializeToString() + b"\xb2\x03\x00"  # field 54
    for data in (*[m.SerializeToString() for m in messages], raw, raw, future_payload):
        forwarded, msg = decoder.decode(data)
        if data == raw:
            assert msg.workload_endpoint_update == wep.workload_endpoint_update  # the known part stands
            assert b"abc" not in forwarded
        if data == future_payload:
            assert msg.WhichOneof("payload") is None  # the outbox skips it
    assert decoder.release == "3.33"
    assert decoder.unknown == {"WorkloadEndpoint.103": 2, "ToDataplane.54": 1}
    report = wire_report(decoder)
    assert {(u.where, u.frames) for u in report.unknown} == {("WorkloadEndpoint.103", 2), ("ToDataplane.54", 1)}
    assert caplog.text.count("WorkloadEndpoint.103") == 1  # logged once


def test_a_frame_no_release_can_decode_is_an_error_naming_it() -> None:
    good = felix.ToDataplane(sequence_number=7, in_sync=felix.InSync()).SerializeToString()
    reader = FrameReader(io.BytesIO(encode_frame(good) + encode_frame(b"\x5a\x05\x0a\xff\xff\xff\xff")))
    assert reader.read_message() is not None
    with pytest.raises(FrameError) as err:
        reader.read_message()
    text = str(err.value)
    assert "frame #2 at byte offset 12" in text and "sequence_number 7" in text
    assert "undecodable felix.ToDataplane (7 bytes) under every possible Felix release" in text
    assert "3.33, 3.32, 3.31, 3.30, 3.29, 3.28:" in text  # every release tried, one verdict


def test_a_frame_of_another_release_after_detection_is_named() -> None:
    """A v3.31 endpoint (policy names as text) in a stream that was v3.33 so far."""
    decoder = FelixDecoder()
    for msg in stream("3.33", "3.33"):
        decoder.decode(msg.SerializeToString())
    old = json_format.ParseDict({"workload_endpoint_update": {"endpoint": {"tiers": [
        {"name": "default", "ingress_policies": ["allow-frontend-to-backend-on-8080"]}]}}},
        schema("3.31").to_dataplane())
    with pytest.raises(UndecodableFrame) as err:  # "allow-..." is no PolicyID: 'n' is wire type 6
        decoder.decode(old.SerializeToString())
    assert "3.31, 3.30, 3.29, 3.28: reads cleanly but earlier frames ruled it out" in str(err.value)
