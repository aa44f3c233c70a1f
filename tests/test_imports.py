"""The import graph of the package: no cycles, and the layers stay below what uses them.

Read from the source with :mod:`ast` (every ``import`` statement, also those inside
functions, which a lazy import would otherwise hide), then checked by importing the
lowest layers in fresh interpreters.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import antireg

ROOT = Path(antireg.__file__).parent
# known lazy cycles, owned elsewhere: report renders the paper experiments' sections, which
# build on report's tables; lopt's CLI reads the main CLI's parser, which adds lopt's commands
KNOWN_MODULE_CYCLES = [{"antireg.cli", "antireg.lopt.cli"}]
KNOWN_PACKAGE_PAIRS = [{"antireg.report", "antireg.paper"}, {"antireg.cli", "antireg.lopt"}]


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path, lazy: bool) -> set[str]:
    """The antireg modules ``name`` imports: at module level, or anywhere with ``lazy``
    (``if TYPE_CHECKING:`` blocks excluded: they never run)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}  # fmt: skip
    statements = ast.walk(tree) if lazy else (n for top in tree.body for n in ast.walk(top)
                                              if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
    found = set()
    for node in statements:
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in MODULES and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while (w := stack.pop()) != v:
                comp.add(w)
            if comp:
                out.append(comp | {v})

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back_even_lazily():
    graph = {m: _imports(m, p, lazy=True) for m, p in MODULES.items()}
    assert [c for c in _cycles(graph) if c not in KNOWN_MODULE_CYCLES] == []


def test_no_two_packages_import_each_other_even_lazily():
    graph: dict[str, set[str]] = {}
    for m, p in MODULES.items():
        graph.setdefault(_package(m), set()).update(_package(i) for i in _imports(m, p, lazy=True) if _package(i) != _package(m))
    pairs = [{a, b} for a in graph for b in graph[a] if a < b and a in graph.get(b, ())]
    assert [pair for pair in pairs if pair not in KNOWN_PACKAGE_PAIRS] == []


def test_errors_are_below_everything():
    assert _imports("antireg.errors", MODULES["antireg.errors"], lazy=True) == set()
    assert not {_package(m) for m in _imports("antireg.tracking", MODULES["antireg.tracking"], lazy=True)} - {"antireg.errors"}


def test_old_error_homes_still_work():
    from antireg import errors
    from antireg.data import DataError
    from antireg.experiments import ConfigError
    from antireg.experiments.sweep import Interrupted, OutputError, SweepError

    assert (ConfigError, DataError, Interrupted, OutputError, SweepError) == (
        errors.ConfigError, errors.DataError, errors.Interrupted, errors.OutputError, errors.SweepError)


@pytest.mark.parametrize(("module", "absent"), [
    ("antireg.errors", ("antireg.", "torch")),  # "antireg." is every other module of the package
    ("antireg.tracking", ("antireg.experiments", "torch")),
    ("antireg.experiments.config", ("torch",)),
])  # fmt: skip
def test_a_fresh_interpreter_imports_the_low_layers_alone(module, absent):
    code = (f"import sys, {module}\n"
            f"print('\\n'.join(m for m in sys.modules if m != {module!r} and m != 'antireg'))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not [m for m in loaded if m.startswith(absent)]
