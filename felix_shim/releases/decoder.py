"""Decoding Felix's frames whatever its release (v3.28 to v3.33), and finding out which it is.

Felix says nothing about its own release on the pipe (ConfigUpdate carries the cluster's
`CalicoVersion` from ClusterInformation, which can differ from this Felix during an upgrade, so it
only breaks ties). The release shows in the frames: each one is read under every release still
possible (its "candidates"), and a release whose reading has fields it does not know, or content it
cannot have sent (a policy name that is not text), is ruled out. Real streams settle within the
snapshot: policies tell v3.31 and earlier from v3.32 on, routes v3.29 from v3.30, IP pools v3.30
from v3.31, tier default actions v3.28 from v3.29, host metadata v3.32 from v3.33.

Frames that read the same under every candidate are passed on as they are; if the candidates read
a frame differently, the preferred one (CalicoVersion's release if it is a candidate, else the
newest) is taken for good. Every frame leaves here in the v3.33 form: nothing past this module
knows releases. A future field or message is counted, logged once, and skipped; a frame that no
candidate can decode raises `UndecodableFrame`, naming what each release made of it.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from felix_shim.releases.differences import NEWEST, RELEASES
from felix_shim.releases.downgrade import from_dataplane_for
from felix_shim.releases.schema import schema
from felix_shim.releases.upgrade import (
    HOST_METADATA_PAYLOADS,
    LAST_SPLIT_HOST_METADATA,
    HostMetadataMerge,
    NotThisRelease,
    Upgrader,
)
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.gen.vppagent.v1 import agent_pb2

log = logging.getLogger(__name__)

CALICO_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?")


class UndecodableFrame(Exception):
    """No supported release reads the frame (the caller adds where in the stream it was)."""


def release_of_version(text: str) -> str | None:
    """'v3.31.2' -> '3.31' when that release is supported."""
    m = CALICO_VERSION.match(text.strip())
    name = f"{m.group(1)}.{m.group(2)}" if m else None
    return name if name in RELEASES else None


def unknown_fields(msg: Message) -> list[str]:
    """Where `msg` holds fields its schema does not know, as "Message.number", sorted."""
    found: set[str] = set()

    def walk(m: Message) -> None:
        ufs = UnknownFieldSet(m)
        found.update(f"{m.DESCRIPTOR.name}.{ufs[i].field_number}" for i in range(len(ufs)))
        for f, value in m.ListFields():
            if f.message_type is None:
                continue
            if f.message_type.GetOptions().map_entry:
                if f.message_type.fields_by_name["value"].message_type is not None:
                    for item in value.values():
                        walk(item)
            elif f.is_repeated:
                for item in value:
                    walk(item)
            else:
                walk(value)

    walk(msg)
    return sorted(found)


SEQUENCE_NUMBER_FIELD = felix.ToDataplane.DESCRIPTOR.fields_by_name["sequence_number"].number


def payload_number(raw: bytes) -> int | None:
    """The field number of a ToDataplane's payload, read from the wire without decoding it.

    Needed before decoding: which release's classes can decode a frame depends on its payload.
    None if the bytes are not a sequence of well-formed fields or carry no payload.
    """
    pos, end, found = 0, len(raw), None
    try:
        while pos < end:
            key, pos = _varint(raw, pos)
            number, wire_type = key >> 3, key & 7
            if wire_type == 0:
                _, pos = _varint(raw, pos)
            elif wire_type == 1:
                pos += 8
            elif wire_type == 2:
                length, pos = _varint(raw, pos)
                pos += length
            elif wire_type == 5:
                pos += 4
            else:
                return None  # groups: not used by felixbackend.proto
            if number != SEQUENCE_NUMBER_FIELD:
                found = number  # a oneof's last occurrence wins
    except IndexError:
        return None
    return found if pos == end else None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _has_unknown(msg: Message) -> bool:
    """True if `msg` holds unknown fields anywhere; they are discarded from `msg` either way."""
    before = msg.ByteSize()
    msg.DiscardUnknownFields()
    return msg.ByteSize() != before


@dataclass
class Reading:
    """What one release makes of a frame."""

    msg: felix.ToDataplane | None  # the v3.33 form; None if it did not decode
    unknown: tuple[str, ...] = ()
    rejected: str = ""  # why the content cannot be this release's
    error: str = ""
    verbatim: bool = False  # msg is exactly the input bytes (forward them as they are)

    @property
    def clean(self) -> bool:
        return self.msg is not None and not self.unknown and not self.rejected


class FelixDecoder:
    """One Felix stream (one felix-shim process: Felix's release cannot change under it)."""

    def __init__(self, forced: str | None = None) -> None:
        if forced is not None and forced not in RELEASES:
            raise ValueError(f"unsupported Felix release {forced!r} (supported: {', '.join(RELEASES)})")
        self.forced = forced
        self.candidates: list[str] = [forced] if forced else list(RELEASES)
        self.calico_version = ""
        self.hint: str | None = None
        self.settled_by = ""  # why a tie was broken, if one was
        self.frames = 0
        self.unknown: dict[str, int] = {}
        self.host_metadata = HostMetadataMerge()
        self._lock = threading.Lock()
        self._report = b""
        self._announced = False
        self._refresh_report()

    # -- the release ----------------------------------------------------------------------------
    @property
    def release(self) -> str:
        return self._preferred(self.candidates)

    def _preferred(self, releases: list[str]) -> str:
        return self.hint if self.hint in releases else releases[0]

    # -- frames from Felix ----------------------------------------------------------------------
    def decode(self, raw: bytes) -> tuple[bytes, felix.ToDataplane]:
        """The frame in v3.33 form: the bytes to forward and the message."""
        self.frames += 1
        if self.candidates == [NEWEST]:  # the common case, settled: v3.33 bytes go on as they are
            fast = self._read_newest(raw, {})
            if fast.clean and fast.msg is not None and fast.msg.WhichOneof("payload") not in (
                    None, "config_update", "in_sync"):
                return raw, fast.msg
        number = payload_number(raw)
        shared: dict[object, Reading] = {}  # readings that several releases share
        readings = {r: self._read(r, raw, number, shared) for r in self.candidates}
        clean = [r for r in self.candidates if readings[r].clean]
        before = list(self.candidates)
        if clean:
            self.candidates = clean
            if len(clean) > 1 and len({id(readings[r]) for r in clean}) > 1:
                encodings = {readings[r].msg.SerializeToString(deterministic=True)  # type: ignore[union-attr]
                             for r in clean}
                if len(encodings) > 1:
                    pick = self._preferred(clean)
                    self.candidates = [pick]
                    self.settled_by = (f"frame {self.frames} reads differently as {', '.join(clean)}; "
                                       f"taking {pick} ({'CalicoVersion' if pick == self.hint else 'newest'})")
                    log.warning("Felix release: %s", self.settled_by)
            chosen = self._preferred(self.candidates)
        else:
            usable = [r for r in self.candidates if readings[r].msg is not None]
            if not usable:
                raise UndecodableFrame(self._explain(raw, readings))
            chosen = self._preferred(usable)
        reading = readings[chosen]
        msg = reading.msg
        assert msg is not None
        payload = msg.WhichOneof("payload")
        # Without a payload the outbox skips the frame and logs it (once per field number).
        for where in reading.unknown:
            self._count_unknown(where, chosen, log_it=payload is not None)
        if reading.rejected:
            self._count_unknown(f"content: {reading.rejected}", chosen)
        if payload is None and not reading.unknown:
            self._count_unknown("ToDataplane (no payload)", chosen, log_it=False)
        self._after(payload, msg, raw, number)
        if self.candidates != before or payload == "in_sync":
            self._refresh_report(announce=payload == "in_sync")
        if payload is None:
            return raw, self._with_unknown_fields(raw, msg)
        data = raw if reading.verbatim else msg.SerializeToString()
        return data, msg

    @staticmethod
    def _with_unknown_fields(raw: bytes, msg: felix.ToDataplane) -> felix.ToDataplane:
        """For a frame without a known payload: the message with its unknown fields, which the
        outbox names when it skips the frame."""
        try:
            return felix.ToDataplane.FromString(raw)
        except DecodeError:
            return msg

    def _read(self, release: str, raw: bytes, number: int | None, shared: dict[object, Reading]) -> Reading:
        split_hosts = RELEASES.index(release) >= RELEASES.index(LAST_SPLIT_HOST_METADATA)
        if split_hosts and number in HOST_METADATA_PAYLOADS:
            return self._read_host_metadata(release, raw)
        if number in schema(release).changed_payloads:
            return self._read_converted(release, raw)
        newest = self._read_newest(raw, shared)
        signature = schema(release).payload_signatures.get(number) if number is not None else None
        if newest.msg is None or signature == schema(NEWEST).payload_signatures.get(number):  # type: ignore[arg-type]
            return newest
        # The release declares this payload with fewer fields than v3.33: same meaning, but a
        # field only newer releases send rules the release out.
        key = ("narrower", signature)
        if key not in shared:
            cls = schema(release).to_dataplane
            unknown = tuple(unknown_fields(cls.FromString(raw))) if _has_unknown(cls.FromString(raw)) else ()
            shared[key] = Reading(newest.msg, unknown or newest.unknown, verbatim=newest.verbatim)
        return shared[key]

    def _read_newest(self, raw: bytes, shared: dict[object, Reading]) -> Reading:
        if NEWEST in shared:
            return shared[NEWEST]
        try:
            msg = felix.ToDataplane.FromString(raw)
        except DecodeError as exc:
            reading = Reading(None, error=str(exc) or "DecodeError")
        else:
            unknown = tuple(unknown_fields(felix.ToDataplane.FromString(raw))) if _has_unknown(msg) else ()
            reading = Reading(msg, unknown, verbatim=not unknown)
        shared[NEWEST] = reading
        return reading

    def _read_converted(self, release: str, raw: bytes) -> Reading:
        cls = schema(release).to_dataplane
        try:
            old = cls.FromString(raw)
        except DecodeError as exc:
            return Reading(None, error=str(exc) or "DecodeError")
        unknown = tuple(unknown_fields(cls.FromString(raw))) if _has_unknown(old) else ()
        upgrader = Upgrader(schema(release))
        out = felix.ToDataplane()
        try:
            upgrader.convert(old, out)
        except NotThisRelease as exc:
            return Reading(out, unknown, rejected=str(exc))
        return Reading(out, unknown + tuple(upgrader.unknown))

    def _read_host_metadata(self, release: str, raw: bytes, commit: bool = False) -> Reading:
        cls = schema(release).to_dataplane
        try:
            old: Any = cls.FromString(raw)
        except DecodeError as exc:
            return Reading(None, error=str(exc) or "DecodeError")
        unknown = tuple(unknown_fields(cls.FromString(raw))) if _has_unknown(old) else ()
        payload = old.WhichOneof("payload")
        out = self.host_metadata.apply(payload, getattr(old, payload), commit=commit)
        out.sequence_number = old.sequence_number
        return Reading(out, unknown)

    def _after(self, payload: str | None, msg: felix.ToDataplane, raw: bytes, number: int | None) -> None:
        """Bookkeeping once the frame's reading is chosen."""
        if payload == "config_update":
            version = msg.config_update.config.get("CalicoVersion", "")
            if version != self.calico_version:
                self.calico_version = version
                self.hint = release_of_version(version) if version else None
                self._refresh_report()
        last_split = RELEASES.index(LAST_SPLIT_HOST_METADATA)
        # Keep the host-metadata merge current while a release that needs it is possible.
        if number in HOST_METADATA_PAYLOADS and any(RELEASES.index(r) >= last_split for r in self.candidates):
            split = next(r for r in self.candidates if RELEASES.index(r) >= last_split)
            self._read_host_metadata(split, raw, commit=True)

    def _explain(self, raw: bytes, readings: dict[str, Reading]) -> str:
        said: dict[str, list[str]] = {}  # what a release made of the frame -> those releases
        for r in RELEASES:
            reading = readings.get(r) or self._read(r, raw, payload_number(raw), {})
            if reading.error:
                what = reading.error
            elif reading.rejected:
                what = reading.rejected
            else:
                what = f"unknown fields {', '.join(reading.unknown)}" if reading.unknown else "reads cleanly"
                if r not in self.candidates:
                    what += " but earlier frames ruled it out"
            said.setdefault(what, []).append(r)
        return (f"undecodable felix.ToDataplane ({len(raw)} bytes) under every possible Felix release "
                f"({', '.join(self.candidates)}): "
                + "; ".join(f"{', '.join(rs)}: {what}" for what, rs in said.items()))

    def _count_unknown(self, where: str, release: str, log_it: bool = True) -> None:
        first = where not in self.unknown
        self.unknown[where] = self.unknown.get(where, 0) + 1
        if first and log_it:
            log.warning("Felix sent %s, which Felix %s does not define: skipped (a newer Calico?); "
                        "counted in `vppagent state`, logged once", where, release)
        self._refresh_report()

    # -- frames to Felix ------------------------------------------------------------------------
    def for_felix(self, raw: bytes) -> bytes | None:
        """A v3.33 FromDataplane from the agent in the form every candidate release knows."""
        return from_dataplane_for(self.candidates[-1], raw)

    # -- the report -----------------------------------------------------------------------------
    def _refresh_report(self, announce: bool = False) -> None:
        if self.forced:
            how, detail = "forced", f"forced to {self.forced} (--felix-version / VPPAGENT_FELIX_VERSION)"
        elif self.settled_by:
            how, detail = ("hinted" if self.release == self.hint else "assumed"), self.settled_by
        elif len(self.candidates) == 1:
            how, detail = "detected", f"only {self.candidates[0]} reads every frame so far ({self.frames})"
        else:
            hinted = self.hint in self.candidates
            how = "hinted" if hinted else "assumed"
            why = f"CalicoVersion {self.calico_version} in ConfigUpdate" if hinted else "the newest of them"
            detail = (f"{self.frames} frames read the same as any of {', '.join(self.candidates)}; "
                      f"taking {self.release} ({why})")
        report = agent_pb2.FelixWire(
            release=self.release, how=how, candidates=self.candidates, calico_version=self.calico_version,
            detail=detail, unknown=[agent_pb2.UnknownWireItem(where=w, frames=n)
                                    for w, n in sorted(self.unknown.items())])
        with self._lock:
            self._report = report.SerializeToString()
        if (announce or len(self.candidates) == 1) and not self._announced:
            self._announced = True
            log.info("Felix release %s (%s): %s", self.release, how, detail)

    def report_bytes(self) -> bytes:
        """The current `agent.v1.FelixWire`, encoded (safe to call from any thread)."""
        with self._lock:
            return self._report
