"""Check proto/felix against a descriptor set of Calico's own felixbackend.proto.

    python scripts/check_felix_schema.py PATH/TO/felixbackend.pb [--rounds N] [--release 3.31]

1. Structure: every message, enum, field number, type, label, oneof membership of the reference
   exists identically in ours, and ours has nothing more. Ours is proto/felix (v3.33), or with
   --release the schema felix-shim derives for that release (felix_shim/releases).
2. Wire: random instances of every reference message type (every field set, nested messages,
   repeated fields, maps, oneof choices, edge values) are serialised with the reference classes,
   parsed with ours, and must re-serialise to the same bytes and the same text form.
Exit 0 when both hold; the reference is not needed by the project's tests or at run time.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from felix_shim.releases.differences import NEWEST
from felix_shim.releases.schema import schema

OURS = schema(NEWEST)


def field_sig(f: FieldDescriptor) -> tuple[object, ...]:
    sub = f.message_type.full_name if f.message_type else (f.enum_type.full_name if f.enum_type else "")
    oneof = f.containing_oneof.name if f.containing_oneof else None
    return (f.name, f.number, f.type, f.is_repeated, sub, oneof, f.json_name)


def compare_structure(ref_pool: descriptor_pool.DescriptorPool, ref_file: str) -> list[str]:
    problems: list[str] = []
    ref_fd = ref_pool.FindFileByName(ref_file)
    ours_fd = OURS.pool.FindFileByName(OURS.file.name)

    def walk(ref_msgs: dict[str, Descriptor], our_msgs: dict[str, Descriptor], prefix: str) -> None:
        for name, rm in ref_msgs.items():
            om = our_msgs.get(name)
            if om is None:
                problems.append(f"missing message {prefix}{name}")
                continue
            rf = {f.number: field_sig(f) for f in rm.fields}
            of = {f.number: field_sig(f) for f in om.fields}
            for num, sig in rf.items():
                if of.get(num) != sig:
                    problems.append(f"{prefix}{name} field {num}: reference {sig} ours {of.get(num)}")
            for num in set(of) - set(rf):
                problems.append(f"{prefix}{name} extra field {num}")
            for e in rm.enum_types:
                oe = om.enum_types_by_name.get(e.name)
                rv = [(v.name, v.number) for v in e.values]
                if oe is None or [(v.name, v.number) for v in oe.values] != rv:
                    problems.append(f"enum {prefix}{name}.{e.name} differs")
            walk(rm.nested_types_by_name, om.nested_types_by_name, f"{prefix}{name}.")

    walk(dict(ref_fd.message_types_by_name), dict(ours_fd.message_types_by_name), "")
    for name in set(ours_fd.message_types_by_name) - set(ref_fd.message_types_by_name):
        problems.append(f"extra message {name}")
    for name, e in ref_fd.enum_types_by_name.items():
        oe = ours_fd.enum_types_by_name.get(name)
        if oe is None or [(v.name, v.number) for v in oe.values] != [(v.name, v.number) for v in e.values]:
            problems.append(f"top-level enum {name} differs")
    return problems


SCALARS = {
    FieldDescriptor.TYPE_STRING: lambda r: r.choice(["", "a", "10.0.0.1/32", "ns/pod", "x" * 40, "é∂"]),
    FieldDescriptor.TYPE_BOOL: lambda r: r.random() < 0.5,
    FieldDescriptor.TYPE_INT32: lambda r: r.choice([0, 1, -1, 65535, 2**31 - 1, -(2**31)]),
    FieldDescriptor.TYPE_INT64: lambda r: r.choice([0, 1, -1, 2**63 - 1, -(2**63)]),
    FieldDescriptor.TYPE_UINT32: lambda r: r.choice([0, 1, 2**32 - 1]),
    FieldDescriptor.TYPE_UINT64: lambda r: r.choice([0, 1, 2**64 - 1]),
    FieldDescriptor.TYPE_DOUBLE: lambda r: r.choice([0.0, 1.5, -2.25, 1e300]),
}


def fill(msg: object, rng: random.Random, depth: int = 0) -> None:
    desc: Descriptor = msg.DESCRIPTOR  # type: ignore[attr-defined]
    chosen = {o.name: rng.choice(o.fields) for o in desc.oneofs}
    for f in desc.fields:
        if f.containing_oneof is not None and chosen[f.containing_oneof.name] is not f:
            continue
        if depth > 4 and f.type == FieldDescriptor.TYPE_MESSAGE:
            continue
        count = rng.randint(0, 3) if f.is_repeated else 1
        for _ in range(count):
            if f.message_type is not None and f.message_type.GetOptions().map_entry:
                kf, vf = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
                key = SCALARS[kf.type](rng)
                container = getattr(msg, f.name)
                if vf.type == FieldDescriptor.TYPE_MESSAGE:
                    fill(container[key], rng, depth + 1)
                else:
                    container[key] = SCALARS[vf.type](rng)
            elif f.type == FieldDescriptor.TYPE_MESSAGE:
                sub = getattr(msg, f.name).add() if f.is_repeated else getattr(msg, f.name)
                if not f.is_repeated:
                    sub.SetInParent()
                fill(sub, rng, depth + 1)
            elif f.type == FieldDescriptor.TYPE_ENUM:
                value = rng.choice(f.enum_type.values).number
                getattr(msg, f.name).append(value) if f.is_repeated else setattr(msg, f.name, value)
            else:
                value = SCALARS[f.type](rng)
                getattr(msg, f.name).append(value) if f.is_repeated else setattr(msg, f.name, value)


def compare_wire(ref_pool: descriptor_pool.DescriptorPool, rounds: int) -> list[str]:
    problems: list[str] = []
    rng = random.Random(1)
    ref_fd = ref_pool.FindFileByName(REF_FILE)
    for name, desc in ref_fd.message_types_by_name.items():
        ref_cls = message_factory.GetMessageClass(desc)
        our_cls = OURS.message(name)
        for _ in range(rounds):
            ref_msg = ref_cls()
            fill(ref_msg, rng)
            data = ref_msg.SerializeToString(deterministic=True)
            ours = our_cls.FromString(data)
            if ours.SerializeToString(deterministic=True) != data:
                problems.append(f"{name}: bytes differ after round trip")
                break
            if text_format.MessageToString(ours) != text_format.MessageToString(ref_msg):
                problems.append(f"{name}: decoded values differ")
                break
    return problems


REF_FILE = "felixbackend.proto"

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("descriptor_set")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--release", default=NEWEST, help="compare the schema derived for this release")
    args = ap.parse_args()
    OURS = schema(args.release)
    fds = descriptor_pb2.FileDescriptorSet.FromString(Path(args.descriptor_set).read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for fdp in fds.file:
        pool.Add(fdp)
    REF_FILE = fds.file[-1].name
    found = compare_structure(pool, REF_FILE) + compare_wire(pool, args.rounds)
    n = len(pool.FindFileByName(REF_FILE).message_types_by_name)
    for p in found:
        print("MISMATCH", p)
    print(f"{n} reference messages, {args.rounds} random instances each: "
          f"{'OK' if not found else f'{len(found)} problems'}")
    sys.exit(1 if found else 0)
