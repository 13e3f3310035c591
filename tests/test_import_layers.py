"""The package's import graph has no cycles and its arrows point one way (DESIGN.md's layers).

Every module under src/agegender is parsed with ``ast``; module-level and function-level imports both count,
relative imports are resolved, and importing a package is an edge to its ``__init__``. Nothing is imported,
so the test is quick.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Collection
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "agegender"

# Layer of a module: its first name below ``agegender`` ("data", "models", "metrics", ...); the command-line
# modules (cli.py, cli_app.py, cli_*.py) form one layer "cli"; the package's own __init__ (the Python API,
# ``agegender.load``) is "api". For each layer, the layers it may import besides itself. Read top to bottom it is
# DESIGN.md's picture: data → models → training → evaluation → workflows, with inference beside evaluation
# (evaluation may use it, never the reverse), then the Python API, then cli and serve on top.
BASE = {"_compat", "_version", "errors", "registry", "labels"}  # facts every layer may use; data may use nothing else
# shared leaf modules above data: the bundled-model table, the metrics (training's validation and evaluation
# score alike) and the attribute-name matching they use
SHARED = BASE | {"bundled", "attributes", "metrics", "decode"}
ALLOWED: dict[str, set[str]] = {
    "_compat": set(),
    "_version": set(),
    "errors": set(),
    "registry": {"errors"},
    "labels": {"errors"},
    "bundled": {"errors"},
    "attributes": {"labels"},
    "decode": {"labels"},  # the one decoder of model outputs (NumPy): predict and evaluate read outputs alike
    "metrics": {"labels", "attributes", "decode"},
    "data": BASE,
    "models": SHARED | {"data"},
    "training": SHARED | {"data", "models"},
    "inference": SHARED | {"data", "models"},
    # evaluation may use training's data module (the model's own splits) and the predictor (detector crops)
    "evaluation": SHARED | {"data", "models", "training", "inference"},
    # what needs both training and evaluation: train-then-test, packaging, paper reproduction, refinement
    "workflows": SHARED | {"data", "models", "training", "inference", "evaluation"},
    "api": {"_compat", "_version", "errors", "inference"},
    "serve": SHARED | {"data", "models", "inference", "api"},
    "cli": SHARED | {"data", "models", "training", "inference", "evaluation", "workflows", "api", "serve"},
}

TEMPORARY_EDGES: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def collect_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}


def imports_of(name: str, source: str, is_package: bool, modules: Collection[str]) -> set[str]:
    """The agegender modules that module ``name`` (its ``source``; ``is_package``: an ``__init__.py``) imports
    anywhere in its body, TYPE_CHECKING blocks included."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(target: str) -> str | None:  # the longest prefix that is one of our modules
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import sub`` is an edge to pkg.sub when sub is a module, else to pkg itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            if t == ROOT or t.startswith(ROOT + "."):
                r = resolve(t)
                if r and r != name:
                    found.add(r)
    return found


def build_graph() -> dict[str, set[str]]:
    modules = collect_modules()
    return {name: imports_of(name, path.read_text(), path.name == "__init__.py", modules)
            for name, path in modules.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"
    top = parts[1]
    return "cli" if top == "cli" or top.startswith("cli_") else top


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph is small but recursion depth is not ours to rely on)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        components.append(sorted(comp))
    return components


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete cycle through the component's first module, for the failure message."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    while True:
        nxt = sorted(m for m in graph[path[-1]] if m in members)
        if start in nxt and len(path) > 1:
            return path + [start]
        fresh = [m for m in nxt if m not in seen]
        if not fresh:  # the component guarantees a way back; take the first member already seen
            back = nxt[0]
            return path[path.index(back):] + [back]
        path.append(fresh[0])
        seen.add(fresh[0])


def permitted(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    return {m: {t for t in targets if (m, t) not in TEMPORARY_EDGES} for m, targets in graph.items()}


def test_graph_sees_the_package():
    graph = build_graph()
    assert {"agegender", "agegender.cli", "agegender.data", "agegender.evaluation.evaluate"} <= graph.keys()
    assert "agegender.data.readers" in graph["agegender.data"]  # a package import is an edge to its __init__
    unknown = sorted({layer(m) for m in graph} - ALLOWED.keys())
    assert not unknown, f"new top-level parts {unknown}: give each its row in ALLOWED"


def test_the_checker_resolves_imports_and_finds_a_planted_cycle():
    modules = {"agegender", "agegender.a", "agegender.a.x", "agegender.a.y", "agegender.b"}
    src = (
        "from . import y\n"  # relative, a submodule
        "from .. import b\n"  # two levels up
        "from agegender.a import y as z, helper\n"  # a submodule, and a name of the package's __init__
        "def f():\n    import agegender.b.missing\n"  # function level; the longest existing prefix
        "import numpy\n"
    )
    assert imports_of("agegender.a.x", src, False, modules) == {"agegender.a.y", "agegender.b", "agegender.a"}
    graph = {"agegender.a": {"agegender.b"}, "agegender.b": {"agegender.c"}, "agegender.c": {"agegender.a"},
             "agegender.d": {"agegender.a"}}
    (component,) = strongly_connected(graph)
    assert component == ["agegender.a", "agegender.b", "agegender.c"]
    assert a_cycle(graph, component) == ["agegender.a", "agegender.b", "agegender.c", "agegender.a"]


def test_no_import_cycles():
    graph = permitted(build_graph())
    cycles = [" → ".join(a_cycle(graph, c)) for c in strongly_connected(graph)]
    assert not cycles, "import cycles:\n  " + "\n  ".join(cycles)


def test_layers_point_one_way():
    bad = defaultdict(list)
    for module, targets in permitted(build_graph()).items():
        src = layer(module)
        for t in sorted(targets):
            dst = layer(t)
            if dst != src and dst not in ALLOWED[src]:
                bad[f"{src} → {dst}"].append(f"{module} → {t}")
    assert not bad, "imports against the layering:\n" + "\n".join(
        f"  {k}:\n    " + "\n    ".join(v) for k, v in sorted(bad.items()))


def test_temporary_allowances_are_still_needed():
    """An allowance that no longer matches an import is stale: delete it from TEMPORARY_EDGES."""
    graph = build_graph()
    stale = sorted(e for e in TEMPORARY_EDGES if e[1] not in graph.get(e[0], ()))
    assert not stale, f"remove from TEMPORARY_EDGES: {stale}"
