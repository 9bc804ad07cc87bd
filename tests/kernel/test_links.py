"""links.link_indexes against glibc's if_nameindex(3), in the test's own namespace (no root: a
link dump needs no privilege), and with more links than one dump message holds when root can
make a namespace."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading

import pytest

from vppagent.drivers.iptables.links import link_indexes


def test_every_link_with_its_index_as_glibc_sees_them() -> None:
    found = link_indexes()
    assert found == {name: index for index, name in socket.if_nameindex()}
    assert "lo" in found


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                    reason="needs root and iproute2: a namespace with many links")
def test_a_dump_of_many_messages_is_read_whole() -> None:
    name = f"vpa-links-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=60)
    try:
        batch = "".join(f"link add vl{i} type veth peer name vp{i}\n" for i in range(300))
        subprocess.run(["ip", "-n", name, "-batch", "-"], input=batch, text=True, check=True, timeout=120)
        seen: dict[str, object] = {}

        def inside() -> None:  # a thread of its own enters the namespace; this one stays
            from pyroute2 import netns as pyroute2_netns

            pyroute2_netns.setns(name, flags=0)
            seen["ours"] = link_indexes()
            seen["glibc"] = {n: i for i, n in socket.if_nameindex()}

        thread = threading.Thread(target=inside)
        thread.start()
        thread.join(60)
        assert len(seen["ours"]) == 601  # type: ignore[arg-type]
        assert seen["ours"] == seen["glibc"]
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=60)
