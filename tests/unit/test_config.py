"""Configuration: sections per role, flat knob names, and a clear line for a bad value."""

from __future__ import annotations

import pytest

from taskstream.services.janitor.__main__ import main as janitor_main
from taskstream.shared import config as config_mod
from taskstream.shared.errors import ConfigError


def test_every_knob_belongs_to_one_section_and_reads_back_by_its_flat_name() -> None:
    config = config_mod.load({"VIS_TIMEOUT_MS": "1_500", "WORKER_POOL": "3", "LOG_LEVEL": "debug"})
    assert config.lease.vis_timeout_ms == 1500
    assert config.executor.worker_pool == 3
    assert config.service.log_level == "debug"
    assert config_mod.value(config, "worker_pool") == 3
    sections = {f.section for f in config_mod.FIELDS_INFO.values()}
    assert sections == set(config_mod.SECTIONS)


def test_replace_changes_only_the_named_knobs() -> None:
    base = config_mod.Config()
    changed = config_mod.replace(base, prefetch=7, repair_after_ms=9)
    assert changed.executor.prefetch == 7 and changed.watcher.repair_after_ms == 9
    assert changed.executor.worker_pool == base.executor.worker_pool
    with pytest.raises(ConfigError, match="unknown setting 'nope'"):
        config_mod.replace(base, nope=1)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VIS_TIMEOUT_MS": "0"}, "VIS_TIMEOUT_MS must be positive"),
        ({"WORKER_POOL": "many"}, "WORKER_POOL must be an integer"),
        ({"PREFETCH": "-1"}, "PREFETCH must not be negative"),
        ({"PRIORITY_WEIGHTS": "1,2"}, "PRIORITY_WEIGHTS must be four positive integers"),
        ({"DB_POOL_MIN": "20", "DB_POOL_MAX": "5"}, "DB_POOL_MIN must not exceed DB_POOL_MAX"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_mod.load(env)


def test_a_service_with_a_bad_value_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VIS_TIMEOUT_MS", "0")
    assert janitor_main([]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["taskstream janitor: VIS_TIMEOUT_MS must be positive, got 0"]


def test_taskstream_config_shows_the_api_key_only_as_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from taskstream.services.cli.main import show_config

    monkeypatch.setenv("TASKSTREAM_URL", "http://ingest:8080")
    monkeypatch.setenv("TASKSTREAM_API_KEY", "tsk_very_secret")
    assert show_config([]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "TASKSTREAM_URL=http://ingest:8080" in out
    assert "TASKSTREAM_API_KEY=(set)" in out and "tsk_very_secret" not in "\n".join(out)
