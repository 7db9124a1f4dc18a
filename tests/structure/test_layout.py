"""The shape of the code: no import cycles, the design's layout, one error boundary per store.

These read the source (``ast``), so they hold for every module, imported by a test or not.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from taskstream.shared.db import Database
from taskstream.shared.streams import Streams

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = {"services": ROOT / "services", "shared": ROOT / "shared"}
BOUNDARIES = ("taskstream.shared.db", "taskstream.shared.streams")
# Error texts of the drivers: matching them is the boundaries' job alone.
DRIVER_TEXTS = ("NOGROUP", "BUSYGROUP", "UNBLOCKED", "OOM command", "READONLY", "40P01", "25006")


def _modules() -> dict[str, Path]:
    """Every module of the installed package, by its dotted name."""
    found = {"taskstream": ROOT / "taskstream" / "__init__.py"}
    for path in (ROOT / "taskstream").glob("*.py"):  # __main__, testing: the public modules
        if path.stem != "__init__":
            found[f"taskstream.{path.stem}"] = path
    for top, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(["taskstream", top, *parts])] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports (at module level or inside functions)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import mod` imports the module pkg.mod when there is one.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        out.update(t for t in targets if t in MODULES and t != name)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_project_has_no_import_cycle() -> None:
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    # A package's __init__ re-exporting its own submodules is not a cycle of meaning; the
    # submodules must not import their package back, which the graph would show.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("top", ["shared", "services"])
def test_nothing_imports_the_folders_by_their_source_names(top: str) -> None:
    offenders = []
    for path in [*ROOT.joinpath("tests").rglob("*.py"), *ROOT.joinpath("tools").rglob("*.py"),
                 *MODULES.values()]:  # fmt: skip
        for line, names in _absolute_imports(ast.parse(path.read_text())):
            if any(n == top or n.startswith(top + ".") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert offenders == []


def _absolute_imports(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """(line, module names) of every absolute import in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.append((node.lineno, [a.name for a in node.names]))
        elif isinstance(node, ast.ImportFrom) and not node.level:
            found.append((node.lineno, [node.module or ""]))
    return found


def _outside_boundaries() -> dict[str, Path]:
    return {
        n: p
        for n, p in MODULES.items()
        if not any(n == b or n.startswith(b + ".") for b in BOUNDARIES)
    }


def test_no_driver_is_imported_outside_the_store_boundaries() -> None:
    offenders = []
    for name, path in _outside_boundaries().items():
        for line, names in _absolute_imports(ast.parse(path.read_text())):
            if any(n.split(".")[0] in ("redis", "asyncpg") for n in names):
                offenders.append(f"{name}:{line}")
    assert offenders == []


def test_no_driver_exception_or_error_text_is_named_outside_the_boundaries() -> None:
    import asyncpg
    import redis.exceptions

    driver_names = {n for n in dir(redis.exceptions) if n.endswith("Error")}
    driver_names |= {n for n in dir(asyncpg.exceptions) if n.endswith("Error")}
    driver_names -= {"ConnectionError", "TimeoutError"}  # builtins of the same names
    offenders = []
    for name, path in _outside_boundaries().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Name | ast.Attribute):
                ident = node.id if isinstance(node, ast.Name) else node.attr
                if ident in driver_names:
                    offenders.append(f"{name}:{node.lineno} names {ident}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                hit = next((t for t in DRIVER_TEXTS if t in node.value), None)
                if hit:
                    offenders.append(f"{name}:{node.lineno} matches {hit!r}")
    assert offenders == []


@pytest.mark.parametrize("cls", [Database, Streams])
def test_every_public_store_method_goes_through_the_boundary(cls: type) -> None:
    unwrapped = [
        f"{klass.__name__}.{name}"
        for klass in cls.__mro__
        for name, value in vars(klass).items()
        if not name.startswith("_")
        and inspect.iscoroutinefunction(getattr(value, "__func__", value))
        and not hasattr(getattr(value, "__func__", value), "__wrapped__")
    ]
    assert unwrapped == []


def test_each_background_role_has_its_own_module() -> None:
    roles = {
        "watcher": {"due", "repair", "outbox", "schedules", "unpark"},
        "janitor": {"reclaim", "orphans", "trim", "consumers", "gauges", "retention"},
    }
    for service, expected in roles.items():
        names = {p.stem for p in (ROOT / "services" / service).glob("*.py")}
        assert expected <= names, f"{service} lacks {expected - names}"
        for role in expected:
            source = (ROOT / "services" / service / f"{role}.py").read_text()
            assert "async def run_once(self)" in source, f"{service}/{role}.py has no run_once"


def test_importing_the_package_does_not_load_the_clients_http_library() -> None:
    """The services import ``taskstream``; only code that uses a client pays for httpx."""
    import subprocess
    import sys

    code = (
        "import sys, taskstream, taskstream.shared.definitions\n"
        "import taskstream.services.executor.runner\n"
        "assert 'httpx' not in sys.modules, 'httpx loaded'\n"
        "taskstream.Client\n"
        "assert 'httpx' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
