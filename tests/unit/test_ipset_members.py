from __future__ import annotations

import pytest

from vppagent.state.ipset import IPSet, IPSetType, MemberError, canonical_member


@pytest.mark.parametrize(("kind", "raw", "canonical"), [
    (IPSetType.IP, "10.0.0.1", "10.0.0.1"),
    (IPSetType.IP, "10.0.0.0/28", "10.0.0.0"),  # IP sets keep the address only, never expand
    (IPSetType.IP, "FD00::0001", "fd00::1"),
    (IPSetType.NET, "10.0.0.7/29", "10.0.0.0/29"),
    (IPSetType.NET, "10.0.0.7", "10.0.0.7/32"),
    (IPSetType.NET, "fd00::1", "fd00::1/128"),
    (IPSetType.IP_AND_PORT, "10.0.0.1,TCP:80", "10.0.0.1,tcp:80"),
    (IPSetType.IP_AND_PORT, "fd00::1,udp:053", "fd00::1,udp:53"),
])
def test_canonical_forms(kind: IPSetType, raw: str, canonical: str) -> None:
    assert canonical_member(kind, raw) == canonical


@pytest.mark.parametrize(("kind", "raw"), [
    (IPSetType.IP, "10.0.0.256"), (IPSetType.NET, "10.0.0.0/33"),
    (IPSetType.IP_AND_PORT, "10.0.0.1,icmp:1"), (IPSetType.IP_AND_PORT, "10.0.0.1,tcp:70000"),
    (IPSetType.IP_AND_PORT, "10.0.0.1"),
])
def test_bad_members_raise_naming_the_member(kind: IPSetType, raw: str) -> None:
    with pytest.raises(MemberError, match="member"):
        canonical_member(kind, raw)


def test_delta_adds_then_removes_in_canonical_form() -> None:
    s = IPSet.build("s", IPSetType.NET, ["10.0.0.1/32", "10.0.1.0/24"])
    s = s.with_delta(added=["10.0.0.2", "10.0.0.3"], removed=["10.0.0.1", "10.0.0.3/32"])
    assert s.members == {"10.0.1.0/24", "10.0.0.2/32"}
    assert not s.invalid


def test_invalid_members_are_kept_visible() -> None:
    s = IPSet.build("s", IPSetType.IP, ["10.0.0.1", "bogus"])
    assert s.invalid == ("bogus",)
    assert s.members == {"10.0.0.1"}
