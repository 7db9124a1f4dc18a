"""What ``python -m tools up`` (``make run``) does with its services once they are started: it
supervises them, as an orchestrator would.

- A service that exits for any reason but our own stop (a crash, a SIGKILL, the OOM killer, a
  store down when it started) is started again under the same name and environment, so a
  restarted executor keeps its consumer name and takes back its own pending entries at once.
  The wait before a restart doubles from ``BACKOFF_S`` to ``BACKOFF_MAX_S`` while the service
  keeps failing, and starts over once it has run ``HEALTHY_S``. Each exit and restart is one
  line with the exit status.
- A service that fails within ``FAST_S`` of its start ``MAX_FAST`` times in a row (a bad
  configuration, say) stops the whole run with one line naming it, followed by its last log
  lines, and a non-zero exit.
- Ctrl-C, SIGTERM or SIGHUP (its terminal closed) stops everything in the written order, each
  group given ``STOP_TIMEOUT_S`` before SIGKILL; a second signal kills everything at once.
- If the supervisor itself is killed, the kernel sends each service SIGTERM
  (``PR_SET_PDEATHSIG``): none lingers holding the ports.

This maps onto the orchestrators ``deploy/`` uses: Kubernetes Deployments restart a container
that exits with a growing back-off (CrashLoopBackOff, 10 s doubling to 5 min), and Compose's
``restart: unless-stopped`` restarts it until ``docker compose down``.
"""

from __future__ import annotations

import collections
import ctypes
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

BACKOFF_S = 0.5
BACKOFF_MAX_S = 30.0
HEALTHY_S = 60.0
FAST_S = 5.0
MAX_FAST = 5
STOP_TIMEOUT_S = 60.0
TAIL_LINES = 20

_PR_SET_PDEATHSIG = 1
try:  # resolved before any fork: the child only calls it
    _prctl: Any = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except OSError:  # not Linux: no parent-death signal (the services then outlive a SIGKILL)
    _prctl = None


def _die_with_parent() -> None:
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def restart_delay(failures: int, first_s: float = BACKOFF_S) -> float:
    """The wait before the ``failures``-th restart in a row (1: the first)."""
    return min(BACKOFF_MAX_S, first_s * 2.0 ** max(0, failures - 1))


class Child:
    """One service process: started in a session of its own (Ctrl-C reaches the supervisor
    only, which stops the children in order), its output copied to ours line by line with the
    last lines kept, and SIGTERM sent to it if the supervisor dies."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        argv: list[str] | None = None,
        *,
        out: IO[str] | None = None,
        start: bool = True,
    ) -> None:
        self.name = name
        self.env = env
        self.argv = argv or [sys.executable, "-m", "taskstream", name.split("-")[0]]
        self.group = name.split("-")[0]
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._out = out
        self.proc: subprocess.Popen[bytes]
        if start:
            self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            start_new_session=True,
            stdout=subprocess.PIPE if self._out is not None else None,
            stderr=subprocess.STDOUT if self._out is not None else None,
            preexec_fn=_die_with_parent,
        )
        if self._out is not None:
            threading.Thread(target=self._copy, args=(self.proc,), daemon=True).start()

    def _copy(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None and self._out is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.tail.append(line)
            print(line, file=self._out, flush=True)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"


class Supervisor:
    """Keeps ``children`` running until a signal (or a service that cannot start)."""

    def __init__(
        self,
        children: list[Child],
        stop_order: Sequence[str],
        *,
        log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
        clock: Callable[[], float] = time.monotonic,
        backoff_s: float = BACKOFF_S,
    ) -> None:
        self._backoff_s = backoff_s
        self.children = children  # the caller's list: children may join until run()
        self.stop_order = list(stop_order)
        self._log = log
        self._clock = clock
        self._signals = 0
        self._failures: dict[str, int] = collections.Counter()
        self._fast: dict[str, int] = collections.Counter()
        self._restart_at: dict[str, float] = {}
        self.restarts: dict[str, int] = collections.Counter()
        # When each child was (last) started, on this supervisor's clock.
        self._started: dict[str, float] = {c.name: clock() for c in self.children}

    def on_signal(self, signum: int, frame: object = None) -> None:
        self._signals += 1
        if self._signals > 1:
            for child in self.children:
                child.kill()

    def install_signals(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self.on_signal)

    def run(self, poll_s: float = 0.1) -> int:
        """Supervise until stopped; the exit code (0 after a signal, 1 after a fatal one)."""
        fatal: Child | None = None
        while not self._signals and fatal is None:
            fatal = self.check()
            time.sleep(poll_s)
        if fatal is not None:
            code = fatal.proc.returncode
            self._log(
                f"taskstream up: {fatal.name} failed {MAX_FAST} times in a row within "
                f"{FAST_S:.0f} s of starting (last: {describe(code)}); stopping everything. "
                f"Its last lines:"
            )
            for line in fatal.tail:
                self._log(f"  {fatal.name} | {line}")
        self.stop()
        return 1 if fatal is not None else 0

    def check(self) -> Child | None:
        """One look at every child: restart what exited (after its backoff). Returns a child
        that cannot start (fatal), if any."""
        now = self._clock()
        for child in self.children:
            if child.name in self._restart_at:
                if now >= self._restart_at[child.name]:
                    del self._restart_at[child.name]
                    child.start()
                    self._started[child.name] = now
                    self.restarts[child.name] += 1
                    self._log(f"taskstream up: {child.name} restarted (pid {child.proc.pid})")
                continue
            started = self._started.setdefault(child.name, now)
            code = child.proc.poll()
            if code is None:
                continue
            ran = now - started
            if ran >= HEALTHY_S:
                self._failures[child.name] = 0
            self._fast[child.name] = self._fast[child.name] + 1 if ran < FAST_S else 0
            if self._fast[child.name] >= MAX_FAST:
                return child
            self._failures[child.name] += 1
            delay = restart_delay(self._failures[child.name], self._backoff_s)
            self._restart_at[child.name] = now + delay
            self._log(
                f"taskstream up: {child.name} exited with {describe(code)} after {ran:.1f} s; "
                f"restarting in {delay:.1f} s"
            )
        return None

    def stop(self) -> None:
        """Stop every child in the written order, each group with a bounded wait (none once
        a second signal came: then they were killed)."""
        self._log("stopping: ingest, executors, then the movers")
        for group in self.stop_order:
            mine = [c for c in self.children if c.group == group]
            for child in mine:
                child.terminate()
            for child in mine:
                child.wait(0 if self._signals > 1 else STOP_TIMEOUT_S)
