"""The policy compiler's first-match lists as VPP ACL content (`api.types.AclContent`).

Rendering (DESIGN.md section 7): an allow is permit+reflect, so the answer to an allowed flow
comes back through the session the first packet created on the same interface; a deny is deny. A
list whose default is deny needs nothing more (no match drops); a default allow is a
permit+reflect "any" rule per family at the end. An empty deny list is a zero-rule ACL, which
VPP applies as "drop everything". The rules then go through `tuplemerge.steer`: the same
verdicts, in an order (with one seed rule) that keeps VPP's hash lookup keyed by destination port.
"""

from __future__ import annotations

import ipaddress

from vppagent.drivers.vpp.acl.tuplemerge import steer
from vppagent.drivers.vpp.api.types import DENY, PERMIT_REFLECT, AclContent, AclRule
from vppagent.policy.flat import CompiledList, FlatRule

ANY_PORTS = (0, 65535)
ANY_V4 = ipaddress.ip_network("0.0.0.0/0")
ANY_V6 = ipaddress.ip_network("::/0")


def rule_from_flat(rule: FlatRule) -> AclRule:
    action = PERMIT_REFLECT if rule.is_permit else DENY
    return AclRule(action, rule.src, rule.dst, rule.proto,
                   (rule.srcport_or_icmptype.first, rule.srcport_or_icmptype.last),
                   (rule.dstport_or_icmpcode.first, rule.dstport_or_icmpcode.last))


def allow_any() -> tuple[AclRule, AclRule]:
    return (AclRule(PERMIT_REFLECT, ANY_V4, ANY_V4, 0, ANY_PORTS, ANY_PORTS),
            AclRule(PERMIT_REFLECT, ANY_V6, ANY_V6, 0, ANY_PORTS, ANY_PORTS))


def rules_from_compiled(compiled: CompiledList) -> tuple[AclRule, ...]:
    rules = [rule_from_flat(r) for r in compiled.rules]
    if compiled.default_action == "allow":
        rules.extend(allow_any())
    return steer(rules)


def content_from_compiled(compiled: CompiledList) -> AclContent:
    return AclContent.of(rules_from_compiled(compiled))
