"""kill -9 again and again, also while the previous kill is being recovered: the journal and the paper account's own
tables never disagree (every fill, funding payment and transfer at the account is journaled exactly once), and
the run ends where an uninterrupted one does."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.integration.test_book_crash import _book, _cmd, _env, _projection, _run_to_end


def _ledgers(state: Path) -> dict[str, Any]:
    con = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:

        def q(sql: str) -> list[Any]:
            return con.execute(sql).fetchall()

        return {
            "fills": (
                q(
                    "SELECT client_id, round(json_extract(data, '$.contracts'), 9) FROM journal "
                    "WHERE kind = 'fill' ORDER BY 1"
                ),
                q("SELECT client_id, round(qty, 9) FROM paper_fills ORDER BY 1"),
            ),
            "funding": (
                q(
                    "SELECT instrument, json_extract(data, '$.settlement_ms'), json_extract(data, '$.amount') "
                    "FROM journal WHERE kind = 'funding' ORDER BY 1, 2"
                ),
                q("SELECT instrument, settlement_ms, amount FROM paper_ledger WHERE kind = 'funding' ORDER BY 1, 2"),
            ),
            "transfers": (
                q(
                    "SELECT client_id, json_extract(data, '$.amount') FROM journal WHERE kind = 'transfer' "
                    "AND json_extract(data, '$.applied') ORDER BY 1"
                ),
                q("SELECT ref, amount FROM paper_ledger WHERE kind = 'transfer' ORDER BY 1"),
            ),
            "liquidations": (
                q("SELECT instrument, ts_ms FROM journal WHERE kind = 'liquidation' ORDER BY 1, 2"),
                q("SELECT instrument, ts_ms FROM paper_ledger WHERE kind = 'liquidation' ORDER BY 1, 2"),
            ),
        }
    finally:
        con.close()


def _assert_consistent(state: Path) -> None:
    for what, (journaled, account) in _ledgers(state).items():
        assert journaled == account, what


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, sample_store_path: Path) -> Any:
    folder = tmp_path_factory.mktemp("ref")
    _run_to_end(_book(folder), sample_store_path, folder / "home")
    _assert_consistent(folder / "state.sqlite")
    return _projection(folder / "state.sqlite")


def test_repeated_kills_including_during_recovery(tmp_path: Path, sample_store_path: Path, reference: Any) -> None:
    rng = random.Random(7_2026)
    book = _book(tmp_path)
    home = tmp_path / "home"
    state = tmp_path / "state.sqlite"
    killed = 0
    for _ in range(8):
        # short delays after the first kill land inside the start-up and recover() of the resumed run
        delay = rng.uniform(0.3, 1.2) if killed else rng.uniform(1.0, 2.5)
        p = subprocess.Popen(_cmd(book, sample_store_path), env=_env(home), cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        time.sleep(delay)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.wait(timeout=60)
        if state.exists():
            _assert_consistent(state)  # consistent after every kill, not only at the end
    _run_to_end(book, sample_store_path, home)
    _assert_consistent(state)
    assert _projection(state) == reference
    assert killed >= 4


def test_sigterm_leaves_a_resumable_state(tmp_path: Path, sample_store_path: Path, reference: Any) -> None:
    book = _book(tmp_path)
    home = tmp_path / "home"
    p = subprocess.Popen(_cmd(book, sample_store_path), env=_env(home), cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    # SIGTERM once the loop runs (its handler is installed before the first tick is journaled); a fixed wait
    # could land before that on a loaded machine, where the default action kills the process
    state = tmp_path / "state.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:
        if state.exists():
            try:
                with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as db:
                    if db.execute("SELECT count(*) FROM journal WHERE kind = 'tick'").fetchone()[0] > 0:
                        break
            except sqlite3.Error:
                pass
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    _run_to_end(book, sample_store_path, home)
    state = tmp_path / "state.sqlite"
    _assert_consistent(state)
    assert _projection(state) == reference
