"""`book halt` / `book resume` (the kill switch) and the reconciliation of positions changed outside the book,
through the real CLI on a paper book (issue 11, items 3 and 5d; live accounts in test_live_book*.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tests.conftest import REPO, run_cli

PORTFOLIO = REPO / "examples" / "altcoins.yaml"


def _init(tmp: Path, home: Path) -> Path:
    book = tmp / "my.book.yaml"
    r = run_cli("book", "init", str(book), "--portfolio", str(PORTFOLIO), "--paper", "binance", home=home)
    assert r.returncode == 0, r.stderr
    return book


def _json(*args: str, home: Path, code: int = 0) -> Any:
    r = run_cli(*args, "--format", "json", home=home)
    assert r.returncode == code, r.stderr
    return json.loads(r.stdout)


def _kinds(book: Path, home: Path) -> list[str]:
    return [r["kind"] for r in _json("book", "journal", str(book), home=home)]


def test_halt_blocks_every_sending_command_until_resume(tmp_path: Path) -> None:
    home = tmp_path / "home"
    book = _init(tmp_path, home)
    doc = _json("book", "halt", str(book), "--reason", "drill", home=home)
    assert doc["halted"] is True and doc["cancelled"] == [] and doc["errors"] == []
    st = _json("book", "status", str(book), home=home)
    assert st["accounts"][0]["halted"] is True

    r = run_cli("book", "rebalance", str(book), "--execute", "--yes", home=home)
    assert r.returncode == 3, r.stderr
    assert "book halted (drill)" in r.stderr and "book resume" in r.stderr
    assert "order_intent" not in _kinds(book, home)

    w = run_cli("book", "watch", str(book), "--every", "1s", "--ticks", "1", "--auto-rebalance", home=home)
    assert w.returncode == 0, w.stderr
    assert "halted" in w.stdout + w.stderr
    assert "order_intent" not in _kinds(book, home)

    doc = _json("book", "resume", str(book), home=home)
    assert doc["halted"] is False and doc["was_halted"] is True
    ex = _json("book", "rebalance", str(book), "--execute", "--yes", home=home)
    assert [x["status"] for x in ex["results"] if "client_id" in x] == ["filled"]
    kinds = _kinds(book, home)
    assert kinds.index("halt") < kinds.index("halt_done") < kinds.index("resume") < kinds.index("order_intent")


def test_halt_flags_are_checked(tmp_path: Path) -> None:
    home = tmp_path / "home"
    book = _init(tmp_path, home)
    for bad in ("", "   ", "x" * 501):
        r = run_cli("book", "halt", str(book), "--reason", bad, home=home)
        assert r.returncode == 2 and "--reason" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("book", "halt", str(tmp_path / "missing.yaml"), home=home)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_position_changed_outside_the_book_is_detected_and_the_plan_starts_from_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    book = _init(tmp_path, home)
    ex = _json("book", "rebalance", str(book), "--execute", "--yes", home=home)
    assert [x["status"] for x in ex["results"] if "client_id" in x] == ["filled"]
    book_id = yaml.safe_load(book.read_text(encoding="utf-8"))["id"]
    store = home / "books" / f"{book_id}.sqlite"
    # someone closes half the short by hand (on a venue: its website); the paper account's state says so
    with sqlite3.connect(store) as db:
        (blob,) = db.execute("SELECT state FROM paper_positions").fetchone()
        st = np.frombuffer(blob, dtype=np.float64).copy()
        assert st[0] == 200.0
        st[0] = 100.0
        db.execute("UPDATE paper_positions SET state = ?", (st.tobytes(),))
    dry = _json("book", "rebalance", str(book), home=home)
    assert dry["orders"][0]["contracts_before"] == 100.0  # the plan starts from what the account holds
    r = run_cli("book", "watch", str(book), "--every", "1s", "--ticks", "1", home=home)
    assert r.returncode == 0, r.stderr
    assert "changed at the venue outside the book" in r.stderr
    rows = _json("book", "journal", str(book), home=home)
    (change,) = [x for x in rows if x["kind"] == "manual_change"]
    assert change["data"]["expected"] == 200.0 and change["data"]["venue"] == 100.0
    assert [x["data"]["alert"] for x in rows if x["kind"] == "alert_open"].count("manual_change") == 1
    # the next tick sees no new change: the venue's numbers are the new baseline
    r = run_cli("book", "watch", str(book), "--every", "1s", "--ticks", "1", home=home)
    assert r.returncode == 0, r.stderr
    rows = _json("book", "journal", str(book), home=home)
    assert [x["kind"] for x in rows].count("manual_change") == 1
