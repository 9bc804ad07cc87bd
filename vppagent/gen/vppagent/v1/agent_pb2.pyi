from vppagent.gen.felix import felixbackend_pb2 as _felixbackend_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToDataplaneBatch(_message.Message):
    __slots__ = ("messages", "felix_wire")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    FELIX_WIRE_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_felixbackend_pb2.ToDataplane]
    felix_wire: FelixWire
    def __init__(self, messages: _Optional[_Iterable[_Union[_felixbackend_pb2.ToDataplane, _Mapping]]] = ..., felix_wire: _Optional[_Union[FelixWire, _Mapping]] = ...) -> None: ...

class FelixWire(_message.Message):
    __slots__ = ("release", "how", "candidates", "calico_version", "unknown", "detail")
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    HOW_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CALICO_VERSION_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    release: str
    how: str
    candidates: _containers.RepeatedScalarFieldContainer[str]
    calico_version: str
    unknown: _containers.RepeatedCompositeFieldContainer[UnknownWireItem]
    detail: str
    def __init__(self, release: _Optional[str] = ..., how: _Optional[str] = ..., candidates: _Optional[_Iterable[str]] = ..., calico_version: _Optional[str] = ..., unknown: _Optional[_Iterable[_Union[UnknownWireItem, _Mapping]]] = ..., detail: _Optional[str] = ...) -> None: ...

class UnknownWireItem(_message.Message):
    __slots__ = ("where", "frames")
    WHERE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    where: str
    frames: int
    def __init__(self, where: _Optional[str] = ..., frames: _Optional[int] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStateReply(_message.Message):
    __slots__ = ("state_json",)
    STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    state_json: str
    def __init__(self, state_json: _Optional[str] = ...) -> None: ...

class SetDriverRequest(_message.Message):
    __slots__ = ("driver",)
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    driver: str
    def __init__(self, driver: _Optional[str] = ...) -> None: ...

class SetDriverReply(_message.Message):
    __slots__ = ("ok", "error", "previous", "active", "seconds")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    error: str
    previous: str
    active: str
    seconds: float
    def __init__(self, ok: _Optional[bool] = ..., error: _Optional[str] = ..., previous: _Optional[str] = ..., active: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...
