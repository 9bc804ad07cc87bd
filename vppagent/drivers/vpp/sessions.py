"""The ACL plugin's `reclassify-sessions` setting: what an ACL change does to established flows
(docs/vpp-driver.md, "The session rule").

On, every ACL change bumps a policy epoch of the (interface, direction)s it touches, and a packet
that finds a session of an older epoch in the direction that made it deletes it and is judged
again (`acl.c`, `dataplane_node.c` `stale_session_deleted`); off (VPP's default), sessions survive
in-place changes and a rebind clears them. The setting has no binary API: the CLI sets it
(`set acl-plugin reclassify-sessions N`) and `show acl-plugin sessions` prints it
(`Reclassify sessions: N`). VPP forgets it when it restarts, so the driver sets it on every
connection.
"""

from __future__ import annotations

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused

RECLASSIFY_SET = "set acl-plugin reclassify-sessions {}"
RECLASSIFY_SHOW = "show acl-plugin sessions"
RECLASSIFY_SHOWN = "Reclassify sessions: {}"


def shows(calls: VppCalls, value: int) -> bool:
    """Whether VPP's `show acl-plugin sessions` prints the setting as `value`."""
    wanted = RECLASSIFY_SHOWN.format(value)
    return wanted in (line.strip() for line in calls.cli(RECLASSIFY_SHOW).splitlines())


def set_reclassify(calls: VppCalls, on: bool) -> str | None:
    """Make VPP's setting `on` (written only when it is not so already: a restarted agent finds it
    set) and read it back; None when VPP holds it, else why not. VppConnectionLost passes through."""
    value = int(on)
    command = RECLASSIFY_SET.format(value)
    try:
        if shows(calls, value):
            return None
        answer = calls.cli(command, changes=True).strip()
        if shows(calls, value):
            return None
    except ApiRefused as exc:
        return str(exc)
    return (f"VPP did not take {command!r} ({answer or 'no answer'}): {RECLASSIFY_SHOW!r} does not show "
            f"{RECLASSIFY_SHOWN.format(value)!r}")
