"""The book's state store: one SQLite file in WAL mode (stdlib :mod:`sqlite3`, no server).

Default location ``$PERPHEDGE_HOME/books/<id>.sqlite`` (chosen by the use case). It holds:

* ``journal``: the append-only event log of the book (triggers refuse ``UPDATE`` and ``DELETE``). Three
  partial unique indexes make the crash-safety protocol (design §4) hold even if the code asking is wrong:
  ``j_once`` (one ``order_intent`` / ``order_sent`` / ``order_final`` per client id and attempt), ``j_fill``
  (one ``fill`` per account and fill id) and ``j_fund`` (one ``funding`` per account, instrument and
  settlement time). :meth:`BookStore.append` refuses those rows without the fields the keys are built from,
  so a key can never be silently void (SQLite treats NULLs as distinct).
* ``book_state``: JSON values by key (a cache of the journal, written in the same transaction as its row).
* ``book_schemas``: the adapters' own tables (the paper account's ``paper_*``), created once through
  :meth:`BookStore.ensure_schema` and recorded by name.

Concurrency: **one writer** (:meth:`BookStore.open` takes ``flock(<store>.lock, LOCK_EX | LOCK_NB)`` and
writes its pid into the lock file; a second writer gets :class:`BookLockedError` naming that pid; the
kernel drops the lock when the holder exits, even by ``kill -9``) and any number of readers
(:meth:`BookStore.open_reader`, ``mode=ro``), which WAL never blocks and which never block the writer.
Connections are in autocommit mode: every statement outside :meth:`BookStore.transaction` commits alone,
so the writer holds no transaction between ticks.

Migrations follow the market store's pattern (``schema_version``; ``perphedge_meta.application`` names the
file's owner). A file that is not a perphedge book store (a DuckDB market store, a text file, another SQLite
database, a directory), a store of another book id and a store written by a newer perphedge are refused with
one line, before anything is written into them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from perphedge.errors import DataError

__all__ = [
    "APPLICATION",
    "JOURNAL_KINDS",
    "SCHEMA_VERSION",
    "BookLockedError",
    "BookStore",
    "JournalConflictError",
    "JournalRow",
]

APPLICATION = "perphedge.book"  # perphedge_meta.application of every book store

JOURNAL_KINDS: frozenset[str] = frozenset(
    {
        "process_start",
        "tick",
        "decision",
        "decision_done",
        "decision_abandoned",
        "limit_refused",
        "order_intent",
        "order_sent",
        "order_ack",
        "order_final",
        "fill",
        "funding",
        "transfer_intent",
        "transfer",
        "liquidation",
        "alert_open",
        "alert_close",
        "manual_change",
        "positions_adopted",
        "halt",
        "halt_done",
        "order_cancelled",
        "resume",
        "error",
    }
)

# the fields each uniquely keyed kind must carry (column or ``data`` key), so its unique index applies
_KEYED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "order_intent": (("client_id",), ("attempt",)),
    "order_sent": (("client_id",), ("attempt",)),
    "order_final": (("client_id",), ("attempt",)),
    "fill": (("account",), ("fill_id",)),
    "funding": (("account", "instrument"), ("settlement_ms",)),
}
_INDEX_OF_KIND = {
    "order_intent": "j_once",
    "order_sent": "j_once",
    "order_final": "j_once",
    "fill": "j_fill",
    "funding": "j_fund",
}

MIGRATIONS: tuple[str, ...] = (
    # v1
    f"""
    CREATE TABLE IF NOT EXISTS perphedge_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT OR REPLACE INTO perphedge_meta VALUES ('application', '{APPLICATION}');
    CREATE TABLE IF NOT EXISTS journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, bar INTEGER, kind TEXT NOT NULL,
        decision INTEGER, leg INTEGER, account TEXT, instrument TEXT, client_id TEXT, venue_id TEXT,
        book_hash TEXT NOT NULL, data TEXT NOT NULL CHECK (json_valid(data)));
    CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
        BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END;
    CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
        BEGIN SELECT RAISE(ABORT, 'journal is append-only'); END;
    CREATE UNIQUE INDEX IF NOT EXISTS j_once ON journal(client_id, kind, json_extract(data, '$.attempt'))
        WHERE kind IN ('order_intent', 'order_sent', 'order_final');
    CREATE UNIQUE INDEX IF NOT EXISTS j_fill ON journal(account, json_extract(data, '$.fill_id'))
        WHERE kind = 'fill';
    CREATE UNIQUE INDEX IF NOT EXISTS j_fund ON journal(account, instrument, json_extract(data, '$.settlement_ms'))
        WHERE kind = 'funding';
    CREATE INDEX IF NOT EXISTS j_kind ON journal(kind, seq);
    CREATE INDEX IF NOT EXISTS j_ts ON journal(ts_ms);
    CREATE INDEX IF NOT EXISTS j_decision ON journal(decision) WHERE decision IS NOT NULL;
    CREATE INDEX IF NOT EXISTS j_client ON journal(client_id) WHERE client_id IS NOT NULL;
    CREATE TABLE IF NOT EXISTS book_state (key TEXT PRIMARY KEY, value TEXT NOT NULL CHECK (json_valid(value)));
    CREATE TABLE IF NOT EXISTS book_schemas (
        name TEXT PRIMARY KEY, ddl_sha256 TEXT NOT NULL, applied_ms INTEGER NOT NULL);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_SQLITE_MAGIC = b"SQLite format 3\x00"
_DUCKDB_MAGIC = b"DUCK"  # bytes 8..12 of a DuckDB file
_SYNC = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}


class BookLockedError(DataError):
    """Another process holds the book store's writer lock (the CLI exits 4: busy, try again later)."""

    exit_code = 4


class JournalConflictError(DataError, sqlite3.IntegrityError):
    """A journal row collides with a unique key (``j_once``, ``j_fill``, ``j_fund``): it was written before."""


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One journal row as stored (``data`` parsed back from JSON)."""

    seq: int
    ts_ms: int
    bar: int | None
    kind: str
    decision: int | None
    leg: int | None
    account: str | None
    instrument: str | None
    client_id: str | None
    venue_id: str | None
    book_hash: str
    data: dict[str, Any]


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain JSON types; NaN/inf and unknown types refused naming ``where``."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DataError(f"cannot journal `{where}`: {value} is not a finite number (JSON has no NaN/inf)")
        return float(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise DataError(f"cannot journal `{where}`: key {k!r} is not a string")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "tolist"):  # numpy scalars (shape ()) and arrays
        return _plain(value.tolist(), where) if shape != () else _plain(value.item(), where)
    raise DataError(f"cannot journal `{where}`: {type(value).__name__} is not JSON data")


def _dumps(value: Any, where: str) -> str:
    return json.dumps(_plain(value, where), allow_nan=False, separators=(",", ":"))


def _opt_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise DataError(f"journal field `{name}` must be an integer or None, was {value!r}")
    return int(value.__index__())


def _opt_text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataError(f"journal field `{name}` must be text or None, was {value!r}")
    return value


def _split_sql(ddl: str) -> list[str]:
    """The statements of ``ddl`` (``;`` inside a trigger body or a string does not split)."""
    out: list[str] = []
    buf = ""
    for part in ddl.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \t\r\n;"):
                out.append(buf.strip())
            buf = ""
    if buf.strip(" \t\r\n;"):
        raise DataError(f"schema DDL ends with an incomplete statement: {buf.strip()[:60]!r}")
    return out


def _check_file(path: Path, *, reader: bool) -> bool:
    """Refuse a path that cannot be a book store before SQLite touches it; True when it holds data."""
    if path.is_dir():
        raise DataError(f"the book store {path} is a directory; it must be a file")
    if path.exists() and not path.is_file():
        raise DataError(f"the book store {path} is not a regular file (a device, pipe or socket)")
    if not path.exists():
        if reader:
            raise DataError(
                f"no book store at {path}: `perphedge book init` (or the book's first writing command) creates it"
            )
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise DataError(f"cannot read the book store {path}: {_one_line(exc)}") from exc
    if not head:
        if reader:
            raise DataError(f"the book store {path} is empty (0 bytes): it holds no book yet")
        return False
    if head[8:12] == _DUCKDB_MAGIC:
        raise DataError(f"{path} is a DuckDB file (a market store?), not a perphedge book store; choose another store")
    if head != _SQLITE_MAGIC:
        raise DataError(f"{path} is not an SQLite file, so not a perphedge book store; choose another store")
    return True


class BookStore:
    """The book's SQLite store. Open with :meth:`open` (the one writer) or :meth:`open_reader`."""

    path: Path
    book_id: str
    book_hash: str
    conn: sqlite3.Connection

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        *,
        book_id: str,
        book_hash: str,
        writable: bool,
        lock_fd: int | None,
    ) -> None:
        self.path = path
        self.conn = conn
        self.book_id = book_id
        self.book_hash = book_hash
        self.writable = writable
        self._lock_fd = lock_fd
        self._depth = 0
        #: applied to every journal row's JSON before it is written (the use case sets the credential redactor)
        self.scrub: Callable[[str], str] | None = None

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        book_id: str,
        book_hash: str,
        sync: Literal["full", "normal", "off"] = "normal",
    ) -> BookStore:
        """Open (create, migrate) the store as its one writer.

        ``sync``: ``full`` for live books (a committed row survives power loss), ``normal`` for paper watch,
        ``off`` for replay. Raises :class:`BookLockedError` when another process writes the store, and
        :class:`~perphedge.errors.DataError` for a file that is not this book's store.
        """
        p = Path(path)
        if sync not in _SYNC:
            raise DataError(f"book store sync must be one of full, normal, off; was {sync!r}")
        if not book_id or not isinstance(book_id, str):
            raise DataError(f"book store {p}: book id must be non-empty text, was {book_id!r}")
        _check_file(p, reader=False)  # refuse a wrong file before creating anything beside it
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create the folder of the book store {p}: {_one_line(exc)}") from exc
        lock_fd = _take_lock(p)
        conn: sqlite3.Connection | None = None
        try:
            has_data = _check_file(p, reader=False)  # again under the lock: a writer may have finished meanwhile
            if not has_data and p.exists():
                with contextlib.suppress(OSError):
                    p.unlink()  # an empty file (a kill while creating it) holds nothing: start afresh
            conn = _connect(str(p), p)
            store = cls(p, conn, book_id=book_id, book_hash=book_hash, writable=True, lock_fd=lock_fd)
            try:
                _identify(conn, p)
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
                if not mode or str(mode[0]).lower() != "wal":
                    raise DataError(f"the book store {p} cannot use WAL mode (journal mode {mode}); is it on NFS?")
                conn.execute(f"PRAGMA synchronous={_SYNC[sync]}")
                store._migrate()
                store._claim(book_id, book_hash)
            except sqlite3.Error as exc:
                raise DataError(f"cannot open the book store {p}: {_one_line(exc)}") from exc
            return store
        except BaseException:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            _release_lock(lock_fd)
            raise

    @classmethod
    def open_reader(cls, path: str | Path) -> BookStore:
        """Open the store read-only (``mode=ro``): never blocks nor is blocked by the writer; cannot write."""
        p = Path(path)
        _check_file(p, reader=True)
        conn = _reader_conn(p)
        try:
            _identify(conn, p)
            tables = _tables(conn)
            if "schema_version" not in tables or "journal" not in tables:
                raise DataError(f"the book store {p} holds no book yet (its creation did not finish)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            version = int(row[0]) if row and row[0] is not None else 0
            if version > SCHEMA_VERSION:
                raise DataError(
                    f"the book store {p} has schema v{version}, newer than this perphedge (v{SCHEMA_VERSION}); "
                    "upgrade perphedge"
                )
            if version < SCHEMA_VERSION:
                raise DataError(
                    f"the book store {p} has schema v{version}, older than this perphedge (v{SCHEMA_VERSION}); "
                    "a writing `perphedge book` command upgrades it"
                )
            meta = dict(conn.execute("SELECT key, value FROM perphedge_meta").fetchall())
        except sqlite3.Error as exc:
            conn.close()
            raise DataError(f"cannot read the book store {p}: {_one_line(exc)}") from exc
        except BaseException:
            conn.close()
            raise
        return cls(
            p,
            conn,
            book_id=str(meta.get("book_id", "")),
            book_hash=str(meta.get("book_hash", "")),
            writable=False,
            lock_fd=None,
        )

    def _migrate(self) -> None:
        with self.transaction():
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)"
            )
            row = self.conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            if current > SCHEMA_VERSION:
                raise DataError(
                    f"the book store {self.path} has schema v{current}, newer than this perphedge "
                    f"(v{SCHEMA_VERSION}); upgrade perphedge"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for stmt in _split_sql(MIGRATIONS[version - 1]):
                    self.conn.execute(stmt)
                self.conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, int(time.time() * 1000)))

    def _claim(self, book_id: str, book_hash: str) -> None:
        """Record the book id on a new store; refuse another book's store; remember the latest book hash."""
        with self.transaction():
            row = self.conn.execute("SELECT value FROM perphedge_meta WHERE key = 'book_id'").fetchone()
            if row is not None and row[0] != book_id:
                raise DataError(
                    f"the book store {self.path} belongs to book {row[0]}, not {book_id}; each book has its own store"
                )
            if row is None:
                self.conn.execute("INSERT INTO perphedge_meta VALUES ('book_id', ?)", (book_id,))
            self.conn.execute("INSERT OR REPLACE INTO perphedge_meta VALUES ('book_hash', ?)", (book_hash,))

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the connection and release the writer lock (idempotent)."""
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
        if self._lock_fd is not None:
            _release_lock(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> BookStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _writable(self, what: str) -> None:
        if not self.writable:
            raise DataError(f"the book store {self.path} is open read-only; cannot {what}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception); nested use is a ``SAVEPOINT``.

        A transaction someone opened directly on :attr:`conn` is joined as a savepoint too.
        """
        if self._depth > 0 or self.conn.in_transaction:
            name = f"ph_sp{self._depth}"
            self.conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute(f"ROLLBACK TO {name}")
                    self.conn.execute(f"RELEASE {name}")
                raise
            self._depth -= 1
            self.conn.execute(f"RELEASE {name}")
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise DataError(f"cannot start a write to the book store {self.path}: {_one_line(exc)}") from exc
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise DataError(f"writing to the book store {self.path} failed: {_one_line(exc)}") from exc

    # ------------------------------------------------------------------ the journal

    def append(
        self,
        kind: str,
        data: Mapping[str, Any],
        *,
        ts_ms: int,
        bar: int | None = None,
        decision: int | None = None,
        leg: int | None = None,
        account: str | None = None,
        instrument: str | None = None,
        client_id: str | None = None,
        venue_id: str | None = None,
        once: bool = False,
    ) -> int | None:
        """Append one journal row; returns its ``seq``.

        ``data`` is stored as strict JSON (NaN/inf refused naming the key; numpy scalars and arrays become
        numbers and lists). The uniquely keyed kinds need their key fields: ``order_intent``/``order_sent``/
        ``order_final`` a ``client_id`` and ``data["attempt"]``; ``fill`` an ``account`` and
        ``data["fill_id"]``; ``funding`` an ``account``, ``instrument`` and ``data["settlement_ms"]``. A row
        that collides with its key raises :class:`JournalConflictError` (an ``sqlite3.IntegrityError``), or
        returns None when ``once=True`` (then nothing is written).
        """
        self._writable("append to the journal")
        if kind not in JOURNAL_KINDS:
            raise DataError(f"unknown journal kind {kind!r}; known: {', '.join(sorted(JOURNAL_KINDS))}")
        if not isinstance(data, Mapping):
            raise DataError(f"journal `{kind}` data must be a mapping, was {type(data).__name__}")
        ts = _opt_int(ts_ms, "ts_ms")
        if ts is None:
            raise DataError("journal field `ts_ms` is required")
        cols = {
            "account": _opt_text(account, "account"),
            "instrument": _opt_text(instrument, "instrument"),
            "client_id": _opt_text(client_id, "client_id"),
            "venue_id": _opt_text(venue_id, "venue_id"),
        }
        text = _dumps(data, "data")
        if self.scrub is not None:  # live books: credential values never reach the file (venue messages echo them)
            text = self.scrub(text)
        if kind in _KEYED:
            col_keys, data_keys = _KEYED[kind]
            missing = [c for c in col_keys if cols[c] is None] + [f"data.{k}" for k in data_keys if data.get(k) is None]
            if missing:
                raise DataError(
                    f"journal `{kind}` needs {', '.join(missing)}: its unique key ({_INDEX_OF_KIND[kind]}) is "
                    "built from them"
                )
        try:
            cur = self.conn.execute(
                "INSERT INTO journal (ts_ms, bar, kind, decision, leg, account, instrument, client_id, venue_id, "
                "book_hash, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ts,
                    _opt_int(bar, "bar"),
                    kind,
                    _opt_int(decision, "decision"),
                    _opt_int(leg, "leg"),
                    cols["account"],
                    cols["instrument"],
                    cols["client_id"],
                    cols["venue_id"],
                    self.book_hash,
                    text,
                ),
            )
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" not in str(exc).upper():
                raise DataError(f"cannot journal `{kind}` in {self.path}: {_one_line(exc)}") from exc
            if once:
                return None
            raise JournalConflictError(
                f"the journal of {self.path} already holds this `{kind}` row ({_INDEX_OF_KIND.get(kind, 'unique')}: "
                f"{_key_text(kind, cols, data)})"
            ) from exc
        return int(cur.lastrowid or 0)

    def journal(
        self,
        *,
        kinds: Sequence[str] | None = None,
        since_seq: int | None = None,
        until_seq: int | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        decision: int | None = None,
        client_id: str | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[JournalRow]:
        """Journal rows in ``seq`` order (``descending``: newest first).

        Bounds are inclusive except ``since_seq`` (rows *after* it: pass :meth:`last_seq` to get only what
        comes next) and ``since_ms`` (rows with ``ts_ms >= since_ms``).
        """
        where: list[str] = []
        params: list[Any] = []
        if kinds is not None:
            kinds = [kinds] if isinstance(kinds, str) else list(kinds)
            bad = [k for k in kinds if k not in JOURNAL_KINDS]
            if bad:
                raise DataError(f"unknown journal kind {bad[0]!r}; known: {', '.join(sorted(JOURNAL_KINDS))}")
            if not kinds:
                return []
            where.append(f"kind IN ({', '.join('?' for _ in kinds)})")
            params.extend(kinds)
        for sql, value in (
            ("seq > ?", since_seq),
            ("seq <= ?", until_seq),
            ("ts_ms >= ?", since_ms),
            ("ts_ms <= ?", until_ms),
            ("decision = ?", decision),
        ):
            if value is not None:
                where.append(sql)
                params.append(_opt_int(value, sql.split()[0]))
        if client_id is not None:
            where.append("client_id = ?")
            params.append(client_id)
        sql = (
            "SELECT seq, ts_ms, bar, kind, decision, leg, account, instrument, client_id, venue_id, book_hash, data "
            "FROM journal"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC" if descending else " ORDER BY seq"
        if limit is not None:
            n = _opt_int(limit, "limit")
            if n is None or n < 0:
                raise DataError(f"journal limit must be >= 0, was {limit!r}")
            sql += " LIMIT ?"
            params.append(n)
        try:
            rows = self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise DataError(f"cannot read the journal of {self.path}: {_one_line(exc)}") from exc
        return [
            JournalRow(
                seq=r[0],
                ts_ms=r[1],
                bar=r[2],
                kind=r[3],
                decision=r[4],
                leg=r[5],
                account=r[6],
                instrument=r[7],
                client_id=r[8],
                venue_id=r[9],
                book_hash=r[10],
                data=json.loads(r[11]),
            )
            for r in rows
        ]

    def last_seq(self) -> int:
        """The newest journal ``seq`` (0 when the journal is empty)."""
        row = self.conn.execute("SELECT max(seq) FROM journal").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    # ------------------------------------------------------------------ book_state

    def get_state(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key`` (``default`` when there is none)."""
        row = self.conn.execute("SELECT value FROM book_state WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_state(self, key: str, value: Any) -> None:
        """Store ``value`` (strict JSON) under ``key``; inside :meth:`transaction` it commits with its journal row."""
        self._writable("write book state")
        if not isinstance(key, str) or not key:
            raise DataError(f"book state key must be non-empty text, was {key!r}")
        text = _dumps(value, key)
        self.conn.execute(
            "INSERT INTO book_state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, text),
        )

    # ------------------------------------------------------------------ adapters' tables

    def ensure_schema(self, name: str, ddl: str) -> None:
        """Create an adapter's tables once (``ddl``: one or more statements), recorded under ``name``.

        Called again with the same DDL it does nothing. A different DDL under a recorded name is refused:
        the tables exist in the old shape, so the adapter must record a new name with a migration.
        """
        self._writable("create tables")
        if not name:
            raise DataError("schema name must be non-empty")
        digest = hashlib.sha256(ddl.encode()).hexdigest()
        with self.transaction():
            row = self.conn.execute("SELECT ddl_sha256 FROM book_schemas WHERE name = ?", (name,)).fetchone()
            if row is not None:
                if row[0] != digest:
                    raise DataError(
                        f"the book store {self.path} holds schema {name!r} created from a different DDL; "
                        "changed tables need a new schema name and a migration"
                    )
                return
            try:
                for stmt in _split_sql(ddl):
                    self.conn.execute(stmt)
            except sqlite3.Error as exc:
                raise DataError(f"schema {name!r} cannot be created in {self.path}: {_one_line(exc)}") from exc
            self.conn.execute(
                "INSERT INTO book_schemas (name, ddl_sha256, applied_ms) VALUES (?, ?, ?)",
                (name, digest, int(time.time() * 1000)),
            )


def _key_text(kind: str, cols: Mapping[str, str | None], data: Mapping[str, Any]) -> str:
    if kind == "fill":
        return f"account {cols['account']}, fill {data.get('fill_id')}"
    if kind == "funding":
        return f"account {cols['account']}, {cols['instrument']} settlement {data.get('settlement_ms')}"
    return f"client id {cols['client_id']}, attempt {data.get('attempt')}"


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").fetchall()
    return {str(r[0]) for r in rows}


def _identify(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse an SQLite database that holds tables but is not a perphedge book store."""
    try:
        tables = _tables(conn)
    except sqlite3.DatabaseError as exc:
        raise DataError(
            f"the book store {path} is damaged or not a database ({_one_line(exc)}); restore it from a backup"
        ) from exc
    if not tables:
        return  # new (a creation interrupted before its first migration committed leaves no table)
    if "perphedge_meta" in tables:
        row = conn.execute("SELECT value FROM perphedge_meta WHERE key = 'application'").fetchone()
        if row and row[0] == APPLICATION:
            return
        if row and row[0] == "perphedge":
            raise DataError(f"{path} is a perphedge market store, not a book store; choose another store")
    shown = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
    raise DataError(
        f"{path} is an SQLite database but not a perphedge book store (it holds the tables {shown}); "
        "choose another store"
    )


def _reader_conn(path: Path) -> sqlite3.Connection:
    """A ``mode=ro`` connection. In a folder we cannot write (no ``-shm`` can be made) a store with no pending
    WAL content is opened ``immutable`` instead: no writer can be active there, since a writer needs the folder."""
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5.0)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA query_only=ON")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError as exc:
        conn.close()
        wal = path.with_name(path.name + "-wal")
        pending = wal.exists() and wal.stat().st_size > 0
        if "readonly" not in str(exc) or pending or os.access(path.parent, os.W_OK):
            raise DataError(f"cannot open the book store {path} for reading: {_one_line(exc)}") from exc
    except sqlite3.Error as exc:
        raise DataError(f"cannot open the book store {path} for reading: {_one_line(exc)}") from exc
    try:
        conn = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None)
        conn.execute("PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        raise DataError(f"cannot open the book store {path} for reading: {_one_line(exc)}") from exc
    return conn


def _connect(target: str, path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(target, isolation_level=None, timeout=5.0)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as exc:
        raise DataError(f"cannot open the book store {path}: {_one_line(exc)}") from exc
    return conn


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _take_lock(path: Path) -> int:
    """``flock(<path>.lock, LOCK_EX | LOCK_NB)`` with our pid written in; :class:`BookLockedError` when held."""
    lock = _lock_path(path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DataError(
            f"cannot open the lock file {lock} of the book store: {_one_line(exc)} "
            "(the store's folder must be writable)"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        who = f"pid {holder}" if holder else "another process"
        raise BookLockedError(
            f"book store {path} is being written by {who} (perphedge book watch?); stop it or wait"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise DataError(f"cannot lock the book store {path} ({lock}): {_one_line(exc)}") from exc
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        _release_lock(fd)
        raise DataError(f"cannot write the lock file {lock}: {_one_line(exc)}") from exc
    return fd


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    return None


def _release_lock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)
