"""The per-release schemas: built from v3.33 + differences.py, equal to Calico's own, all covered.

The comparison with Calico's descriptor sets runs where they are at hand (../shared beside the
clone, /work/shared, or VPPAGENT_FELIX_DESCRIPTORS); the project needs none of them otherwise.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from felix_shim.releases.differences import DELTAS, NEWEST, RELEASES
from felix_shim.releases.schema import ReleaseSchema, release_file, schema
from felix_shim.releases.upgrade import FIELD_HOOKS, HOST_METADATA_PAYLOADS, MESSAGE_HOOKS
from tests.felixver.generate import fill
from vppagent.gen.felix import felixbackend_pb2 as felix

REPO = Path(__file__).resolve().parents[2]
CANDIDATE_DIRS = [
    os.environ.get("VPPAGENT_FELIX_DESCRIPTORS", ""),
    str(REPO.parent / "shared" / "reference" / "felix-versions"),
    str(REPO.parent.parent / "shared" / "reference" / "felix-versions"),
    "/work/shared/reference/felix-versions",
]


def calico_descriptor(release: str) -> descriptor_pb2.FileDescriptorProto:
    for folder in filter(None, CANDIDATE_DIRS):
        path = Path(folder) / f"felixbackend-v{release}.pb"
        if path.is_file():
            fds = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
            return fds.file[-1]
    pytest.skip(f"Calico's descriptor set felixbackend-v{release}.pb is not at hand "
                f"(looked in {', '.join(filter(None, CANDIDATE_DIRS))})")


def signature(pool: descriptor_pool.DescriptorPool, fdp: descriptor_pb2.FileDescriptorProto) -> dict[str, Any]:
    """Everything that decides the wire format and names, per message / enum / service."""
    out: dict[str, Any] = {}
    fd = pool.FindFileByName(fdp.name)

    def walk(descs: Any) -> None:
        for d in descs:
            out[f"message {d.full_name}"] = (
                sorted((f.number, f.name, f.type, f.is_repeated,
                        (f.message_type or f.enum_type).full_name if (f.message_type or f.enum_type) else "",
                        f.containing_oneof.name if f.containing_oneof else None, f.json_name) for f in d.fields),
                d.GetOptions().map_entry)
            for e in d.enum_types:
                out[f"enum {e.full_name}"] = [(v.name, v.number) for v in e.values]
            walk(d.nested_types)

    walk(fd.message_types_by_name.values())
    for e in fd.enum_types_by_name.values():
        out[f"enum {e.full_name}"] = [(v.name, v.number) for v in e.values]
    for s in fd.services_by_name.values():
        out[f"service {s.full_name}"] = sorted((m.name, m.input_type.full_name, m.output_type.full_name,
                                                m.server_streaming) for m in s.methods)
    for m in fdp.message_type:
        numbers = sorted(n for r in m.reserved_range for n in range(r.start, r.end))
        out[f"reserved {m.name}"] = (numbers, sorted(m.reserved_name))
    return out


@pytest.mark.parametrize("release", RELEASES)
def test_derived_schema_is_calicos_field_for_field(release: str) -> None:
    calico = calico_descriptor(release)
    theirs_pool = descriptor_pool.DescriptorPool()
    theirs_pool.Add(calico)
    ours = schema(release)
    theirs, mine = signature(theirs_pool, calico), signature(ours.pool, ours.file)
    differing = sorted(k for k in theirs.keys() | mine.keys() if theirs.get(k) != mine.get(k))
    assert not differing, {k: (theirs.get(k), mine.get(k)) for k in differing[:5]}
    assert (calico.package, calico.syntax) == (ours.file.package, "proto3")


@pytest.mark.parametrize("release", RELEASES)
def test_calicos_messages_read_the_same_with_the_derived_classes(release: str) -> None:
    """Random instances of every message of Calico's schema: same bytes back, no unknown fields."""
    calico = calico_descriptor(release)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(calico)
    rng = random.Random(release)
    for desc in pool.FindFileByName(calico.name).message_types_by_name.values():
        theirs = message_factory.GetMessageClass(desc)
        mine = schema(release).message(desc.name)
        for _ in range(20):
            msg = theirs()
            fill(msg, rng, release)
            data = msg.SerializeToString(deterministic=True)
            parsed = mine.FromString(data)
            assert parsed.SerializeToString(deterministic=True) == data, desc.name


def test_newest_release_is_the_generated_code() -> None:
    newest = schema(NEWEST)
    assert newest.to_dataplane is felix.ToDataplane and newest.changed == frozenset()
    assert [r for r in RELEASES if r != NEWEST] == list(DELTAS)


@pytest.mark.parametrize("release", RELEASES[1:])
def test_each_release_changes_what_the_differences_say(release: str) -> None:
    """A few facts per release, each from the issue or the diff, checked on the built classes."""
    s = schema(release)
    to_dp = s.descriptor("ToDataplane").fields_by_number
    assert (35 in to_dp) is True  # HostMetadataV6*/V4V6* up to 3.32
    tier_policies = s.descriptor("TierInfo").fields_by_name["ingress_policies"]
    older_than_332 = RELEASES.index(release) >= RELEASES.index("3.31")
    assert (tier_policies.type == FieldDescriptor.TYPE_STRING) is older_than_332
    assert ("tier" in s.descriptor("PolicyID").fields_by_name) is older_than_332
    route = s.descriptor("RouteUpdate").fields_by_name
    assert ("type" in route) is (RELEASES.index(release) >= RELEASES.index("3.29"))
    wep14 = s.descriptor("WorkloadEndpoint").fields_by_number.get(14)
    expected14 = {"3.30": "type", "3.29": None, "3.28": None}.get(release, "skip_redir")
    assert (wep14.name if wep14 else None) == expected14
    assert ("default_action" in s.descriptor("TierInfo").fields_by_name) is (release != "3.28")
    # what the decoder routes through conversion
    assert set(s.changed_payloads) >= {35, 36, 37, 38}


def _hooked(s: ReleaseSchema, d: Descriptor, f: FieldDescriptor) -> bool:
    return (d.full_name, f.number) in FIELD_HOOKS or d.full_name in MESSAGE_HOOKS


@pytest.mark.parametrize("release", RELEASES[1:])
def test_every_difference_has_a_converter(release: str) -> None:
    """Each field a release declares otherwise than v3.33 is converted, never copied blindly."""
    s = schema(release)
    newest = felix.DESCRIPTOR.pool
    missing = []
    for name in sorted(s.changed):
        d = s.pool.FindMessageTypeByName(name)
        if d.GetOptions().map_entry or name.split(".")[1].startswith("HostMetadata"):
            continue  # host metadata messages go through HostMetadataMerge as a whole
        try:
            ours = newest.FindMessageTypeByName(name)
        except KeyError:
            missing.append(f"{name}: no v3.33 counterpart")
            continue
        for f in d.fields:
            o = ours.fields_by_number.get(f.number)
            same_kind = o is not None and (o.type, o.is_repeated) == (f.type, f.is_repeated)
            nested = f.message_type is not None and same_kind and o is not None and \
                o.message_type is not None and o.message_type.full_name == f.message_type.full_name
            enum_same = f.enum_type is None or (o is not None and o.enum_type is not None and [
                (v.name, v.number) for v in o.enum_type.values] == [(v.name, v.number) for v in f.enum_type.values])
            if name == "felix.ToDataplane" and f.number in HOST_METADATA_PAYLOADS:
                continue
            if (same_kind and enum_same and (f.message_type is None or nested)) or _hooked(s, d, f):
                continue
            missing.append(f"{name}.{f.name} ({f.number})")
    assert not missing


def test_release_files_are_built_once_and_unsupported_releases_are_named() -> None:
    assert release_file("3.31") is release_file("3.31")
    with pytest.raises(KeyError, match=r"unsupported Felix release '3\.27'"):
        release_file("3.27")
