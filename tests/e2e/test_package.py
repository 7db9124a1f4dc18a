"""The installable package: one wheel, one top-level name, everything it needs inside, and it
runs from anywhere without the source tree."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.system import ROOT, free_port, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # A copy of what the build reads (the links under taskstream/ kept as links), so that
    # setuptools' build/ directory is made there, not in the checkout.
    source = build / "src"
    source.mkdir()
    skip = shutil.ignore_patterns("__pycache__")
    for name in ("taskstream", "services", "shared", "migrations"):
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*command, "--wheel-dir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ, TMPDIR=str(build)),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = out.glob("taskstream-*.whl")
    return path


def test_the_wheel_puts_one_name_on_the_path_and_carries_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"taskstream"}
    assert {p.name for p in (ROOT / "migrations").glob("*.sql")} == {
        Path(n).name for n in names if n.startswith("taskstream/migrations/")
    }
    lua = {Path(n).name for n in names if n.startswith("taskstream/shared/lua/")}
    assert lua == {p.name for p in (ROOT / "shared" / "lua").glob("*.lua")} and lua
    assert not any(n.startswith(("tools/", "tests/")) or "/tools/" in n for n in names)
    assert "taskstream/py.typed" in names
    assert "taskstream/services/ingest/app.py" in names
    console = ROOT / "services" / "ingest" / "console"
    shipped = {n.removeprefix("taskstream/services/ingest/console/") for n in names}
    for folder in ("templates", "static"):
        files = {f"{folder}/{p.name}" for p in (console / folder).iterdir() if p.is_file()}
        assert files and files <= shipped, files - shipped
    assert {"taskstream/testing.py", "taskstream/shared/client/sync.py"} <= set(names)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with only the wheel installed (its dependencies are taken
    from this test run's environment through a path entry, so nothing is downloaded)."""
    home = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(home)
    python = home / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # The dependencies, without this checkout's editable taskstream (its .pth is not read).
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return home


def _run(home: Path, cwd: Path, *code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(home / "bin" / "python"), "-c", "\n".join(code)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_only_taskstream_is_importable_after_installing(installed: Path, tmp_path: Path) -> None:
    done = _run(
        installed,
        tmp_path,
        "import importlib.util, taskstream",
        "print(taskstream.__file__)",
        "print([n for n in ('shared', 'services', 'tools') if importlib.util.find_spec(n)])",
    )
    assert done.returncode == 0, done.stderr
    location, leaked = done.stdout.splitlines()
    assert str(installed) in location and str(ROOT) not in location
    assert leaked == "[]"


@pytest.fixture
def running(
    installed: Path, tmp_path: Path, database_url: str, namespace: str
) -> Iterator[tuple[str, Path, dict[str, subprocess.Popen[bytes]]]]:
    from tests.conftest import REDIS_URL

    app = tmp_path / "app"
    app.mkdir()
    (app / "myapp_tasks.py").write_text(
        "from pathlib import Path\n"
        "from taskstream import Context, NonRetryableError, handler\n\n\n"
        '@handler("myapp.note")\n'
        "async def note(payload: dict, ctx: Context) -> None:\n"
        '    if "text" not in payload:\n'
        '        raise NonRetryableError("no text")\n'
        '    Path(payload["file"]).write_text(payload["text"] + str(ctx.attempt_number))\n'
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        REDIS_URL=REDIS_URL,
        DATABASE_URL=database_url.rsplit("/", 1)[0] + "/ts_wheel_" + namespace[5:],
        TASKSTREAM_NAMESPACE=namespace,
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(port),
        HANDLER_MODULES="myapp_tasks",
        PYTHONPATH=str(app),
        LOG_FORMAT="json",
        READ_BLOCK_MS="100",
    )
    taskstream = str(installed / "bin" / "taskstream")
    done = subprocess.run(
        [taskstream, "migrate", "--create-db"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "schema version" in done.stdout
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for service in ("ingest", "executor", "watcher", "janitor"):
        log = open(tmp_path / f"{service}.log", "wb")  # noqa: SIM115 - closed with the process
        procs[service] = subprocess.Popen(
            [taskstream, service], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
    try:
        yield f"http://127.0.0.1:{port}", tmp_path, procs
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(20) for name, proc in procs.items()}
        subprocess.run(
            [str(installed / "bin" / "python"), "-c",
             "import asyncio, os, taskstream.shared.db as d;"
             "asyncio.run(d.drop_database(os.environ['DATABASE_URL']))"],
            env=env, timeout=30, check=False,
        )  # fmt: skip
        assert codes == dict.fromkeys(procs, 0), {
            n: (tmp_path / f"{n}.log").read_text()[-2000:] for n in procs
        }


def _post(url: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return dict(json.load(answer))


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return dict(json.load(answer))


def test_the_installed_services_run_a_handler_that_imports_only_taskstream(
    running: tuple[str, Path, dict[str, subprocess.Popen[bytes]]],
) -> None:
    url, tmp, procs = running

    def ready() -> bool:
        try:
            return _get(f"{url}/readyz")["status"] == "ok"
        except OSError:
            return False

    wait_until(ready, 30, "the installed ingest to be ready")
    out = tmp / "note.txt"
    task = _post(
        f"{url}/v1/tasks", {"type": "myapp.note", "payload": {"text": "hi", "file": str(out)}}
    )
    bad = _post(f"{url}/v1/tasks", {"type": "myapp.note", "payload": {}})

    def finished(task_id: object) -> bool:
        return _get(f"{url}/v1/tasks/{task_id}")["status"] in ("succeeded", "dead")

    wait_until(lambda: finished(task["id"]) and finished(bad["id"]), 30, "both tasks to finish")
    assert _get(f"{url}/v1/tasks/{task['id']}")["status"] == "succeeded"
    assert out.read_text() == "hi1"
    assert _get(f"{url}/v1/tasks/{bad['id']}")["status"] == "dead"
    # The console, with its templates and vendored htmx, from the installed package.
    with urllib.request.urlopen(f"{url}/ui/tasks/{bad['id']}", timeout=5) as page:
        assert page.status == 200 and "myapp.note" in page.read().decode()
    with urllib.request.urlopen(f"{url}/ui/static/htmx.min.js", timeout=5) as script:
        assert b"htmx" in script.read(200)
    time.sleep(0.2)
    assert all(p.poll() is None for p in procs.values())
