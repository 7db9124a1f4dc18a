"""The supervisor behind `make run`: restarts with a growing backoff, and a service that cannot
start stops the run naming it (real child processes, an injected clock)."""

from __future__ import annotations

import sys

from tools.supervisor import (
    BACKOFF_MAX_S,
    FAST_S,
    HEALTHY_S,
    MAX_FAST,
    Child,
    Supervisor,
    restart_delay,
)


def test_the_restart_delay_doubles_from_half_a_second_to_thirty() -> None:
    assert [restart_delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert restart_delay(20) == BACKOFF_MAX_S == 30.0


def _child(code: str) -> Child:
    return Child("executor-1", {}, [sys.executable, "-c", code])


def test_a_service_that_exits_is_restarted_after_its_backoff() -> None:
    now = [1000.0]
    lines: list[str] = []
    child = _child("import sys; sys.exit(3)")
    sup = Supervisor([child], ["executor"], log=lines.append, clock=lambda: now[0])
    child.proc.wait()
    now[0] += FAST_S + 1  # it ran a while: not a failure at start
    assert sup.check() is None
    assert lines[-1].startswith("taskstream up: executor-1 exited with status 3")
    assert "restarting in 0.5 s" in lines[-1]
    first = child.proc.pid
    now[0] += 0.4
    sup.check()
    assert child.proc.pid == first  # not yet
    now[0] += 0.2
    sup.check()
    assert child.proc.pid != first and sup.restarts["executor-1"] == 1
    child.proc.wait()
    sup.check()  # exited again: the backoff doubles
    assert "restarting in 1.0 s" in lines[-1]


def test_a_healthy_minute_resets_the_backoff() -> None:
    now = [0.0]
    lines: list[str] = []
    child = _child("import sys; sys.exit(1)")
    sup = Supervisor([child], ["executor"], log=lines.append, clock=lambda: now[0])
    for _ in range(3):
        child.proc.wait()
        now[0] += FAST_S + 1
        sup.check()
        now[0] += 60
        sup.check()  # restarted
    child.proc.wait()
    now[0] += HEALTHY_S + 1
    sup.check()
    assert "restarting in 0.5 s" in lines[-1]


def test_a_service_failing_at_once_again_and_again_stops_the_run_naming_it() -> None:
    now = [0.0]
    lines: list[str] = []
    child = _child("print('bad configuration: WORKER_POOL'); raise SystemExit(2)")
    sup = Supervisor([child], ["executor"], log=lines.append, clock=lambda: now[0])
    fatal = None
    for _ in range(MAX_FAST):
        child.proc.wait()
        fatal = sup.check()
        if fatal is not None:
            break
        now[0] += BACKOFF_MAX_S
        sup.check()
    assert fatal is child
    assert sup.restarts["executor-1"] == MAX_FAST - 1
