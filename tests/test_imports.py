"""Package layout: no import cycle inside xailib, and every module imports first on its own."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "xailib"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(path: Path, name: str, known) -> set:
    """xailib modules that ``name`` imports, at module level or lazily inside functions (a lazy
    import cycle is still a cycle: the two modules cannot be understood apart). The one exception
    is a module-level ``__getattr__`` that re-exports a moved name for backward compatibility."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    shims = {id(n) for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == "__getattr__"
             for n in ast.walk(s)}
    out = set()
    for s in ast.walk(tree):
        if id(s) in shims:
            continue
        if isinstance(s, ast.Import):
            out.update(a.name for a in s.names if a.name in known)
        elif isinstance(s, ast.ImportFrom):
            if s.level:
                base = package.split(".")
                base = base[: len(base) - (s.level - 1)]
                mod = ".".join(base + ([s.module] if s.module else []))
            else:
                mod = s.module or ""
            if mod in known:
                out.add(mod)
            for a in s.names:  # `from . import _utils`, `from .theory import bounds`
                if f"{mod}.{a.name}" in known:
                    out.add(f"{mod}.{a.name}")
    out.discard(name)
    return out


def _find_cycle(graph: dict):
    """A cycle of ``graph`` (dict node -> set of nodes) as a list, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {n: WHITE for n in graph}
    stack = []

    def dfs(n):
        colour[n] = GREY
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if colour.get(m, BLACK) == GREY:
                return stack[stack.index(m):] + [m]
            if colour.get(m) == WHITE:
                c = dfs(m)
                if c:
                    return c
        stack.pop()
        colour[n] = BLACK
        return None

    for n in sorted(graph):
        if colour[n] == WHITE:
            c = dfs(n)
            if c:
                return c
    return None


def _graph():
    mods = _modules()
    return {name: _imports(p, name, set(mods)) for name, p in mods.items()}


def test_cycle_finder_finds_a_planted_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_graph_sees_the_known_edges():
    g = _graph()
    assert "xailib.attacks" in g["xailib.training"]
    assert "xailib.training" in g["xailib.models"]
    assert "xailib._ascent" in g["xailib.attacks"]
    assert "xailib._utils" in g["xailib.metrics._common"]  # `from .. import _utils as U`
    assert "xailib.metrics" in g["xailib.theory._core"]  # a lazy import inside a function
    assert "xailib.training" not in g["xailib.attacks"]  # the re-export shim is not an edge


def test_no_import_cycle_inside_xailib():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_over_700_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert not {n: k for n, k in long.items() if k > 750 and n.startswith(("xailib.theory", "xailib.models",
                                                                            "xailib.attacks", "xailib.training",
                                                                            "xailib._ascent"))}


@pytest.mark.parametrize("order", ["forward", "reversed"])
def test_every_module_imports_first(order):
    """Each module imported first in an interpreter with no xailib module loaded (torch stays)."""
    names = sorted(_modules())
    if order == "reversed":
        names = names[::-1]
    code = (
        "import importlib, sys, torch\n"
        f"for name in {names!r}:\n"
        "    for k in [k for k in sys.modules if k == 'xailib' or k.startswith('xailib.')]:\n"
        "        del sys.modules[k]\n"
        "    importlib.import_module(name)\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=str(ROOT.parent), timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
