"""The book store (``data/bookstore.py``): append-only journal, unique keys, one writer, concurrent readers,
kill -9 safety, refused files, JSON round trip."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perphedge.data.bookstore import (
    JOURNAL_KINDS,
    SCHEMA_VERSION,
    BookLockedError,
    BookStore,
    JournalConflictError,
    JournalRow,
)
from perphedge.errors import DataError

BOOK = "3f9a1c2e"


def _open(path: Path, **kw: object) -> BookStore:
    return BookStore.open(path, book_id=kw.pop("book_id", BOOK), book_hash=kw.pop("book_hash", "h" * 64), **kw)  # type: ignore[arg-type]


def _spawn(script: str) -> subprocess.Popen[str]:
    """A Python child running ``script`` (dedented) with stdout piped line by line."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def _await_line(proc: subprocess.Popen[str], expected: str, timeout: float = 30.0) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == expected:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"child ended ({proc.returncode}) before {expected!r}: {proc.stderr.read()}")  # type: ignore[union-attr]
    raise AssertionError(f"child did not print {expected!r} within {timeout} s")


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


# ---------------------------------------------------------------------------------------------- basics


def test_new_store_has_the_schema_and_settings(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "book.sqlite"
    with _open(path, sync="full") as store:
        assert path.is_file()
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert store.conn.isolation_level is None
        names = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master")}
        assert {
            "journal",
            "book_state",
            "j_once",
            "j_fill",
            "j_fund",
            "journal_no_update",
            "journal_no_delete",
        } <= names
        assert not any(n.startswith("paper_") for n in names)
        assert store.conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        assert store.last_seq() == 0
    assert (tmp_path / "sub" / "book.sqlite.lock").read_text().strip() == str(os.getpid())
    with _open(path, sync="off") as store:
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 0


def test_append_and_read_back(tmp_path: Path) -> None:
    with _open(tmp_path / "b.sqlite", book_hash="abc") as store:
        s1 = store.append("process_start", {"pid": 1, "command": "watch"}, ts_ms=10)
        s2 = store.append(
            "order_intent",
            {"attempt": 0, "side": "sell", "qty": np.float64(0.5), "n": np.int64(3), "v": np.array([1.0, 2.5])},
            ts_ms=20,
            bar=7,
            decision=3,
            leg=1,
            account="paper1",
            instrument="binance:BTCUSDT",
            client_id="ph3f9a1c2e00000030100",
        )
        assert (s1, s2) == (1, 2)
        assert store.last_seq() == 2
        rows = store.journal()
        assert rows[1] == JournalRow(
            seq=2,
            ts_ms=20,
            bar=7,
            kind="order_intent",
            decision=3,
            leg=1,
            account="paper1",
            instrument="binance:BTCUSDT",
            client_id="ph3f9a1c2e00000030100",
            venue_id=None,
            book_hash="abc",
            data={"attempt": 0, "side": "sell", "qty": 0.5, "n": 3, "v": [1.0, 2.5]},
        )
        assert rows[0].kind == "process_start" and rows[0].bar is None


def test_journal_filters(tmp_path: Path) -> None:
    with _open(tmp_path / "b.sqlite") as store:
        for i in range(10):
            store.append(
                "tick" if i % 2 else "decision", {"i": i}, ts_ms=1000 + i, decision=i // 4, client_id=f"c{i % 3}"
            )
        assert [r.data["i"] for r in store.journal(kinds=["tick"])] == [1, 3, 5, 7, 9]
        assert [r.data["i"] for r in store.journal(kinds="decision")] == [0, 2, 4, 6, 8]
        assert [r.seq for r in store.journal(since_seq=7)] == [8, 9, 10]
        assert [r.seq for r in store.journal(until_seq=2)] == [1, 2]
        assert [r.ts_ms for r in store.journal(since_ms=1005, until_ms=1006)] == [1005, 1006]
        assert [r.data["i"] for r in store.journal(decision=1)] == [4, 5, 6, 7]
        assert [r.data["i"] for r in store.journal(client_id="c2")] == [2, 5, 8]
        assert [r.seq for r in store.journal(limit=3, descending=True)] == [10, 9, 8]
        assert [r.seq for r in store.journal(limit=2)] == [1, 2]
        assert store.journal(kinds=[]) == []
        with pytest.raises(DataError, match=r"unknown journal kind 'bogus'"):
            store.journal(kinds=["bogus"])
        with pytest.raises(DataError, match=r"limit must be >= 0"):
            store.journal(limit=-1)


def test_every_design_kind_is_accepted_and_unknown_refused(tmp_path: Path) -> None:
    expected = {
        "process_start", "tick", "decision", "decision_done", "decision_abandoned", "limit_refused", "order_intent",
        "order_sent", "order_ack", "order_final", "fill", "funding", "transfer_intent", "transfer", "liquidation",
        "alert_open", "alert_close", "manual_change", "halt", "resume", "error",
        # issue 11: live accounts (positions adopted at the first tick, the kill switch's rows)
        "positions_adopted", "halt_done", "order_cancelled",
    }  # fmt: skip
    assert expected == JOURNAL_KINDS
    with _open(tmp_path / "b.sqlite") as store:
        with pytest.raises(DataError, match=r"unknown journal kind 'order'"):
            store.append("order", {}, ts_ms=1)
        with pytest.raises(DataError, match=r"must be a mapping"):
            store.append("tick", [1, 2], ts_ms=1)  # type: ignore[arg-type]
        with pytest.raises(DataError, match=r"`bar` must be an integer"):
            store.append("tick", {}, ts_ms=1, bar=1.5)  # type: ignore[arg-type]
        with pytest.raises(DataError, match=r"`account` must be text"):
            store.append("tick", {}, ts_ms=1, account=3)  # type: ignore[arg-type]
        assert store.last_seq() == 0


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"x": float("nan")}, "data.x"),
        ({"a": {"b": [1.0, float("inf")]}}, "data.a.b[1]"),
        ({"plan": [{"qty": np.float64("-inf")}]}, "data.plan[0].qty"),
        ({"arr": np.array([1.0, np.nan])}, "data.arr[1]"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_key(tmp_path: Path, data: dict[str, object], where: str) -> None:
    with _open(tmp_path / "b.sqlite") as store:
        with pytest.raises(DataError, match=re.escape(f"cannot journal `{where}`")):
            store.append("tick", data, ts_ms=1)
        with pytest.raises(DataError, match=r"not JSON data"):
            store.append("tick", {"when": object()}, ts_ms=1)
        with pytest.raises(DataError, match=r"is not a string"):
            store.append("tick", {"m": {1: 2}}, ts_ms=1)
        assert store.last_seq() == 0


# ---------------------------------------------------------------------------------------------- append-only


def test_journal_is_append_only(tmp_path: Path) -> None:
    with _open(tmp_path / "b.sqlite") as store:
        store.append("tick", {"a": 1}, ts_ms=1)
        for sql in ("UPDATE journal SET data = '{}'", "UPDATE journal SET seq = 5", "DELETE FROM journal"):
            with pytest.raises(sqlite3.IntegrityError, match=r"append-only"):
                store.conn.execute(sql)
        with pytest.raises(sqlite3.IntegrityError, match=r"append-only"), store.transaction():
            store.conn.execute("DELETE FROM journal WHERE seq = 1")
        assert [r.data for r in store.journal()] == [{"a": 1}]


# ---------------------------------------------------------------------------------------------- unique keys


def test_order_rows_once_per_client_id_and_attempt(tmp_path: Path) -> None:
    with _open(tmp_path / "b.sqlite") as store:
        for kind in ("order_intent", "order_sent", "order_final"):
            assert store.append(kind, {"attempt": 0}, ts_ms=1, client_id="phA") is not None
            with pytest.raises(JournalConflictError, match=rf"already holds this `{kind}` row .j_once: client id phA"):
                store.append(kind, {"attempt": 0, "other": 1}, ts_ms=2, client_id="phA")
            with pytest.raises(sqlite3.IntegrityError):  # the conflict is also an IntegrityError
                store.append(kind, {"attempt": 0}, ts_ms=2, client_id="phA")
            assert store.append(kind, {"attempt": 0}, ts_ms=3, client_id="phA", once=True) is None
            assert store.append(kind, {"attempt": 1}, ts_ms=4, client_id="phA") is not None  # next attempt
            assert store.append(kind, {"attempt": 0}, ts_ms=5, client_id="phB") is not None  # another order
        assert store.last_seq() == 9
        # order_ack is not keyed: a reconciled ack may follow a first one
        store.append("order_ack", {"attempt": 0}, ts_ms=6, client_id="phA")
        store.append("order_ack", {"attempt": 0}, ts_ms=7, client_id="phA")


def test_fill_and_funding_once(tmp_path: Path) -> None:
    with _open(tmp_path / "b.sqlite") as store:
        store.append("fill", {"fill_id": "f1", "qty": 1.0}, ts_ms=1, account="p1", client_id="phA")
        with pytest.raises(JournalConflictError, match=r"account p1, fill f1"):
            store.append("fill", {"fill_id": "f1", "qty": 2.0}, ts_ms=2, account="p1", client_id="phB")
        assert store.append("fill", {"fill_id": "f1"}, ts_ms=2, account="p1", once=True) is None
        assert store.append("fill", {"fill_id": "f1"}, ts_ms=2, account="p2") is not None
        fund = {"settlement_ms": 1_700_000_000_000, "rate": 1e-4, "amount": 1.0, "asset": "USDT", "amount_usd": 1.0}
        store.append("funding", fund, ts_ms=3, account="p1", instrument="binance:BTCUSDT")
        with pytest.raises(JournalConflictError, match=r"binance:BTCUSDT settlement 1700000000000"):
            store.append("funding", {**fund, "rate": 2e-4}, ts_ms=4, account="p1", instrument="binance:BTCUSDT")
        assert store.append("funding", fund, ts_ms=4, account="p1", instrument="binance:BTCUSDT", once=True) is None
        assert store.append("funding", fund, ts_ms=4, account="p1", instrument="binance:ETHUSDT") is not None
        assert store.append("funding", fund, ts_ms=4, account="p2", instrument="binance:BTCUSDT") is not None
        later = {**fund, "settlement_ms": fund["settlement_ms"] + 28_800_000}  # type: ignore[operator]
        assert store.append("funding", later, ts_ms=4, account="p1", instrument="binance:BTCUSDT") is not None
        assert len(store.journal(kinds=["funding"])) == 4
        assert len(store.journal(kinds=["fill"])) == 2


def test_unique_indexes_hold_for_raw_sql_too(tmp_path: Path) -> None:
    with _open(tmp_path / "b.sqlite") as store:
        sql = (
            "INSERT INTO journal (ts_ms, kind, client_id, account, instrument, book_hash, data) "
            "VALUES (1, ?, ?, ?, ?, 'h', ?)"
        )
        store.conn.execute(sql, ("order_sent", "phX", None, None, '{"attempt":2}'))
        with pytest.raises(sqlite3.IntegrityError, match=r"UNIQUE"):
            store.conn.execute(sql, ("order_sent", "phX", None, None, '{"attempt":2}'))
        with pytest.raises(sqlite3.IntegrityError, match=r"CHECK"):
            store.conn.execute(sql, ("tick", None, None, None, "not json"))


@pytest.mark.parametrize(
    ("kind", "kw", "data", "missing"),
    [
        ("order_intent", {}, {"attempt": 0}, "client_id"),
        ("order_sent", {"client_id": "phA"}, {}, "data.attempt"),
        ("order_final", {"client_id": "phA"}, {"status": "filled"}, "data.attempt"),
        ("fill", {"account": "p1"}, {"qty": 1}, "data.fill_id"),
        ("fill", {}, {"fill_id": "f"}, "account"),
        ("funding", {"account": "p1"}, {"settlement_ms": 1}, "instrument"),
        ("funding", {"account": "p1", "instrument": "i"}, {"rate": 1e-4}, "data.settlement_ms"),
    ],
)
def test_keyed_kinds_need_their_key_fields(
    tmp_path: Path, kind: str, kw: dict[str, str], data: dict[str, object], missing: str
) -> None:
    with _open(tmp_path / "b.sqlite") as store:
        with pytest.raises(DataError, match=rf"journal `{kind}` needs {missing}"):
            store.append(kind, data, ts_ms=1, **kw)  # type: ignore[arg-type]
        assert store.last_seq() == 0


# ---------------------------------------------------------------------------------------------- transactions, state


def test_transaction_commits_rolls_back_and_nests(tmp_path: Path) -> None:
    with _open(tmp_path / "b.sqlite") as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.append("decision", {"d": 1}, ts_ms=1)
            store.set_state("open_decision", 1)
            raise RuntimeError("boom")
        assert store.last_seq() == 0
        assert store.get_state("open_decision") is None
        with store.transaction():
            store.append("decision", {"d": 2}, ts_ms=2)
            with pytest.raises(KeyError), store.transaction():
                store.append("order_intent", {"attempt": 0}, ts_ms=3, client_id="phA")
                raise KeyError("inner")
            with store.transaction():
                store.set_state("open_decision", 2)
        assert [r.kind for r in store.journal()] == ["decision"]
        assert store.get_state("open_decision") == 2
        assert not store.conn.in_transaction
        # a conflict inside a transaction with once=True leaves the transaction usable
        with store.transaction():
            store.append("order_sent", {"attempt": 0}, ts_ms=4, client_id="phB")
            assert store.append("order_sent", {"attempt": 0}, ts_ms=4, client_id="phB", once=True) is None
            store.append("decision_done", {}, ts_ms=5)
        assert [r.kind for r in store.journal()] == ["decision", "order_sent", "decision_done"]


def test_state_values_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    with _open(path) as store:
        assert store.get_state("missing", {"d": 1}) == {"d": 1}
        store.set_state("alerts", {"liq|BTC": {"firing": True, "since_ms": 5}})
        store.set_state("halted", True)
        store.set_state("halted", False)
        store.set_state("open_decision", None)
        assert store.get_state("open_decision", "default") is None  # a stored null is a value
        with pytest.raises(DataError, match=r"cannot journal `x.v`: nan"):
            store.set_state("x", {"v": math.nan})
    reader = BookStore.open_reader(path)
    try:
        assert reader.get_state("alerts") == {"liq|BTC": {"firing": True, "since_ms": 5}}
        assert reader.get_state("halted") is False
        with pytest.raises(DataError, match=r"open read-only; cannot write book state"):
            reader.set_state("halted", True)
        with pytest.raises(DataError, match=r"open read-only; cannot append"):
            reader.append("tick", {}, ts_ms=1)
        with pytest.raises(DataError, match=r"open read-only; cannot create tables"):
            reader.ensure_schema("paper/1", "CREATE TABLE t (a)")
    finally:
        reader.close()


PAPER_DDL = """
CREATE TABLE paper_balances (account TEXT, asset TEXT, amount REAL NOT NULL, PRIMARY KEY (account, asset));
CREATE TABLE paper_ledger (account TEXT, kind TEXT, ref TEXT, amount REAL, PRIMARY KEY (account, kind, ref));
CREATE TRIGGER paper_ledger_no_delete BEFORE DELETE ON paper_ledger BEGIN SELECT RAISE(ABORT, 'no; never'); END;
"""


def test_ensure_schema_once(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    with _open(path) as store:
        store.ensure_schema("paper/1", PAPER_DDL)
        store.conn.execute("INSERT INTO paper_balances VALUES ('p1', 'USDT', 100.0)")
        store.ensure_schema("paper/1", PAPER_DDL)  # again: nothing happens, data kept
        assert store.conn.execute("SELECT amount FROM paper_balances").fetchall() == [(100.0,)]
        store.conn.execute("INSERT INTO paper_ledger VALUES ('p1', 'funding', 'r', 1.0)")
        with pytest.raises(sqlite3.IntegrityError, match=r"no; never"):
            store.conn.execute("DELETE FROM paper_ledger")
        with pytest.raises(DataError, match=r"schema 'paper/1' created from a different DDL"):
            store.ensure_schema("paper/1", PAPER_DDL + "CREATE TABLE paper_more (a);")
        with pytest.raises(DataError, match=r"schema 'bad' cannot be created"):
            store.ensure_schema("bad", "CREATE TABLE paper_balances (x);")  # exists already
        assert store.conn.execute("SELECT count(*) FROM book_schemas").fetchone()[0] == 1
    with _open(path) as store:
        store.ensure_schema("paper/1", PAPER_DDL)
        assert store.conn.execute("SELECT count(*) FROM paper_balances").fetchone()[0] == 1


# ---------------------------------------------------------------------------------------------- refused files


def test_wrong_files_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "dir.sqlite"
    folder.mkdir()
    with pytest.raises(DataError, match=r"is a directory"):
        _open(folder)
    text = tmp_path / "notes.sqlite"
    text.write_text("hello, this is a text file that is long enough\n")
    with pytest.raises(DataError, match=r"is not an SQLite file, so not a perphedge book store"):
        _open(text)
    with pytest.raises(DataError, match=r"is not an SQLite file"):
        BookStore.open_reader(text)
    assert text.read_text().startswith("hello")
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE customers (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(
        DataError, match=r"SQLite database but not a perphedge book store \(it holds the tables customers\)"
    ):
        _open(other)
    with pytest.raises(DataError, match=r"not a perphedge book store"):
        BookStore.open_reader(other)
    lookalike = tmp_path / "lookalike.sqlite"
    con = sqlite3.connect(lookalike)
    con.execute("CREATE TABLE schema_version (version INTEGER)")
    con.execute("INSERT INTO schema_version VALUES (7)")
    con.commit()
    con.close()
    with pytest.raises(DataError, match=r"not a perphedge book store \(it holds the tables schema_version\)"):
        _open(lookalike)
    assert sqlite3.connect(lookalike).execute("SELECT * FROM schema_version").fetchall() == [(7,)]
    with pytest.raises(DataError, match=r"sync must be one of full, normal, off"):
        _open(tmp_path / "x.sqlite", sync="fast")


def test_market_store_is_refused(tmp_path: Path) -> None:
    from perphedge.data.store import MarketStore

    duck = tmp_path / "market.duckdb"
    MarketStore(duck).close()
    with pytest.raises(DataError, match=r"is a DuckDB file .a market store.., not a perphedge book store"):
        _open(duck)
    with pytest.raises(DataError, match=r"DuckDB file"):
        BookStore.open_reader(duck)


def test_other_book_and_newer_schema_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    with _open(path) as store:
        store.append("tick", {}, ts_ms=1)
    with pytest.raises(DataError, match=rf"belongs to book {BOOK}, not 00000000"):
        _open(path, book_id="00000000")
    with _open(path, book_hash="new") as store:  # same book, edited file: a new hash is fine
        assert store.book_hash == "new"
        store.conn.execute("INSERT INTO schema_version VALUES (?, 0)", (SCHEMA_VERSION + 1,))
    with pytest.raises(DataError, match=rf"has schema v{SCHEMA_VERSION + 1}, newer than this perphedge"):
        _open(path)
    with pytest.raises(DataError, match=rf"has schema v{SCHEMA_VERSION + 1}, newer"):
        BookStore.open_reader(path)
    # a refused open releases the lock: another writer can take it
    with pytest.raises(DataError, match=r"newer"):
        _open(path)


def test_reader_of_missing_or_empty_store(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no book store at .*: `perphedge book init` .* creates it"):
        BookStore.open_reader(tmp_path / "none.sqlite")
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"is empty .0 bytes."):
        BookStore.open_reader(empty)
    with _open(empty) as store:  # the writer starts afresh on an empty file (a kill while creating it)
        store.append("tick", {}, ts_ms=1)
    reader = BookStore.open_reader(empty)
    assert (reader.book_id, reader.last_seq()) == (BOOK, 1)
    reader.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    with _open(folder / "b.sqlite") as store:
        store.append("tick", {"a": 1}, ts_ms=1)
    folder.chmod(0o555)
    try:
        with pytest.raises(DataError, match=r"cannot open the lock file .* the store.s folder must be writable"):
            _open(folder / "new.sqlite")
        reader = BookStore.open_reader(folder / "b.sqlite")
        assert reader.journal()[0].data == {"a": 1}
        reader.close()
    finally:
        folder.chmod(0o755)


# ---------------------------------------------------------------------------------------------- one writer


def test_second_writer_in_another_process_is_refused_with_our_pid(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    store = _open(path)
    try:
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys\nfrom perphedge.data.bookstore import BookStore, BookLockedError\n"
                f"try:\n    BookStore.open({str(path)!r}, book_id={BOOK!r}, book_hash='h')\n"
                "except BookLockedError as e:\n    print(e); sys.exit(3)\n",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert child.returncode == 3, child.stderr
        assert child.stdout.strip() == (
            f"book store {path} is being written by pid {os.getpid()} (perphedge book watch?); stop it or wait"
        )
        # in the same process too: a second writer is refused while the first is open
        with pytest.raises(BookLockedError, match=rf"pid {os.getpid()}"):
            _open(path)
    finally:
        store.close()
    with _open(path) as again:  # released on close
        again.append("tick", {}, ts_ms=1)


def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    holder = _spawn(f"""
        import time
        from perphedge.data.bookstore import BookStore
        s = BookStore.open({str(path)!r}, book_id={BOOK!r}, book_hash="h")
        s.append("process_start", {{"pid": 1}}, ts_ms=1)
        print("ready", flush=True)
        time.sleep(120)
    """)
    try:
        _await_line(holder, "ready")
        with pytest.raises(BookLockedError, match=rf"being written by pid {holder.pid} "):
            _open(path)
    finally:
        _kill(holder)
    with _open(path) as store:
        assert [r.kind for r in store.journal()] == ["process_start"]
        assert (tmp_path / "b.sqlite.lock").read_text().strip() == str(os.getpid())


# ---------------------------------------------------------------------------------------------- readers


def test_reader_in_another_process_during_a_long_write_transaction(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    with _open(path) as store:
        store.append("tick", {"i": 0}, ts_ms=1)
        with store.transaction():
            store.append("tick", {"i": 1}, ts_ms=2)
            store.append("tick", {"i": 2}, ts_ms=3)
            t0 = time.monotonic()
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import json\nfrom perphedge.data.bookstore import BookStore\n"
                    f"r = BookStore.open_reader({str(path)!r})\n"
                    "print(json.dumps([r.last_seq(), [x.data for x in r.journal()], r.book_id]))\n",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            waited = time.monotonic() - t0
            # the reader saw the committed state only, and was not blocked by the open transaction
            assert json.loads(out.stdout) == [1, [{"i": 0}], BOOK]
            assert waited < 4.5, waited  # well under busy_timeout (5 s): never waited on a lock
        assert store.last_seq() == 3


def test_reader_sees_monotonic_last_seq_while_a_writer_appends(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    total = 400
    with _open(path) as store:
        store.append("process_start", {}, ts_ms=0)
    writer = _spawn(f"""
        from perphedge.data.bookstore import BookStore
        s = BookStore.open({str(path)!r}, book_id={BOOK!r}, book_hash="h", sync="normal")
        print("ready", flush=True)
        for i in range({total}):
            with s.transaction():
                s.append("tick", {{"i": i, "blob": "x" * 500}}, ts_ms=i)
                s.set_state("last_tick", i)
        print("done", flush=True)
    """)
    try:
        _await_line(writer, "ready")
        reader = BookStore.open_reader(path)
        seen: list[int] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            reader.conn.execute("BEGIN")  # one read snapshot for both
            seq = reader.last_seq()
            state = reader.get_state("last_tick")
            reader.conn.execute("COMMIT")
            seen.append(seq)
            # book_state is committed with its journal row: the snapshot holds both or neither
            assert state == (None if seq == 1 else seq - 2)
            if seq == total + 1:
                break
        reader.close()
        _await_line(writer, "done")
    finally:
        _kill(writer)
    assert seen == sorted(seen)
    assert seen[-1] == total + 1
    assert len(set(seen)) > 2  # it did read while the writer wrote


def test_kill_9_mid_append_leaves_whole_rows(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    writer = _spawn(f"""
        from perphedge.data.bookstore import BookStore
        s = BookStore.open({str(path)!r}, book_id={BOOK!r}, book_hash="h", sync="off")
        print("ready", flush=True)
        i = 0
        while True:
            with s.transaction():
                s.append("decision", {{"i": i, "plan": [{{"leg": k, "qty": k * 0.5}} for k in range(50)]}}, ts_ms=i)
                s.append("decision_done", {{"i": i}}, ts_ms=i)
            i += 1
    """)
    try:
        _await_line(writer, "ready")
        time.sleep(0.8)
    finally:
        _kill(writer)
    assert writer.returncode == -signal.SIGKILL
    reader = BookStore.open_reader(path)
    rows = reader.journal()
    reader.close()
    assert len(rows) >= 2
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert len(rows) % 2 == 0  # each transaction's two rows, or neither
    for n, row in enumerate(rows):
        assert row.kind == ("decision" if n % 2 == 0 else "decision_done")
        assert row.data["i"] == n // 2
        if row.kind == "decision":
            assert len(row.data["plan"]) == 50
    with _open(path) as store:  # and a new writer continues after it
        assert store.append("tick", {}, ts_ms=1) == len(rows) + 1


# ---------------------------------------------------------------------------------------------- round trip

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.dictionaries(st.text(max_size=10), _json, max_size=6), ts=st.integers(-(2**62), 2**62))
def test_payload_round_trip(tmp_path: Path, payload: dict[str, object], ts: int) -> None:
    path = tmp_path / "rt.sqlite"
    with _open(path) as store:
        seq = store.append("tick", payload, ts_ms=ts)
        store.set_state("k", payload)
        assert seq is not None
        row = store.journal(since_seq=seq - 1)[0]
        assert row.data == payload
        assert row.ts_ms == ts
        assert store.get_state("k") == payload
        # floats come back bit for bit (also -0.0)
        assert json.dumps(row.data, sort_keys=True) == json.dumps(payload, sort_keys=True)
