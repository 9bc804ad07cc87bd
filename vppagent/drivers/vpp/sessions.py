"""The ACL plugin's `reclassify-sessions` setting: what an ACL change does to established flows
(docs/vpp-driver.md, "The session rule").

On, every ACL change bumps a policy epoch of the (interface, direction)s it touches, and a packet
that finds a session of an older epoch in the direction that made it deletes it and is judged
again (`acl.c`, `dataplane_node.c` `stale_session_deleted`); off (VPP's default), sessions survive
in-place changes and a rebind clears them. The setting has no binary API: the CLI sets it
(`set acl-plugin reclassify-sessions N`) and `show acl-plugin sessions` prints it
(`Reclassify sessions: N`). VPP forgets it when it restarts, so the driver sets it on every
connection.

With it on, the driver does not move interfaces to another ACL index to clear sessions
(classifier/chains.py `clears`): a change of the list bound makes the older sessions stale. That
holds for every session VPP holds once each was made, or judged again, with it on: VPP found with
it on (set by an earlier connection of ours), or found off holding no session (a fresh VPP). Found
off holding sessions (an agent run with it off before), some may be holes the off rule left (a
clear deletes at most 100): `judge_again` re-applies each interface's ACLs as they are, a new
policy epoch with the setting on, so each of those sessions is judged again at its next packet.
Until that is done the driver clears as it does with the setting off.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused
from vppagent.drivers.vpp.programmed import Programmed

RECLASSIFY_SET = "set acl-plugin reclassify-sessions {}"
RECLASSIFY_SHOW = "show acl-plugin sessions"
RECLASSIFY_SHOWN = "Reclassify sessions: {}"
# acl.c acl_plugin_show_sessions: "Sessions total: add A - del D = N" (N: sessions alive or being purged)
SESSIONS_TOTAL = re.compile(r"^Sessions total: add \d+ - del \d+ = (\d+)$")


@dataclass(frozen=True)
class SessionRule:
    """What `set_reclassify` found and made. `problem`: None when VPP holds the setting as wanted,
    else why not; `rejudged`: VPP judges every session it holds again after an ACL change (the
    setting is on, and was on when each of them was made)."""
    problem: str | None
    rejudged: bool


def shows(calls: VppCalls, value: int) -> bool:
    """Whether VPP's `show acl-plugin sessions` prints the setting as `value`."""
    return _shows(_show(calls), value)


def _show(calls: VppCalls) -> list[str]:
    return [line.strip() for line in calls.cli(RECLASSIFY_SHOW).splitlines()]


def _shows(lines: list[str], value: int) -> bool:
    return RECLASSIFY_SHOWN.format(value) in lines


def _sessions(lines: list[str]) -> int | None:
    """The sessions VPP holds, None when its output does not say."""
    for line in lines:
        found = SESSIONS_TOTAL.match(line)
        if found:
            return int(found.group(1))
    return None


def set_reclassify(calls: VppCalls, on: bool) -> SessionRule:
    """Make VPP's setting `on` (written only when it is not so already: a restarted agent finds it
    set) and read it back. VppConnectionLost passes through."""
    value = int(on)
    command = RECLASSIFY_SET.format(value)
    try:
        lines = _show(calls)
        if _shows(lines, value):
            return SessionRule(None, rejudged=on)
        # Found otherwise: sessions VPP holds now were made with the setting off.
        rejudged = on and _sessions(lines) == 0
        answer = calls.cli(command, changes=True).strip()
        if shows(calls, value):
            return SessionRule(None, rejudged=rejudged)
    except ApiRefused as exc:
        return SessionRule(str(exc), rejudged=False)
    return SessionRule(f"VPP did not take {command!r} ({answer or 'no answer'}): {RECLASSIFY_SHOW!r} does not "
                       f"show {RECLASSIFY_SHOWN.format(value)!r}", rejudged=False)


def judge_again(calls: VppCalls, programmed: Programmed) -> str | None:
    """Every interface holding our ACLs gets its ACLs again as they are (with the setting on, a
    new policy epoch: its sessions are judged again at their next packet); None when done, else
    why not. Interfaces holding an ACL not ours, or more than one per direction, are left as they
    are (a foreign ACL is never written back or dropped here; a bind the convergence makes there is
    a new epoch too). VppConnectionLost passes through."""
    for sw_if_index in sorted(programmed.users_of_our_acls()):
        info = programmed.interfaces[sw_if_index]
        acl_in, acl_out = programmed.binding(sw_if_index)
        if (info.acls_in, info.acls_out) != (_vector(acl_in), _vector(acl_out)):
            continue
        try:
            calls.set_acl_list(sw_if_index, acl_in, acl_out)
        except ApiRefused as exc:
            return str(exc)
    return None


def _vector(acl: int | None) -> list[int]:
    return [] if acl is None else [acl]
