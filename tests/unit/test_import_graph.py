"""The import graph of `vppagent` (every module but the generated `vppagent/gen`), read with `ast`.

Every import counts, wherever it is written (module level, inside a function, under
TYPE_CHECKING): an import inside a function still couples the two modules. `from a.b import c`
is an edge to `a.b.c` when that is a module, else to `a.b`.

Rules:
- no import cycles among vppagent modules;
- `vppagent.state` (the bottom layer) imports nothing from policy, drivers, server, bgp, lab;
- `vppagent.policy` imports nothing from drivers or server;
- `vpp_papi` is imported only by the VPP driver's `api/` package (the client) and by the emulator
  `vppagent.vppsim` (which speaks VPP's wire format with vpp_papi's own serializer in codec.py,
  and hands tests a connected client in pytest_plugin.py);
- only `vppagent/drivers/vpp/api/calls.py` (one request each) and `api/batches.py` (pipelines) build
  VPP requests: no other module passes a message name (a string literal) to a connection's
  `call(...)` or `dump(...)`, or makes an `ApiRequest(...)` of one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "vppagent"
GENERATED = "vppagent.gen"
REQUEST_BUILDERS = {"vppagent.drivers.vpp.api.calls", "vppagent.drivers.vpp.api.batches"}


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    imports: set[str] = field(default_factory=set)  # every name imported (`a.b.c`), vppagent or not


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_generated(name: str) -> bool:
    return name == GENERATED or name.startswith(GENERATED + ".")


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.name.split(".")
    if module.path.name != "__init__.py":
        package = package[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def load_modules(package: Path = PACKAGE) -> dict[str, Module]:
    """Every module of `package` (a directory named like the package, in its source root)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        name = _module_name(path, package.parent)
        if _is_generated(name):
            continue
        modules[name] = Module(name, path, ast.parse(path.read_text(), filename=str(path)))
    for module in modules.values():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                module.imports.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, node)
                module.imports.update(f"{base}.{alias.name}" for alias in node.names)
    return modules


def edges(modules: Mapping[str, Module]) -> dict[str, set[str]]:
    """Module -> the vppagent modules it imports (a name that is not a module resolves to the
    nearest enclosing module: `from a.b import function` is an edge to `a.b`)."""
    out: dict[str, set[str]] = {}
    for name, module in modules.items():
        targets = set()
        for target in module.imports:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
        out[name] = targets
    return out


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        # iterative DFS: the graph is a few hundred modules deep at most, but recursion limits vary
        work: list[tuple[str, Iterator[str]]] = [(node, iter(sorted(graph.get(node, ()))))]
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        while work:
            current, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[current] = min(low[current], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[current])
                if low[current] == index[current]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == current:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def forbidden_imports(graph: Mapping[str, Iterable[str]], layer: str, above: Iterable[str]) -> list[str]:
    above = [f"vppagent.{p}" for p in above]
    return sorted(f"{name} imports {target}" for name, targets in graph.items() if _within(name, layer)
                  for target in targets if any(_within(target, p) for p in above))


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    found = load_modules()
    assert len(found) > 50 and "vppagent.drivers.vpp.driver" in found, "the package was not read"
    return found


def test_no_import_cycles(modules: dict[str, Module]) -> None:
    assert cycles(edges(modules)) == []


def test_state_is_the_bottom_layer(modules: dict[str, Module]) -> None:
    assert forbidden_imports(edges(modules), "vppagent.state", ("policy", "drivers", "server", "bgp", "lab")) == []


def test_policy_knows_no_dataplane_and_no_server(modules: dict[str, Module]) -> None:
    assert forbidden_imports(edges(modules), "vppagent.policy", ("drivers", "server")) == []


def test_only_the_vpp_api_package_and_the_emulator_import_vpp_papi(modules: dict[str, Module]) -> None:
    importers = {name for name, module in modules.items() if any(_within(i, "vpp_papi") for i in module.imports)}
    allowed = {name for name in importers
               if _within(name, "vppagent.drivers.vpp.api") or _within(name, "vppagent.vppsim")}
    assert importers - allowed == set()
    assert "vppagent.drivers.vpp.api.connection" in importers, "the rule must see the driver's own client"


def requests_built(module: Module) -> list[str]:
    """`x.call("message", ...)` / `x.dump("message", ...)` / `ApiRequest("message", ...)` in the
    module, as "line: message"."""
    out = []
    for node in ast.walk(module.tree):
        if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)):
            continue
        func = node.func
        if ((isinstance(func, ast.Attribute) and func.attr in ("call", "dump"))
                or (isinstance(func, ast.Name) and func.id == "ApiRequest")):
            out.append(f"{node.lineno}: {node.args[0].value}")
    return out


def test_only_the_typed_calls_build_vpp_requests(modules: dict[str, Module]) -> None:
    builders = {name: requests_built(module) for name, module in modules.items() if requests_built(module)}
    assert set(builders) == REQUEST_BUILDERS, builders
    assert sum(len(builders[b]) for b in REQUEST_BUILDERS) >= 40, "the typed calls are where the requests are"


# -- the checks themselves can fail ----------------------------------------------------------------
def test_the_cycle_finder_finds_cycles_and_only_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) == []
    assert cycles({"x": {"y"}, "y": {"x"}, "p": {"q"}, "q": {"p"}}) == [["p", "q"], ["x", "y"]]


def test_the_graph_reader_resolves_relative_names_and_functions(tmp_path: Path) -> None:
    pkg = tmp_path / "vppagent"
    (pkg / "state").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "state" / "__init__.py").write_text("")
    (pkg / "state" / "model.py").write_text("def helper(): pass\n")
    (pkg / "state" / "store.py").write_text(
        "from .model import helper\n\ndef later():\n    from vppagent.policy import compile\n")
    (pkg / "policy").mkdir()
    (pkg / "policy" / "__init__.py").write_text("")
    (pkg / "policy" / "compile.py").write_text("from vppagent.state.store import later\n")
    graph = edges(load_modules(pkg))
    assert graph["vppagent.state.store"] == {"vppagent.state.model", "vppagent.policy.compile"}
    assert cycles(graph) == [["vppagent.policy.compile", "vppagent.state.store"]]
    assert forbidden_imports(graph, "vppagent.state", ("policy",)) == [
        "vppagent.state.store imports vppagent.policy.compile"]
