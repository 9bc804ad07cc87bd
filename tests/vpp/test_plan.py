"""The ACL plan (pure): sharing, in-place replacement, who moves when lists diverge, pinning,
spares and make-before-break order; and the canonical rendering it compares."""

from __future__ import annotations

import ipaddress

from vppagent.drivers.vpp.acl.plan import plan_acls
from vppagent.drivers.vpp.acl.render import content_from_compiled, rule_from_flat
from vppagent.drivers.vpp.api.types import DENY, DENY_ALL, PERMIT_REFLECT, AclContent, AclRule
from vppagent.policy.flat import CompiledList, FlatRule
from vppagent.policy.model import PortRange

ANY4 = ipaddress.ip_network("0.0.0.0/0")


def content(port: int) -> AclContent:
    return AclContent.of([AclRule(PERMIT_REFLECT, ANY4, ANY4, 6, (0, 65535), (port, port))])


A, B, C = content(80), content(443), content(22)


def test_identical_lists_share_one_acl_and_binding_is_one_call_per_interface() -> None:
    plan = plan_acls({}, {}, {1: (A, B), 2: (A, B), 3: (A, C)})
    assert sorted(plan.creates.values(), key=lambda c: c.digest) == sorted([A, B, C], key=lambda c: c.digest)
    assert set(plan.late_binds) == {1, 2, 3} and not plan.early_binds
    refs = {c.digest: r for r, c in plan.creates.items()}
    assert plan.late_binds[1] == plan.late_binds[2] == (refs[A.digest], refs[B.digest])
    assert plan.writes() == 3 + 3


def test_nothing_to_do_is_nothing() -> None:
    plan = plan_acls({0: A, 1: B}, {1: (0, 1), 2: (0, 1)}, {1: (A, B), 2: (A, B)})
    assert plan.writes() == 0


def test_all_users_changing_alike_replace_in_place_without_rebinding() -> None:
    plan = plan_acls({0: A, 1: B}, {1: (0, 1), 2: (0, 1)}, {1: (C, B), 2: (C, B)})
    assert plan.replaces == {0: C} and not plan.creates and not plan.early_binds and not plan.late_binds


def test_when_lists_diverge_the_unchanged_class_keeps_the_acl_and_only_the_changed_one_moves() -> None:
    plan = plan_acls({0: A, 1: B}, {1: (0, 1), 2: (0, 1), 3: (0, 1)}, {1: (A, B), 2: (A, B), 3: (C, B)})
    assert not plan.replaces
    (new_ref, new_content), = plan.creates.items()
    assert new_content == C and plan.early_binds == {3: (new_ref, 1)} and not plan.late_binds


def test_when_every_class_changes_the_largest_keeps_it_in_place() -> None:
    bound = {i: (0, None) for i in (1, 2, 3)}
    plan = plan_acls({0: A}, bound, {1: (B, None), 2: (B, None), 3: (C, None)})
    assert plan.replaces == {0: B}
    assert list(plan.creates.values()) == [C] and set(plan.early_binds) == {3}


def test_movers_never_bind_to_an_acl_that_is_replaced_in_the_same_plan() -> None:
    # ACL 0 (A) keeps 1,2 but becomes C; ACL 1 (B) keeps 3,5 and becomes A; 4 leaves ACL 1 wanting C.
    bound = {1: (0, None), 2: (0, None), 3: (1, None), 4: (1, None), 5: (1, None)}
    plan = plan_acls({0: A, 1: B}, bound, {1: (C, None), 2: (C, None), 3: (A, None), 4: (C, None), 5: (A, None)})
    assert plan.replaces == {0: C, 1: A}
    target = plan.early_binds[4][0]
    assert target is not None and target not in plan.replaces and plan.creates[target] == C, \
        "a mover binds to content already final"


def test_pinned_slots_keep_their_acl_unchanged() -> None:
    plan = plan_acls({0: A}, {1: (0, None), 2: (0, None)}, {1: (None, None), 2: (B, None)})
    assert not plan.replaces and list(plan.creates.values()) == [B] and set(plan.early_binds) == {2}
    # interfaces not mentioned at all are pinned too, and their ACLs are not deleted
    plan = plan_acls({0: A, 5: B}, {1: (0, None)}, {})
    assert plan.deletes == [5] and plan.writes() == 1


def test_spare_acls_are_reused_before_creating() -> None:
    plan = plan_acls({7: B, 8: C}, {}, {1: (C, None), 2: (A, None)})
    assert not plan.creates
    assert plan.late_binds[1] == (8, None)  # same content: no write at all
    assert plan.replaces == {7: A} and plan.late_binds[2] == (7, None)
    assert plan.writes() == 3 and not plan.deletes


def test_unbind_clears_and_then_unused_acls_go() -> None:
    plan = plan_acls({0: A, 1: B}, {1: (0, 1), 9: (0, None)}, {}, frozenset({1}))
    assert plan.late_binds == {1: (None, None)} and plan.deletes == [1]


def test_rendering_allows_as_reflect_and_default_allow_as_any_rules_per_family() -> None:
    rule = FlatRule("allow", 4, ipaddress.ip_network("10.0.0.0/8"), ANY4, 6, PortRange(0, 65535), PortRange(80, 80))
    deny = FlatRule("deny", 6, ipaddress.ip_network("fd00::/8"), ipaddress.ip_network("::/0"), 0,
                    PortRange(0, 65535), PortRange(0, 65535))
    assert rule_from_flat(rule).action == PERMIT_REFLECT and rule_from_flat(deny).action == DENY
    closed = content_from_compiled(CompiledList("e", "ingress", (rule, deny), "deny", 2))
    opened = content_from_compiled(CompiledList("e", "ingress", (rule, deny), "allow", 2))
    assert len(closed) == 2 and len(opened) == 4 and closed.digest != opened.digest
    assert [(r.action, r.proto, str(r.src)) for r in opened.rules[2:]] == [(2, 0, "0.0.0.0/0"), (2, 0, "::/0")]
    assert content_from_compiled(CompiledList("e", "egress", (), "deny", 0)) == DENY_ALL
    assert AclContent.of(closed.rules).digest == closed.digest, "the digest is a function of the rules"


def test_pods_leave_the_drop_all_placeholder_for_the_shared_acls() -> None:
    # three pods attached before Felix described them share the placeholder (index 0); ACL 1 holds A
    bound = {1: (0, 0), 2: (0, 0), 3: (0, 0), 9: (1, None)}
    plan = plan_acls({0: DENY_ALL, 1: A}, bound, {1: (A, B), 2: (A, B), 3: (A, C)})
    assert not plan.replaces, "the placeholder is not rewritten into a private copy of a list"
    refs = {c.digest: r for r, c in plan.creates.items()}
    assert sorted(refs) == sorted([B.digest, C.digest])
    assert plan.early_binds == {1: (1, refs[B.digest]), 2: (1, refs[B.digest]), 3: (1, refs[C.digest])}
    assert plan.deletes == [0]
