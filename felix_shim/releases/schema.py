"""Per-release wire schemas, built at run time from the v3.33 schema and `differences.DELTAS`.

`schema(release)` gives a `ReleaseSchema`: the release's FileDescriptorProto, a descriptor pool of
its own, its message classes, and which of its message types differ from v3.33 on the wire
(`changed`), so the decoder knows which payloads need converting. v3.33 is the project's generated
code itself.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from felix_shim.releases.differences import (
    DELTAS,
    NEWEST,
    RELEASES,
    AddEnum,
    AddField,
    AddMessage,
    DropEnum,
    DropField,
    DropMessage,
    DropMethod,
    Edit,
    Field,
    RenumberEnum,
    ReplaceField,
    Unreserve,
)
from vppagent.gen.felix import felixbackend_pb2 as felix

PACKAGE = "felix"
FDP = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "string": FDP.TYPE_STRING, "bytes": FDP.TYPE_BYTES, "bool": FDP.TYPE_BOOL, "double": FDP.TYPE_DOUBLE,
    "float": FDP.TYPE_FLOAT, "int32": FDP.TYPE_INT32, "int64": FDP.TYPE_INT64, "uint32": FDP.TYPE_UINT32,
    "uint64": FDP.TYPE_UINT64,
}


class SchemaEditError(Exception):
    """An edit in differences.py does not fit the schema it is applied to."""


@dataclass(frozen=True)
class ReleaseSchema:
    name: str
    file: descriptor_pb2.FileDescriptorProto
    pool: descriptor_pool.DescriptorPool
    # Full names of message types whose encoding differs from v3.33's (a field v3.33 lacks or
    # declares otherwise, an enum renumbered, or such a type inside).
    changed: frozenset[str]
    # ToDataplane payload field numbers whose message is changed or unknown to v3.33.
    changed_payloads: frozenset[int]
    # Per ToDataplane payload field number, its message's whole schema (every type it reaches):
    # releases with equal signatures read a payload alike, so its bytes are decoded once for them.
    payload_signatures: dict[int, tuple[object, ...]]

    def message(self, name: str) -> type[Message]:
        desc = self.pool.FindMessageTypeByName(f"{PACKAGE}.{name}")
        if self.name == NEWEST:
            return getattr(felix, name)  # type: ignore[no-any-return]
        return message_factory.GetMessageClass(desc)

    @functools.cached_property
    def to_dataplane(self) -> type[Message]:
        return self.message("ToDataplane")

    @functools.cached_property
    def from_dataplane(self) -> type[Message]:
        return self.message("FromDataplane")

    def descriptor(self, name: str) -> Descriptor:
        return self.pool.FindMessageTypeByName(f"{PACKAGE}.{name}")


def newest_file() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto()
    felix.DESCRIPTOR.CopyToProto(fdp)
    return fdp


def _message(fdp: descriptor_pb2.FileDescriptorProto, name: str) -> descriptor_pb2.DescriptorProto:
    for m in fdp.message_type:
        if m.name == name:
            return m
    raise SchemaEditError(f"no message {name}")


def _field_index(msg: descriptor_pb2.DescriptorProto, number: int) -> int:
    for i, f in enumerate(msg.field):
        if f.number == number:
            return i
    raise SchemaEditError(f"{msg.name} has no field {number}")


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _field_proto(fdp: descriptor_pb2.FileDescriptorProto, msg: descriptor_pb2.DescriptorProto,
                 spec: Field) -> FDP:
    f = FDP(name=spec.name, number=spec.number,
            label=FDP.LABEL_REPEATED if spec.repeated else FDP.LABEL_OPTIONAL)
    if spec.type in SCALARS:
        f.type = SCALARS[spec.type]
    elif spec.type.startswith("map<"):
        key, value = spec.type[4:-1].split(",")
        entry = msg.nested_type.add(name=_camel(spec.name) + "Entry")
        entry.options.map_entry = True
        entry.field.add(name="key", number=1, label=FDP.LABEL_OPTIONAL, type=SCALARS[key.strip()])
        entry.field.add(name="value", number=2, label=FDP.LABEL_OPTIONAL, type=SCALARS[value.strip()])
        f.label = FDP.LABEL_REPEATED
        f.type = FDP.TYPE_MESSAGE
        f.type_name = f".{PACKAGE}.{msg.name}.{entry.name}"
    elif any(m.name == spec.type for m in fdp.message_type):
        f.type = FDP.TYPE_MESSAGE
        f.type_name = f".{PACKAGE}.{spec.type}"
    elif any(e.name == spec.type for e in fdp.enum_type):
        f.type = FDP.TYPE_ENUM
        f.type_name = f".{PACKAGE}.{spec.type}"
    else:
        raise SchemaEditError(f"{msg.name}.{spec.name}: unknown type {spec.type}")
    if spec.oneof is not None:
        names = [o.name for o in msg.oneof_decl]
        if spec.oneof not in names:
            raise SchemaEditError(f"{msg.name} has no oneof {spec.oneof}")
        f.oneof_index = names.index(spec.oneof)
    return f


def _drop_field(msg: descriptor_pb2.DescriptorProto, number: int) -> None:
    index = _field_index(msg, number)
    gone = msg.field[index]
    del msg.field[index]
    # A map field takes its generated entry type with it.
    for i, nested in enumerate(msg.nested_type):
        if nested.options.map_entry and gone.type_name.endswith(f".{msg.name}.{nested.name}"):
            del msg.nested_type[i]
            break


def apply_edit(fdp: descriptor_pb2.FileDescriptorProto, edit: Edit) -> None:
    match edit:
        case AddField(message, spec):
            msg = _message(fdp, message)
            if any(f.number == spec.number for f in msg.field):
                raise SchemaEditError(f"{message} already has field {spec.number}")
            msg.field.append(_field_proto(fdp, msg, spec))
        case DropField(message, number):
            _drop_field(_message(fdp, message), number)
        case ReplaceField(message, spec):
            msg = _message(fdp, message)
            index = _field_index(msg, spec.number)
            _drop_field(msg, spec.number)
            msg.field.insert(index, _field_proto(fdp, msg, spec))
        case AddMessage(name, fields):
            msg = fdp.message_type.add(name=name)
            for spec in fields:
                msg.field.append(_field_proto(fdp, msg, spec))
        case DropMessage(name):
            fdp.message_type.remove(_message(fdp, name))
        case AddEnum(name, values):
            enum = fdp.enum_type.add(name=name)
            for value_name, number in values:
                enum.value.add(name=value_name, number=number)
        case DropEnum(name):
            fdp.enum_type.remove(next(e for e in fdp.enum_type if e.name == name))
        case RenumberEnum(name, values):
            enum = next(e for e in fdp.enum_type if e.name == name)
            del enum.value[:]
            for value_name, number in values:
                enum.value.add(name=value_name, number=number)
        case Unreserve(message, numbers, names):
            msg = _message(fdp, message)
            kept = [(r.start, r.end) for r in msg.reserved_range]
            for number in numbers:
                kept = [piece for start, end in kept for piece in _cut(start, end, number)]
            del msg.reserved_range[:]
            for start, end in kept:
                msg.reserved_range.add(start=start, end=end)
            remaining = [n for n in msg.reserved_name if n not in names]
            del msg.reserved_name[:]
            msg.reserved_name.extend(remaining)
        case DropMethod(service, method):
            svc = next(s for s in fdp.service if s.name == service)
            svc.method.remove(next(m for m in svc.method if m.name == method))


def _cut(start: int, end: int, number: int) -> list[tuple[int, int]]:
    """The reserved range [start, end) without `number`."""
    if not start <= number < end:
        return [(start, end)]
    return [(s, e) for s, e in ((start, number), (number + 1, end)) if s < e]


def _field_shape(f: FieldDescriptor) -> tuple[object, ...]:
    sub = f.message_type or f.enum_type
    return (f.type, f.is_repeated, sub.full_name if sub is not None else "")


def _enum_values(f: FieldDescriptor) -> tuple[tuple[str, int], ...]:
    return tuple((v.name, v.number) for v in f.enum_type.values) if f.enum_type is not None else ()


def changed_types(release: Iterable[Descriptor], newest: descriptor_pool.DescriptorPool) -> frozenset[str]:
    """Message types of a release whose bytes v3.33's classes would read differently."""
    by_name = {d.full_name: d for d in release}

    def differs_here(d: Descriptor) -> bool:
        try:
            ours = newest.FindMessageTypeByName(d.full_name)
        except KeyError:
            return True
        for f in d.fields:
            o = ours.fields_by_number.get(f.number)
            if o is None or _field_shape(o) != _field_shape(f) or _enum_values(o) != _enum_values(f):
                return True
        return False

    changed = {name for name, d in by_name.items() if differs_here(d)}
    grew = True
    while grew:  # a type holding a changed type is changed too
        grew = False
        for name, d in by_name.items():
            if name not in changed and any(f.message_type is not None and f.message_type.full_name in changed
                                           for f in d.fields):
                changed.add(name)
                grew = True
    return frozenset(changed)


def _all_messages(pool: descriptor_pool.DescriptorPool, file_name: str) -> list[Descriptor]:
    out: list[Descriptor] = []

    def walk(descs: Iterable[Descriptor]) -> None:
        for d in descs:
            out.append(d)
            walk(d.nested_types)

    walk(pool.FindFileByName(file_name).message_types_by_name.values())
    return out


@functools.cache
def release_file(release: str) -> descriptor_pb2.FileDescriptorProto:
    """The release's schema as a FileDescriptorProto (v3.33 with the deltas down to `release`)."""
    if release not in RELEASES:
        raise KeyError(f"unsupported Felix release {release!r} (supported: {', '.join(RELEASES)})")
    fdp = newest_file()
    for name in RELEASES[1:RELEASES.index(release) + 1]:
        for edit in DELTAS[name]:
            try:
                apply_edit(fdp, edit)
            except (SchemaEditError, StopIteration) as exc:
                raise SchemaEditError(f"release {name}: {edit}: {exc}") from None
    return fdp


def closure_signature(desc: Descriptor) -> tuple[object, ...]:
    """Every field of `desc` and of every message type it reaches, as comparable data."""
    seen: dict[str, tuple[object, ...]] = {}
    todo = [desc]
    while todo:
        d = todo.pop()
        if d.full_name in seen:
            continue
        seen[d.full_name] = tuple(sorted((f.number, f.name, *_field_shape(f), _enum_values(f)) for f in d.fields))
        todo.extend(f.message_type for f in d.fields if f.message_type is not None)
    return tuple(sorted(seen.items()))


def _payload_signatures(to_dataplane: Descriptor) -> dict[int, tuple[object, ...]]:
    return {f.number: closure_signature(f.message_type) for f in to_dataplane.fields
            if f.containing_oneof is not None and f.message_type is not None}


@functools.cache
def schema(release: str) -> ReleaseSchema:
    fdp = release_file(release)
    newest_pool = felix.DESCRIPTOR.pool
    if release == NEWEST:
        return ReleaseSchema(release, fdp, newest_pool, frozenset(), frozenset(),
                             _payload_signatures(newest_pool.FindMessageTypeByName("felix.ToDataplane")))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    changed = changed_types(_all_messages(pool, fdp.name), newest_pool)
    to_dp = pool.FindMessageTypeByName(f"{PACKAGE}.ToDataplane")
    ours = felix.ToDataplane.DESCRIPTOR.fields_by_number
    payloads = frozenset(
        f.number for f in to_dp.fields
        if f.containing_oneof is not None
        and (f.number not in ours or (f.message_type is not None and f.message_type.full_name in changed))
    )
    return ReleaseSchema(release, fdp, pool, changed, payloads, _payload_signatures(to_dp))
