"""The README's "Workflows" section runs as written: its curl block with bash (against this
test's ingest instead of localhost:8080), its handler file written where it says and imported
by an executor, and its script run, with ingest, the executor and a watcher as processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.system import ROOT, System
from tests.e2e.test_services import wait_http

pytestmark = pytest.mark.e2e

SECTION = "## Workflows"
BLOCK = re.compile(r"^```(?P<lang>python|sh)\n(?P<code>.*?)^```$", re.S | re.M)
FILE = re.compile(r"^# (?P<path>[\w/]+\.py)\b")


def blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return [(m["lang"], m["code"]) for m in BLOCK.finditer(text[start:end])]


def test_the_curl_and_python_examples_run_as_written(tmp_path: Path, system: System) -> None:
    app = tmp_path / "app"
    found = blocks()
    assert [lang for lang, _ in found] == ["sh", "python", "python"]
    (_, curl), (_, handlers), (_, script) = found
    named = FILE.match(handlers)
    assert named is not None
    path = app / named["path"]
    path.parent.mkdir(parents=True)
    path.write_text(handlers)
    (path.parent / "__init__.py").touch()
    pythonpath = f"{app}{os.pathsep}{ROOT}"
    module = named["path"].removesuffix(".py").replace("/", ".")
    system.start("ingest")
    system.start("executor-1", HANDLER_MODULES=module, PYTHONPATH=pythonpath)
    system.start("watcher")
    asyncio.run(wait_http(system.url))

    host = system.url.removeprefix("http://")
    # Each answer on a line of its own (curl prints none after the body).
    shell = 'curl() { command curl "$@"; echo; }\n' + curl.replace("localhost:8080", host)
    done = subprocess.run(["bash", "-e", "-c", shell], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    diamond, page, refused, cancelled = answers
    assert diamond["state"] == "succeeded", diamond
    assert {s["name"]: s["task"]["status"] for s in diamond["steps"]} == dict.fromkeys(
        "abcd", "succeeded"
    )
    assert [w["id"] for w in page["workflows"]] == [diamond["id"]]
    assert refused["error"]["field"] == "steps" and "cycle" in refused["error"]["message"]
    assert cancelled["cancelled"] == [] and cancelled["workflow"]["state"] == "succeeded"

    env = dict(system.env, PYTHONPATH=pythonpath, TASKSTREAM_URL=system.url)
    env.pop("TASKSTREAM_API_KEY", None)
    done = subprocess.run([sys.executable, "-c", script], cwd=app, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "succeeded {'total': 70, 'reserved': 2}"
