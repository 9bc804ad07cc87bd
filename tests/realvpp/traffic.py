"""Real packets between the lab's namespaces, and whether each arrived.

A probe is a reference-evaluator ``Packet`` sent for real from the namespace owning its source
address, by an ordinary socket bound to that address and port: TCP ``connect`` (a SYN; nobody
listens, so an admitted SYN is answered with a RST through VPP's reflect session), UDP ``sendto``,
ICMP through a raw socket (any type and code; an echo request is answered by the receiver's kernel).
Arrival is seen on the destination namespace's ``eth0`` with an AF_PACKET capture, so the verdict
is the first packet's, exactly what the evaluator decides. The answer (RST, echo reply) is recorded
too: it proves the return path (VPP's sessions) for admitted flows.

``Prober`` repeats a set of probes as new flows round after round while a test breaks something;
``Conversation`` is one TCP connection kept open across a change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.kernel.frames import ETH_P_ALL, Key, key_of, parse
from vppagent.netns import call_in_netns, enter_netns
from vppagent.policy.packet import Packet

SEND_TIMEOUT = 1.0  # a TCP connect or an echo request waits this long for the answer
ARRIVAL_WINDOW = 1.5  # from the first send; forwarding through VPP takes well under a millisecond
LATE_MARGIN = 0.3  # at least this long after the last send returned
# A probe that was answered (a RST, an echo reply) certainly arrived: while its arrival is not yet
# read from the capture, collecting goes on, up to this long. On a loaded machine the capture's
# reader can lag the packets by more than the window above; waiting for what is known to be
# there cannot turn a drop into an arrival, only stop a late read from being called a drop.
ANSWERED_PATIENCE = 5.0


@dataclass(frozen=True)
class Probe:
    packet: Packet
    source_netns: str
    target_netns: str

    @property
    def key(self) -> Key:
        return key_of(self.packet)


@dataclass(frozen=True)
class Outcome:
    probe: Probe
    arrived: bool
    answered: bool | None  # TCP: RST or SYN-ACK came back; ICMP echo: a reply; else None


def internet_checksum(data: bytes) -> int:
    """The one's-complement sum of 16-bit words (RFC 1071): IP header, ICMP, UDP and TCP checksums."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _family(pkt: Packet) -> socket.AddressFamily:
    return socket.AF_INET if pkt.family == 4 else socket.AF_INET6


def _send_tcp(pkt: Packet) -> bool:
    with socket.socket(_family(pkt), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.bind((str(pkt.src), pkt.src_port))
        sock.settimeout(SEND_TIMEOUT)
        try:
            sock.connect((str(pkt.dst), pkt.dst_port))
        except ConnectionRefusedError:
            return True
        except OSError:  # timeout, unreachable
            return False
        return True


def _send_udp(pkt: Packet) -> None:
    with socket.socket(_family(pkt), socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((str(pkt.src), pkt.src_port))
        sock.sendto(b"vppagent probe", (str(pkt.dst), pkt.dst_port))


def _send_icmp(pkt: Packet) -> bool | None:
    """Any ICMP type and code on a raw socket; an echo request waits for its reply. For ICMPv6
    the kernel fills in the checksum (it needs the pseudo-header)."""
    ident = random.getrandbits(16)
    body = struct.pack("!BBHHH", pkt.icmp_type or 0, pkt.icmp_code or 0, 0, ident, 1) + b"vppagent probe.."
    v4 = pkt.family == 4
    if v4:
        body = body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]
    echo, reply = (8, 0) if v4 else (128, 129)
    with socket.socket(_family(pkt), socket.SOCK_RAW, socket.IPPROTO_ICMP if v4 else socket.IPPROTO_ICMPV6) as sock:
        sock.bind((str(pkt.src), 0))
        sock.sendto(body, (str(pkt.dst), 0))
        if (pkt.icmp_type, pkt.icmp_code) != (echo, 0):
            return None
        deadline = time.monotonic() + SEND_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            data, address = sock.recvfrom(2048)
            icmp = data[(data[0] & 0x0F) * 4:][:8] if v4 else data[:8]  # IPv4 raw sockets see the IP header
            echo_reply = len(icmp) == 8 and icmp[0] == reply and struct.unpack("!H", icmp[4:6])[0] == ident
            if address[0] == str(pkt.dst) and echo_reply:
                return True
        return False


def send(probe: Probe) -> bool | None:
    """Send the probe's packet from inside its source namespace (on the calling thread)."""
    enter_netns(Path("/var/run/netns") / probe.source_netns)
    try:
        return _send(probe.packet)
    except OSError as exc:
        raise OSError(exc.errno, f"{probe.packet} from {probe.source_netns}: {exc.strerror}") from exc


def _send(pkt: Packet) -> bool | None:
    if pkt.proto == 6:
        return _send_tcp(pkt)
    if pkt.proto == 17:
        _send_udp(pkt)
        return None
    if pkt.proto in (1, 58):
        return _send_icmp(pkt)
    raise ValueError(f"no real sender for protocol {pkt.proto}")


class Captures:
    """One AF_PACKET capture on eth0 per namespace: what arrives there."""

    def __init__(self, namespaces: Sequence[str]) -> None:
        self.sockets = {ns: call_in_netns(Path("/var/run/netns") / ns, _capture_eth0) for ns in namespaces}

    def drain(self) -> None:
        for sock in self.sockets.values():
            with contextlib.suppress(BlockingIOError):
                while True:
                    sock.recv(65535)

    def collect(self, wanted: dict[str, set[Key]], window: float,
                arrived: frozenset[tuple[str, Key]] = frozenset(), patience: float = 0.0) -> set[tuple[str, Key]]:
        """(namespace, key) of the wanted packets seen arriving within `window` (early when all
        are); longer, up to `patience`, while one of `arrived` (known to have arrived) is unseen."""
        seen: set[tuple[str, Key]] = set()
        total = sum(len(keys) for keys in wanted.values())
        start = time.monotonic()
        socks = {self.sockets[ns]: ns for ns in wanted}
        while len(seen) < total:
            late = not arrived <= seen
            left = start + (max(window, patience) if late else window) - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(list(socks), [], [], left)
            for sock in ready:
                ns = socks[sock]
                while True:
                    try:
                        data, address = sock.recvfrom(65535)
                    except BlockingIOError:
                        break
                    if address[2] == socket.PACKET_OUTGOING:
                        continue
                    key = parse(data)
                    if key is not None and key in wanted[ns]:
                        seen.add((ns, key))
        return seen

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()


def _capture_eth0() -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind(("eth0", 0))
    sock.setblocking(False)
    return sock


def run(probes: Sequence[Probe], captures: Captures) -> list[Outcome]:
    """Every probe at once (one thread each, discarded afterwards: they end inside namespaces)."""
    captures.drain()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, len(probes)), thread_name_prefix="probe") as pool:
        answers = list(pool.map(send, probes))
    wanted: dict[str, set[Key]] = {}
    for probe in probes:
        wanted.setdefault(probe.target_netns, set()).add(probe.key)
    answered = frozenset((p.target_netns, p.key) for p, a in zip(probes, answers, strict=True) if a)
    now = time.monotonic()
    seen = captures.collect(wanted, max(started + ARRIVAL_WINDOW, now + LATE_MARGIN) - now, answered,
                            ANSWERED_PATIENCE)
    return [Outcome(p, (p.target_netns, p.key) in seen, a) for p, a in zip(probes, answers, strict=True)]


@dataclass(frozen=True)
class Round:
    started: float  # time.monotonic()
    ended: float
    outcomes: list[Outcome]
    allowed: list[bool]  # the evaluator's verdict for each outcome's packet


def renumbered(probe: Probe, round_number: int) -> Probe:
    """The probe as a new flow: TCP/UDP source port moved on per round (within 32768-60999, where
    the web probes start at 40100), so no VPP session of an earlier round answers for it."""
    pkt = probe.packet
    if not pkt.has_ports:
        return probe
    port = 32768 + (pkt.src_port - 32768 + 10 * round_number) % (60999 - 32768)
    return dataclasses.replace(probe, packet=dataclasses.replace(pkt, src_port=port))


_ROUND_NUMBERS = itertools.count()  # across probers: a later test's flows are new to VPP too


class Prober:
    """The same flows round after round on a thread of its own, while a test breaks things; each
    round's TCP and UDP are new flows (renumbered). `allowed(packet)` is the evaluator's verdict
    for the policy in force (the tests do not change it while probing)."""

    def __init__(self, probes: Sequence[Probe], captures: Captures, allowed: Callable[[Packet], bool]) -> None:
        self.probes, self.captures, self.allowed = list(probes), captures, allowed
        self.rounds: list[Round] = []
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="prober", daemon=True)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                number = next(_ROUND_NUMBERS)
                probes = [renumbered(p, number) for p in self.probes]
                started = time.monotonic()
                outcomes = run(probes, self.captures)
                self.rounds.append(Round(started, time.monotonic(), outcomes,
                                         [self.allowed(p.packet) for p in probes]))
        except BaseException as exc:  # a probe that cannot even be sent is the test's failure
            self.failure = exc

    def start(self) -> Prober:
        self._thread.start()
        return self

    def stop(self) -> list[Round]:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.rounds

    @staticmethod
    def healthy(r: Round) -> bool:
        """Every flow as the policy says, answers included."""
        return all(o.arrived == ok and o.answered in (None, o.arrived)
                   for o, ok in zip(r.outcomes, r.allowed, strict=True))

    def admitted_denied(self) -> list[str]:
        """Every moment a flow the policy denies got through: must stay empty, whatever happens."""
        return [f"t={r.started:.2f} {o.probe.packet}" for r in self.rounds
                for o, ok in zip(r.outcomes, r.allowed, strict=True) if o.arrived and not ok]

    def wait_healthy(self, after: float, timeout: float) -> Round:
        """The first healthy round that started after `after` (monotonic)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.failure is not None:
                raise AssertionError(f"the prober failed: {self.failure!r}") from self.failure
            for r in list(self.rounds):
                if r.started > after and self.healthy(r):
                    return r
            time.sleep(0.1)
        raise AssertionError(f"no healthy round within {timeout} s after t={after:.2f}: "
                             f"{[self.describe(r) for r in self.rounds if r.started > after][-3:]}")

    @staticmethod
    def describe(r: Round) -> str:
        bad = [f"{o.probe.packet} arrived={o.arrived} answered={o.answered}"
               for o, ok in zip(r.outcomes, r.allowed, strict=True)
               if o.arrived != ok or o.answered not in (None, o.arrived)]
        return f"round t={r.started:.2f}: " + ("healthy" if not bad else "; ".join(bad))


class Conversation:
    """One TCP connection from a client address to a server in another namespace, kept open
    across whatever the test does; `exchange` proves it still carries data both ways."""

    def __init__(self, client_netns: str, client_address: str, server_netns: str, server_address: str,
                 port: int) -> None:
        self.server = call_in_netns(Path("/var/run/netns") / server_netns,
                                    lambda: socket.create_server((server_address, port)))
        self.server.settimeout(5)

        def connect() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(5)
            sock.bind((client_address, 0))
            sock.connect((server_address, port))
            return sock

        self.client = call_in_netns(Path("/var/run/netns") / client_netns, connect)
        self.conn, _ = self.server.accept()
        self.conn.settimeout(5)
        self.exchange("hello")

    def exchange(self, word: str) -> None:
        """The server speaks first (the reply direction, no packet from the client before it),
        then the client."""
        for sender, receiver, text in ((self.conn, self.client, f"server {word}\n"),
                                       (self.client, self.conn, f"client {word}\n")):
            sender.sendall(text.encode())
            assert receiver.recv(100) == text.encode(), f"{text.strip()!r} did not get through"

    def __enter__(self) -> Conversation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sock in (self.client, self.conn, self.server):
            sock.close()
