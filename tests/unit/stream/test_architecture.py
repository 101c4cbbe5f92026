"""The shape of the code: no import cycles, and each folder imports only what its role allows.

Read statically from the source (imports inside functions count too), so a cycle hidden behind
a function-level import is found as well.
"""

from __future__ import annotations

from tests.support import ROOT

import ast
from collections import defaultdict
from pathlib import Path

PACKAGES = ("riverbed", "stream", "learners", "state")


def module_files() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            modules[".".join(parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (the longest known prefix of each import)."""
    modules = module_files()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def _edges_from(prefix: str) -> set[tuple[str, str]]:
    return {(src, dst) for src, dsts in import_graph().items() if src.startswith(prefix) for dst in dsts}


def test_each_folder_imports_only_what_its_role_allows():
    rules = {
        # the hot path never reaches up into the CLI or the developer tooling; the composition
        # root (stream.engine.processor) wires the HTTP API and nothing else of stream.ops
        "stream.engine": ("stream.cli", "stream.devtools", "riverbed", "stream.scale"),
        # scale-out parts stand beside the processor (the trainer subclasses it); the engine never
        # knows them
        "stream.scale": ("stream.cli", "stream.devtools", "riverbed"),
        "stream.connect": ("stream.engine", "stream.ops", "stream.cli", "riverbed"),
        "stream.ops": ("stream.cli", "stream.devtools", "riverbed"),
        "stream.devtools": ("stream.cli", "stream.ops", "riverbed"),
        "learners": ("stream", "state", "riverbed"),
        "state": ("stream", "learners", "riverbed"),
    }
    wrong = []
    for source, forbidden in rules.items():
        for src, dst in _edges_from(source):
            if any(dst == f or dst.startswith(f + ".") for f in forbidden):
                wrong.append(f"{src} -> {dst}")
    engine_to_ops = {(s, d) for s, d in _edges_from("stream.engine") if d.startswith("stream.ops")}
    assert engine_to_ops <= {("stream.engine.processor", "stream.ops.http_api")}
    assert wrong == []


def test_the_public_api_is_importable_and_lazy():
    import subprocess
    import sys

    code = ("import sys, riverbed; assert 'river' not in sys.modules, 'import riverbed loaded River'; "
            "print(sorted(riverbed.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    for name in ("Service", "Processor", "load_config", "read_status", "latest_checkpoint", "load_models"):
        assert name in out
