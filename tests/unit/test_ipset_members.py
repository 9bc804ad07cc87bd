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


def test_fast_ipv4_path_agrees_with_ipaddress() -> None:
    import ipaddress
    import random

    rng = random.Random(7)
    for _ in range(2000):
        addr = ".".join(str(rng.randrange(256)) for _ in range(4))
        length = rng.randrange(33)
        assert canonical_member(IPSetType.NET, f"{addr}/{length}") == str(
            ipaddress.ip_network(f"{addr}/{length}", strict=False))
        assert canonical_member(IPSetType.IP, f"{addr}/{length}") == addr
    for bad in ("1.2.3", "1.2.3.4.5", "01.2.3.4", "256.1.1.1", "1.2.3.4/33", "1.2.3.4/0x1", " "):
        with pytest.raises(MemberError):
            canonical_member(IPSetType.NET, bad)


def test_fold_changes_a_set_in_place_only_until_it_is_shared() -> None:
    from vppagent.lab import builders as b
    from vppagent.state.model import DataplaneState

    state = DataplaneState()
    state.apply(b.ipset("s", ["10.0.0.1"]))
    first = state.ipsets["s"]
    state.apply(b.ipset_delta("s", added=["10.0.0.2"]))
    assert state.ipsets["s"] is first, "owned by the fold: changed in place"
    shared = state.copy()
    state.apply(b.ipset_delta("s", added=["10.0.0.3"]))
    assert state.ipsets["s"] is not first, "shared by a copy: copied on write"
    assert shared.ipsets["s"].members == {"10.0.0.1/32", "10.0.0.2/32"}
    assert state.ipsets["s"].members == {"10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32"}
