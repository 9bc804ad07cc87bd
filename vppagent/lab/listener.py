"""The server in each lab pod: answers on every listed TCP and UDP port with the pod's name.

    python -m vppagent.lab.listener NAME tcp/80 udp/53 ...

A TCP client reads one line, `NAME tcp/80 from ADDRESS` (the source address the pod saw), and the
server closes; a UDP datagram gets that line back. Probes check the line, so a connection that
reached some other pod (or a stray listener) does not count as allowed, and flows to Services are
checked for the source the backend saw (the client's own address, or a node's source-NAT address).
Standard library only: it starts fast, once per pod. Prints `ready` once every port is bound, so
the lab never probes before the pod listens.
"""

from __future__ import annotations

import selectors
import signal
import socket
import sys


def banner(name: str, proto: str, port: int, peer: str) -> bytes:
    return f"{name} {proto}/{port} from {peer}\n".encode()


def read_banner(line: str) -> tuple[str, str | None]:
    """A line `banner` made: its `NAME PROTO/PORT` part, and the source address the pod saw (None
    when the line names none)."""
    who, sep, peer = line.partition(" from ")
    return who, (peer if sep else None)


def serve(name: str, ports: list[tuple[str, int]]) -> None:
    selector = selectors.DefaultSelector()
    for proto, port in ports:
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        if proto == "tcp":
            sock.listen(128)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, (proto, port, sock))
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            proto, port, sock = key.data
            try:
                if proto == "tcp":
                    conn, peer = sock.accept()
                    with conn:
                        conn.settimeout(1.0)
                        conn.sendall(banner(name, proto, port, peer[0]))
                else:
                    _, peer = sock.recvfrom(2048)
                    sock.sendto(banner(name, proto, port, peer[0]), peer)
            except OSError:
                continue  # a client that went away early; keep serving the others


def main(argv: list[str]) -> int:
    if len(argv) < 1:
        print("usage: python -m vppagent.lab.listener NAME [tcp/PORT|udp/PORT ...]", file=sys.stderr)
        return 2
    ports = []
    for text in argv[1:]:
        proto, _, port = text.partition("/")
        if proto not in ("tcp", "udp") or not port.isdigit():
            print(f"bad port {text!r}: write tcp/80 or udp/53", file=sys.stderr)
            return 2
        ports.append((proto, int(port)))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(argv[0], ports)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
