"""Messages to Felix (`FromDataplane`) in the form an older release knows.

The agent writes v3.33 messages. Before felix-shim writes one to Felix, every field that the
release does not know, or declares with another shape, is left out, and a message whose payload
the release does not know at all is not sent: Felix exits on a message it cannot read.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from felix_shim.releases.differences import NEWEST
from felix_shim.releases.schema import ReleaseSchema, schema
from vppagent.gen.felix import felixbackend_pb2 as felix


def _shape(f: FieldDescriptor) -> tuple[object, ...]:
    sub = f.message_type or f.enum_type
    values = tuple((v.name, v.number) for v in f.enum_type.values) if f.enum_type is not None else ()
    return (f.type, f.is_repeated, sub.full_name if sub is not None else "", values)


def strip_for(msg: Message, release: ReleaseSchema) -> None:
    """Clear, in place, what `release` would read differently from v3.33."""
    try:
        theirs = release.pool.FindMessageTypeByName(msg.DESCRIPTOR.full_name)
    except KeyError:
        msg.Clear()
        return
    for f, value in msg.ListFields():
        t = theirs.fields_by_number.get(f.number)
        if t is None or _shape(t) != _shape(f):
            msg.ClearField(f.name)
        elif f.message_type is not None:  # status messages are small: look at every one
            if f.message_type.GetOptions().map_entry:
                value_type = f.message_type.fields_by_name["value"].message_type
                if value_type is not None:
                    for item in value.values():
                        strip_for(item, release)
            elif f.is_repeated:
                for item in value:
                    strip_for(item, release)
            else:
                strip_for(value, release)


def from_dataplane_for(release: str, raw: bytes) -> bytes | None:
    """`raw` (a v3.33 FromDataplane) as `release` may receive it; None if it must not be sent."""
    if release == NEWEST:
        return raw
    msg = felix.FromDataplane.FromString(raw)
    payload = msg.WhichOneof("payload")
    strip_for(msg, schema(release))
    if payload is None or msg.WhichOneof("payload") is None:
        return None
    return msg.SerializeToString()
