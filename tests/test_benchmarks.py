"""The benchmark scripts still fit the code they call (they run outside the suite, so a refactor
that moves or renames a helper breaks them silently): every ``benchmarks/*.py`` imports, every
``from rtkin... import name`` / ``from bench_x import name`` in it (also inside functions) names
something that exists, and every ``alias.name`` read through a module alias (``ba.ROWS``,
``scoring.score``, ``virtual.demo_rig``) exists in that module. Nothing is run."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCH.glob("*.py"))
LOCAL = {p.stem for p in SCRIPTS}


def _ours(module: str) -> bool:
    return module == "rtkin" or module.startswith("rtkin.") or module.split(".")[0] in LOCAL


@pytest.fixture
def bench_path(monkeypatch):
    """The benchmarks folder importable; the scripts' environment settings (threads, backend)
    and sys.path changes undone afterwards."""
    monkeypatch.syspath_prepend(str(BENCH))
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _resolve(module: str, name: str) -> bool:
    mod = importlib.import_module(module)
    return hasattr(mod, name) or _is_module(f"{module}.{name}")  # or a submodule not yet imported


def _module_aliases(tree: ast.AST) -> dict[str, str]:
    """alias -> module name, for the aliases bound to one of our modules anywhere in the file."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and _ours(a.name):
                    out[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module and _ours(node.module) and not node.level:
            for a in node.names:
                if inspect.ismodule(getattr(importlib.import_module(node.module), a.name, None)) or \
                        _is_module(f"{node.module}.{a.name}"):
                    out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        return False


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_benchmark_names_exist(script: Path, bench_path) -> None:
    importlib.import_module(script.stem)  # module-level imports and definitions
    tree = ast.parse(script.read_text(), str(script))
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level and _ours(node.module):
            missing += [f"line {node.lineno}: from {node.module} import {a.name}" for a in node.names
                        if a.name != "*" and not _resolve(node.module, a.name)]
    aliases = _module_aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and isinstance(node.value, ast.Name) \
                and node.value.id in aliases:
            module = aliases[node.value.id]
            if not _resolve(module, node.attr):
                missing.append(f"line {node.lineno}: {node.value.id}.{node.attr} ({module} has no {node.attr})")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) \
                and node.func.value.id in aliases:
            problem = _bad_call(aliases[node.func.value.id], node)
            if problem:
                missing.append(f"line {node.lineno}: {node.func.value.id}.{node.func.attr}(...): {problem}")
    assert not missing, f"{script.name} uses names that do not exist:\n" + "\n".join(missing)


def _bad_call(module: str, call: ast.Call) -> str:
    """Why a call ``alias.f(...)`` does not fit ``f``'s signature ("" if it fits or cannot be told:
    ``*args`` / ``**kwargs`` at the call, no signature)."""
    f = getattr(importlib.import_module(module), call.func.attr, None)
    if not callable(f) or any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return ""
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return ""
    try:
        sig.bind(*range(len(call.args)), **{k.arg: None for k in call.keywords})
    except TypeError as e:
        return f"{e} (signature {sig})"
    return ""


def test_the_check_catches_a_moved_helper(tmp_path, bench_path, monkeypatch) -> None:
    """A script reading a helper its sibling no longer has is reported (the breakage this file
    guards against: bench_reprocess calling ``ba.rmse_deg`` after it moved to rtkin.sim.scoring)."""
    (tmp_path / "bench_old.py").write_text("import bench_accuracy as ba\n\ndef f(truth, rig, views, work):\n"
                                           "    return ba.rmse_deg, ba.run_pose2sim(truth, rig, views, work)\n")
    monkeypatch.setattr(sys.modules[__name__], "LOCAL", LOCAL | {"bench_old"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AssertionError) as err:
        test_benchmark_names_exist(tmp_path / "bench_old.py", None)
    assert "ba.rmse_deg (bench_accuracy has no rmse_deg)" in str(err.value)
    assert "ba.run_pose2sim(...): too many positional arguments" in str(err.value)
