"""tools.stores: using reachable stores, and starting/stopping local ones."""

from __future__ import annotations

import shutil
import socket
import socketserver
import struct
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.stores import KINDS, StoreError, _system_dirs, ensure, with_stores_main

SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        return sock.recv(64)


def is_closed(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


class _Reply(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(64)
        self.request.sendall(self.server.reply)  # type: ignore[attr-defined]


@pytest.fixture
def fake_stores() -> Iterator[tuple[str, str]]:
    """A fake Redis (answers +PONG) and a fake Postgres (answers 'N' to SSLRequest)."""
    servers = []
    for reply in (b"+PONG\r\n", b"N"):
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Reply)
        server.daemon_threads = True
        server.reply = reply  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
    redis_port, pg_port = (s.server_address[1] for s in servers)
    yield f"redis://127.0.0.1:{redis_port}/0", f"postgresql://postgres@127.0.0.1:{pg_port}/ts"
    for server in servers:
        server.shutdown()
        server.server_close()


def test_reachable_stores_are_used_as_they_are(fake_stores: tuple[str, str]) -> None:
    redis_url, database_url = fake_stores
    lines: list[str] = []
    with ensure(redis_url, database_url, Path("/nonexistent"), log=lines.append) as stores:
        assert (stores.redis_url, stores.database_url) == (redis_url, database_url)
        assert stores.started == []
    assert lines == [
        f"redis: using {redis_url} (already running)",
        f"postgres: using {database_url} (already running)",
    ]


def test_with_stores_exports_urls_and_returns_exit_code(
    fake_stores: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_url, database_url = fake_stores
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    check = f"import os; raise SystemExit(3 if os.environ['REDIS_URL'] == {redis_url!r} else 1)"
    assert with_stores_main(["--", sys.executable, "-c", check]) == 3


def test_unreachable_remote_store_is_an_error() -> None:
    url = f"redis://127.0.0.2:{free_port()}/0"  # loopback, but not a host we would start on
    with pytest.raises(StoreError, match=r"Redis at 127\.0\.0\.2:\d+ is not reachable"):
        ensure(url, "postgresql://postgres@127.0.0.2:1/x", Path("/nonexistent"), log=print)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Not tmp_path: pytest's base temp dir is 0700, and as root Postgres runs as the user
    # `taskstream`, which must be able to reach the state dir.
    path = Path(tempfile.mkdtemp(prefix="taskstream-stores-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_ensure_starts_and_stops_local_stores(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = [kind for kind in ("redis", "postgres") if not _system_dirs(KINDS[kind])]
    if missing:
        pytest.skip(f"no system binaries for {', '.join(missing)} (redis-server >= 6.2, pg_ctl)")
    monkeypatch.delenv("TASKSTREAM_NO_SYSTEM_BINARIES", raising=False)
    redis_port, pg_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    database_url = f"postgresql://postgres@127.0.0.1:{pg_port}/taskstream"

    stores = ensure(redis_url, database_url, state_dir, log=print)
    try:
        assert (stores.redis_url, stores.database_url) == (redis_url, database_url)
        assert stores.started == [
            f"redis-server (system) on 127.0.0.1:{redis_port}",
            f"postgres (system) on 127.0.0.1:{pg_port}",
        ]
        assert exchange(redis_port, b"PING\r\n") == b"+PONG\r\n"
        assert exchange(pg_port, SSL_REQUEST) in (b"S", b"N")
    finally:
        stores.stop()
    assert is_closed(redis_port)
    assert is_closed(pg_port)
    stores.stop()  # idempotent
