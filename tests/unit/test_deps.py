"""tools/deps.py's chromium step: present, installed by apt-get as root (after an update when
the first try fails), or skipped with a message saying how."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tools import deps


def test_present_chromium_is_used_as_it_is(tmp_path: Path) -> None:
    browser = tmp_path / "chromium"
    browser.write_text("")
    assert deps.ensure_chromium(browser) == browser


def test_not_root_says_how_and_installs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("tools.deps.os.geteuid", lambda: 1000)
    ran: list[Any] = []
    monkeypatch.setattr("tools.deps.subprocess.run", lambda *a, **k: ran.append(a))
    assert deps.ensure_chromium(tmp_path / "chromium") is None
    assert ran == []
    assert "apt-get install -y chromium" in capsys.readouterr().out


def test_root_installs_it_updating_the_lists_when_the_first_try_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = tmp_path / "chromium"
    calls: list[list[str]] = []

    def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        if cmd[1] == "install" and ["apt-get", "update"] not in calls:
            return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package")
        if cmd[1] == "install":
            browser.write_text("")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr("tools.deps.os.geteuid", lambda: 0)
    monkeypatch.setattr("tools.deps.shutil.which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr("tools.deps.subprocess.run", run)
    assert deps.ensure_chromium(browser) == browser
    assert [c[:2] for c in calls] == [["apt-get", "install"], ["apt-get", "update"],
                                      ["apt-get", "install"]]  # fmt: skip
    assert "chromium" in calls[0]
