"""The incremental index: any sequence of watch-like changes gives what reading everything at once gives."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.services.test_model import NODE, NODE_ADDRESSES, keyed, service_objects, slice_objects
from vppagent.services.index import ServiceIndex, desired_services
from vppagent.services.model import object_key


@st.composite
def slices_that_collide(draw: st.DrawFn) -> dict[str, Any]:
    """Few names, so that a put replaces a slice (possibly moving it to another service); some unreadable."""
    obj = draw(slice_objects())
    obj["metadata"]["name"] = draw(st.sampled_from(["sl0", "sl1"]))
    if obj["endpoints"] and draw(st.integers(0, 9)) == 0:
        obj["endpoints"][0]["addresses"] = ["not-an-ip"]
    return obj


@st.composite
def services_sometimes_unreadable(draw: st.DrawFn) -> dict[str, Any]:
    obj = draw(service_objects())
    if draw(st.integers(0, 9)) == 0:
        obj["spec"]["externalIPs"] = ["300.1.1.1"]
    return obj


OPS = st.one_of(
    st.tuples(st.just("put_service"), services_sometimes_unreadable()),
    st.tuples(st.just("remove_service"), service_objects()),
    st.tuples(st.just("put_slice"), slices_that_collide()),
    st.tuples(st.just("remove_slice"), slices_that_collide()),
    st.tuples(st.just("set_node"), st.sampled_from([(NODE, NODE_ADDRESSES), ("node-b", ("192.168.1.11",)), ("", ())])),
    st.tuples(st.just("replace_services"), st.lists(services_sometimes_unreadable(), max_size=3)),
    st.tuples(st.just("replace_slices"), st.lists(slices_that_collide(), max_size=3)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(OPS, max_size=25))
def test_changes_one_by_one_equal_reading_everything(ops: list[tuple[str, Any]]) -> None:
    index = ServiceIndex(NODE_ADDRESSES, NODE)
    services: dict[str, dict[str, Any]] = {}
    slices: dict[str, dict[str, Any]] = {}
    node = (NODE, NODE_ADDRESSES)
    for op, arg in ops:
        before = dict(index.entries)
        if op == "put_service":
            services[object_key(arg)] = arg
            changed = index.put_service(object_key(arg), arg)
        elif op == "remove_service":
            services.pop(object_key(arg), None)
            changed = index.remove_service(object_key(arg))
        elif op == "put_slice":
            slices[object_key(arg)] = arg
            changed = index.put_slice(object_key(arg), arg)
        elif op == "remove_slice":
            slices.pop(object_key(arg), None)
            changed = index.remove_slice(object_key(arg))
        elif op == "set_node":
            node = arg
            changed = index.set_node(*arg)
        elif op == "replace_services":
            services = keyed(*arg)
            changed = index.replace(services=services)
        else:
            slices = keyed(*arg)
            changed = index.replace(slices=slices)
        assert index.entries == desired_services(services, slices, node[1], node[0]), op
        assert changed == (index.entries != before), op


def test_a_slice_relabelled_to_another_service_leaves_the_first() -> None:
    def svc(name: str, ip: str) -> dict[str, Any]:
        return {"metadata": {"namespace": "a", "name": name}, "spec": {"clusterIPs": [ip], "ports": [{"port": 80}]}}

    def sl(owner: str) -> dict[str, Any]:
        return {"metadata": {"namespace": "a", "name": "sl0", "labels": {"kubernetes.io/service-name": owner}},
                "addressType": "IPv4", "ports": [{"port": 8080}], "endpoints": [{"addresses": ["10.65.0.2"]}]}

    index = ServiceIndex()
    index.replace(services=keyed(svc("x", "10.96.0.1"), svc("y", "10.96.0.2")), slices=keyed(sl("x")))
    assert [index.entries[k].report()["backends"] for k in ("a/x", "a/y")] == [["10.65.0.2:8080"], []]
    assert index.put_slice("a/sl0", sl("y"))
    assert [index.entries[k].report()["backends"] for k in ("a/x", "a/y")] == [[], ["10.65.0.2:8080"]]
