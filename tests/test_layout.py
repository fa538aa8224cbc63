"""The package layout: imports run one way (runtime and clients -> stages -> core), no cycles
between modules, modules short enough to read (README "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "rtkin"

#: subpackage -> the subpackages it may import (besides itself). Top-level modules (cli, demo)
#: may import anything.
ALLOWED = {
    "core": set(),
    "io": {"core"},
    "reconstruct": {"core"},
    "kinematics": {"core"},
    "sim": {"core", "kinematics"},
    "calibrate": {"core", "reconstruct"},
    "capture": {"core", "io", "sim"},
    "offline": {"core", "io", "reconstruct", "kinematics", "capture", "sim", "runtime"},
    "runtime": {"core", "io", "reconstruct", "kinematics", "capture", "sim"},
    "clients": {"core", "runtime"},
}

#: Modules allowed over ~800 lines, each one cohesive thing.
LONG_OK: set[str] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """rtkin modules imported anywhere in the file (module level or inside functions)."""
    tree = ast.parse(path.read_text())
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            if n in modules and n.startswith("rtkin"):
                out.add(n)
    out.discard(name)
    return out


def _graph():
    modules = _modules()
    return {m: _imports(p, m, modules) for m, p in modules.items()}


def _sub(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def test_every_subpackage_is_in_the_layer_table():
    subs = {p.name for p in PKG.iterdir() if (p / "__init__.py").is_file()}
    assert subs == set(ALLOWED), "add the new subpackage to ALLOWED (and the README's Layout)"


def test_imports_run_one_way():
    bad = []
    for mod, deps in _graph().items():
        sub = _sub(mod)
        if sub is None:
            continue  # rtkin, rtkin.cli, rtkin.demo, rtkin.__main__
        for d in deps:
            dsub = _sub(d)
            if d == "rtkin":
                continue  # __version__
            if dsub is None or (dsub != sub and dsub not in ALLOWED[sub]):
                bad.append(f"{mod} -> {d}")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_no_import_cycles_between_modules():
    graph = _graph()
    graph = {m: {d for d in ds if d != "rtkin"} for m, ds in graph.items() if m != "rtkin"}
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if d.endswith("__init__") or d not in graph:
                continue
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif not state.get(d):
                visit(d, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if not state.get(m):
            visit(m, [])
    # a package's __init__ re-exporting its modules is not a cycle of logic
    cycles = [c for c in cycles if not any(_modules()[x].name == "__init__.py" for x in c)]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_few_top_level_modules_and_short_modules():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= 6, top
    long = {m: sum(1 for _ in p.open()) for m, p in _modules().items()}
    long = {m: n for m, n in long.items() if n > 850 and m not in LONG_OK}
    assert not long, f"modules over ~800 lines (split them or justify in LONG_OK): {long}"


@pytest.mark.parametrize("sub", sorted(ALLOWED))
def test_each_subpackage_says_what_it_holds(sub):
    doc = ast.get_docstring(ast.parse((PKG / sub / "__init__.py").read_text())) or ""
    assert len(doc.splitlines()) >= 2 and "import" in doc.lower(), f"rtkin.{sub}: say what it holds and may import"


def test_the_public_surface_resolves_and_import_rtkin_stays_light():
    import subprocess
    import sys

    import rtkin

    for name in rtkin.__all__:
        assert getattr(rtkin, name) is not None, name
    code = "import sys, rtkin; print(sorted(m for m in ('numba', 'opensim', 'onnxruntime', 'cv2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out
