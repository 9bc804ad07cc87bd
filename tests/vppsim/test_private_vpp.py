"""The private VPP the realvpp tests start (``tests/realvpp/__init__.py``): its own runtime directory and
sockets, answering, and nothing left behind once stopped."""

from __future__ import annotations

import os

import pytest
from vpp_papi import VPPApiClient

from tests.realvpp import RUNTIME_ROOT, PrivateVpp, unavailable_reason

pytestmark = pytest.mark.realvpp


def test_a_private_vpp_answers_and_leaves_nothing_behind() -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"no private VPP: {reason}")
    instance = PrivateVpp()
    vpp = instance.start()
    try:
        assert instance.dir.parent == RUNTIME_ROOT and instance.dir.is_dir()
        assert oct(instance.dir.stat().st_mode & 0o777) == "0o700"
        assert vpp.cli("show version").startswith("vpp v")
        client = VPPApiClient(server_address=vpp.socket_path, bootstrapapi=True, read_timeout=5)
        client.connect("private-vpp-test")
        assert client.api.control_ping().retval == 0
        client.disconnect()
        assert instance.proc is not None
        pid = instance.proc.pid
        assert os.getsid(pid) == pid  # its own session: a signal to the test run's group misses it
    finally:
        instance.stop()
    assert not instance.dir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
