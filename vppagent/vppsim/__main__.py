"""``python -m vppagent.vppsim --socket PATH [--vpp-version 25.10|26.06]``: run an emulated VPP until interrupted."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from vppagent.unix_socket import SocketPathError
from vppagent.vppsim.release import DEFAULT_RELEASE, RELEASES
from vppagent.vppsim.server import VppSim


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vppagent.vppsim", description=__doc__)
    parser.add_argument("--socket", required=True, help="path of the API socket to listen on")
    parser.add_argument("--vpp-version", choices=sorted(RELEASES), default=DEFAULT_RELEASE,
                        help=f"the VPP release to play (default {DEFAULT_RELEASE})")
    parser.add_argument("--no-vhost-net", action="store_true",
                        help="emulate a host without /dev/vhost-net (tap creation fails with -11)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        sim = VppSim(args.socket, vpp_version=args.vpp_version).start()
    except SocketPathError as exc:
        parser.exit(2, f"python -m vppagent.vppsim: --socket {exc}\n")
    try:
        sim.faults.no_vhost_net = args.no_vhost_net
        logging.getLogger(__name__).info("vppsim (VPP %s) listening on %s", args.vpp_version, args.socket)
        stop.wait()
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
