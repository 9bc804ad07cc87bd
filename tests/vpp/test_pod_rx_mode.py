"""af_packet pod interfaces in interrupt rx-mode (pods/rxmode.py): set before admin up at CNI Add,
and set again by a resync on a pod interface found in another mode, writing nothing when all are
so. The resync check runs on the emulator and on a real VPP (an af_packet interface on a veth)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.vpp.helpers import FakePlumbing, Target, make_driver, pod_spec, state_of, wkey
from vppagent.drivers.vpp.api.calls import RX_MODE_INTERRUPT
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.lab import builders as b

RX_MODE_POLLING = 1
CREATE = {"mode": 1, "hw_addr": "ee:ee:ee:ee:ee:ee", "use_random_hw_addr": False, "rx_frame_size": 0,
          "tx_frame_size": 0, "rx_frames_per_block": 0, "tx_frames_per_block": 0, "flags": 3,
          "num_rx_queues": 1, "num_tx_queues": 1}


def rx_modes(target: Target, sw_if_index: int) -> list[int]:
    return [int(d.mode) for d in target.raw.api.sw_interface_rx_placement_dump(sw_if_index=sw_if_index)]


@pytest.fixture
def host_links(target: Target) -> Iterator[list[str]]:
    """Names for af_packet's host interfaces: veths on a real VPP (root), names alone for the emulator."""
    if target.sim is None and shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed: no veth for af_packet on a real VPP")
    names = [f"vrx{uuid.uuid4().hex[:6]}" for _ in range(2)]
    made: list[str] = []
    try:
        for name in names:
            if target.sim is None:
                result = subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"],
                                        capture_output=True, text=True, check=False)
                if result.returncode != 0:
                    pytest.skip(f"cannot make a veth for af_packet: {result.stderr.strip()}")
                made.append(name)
                subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield names
    finally:
        for name in names:
            if target.sim is None:
                with contextlib.suppress(Exception):
                    for link in target.raw.api.af_packet_dump():
                        if link.host_if_name == name:  # its source guard first (Target.clear_input_classifiers)
                            target.clear_input_classifiers(int(link.sw_if_index))
                    target.raw.api.af_packet_delete(host_if_name=name)
        for name in made:
            subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


def test_a_resync_puts_polled_pod_interfaces_in_interrupt_mode_and_leaves_others(
        target: Target, host_links: list[str]) -> None:
    api = target.raw.api
    pod, foreign = (int(api.af_packet_create_v3(host_if_name=name, **CREATE).sw_if_index) for name in host_links)
    api.sw_interface_tag_add_del(is_add=True, sw_if_index=pod, tag=workload_tag(wkey("ns/pod0")))
    for sw_if_index in (pod, foreign):  # as an operator's `set interface rx-mode ... polling` leaves them
        assert api.sw_interface_set_rx_mode(sw_if_index=sw_if_index, queue_id_valid=False, queue_id=0,
                                            mode=RX_MODE_POLLING).retval == 0
    state = state_of([b.config({}), b.profile("kns.ns", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
                      b.workload("ns/pod0", "cali0", ipv4=["10.65.0.10/32"], profiles=["kns.ns"])])
    driver = make_driver(target)
    try:
        assert driver.resync(state).ok
        assert rx_modes(target, pod) == [RX_MODE_INTERRUPT], "the pod's queue"
        assert rx_modes(target, foreign) == [RX_MODE_POLLING], "not a pod interface: not ours to change"
        assert driver.resync(state).writes == 0, "nothing to change: nothing written"
    finally:
        driver.close()


def test_cni_add_sets_interrupt_mode_before_admin_up(sim_target: Target) -> None:
    driver = make_driver(sim_target, pod_interface="af_packet", plumbing=FakePlumbing())
    sent: list[tuple[str, Any]] = []
    call = driver.conn.call

    def recording(message: str, **fields: Any) -> Any:
        sent.append((message, fields.get("sw_if_index")))
        return call(message, **fields)

    driver.conn.call = recording  # type: ignore[method-assign]
    try:
        driver.resync(state_of([b.config({})]))
        driver.attach_pod(pod_spec("ns/a", ["10.65.0.2/32"]))
        (sw_if_index,) = {s for m, s in sent if m == "sw_interface_set_rx_mode"}
        order = [m for m, s in sent if s == sw_if_index and m in ("sw_interface_set_rx_mode", "sw_interface_set_flags")]
        assert order == ["sw_interface_set_rx_mode", "sw_interface_set_flags"]
        assert rx_modes(sim_target, sw_if_index) == [RX_MODE_INTERRUPT]
    finally:
        driver.close()
