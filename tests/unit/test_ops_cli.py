"""The operator CLI without stores: durations, tables, and argument errors (exit 2)."""

from __future__ import annotations

import uuid

import pytest

from taskstream.services.cli import main as cli_main
from taskstream.services.cli.format import format_duration, parse_duration, shorten, table
from taskstream.services.cli.ops_cli import ops_main, parse


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("0", 0),
        ("500ms", 500),
        ("30s", 30_000),
        ("1.5s", 1_500),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("2d", 172_800_000),
        ("1h30m", 5_400_000),
        (" 10S ", 10_000),
        ("0s", 0),
    ],
)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "30", "30x", "s", "-1s", "1h 30m", "ms500", "1.s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "-"),
        (0, "0ms"),
        (850, "850ms"),
        (12_345, "12.3s"),
        (304_000, "5m04s"),
        (7_500_000, "2h05m"),
        (273_600_000, "3d04h"),
    ],
)
def test_format_duration(ms: int | None, text: str) -> None:
    assert format_duration(ms) == text


def test_table_aligns_numbers_right_and_text_left() -> None:
    out = table(
        ["NAME", "COUNT", "NOTE"],
        [["critical", 5, None], ["low", 1234, "x"], ["default", None, None]],
    )
    assert out.splitlines() == [
        "NAME      COUNT  NOTE",
        "critical      5  -",
        "low        1234  x",
        "default       -  -",
    ]


def test_table_with_no_rows_is_the_header() -> None:
    assert table(["A", "BB"], []) == "A  BB"


def test_a_column_of_nothing_but_none_stays_left_aligned() -> None:
    assert table(["N", "ERROR"], [[1, None]]).splitlines()[1] == "1  -"


def test_shorten_flattens_and_cuts() -> None:
    assert shorten("a\n  b", 10) == "a b"
    assert shorten("abcdefghij", 5) == "abcd…"


@pytest.mark.parametrize(
    ("command", "argv", "needle"),
    [
        ("pending", ["--min-idle", "30x"], "not a duration"),
        ("pending", ["--limit", "0"], "not a positive integer"),
        ("pending", ["--priority", "urgent"], "invalid choice"),
        ("queues", ["--bogus"], "unrecognized arguments"),
        ("task", [], "required"),
        ("task", ["show", "not-an-id"], "not a task id"),
        ("consumers", ["--min-idle", "soon"], "not a duration"),
        ("dlq", [], "required"),
        ("dlq", ["list", "--since", "yesterday"], "neither an ISO time"),
        ("dlq", ["list", "--cursor", "garbage"], "bad cursor"),
        ("dlq", ["replay"], "exactly one of"),
        ("dlq", ["replay", "--all", "--type", "x"], "exactly one of"),
        ("dlq", ["purge", "--all", "--id", str(uuid.uuid4())], "exactly one of"),
        ("dlq", ["purge", "--id", "nope"], "not a task id"),
    ],
)
def test_argument_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], command: str, argv: list[str], needle: str
) -> None:
    assert ops_main(command, argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.strip().splitlines()
    assert line.startswith(f"taskstream {command}: ") and needle in line
    assert "Traceback" not in captured.err


def test_the_main_command_dispatches_operator_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["pending", "--min-idle", "nope"]) == 2
    assert "taskstream pending:" in capsys.readouterr().err
    assert cli_main.main(["dlq", "--help"]) == 0
    assert "replay" in capsys.readouterr().out


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert ops_main("queues", ["--help"]) == 0
    assert "--json" in capsys.readouterr().out


def test_dlq_selection_is_built_from_the_flags() -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    args = parse("dlq", ["replay", "--id", str(ids[0]), "--id", str(ids[1])])
    assert args.selection.ids == ids and not args.yes
    args = parse("dlq", ["purge", "--type", "email", "--priority", "high", "--yes"])
    assert args.selection.filter.type == "email" and args.selection.filter.priority == "high"
    assert args.yes
    assert parse("dlq", ["replay", "--all"]).selection.all
    since = parse("dlq", ["list", "--since", "1h"]).where.since
    assert since is not None and since.tzinfo is not None


def test_a_bad_environment_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKSTREAM_NAMESPACE", "has space")
    assert ops_main("queues", []) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "TASKSTREAM_NAMESPACE" in line


@pytest.mark.parametrize(
    ("command", "argv", "variable", "url"),
    [
        ("consumers", [], "REDIS_URL", "redis://127.0.0.1:1/0"),
        ("dlq", ["list"], "DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none"),
    ],
)
def test_an_unreachable_store_exits_1_with_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    argv: list[str],
    variable: str,
    url: str,
) -> None:
    monkeypatch.setenv(variable, url)
    assert ops_main(command, argv) == 1
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert "not reachable" in line and "Traceback" not in captured.err


def test_task_show_prints_a_result_when_there_is_one() -> None:
    import datetime as dt

    import msgspec

    from taskstream.services.cli.ops_text import history_text
    from taskstream.shared.domain import Task
    from taskstream.shared.ops_models import TaskHistory

    at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    task = Task(
        id=uuid.uuid4(), type="t", priority="default", status="succeeded", attempt=1,
        max_attempts=5, payload={}, idempotency_key=None, run_at=at, created_at=at,
        updated_at=at, queued_at=at, started_at=at, finished_at=at, timeout_ms=1000,
        last_error=None, result={"total": 12},
    )  # fmt: skip

    def shown(t: Task) -> str:
        return history_text(TaskHistory(task=t, first_attempt=1, attempts_used=1, attempts=[],
                                        latest=None, dead_letter=None, pending=None))  # fmt: skip

    assert 'result    {"total":12}' in shown(task)
    assert "result" not in shown(msgspec.structs.replace(task, result=None))
