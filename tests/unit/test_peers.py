"""The peers' harness (``python -m tools peers``): a failing peer is a row, never a crash."""

from __future__ import annotations

from pathlib import Path

from tools import peers


def test_best_is_the_fastest_peer_that_produced_a_rate() -> None:
    results = [
        peers.PeerResult(name="taskiq", version="1", jobs=10, seconds=1.0, rate=900.0),
        peers.PeerResult(name="dramatiq", version="2", jobs=10, seconds=1.0, rate=1300.0),
        peers.PeerResult(name="broken", version="?", jobs=10, seconds=0.0, rate=0.0, note="x"),
    ]
    top = peers.best(results)
    assert top is not None and top.name == "dramatiq"
    assert peers.best(results[2:]) is None
    text = peers.table(results)
    assert "best: dramatiq at 1,300 jobs/s" in text and "broken" in text


def test_a_peer_whose_interpreter_is_missing_yields_a_failed_result(tmp_path: Path) -> None:
    missing = tmp_path / "no-venv" / "bin" / "python"
    results = peers.measure(missing, "redis://127.0.0.1:6379/0", 10, timeout=30)
    assert [r.name for r in results] == list(peers.PEERS)
    for r in results:
        assert r.rate == 0.0
        assert "could not start the driver" in r.note
