"""The README's "Using it from Python" runs as written: its files are written where they say,
ingest, an executor importing them and a watcher run as processes, and each other block runs in
order as a script (the tests block with pytest), each against those services."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.system import ROOT, System
from tests.e2e.test_services import wait_http

pytestmark = pytest.mark.e2e

SECTION = "## Using it from Python"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
FILE = re.compile(r"^# (?P<path>[\w/]+\.py)\b")


def blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return BLOCK.findall(text[start : end if end != -1 else len(text)])


def test_the_section_has_files_scripts_and_tests() -> None:
    found = blocks()
    named = [FILE.match(b).group("path") for b in found if FILE.match(b)]  # type: ignore[union-attr]
    assert "myapp/tasks.py" in named and any(p.startswith("tests/") for p in named)
    assert len(found) - len(named) >= 2  # the sync and the async producer


def test_every_python_example_runs_as_written(tmp_path: Path, system: System) -> None:
    app = tmp_path / "app"
    scripts: list[str] = []
    tests: list[Path] = []
    for block in blocks():
        named = FILE.match(block)
        if named is None:
            scripts.append(block)
            continue
        path = app / named.group("path")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block)
        if path.parent != app and not path.name.startswith("test_"):
            (path.parent / "__init__.py").touch()
        if path.name.startswith("test_"):
            tests.append(path)
    pythonpath = f"{app}{os.pathsep}{ROOT}"
    env = dict(system.env, PYTHONPATH=pythonpath, TASKSTREAM_URL=system.url)
    env.pop("TASKSTREAM_API_KEY", None)
    system.start("ingest")
    system.start("executor-1", HANDLER_MODULES="myapp.tasks", PYTHONPATH=pythonpath,
                 TASKSTREAM_URL=system.url)  # fmt: skip
    system.start("watcher")
    asyncio.run(wait_http(system.url))
    printed = ""
    for n, script in enumerate(scripts):
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=app, env=env, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, f"block {n} failed:\n{script}\n{done.stdout}{done.stderr}"
        printed += done.stdout
    # What the blocks say they print (so a block that silently did nothing would show).
    assert "refused: payload.to" in printed and "dead AlwaysFailError" in printed
    assert re.search(r"^\{250: ValidationError", printed, re.M)
    assert "{'sent_to': 'ada@example.com'}" in printed  # the result, stored and shown
    assert "welcome mail: succeeded" in printed  # enqueued in a transaction, published, run
    assert tests
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
         "-o", "asyncio_default_fixture_loop_scope=function", "--rootdir", str(app),
         *map(str, tests)],
        cwd=app, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout
