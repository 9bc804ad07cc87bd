"""sessions.judge_again: the ACLs of every interface holding ours applied again as they are (a new
policy epoch with reclassify-sessions on), and nothing else touched."""

from __future__ import annotations

from typing import Any

from vppagent.drivers.vpp.api.connection import ApiRefused
from vppagent.drivers.vpp.api.types import DENY_ALL
from vppagent.drivers.vpp.programmed import InterfaceInfo, Programmed
from vppagent.drivers.vpp.sessions import judge_again

OURS, OTHER, FOREIGN = 3, 4, 9


class Binds:
    """The one write judge_again makes, recorded (refused for `refuse`)."""

    def __init__(self, refuse: int | None = None) -> None:
        self.made: list[tuple[int, int | None, int | None]] = []
        self.refuse = refuse

    def set_acl_list(self, sw_if_index: int, acl_in: int | None, acl_out: int | None) -> None:
        if sw_if_index == self.refuse:
            raise ApiRefused("acl_interface_set_acl_list", -1, "refused")
        self.made.append((sw_if_index, acl_in, acl_out))


def programmed() -> Programmed:
    state = Programmed(acls={OURS: DENY_ALL, OTHER: DENY_ALL}, foreign_acls={FOREIGN})

    def interface(index: int, acls_in: list[int], acls_out: list[int]) -> None:
        state.interfaces[index] = InterfaceInfo(index, f"if{index}", "", "loopback", acls_in, acls_out)

    interface(1, [OURS], [OTHER])  # ours both ways
    interface(2, [], [OURS])  # ours on output only
    interface(5, [OURS], [FOREIGN])  # a foreign ACL beside ours: left as it is
    interface(6, [OURS, FOREIGN], [])  # two on input: left as it is
    interface(7, [FOREIGN], [])  # none of ours
    interface(8, [], [])
    return state


def test_each_interface_holding_only_ours_gets_them_again_as_they_are() -> None:
    binds = Binds()
    assert judge_again(binds, programmed()) is None  # type: ignore[arg-type]
    assert binds.made == [(1, OURS, OTHER), (2, None, OURS)]


def test_a_refusal_is_named_and_ends_it() -> None:
    binds: Any = Binds(refuse=1)
    problem = judge_again(binds, programmed())
    assert problem is not None and "refused" in problem
    assert binds.made == []
