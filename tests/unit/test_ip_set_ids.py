"""A rule's IP-set ids: every field of Felix's Rule that names an IP set, and nothing else."""

from __future__ import annotations

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.state.model import ip_set_ids


def test_every_set_field_of_the_rule_message_counts() -> None:
    # Read from the message descriptor, so a field added to the proto and missed here fails.
    set_fields = [f.name for f in felix.Rule.DESCRIPTOR.fields if f.name.endswith("set_ids")]
    assert len(set_fields) >= 9
    rule = felix.Rule(**{name: [f"s:{name}"] for name in set_fields})
    assert ip_set_ids(rule) == {f"s:{name}" for name in set_fields}


def test_other_fields_are_not_sets() -> None:
    rule = felix.Rule(action="allow", src_net=["10.0.0.0/8"], dst_ports=[felix.PortRange(first=80, last=80)],
                      src_ip_set_ids=["s:a", "s:a"], dst_ip_port_set_ids=["s:b"])
    assert ip_set_ids(rule) == {"s:a", "s:b"}
