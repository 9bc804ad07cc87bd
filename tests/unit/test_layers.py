"""Layering: `state` is the bottom layer, `policy` sits on it and knows no dataplane.

Uses the import-graph reader of test_import_graph.py (every import counts, even inside a function).
"""

from __future__ import annotations

from tests.unit.test_import_graph import edges, forbidden_imports, load_modules


def test_state_imports_nothing_above_it() -> None:
    graph = edges(load_modules())
    assert "vppagent.state.model" in graph and "vppagent.server.store" in graph, "the package was not read"
    assert forbidden_imports(graph, "vppagent.state", ("policy", "drivers", "server", "bgp", "lab")) == []


def test_policy_imports_no_dataplane_and_no_server() -> None:
    assert forbidden_imports(edges(load_modules()), "vppagent.policy", ("drivers", "server")) == []
