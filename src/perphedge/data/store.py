"""The market store: one embedded DuckDB file.

Default location ``$PERPHEDGE_HOME/market.duckdb`` (``~/.perphedge`` when unset), created and
migrated on open (``schema_version`` table). Timestamps are stored as naive ``TIMESTAMP`` values
that mean UTC; readers hand them back tz-aware.

Writes are idempotent upserts keyed on (source, symbol, timeframe, ts) for candles, (source,
symbol, ts) for funding. Each :meth:`MarketStore.upsert` is one transaction, or part of the
caller's :meth:`MarketStore.transaction`: a failed or killed batch leaves the store as it was
before it. DuckDB lets one process write a file at a time; a second process gets a clear
:class:`~perphedge.errors.DataError` after waiting up to ``lock_timeout`` seconds.

The ``imports`` table records every import and fetch (``running`` → ``complete`` or ``failed``),
so a store whose writer was killed says so: :meth:`MarketStore.unfinished_runs`.

A file that is not a DuckDB database, or a DuckDB database without perphedge's tables, is refused
rather than written into.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from perphedge.data.tables import TABLE_COLUMNS
from perphedge.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from perphedge.core.instruments import Instrument

__all__ = ["INTERRUPTED", "RUN_STATES", "SCHEMA_VERSION", "MarketStore", "default_store_path"]

MIGRATIONS: tuple[str, ...] = (
    # v1
    """
    CREATE TABLE IF NOT EXISTS instruments (
        source VARCHAR NOT NULL, symbol VARCHAR NOT NULL, exchange_symbol VARCHAR, kind VARCHAR NOT NULL,
        base VARCHAR NOT NULL, quote VARCHAR NOT NULL, settle VARCHAR NOT NULL, contract_size DOUBLE NOT NULL,
        lot_size DOUBLE, tick_size DOUBLE, max_leverage DOUBLE, tier_style VARCHAR, tiers VARCHAR,
        liquidation_method VARCHAR, funding_interval_hours DOUBLE, maker_fee DOUBLE, taker_fee DOUBLE,
        spec_source VARCHAR, updated_at TIMESTAMP NOT NULL,
        PRIMARY KEY (source, symbol));
    CREATE TABLE IF NOT EXISTS candles (
        source VARCHAR NOT NULL, symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL, ts TIMESTAMP NOT NULL,
        open DOUBLE NOT NULL, high DOUBLE NOT NULL, low DOUBLE NOT NULL, close DOUBLE NOT NULL, volume DOUBLE,
        PRIMARY KEY (source, symbol, timeframe, ts));
    CREATE TABLE IF NOT EXISTS funding (
        source VARCHAR NOT NULL, symbol VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, rate DOUBLE NOT NULL,
        interval_hours DOUBLE NOT NULL, mark_price DOUBLE,
        PRIMARY KEY (source, symbol, ts));
    CREATE TABLE IF NOT EXISTS basis (
        source VARCHAR NOT NULL, asset VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, timeframe VARCHAR NOT NULL,
        spot_open DOUBLE, spot_close DOUBLE, perp_linear_open DOUBLE, perp_linear_close DOUBLE,
        perp_inverse_open DOUBLE, perp_inverse_close DOUBLE,
        PRIMARY KEY (source, asset, timeframe, ts));
    CREATE TABLE IF NOT EXISTS sentiment (
        source VARCHAR NOT NULL, name VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, value DOUBLE NOT NULL,
        PRIMARY KEY (source, name, ts));
    """,
    # v2: who owns this file, and a journal of imports and fetches
    """
    CREATE TABLE IF NOT EXISTS perphedge_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
    INSERT OR REPLACE INTO perphedge_meta VALUES ('application', 'perphedge');
    CREATE TABLE IF NOT EXISTS imports (
        id INTEGER PRIMARY KEY, kind VARCHAR NOT NULL, started TIMESTAMP NOT NULL, finished TIMESTAMP,
        state VARCHAR NOT NULL CHECK (state IN ('running', 'complete', 'failed')), source VARCHAR NOT NULL,
        files INTEGER NOT NULL DEFAULT 0, rows BIGINT NOT NULL DEFAULT 0, detail VARCHAR);
    """,
    # v3: dated futures (candles of each contract with its delivery time; delivery prices)
    """
    CREATE TABLE IF NOT EXISTS futures_candles (
        source VARCHAR NOT NULL, symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL, ts TIMESTAMP NOT NULL,
        expiry TIMESTAMP NOT NULL, open DOUBLE NOT NULL, high DOUBLE NOT NULL, low DOUBLE NOT NULL,
        close DOUBLE NOT NULL, spot_close DOUBLE, perp_close DOUBLE,
        PRIMARY KEY (source, symbol, timeframe, ts));
    CREATE TABLE IF NOT EXISTS futures_settlements (
        source VARCHAR NOT NULL, symbol VARCHAR NOT NULL, expiry TIMESTAMP NOT NULL,
        settlement_price DOUBLE NOT NULL,
        PRIMARY KEY (source, symbol));
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def default_store_path() -> Path:
    """``$PERPHEDGE_HOME/market.duckdb`` (``~/.perphedge/market.duckdb`` by default)."""
    home = os.environ.get("PERPHEDGE_HOME")
    root = Path(home) if home else Path.home() / ".perphedge"
    if root.exists() and not root.is_dir():
        where = f"PERPHEDGE_HOME={home}" if home else str(root)
        raise ConfigError(f"{where} is a file; it must be a directory (the market store is its market.duckdb)")
    return root / "market.duckdb"


_DUCKDB_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB database file
_V1_TABLES = frozenset({"schema_version", "instruments", "candles", "funding"})
RUN_STATES = ("running", "complete", "failed")
INTERRUPTED = "interrupted: the process ended before it finished"


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _check_file(path: Path, read_only: bool) -> None:
    """Refuse a path that cannot be a market store before DuckDB touches it."""
    if path.is_dir():
        raise DataError(f"the market store {path} is a directory; give a file path (--store FILE)")
    if path.exists() and not path.is_file():
        raise DataError(f"the market store {path} is not a regular file (a device, pipe or socket); give a file path")
    if not path.exists():
        if read_only:
            raise DataError(f"no market store at {path}: run `perphedge data import` or `perphedge data fetch` first")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create the folder of the market store {path}: {_one_line(exc)}") from exc
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise DataError(f"cannot read the market store {path}: {_one_line(exc)}") from exc
    if not head:
        if read_only:
            raise DataError(f"the market store {path} is empty (0 bytes): run `perphedge data import` first")
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_size == 0:
                path.unlink()  # an empty regular file holds nothing (a kill while creating it): start afresh
        except OSError as exc:
            raise DataError(
                f"the market store {path} is an empty file that cannot be replaced: {_one_line(exc)}"
            ) from exc
        return
    if head[8:12] != _DUCKDB_MAGIC:
        raise DataError(f"{path} is not a DuckDB file, so not a perphedge market store; choose another --store")


class MarketStore:
    """A DuckDB market store; use as a context manager.

    Parameters
    ----------
    path
        Store file; ``None`` means :func:`default_store_path`. ``":memory:"`` for tests.
    read_only
        Open without writing (fails with DataError if the file does not exist).
    lock_timeout
        Seconds to wait for another process that holds the file.
    """

    def __init__(self, path: str | Path | None = None, *, read_only: bool = False, lock_timeout: float = 10.0):
        self.path = Path(path) if path is not None and str(path) != ":memory:" else path
        if self.path is None:
            self.path = default_store_path()
        self.read_only = read_only
        self._in_transaction = False
        target = str(self.path)
        if target != ":memory:":
            _check_file(Path(target), read_only)
        self.con = self._connect(target, read_only, lock_timeout)
        try:
            self._open_checks(target, read_only, lock_timeout)
        except duckdb.Error as exc:  # a damaged file: DuckDB opened it, reading its catalogue failed
            self.close()
            raise DataError(
                f"the market store {target} is damaged (truncated or corrupt?): {_one_line(exc)}; restore it from "
                "a backup or import into a new --store"
            ) from exc

    def _open_checks(self, target: str, read_only: bool, lock_timeout: float) -> None:
        try:
            self._identify()
            if not read_only:
                self._migrate()
            elif self._check_version() < SCHEMA_VERSION and target != ":memory:":
                # an older perphedge wrote it: add the new tables once (nothing existing changes), then read
                self.close()
                try:
                    MarketStore(target, lock_timeout=lock_timeout).close()
                except DataError as exc:
                    raise DataError(
                        f"the market store {target} was written by an older perphedge and needs upgrading, which "
                        f"failed: {exc}"
                    ) from exc
                self.con = self._connect(target, read_only, lock_timeout)
                self._check_version()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _connect(target: str, read_only: bool, lock_timeout: float) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + max(lock_timeout, 0.0)
        delay = 0.05
        while True:
            try:
                return duckdb.connect(target, read_only=read_only)
            except duckdb.IOException as exc:
                text = str(exc)
                if "lock" not in text.lower():
                    if "not a valid DuckDB database" in text:
                        raise DataError(f"{target} is not a DuckDB file, so not a perphedge market store") from exc
                    raise DataError(f"cannot open the market store {target}: {_one_line(exc)}") from exc
                if time.monotonic() >= deadline:
                    raise DataError(
                        f"the market store {target} is in use by another perphedge process; waited "
                        f"{lock_timeout:g} s ({text.splitlines()[0]})"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except duckdb.Error as exc:
                raise DataError(f"cannot open the market store {target}: {_one_line(exc)}") from exc

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> MarketStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with contextlib.suppress(duckdb.Error, AttributeError):
            self.con.close()

    def _tables(self) -> set[str]:
        rows = self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database()"
        ).fetchall()
        return {str(r[0]) for r in rows}

    def _identify(self) -> None:
        """Refuse a DuckDB database that holds tables but is not a perphedge market store."""
        tables = self._tables()
        if not tables or tables == {"schema_version"}:
            return  # a new file (or one whose creation was interrupted before its first commit)
        if "perphedge_meta" in tables:
            rows = self.con.execute("SELECT value FROM perphedge_meta WHERE key = 'application'").fetchall()
            if rows and rows[0][0] == "perphedge":
                return
        elif tables >= _V1_TABLES:
            return  # a store written by perphedge before the meta table existed
        shown = ", ".join(sorted(tables)[:6]) + (", ..." if len(tables) > 6 else "")
        raise DataError(
            f"{self.path} is a DuckDB database but not a perphedge market store (it holds the tables {shown}); "
            "choose another --store"
        )

    def _migrate(self) -> None:
        with self.transaction():
            self.con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
            )
            rows = self.con.execute("SELECT max(version) FROM schema_version").fetchall()
            row = rows[0] if rows else None
            current = int(row[0]) if row and row[0] is not None else 0
            if current > SCHEMA_VERSION:
                raise DataError(
                    f"the market store {self.path} has schema v{current}, newer than this perphedge "
                    f"(v{SCHEMA_VERSION}); upgrade perphedge"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                self.con.execute(MIGRATIONS[version - 1])
                self.con.execute("INSERT INTO schema_version VALUES (?, now()::TIMESTAMP)", [version])

    def _check_version(self) -> int:
        """The store's schema version (DataError when it holds no schema or a newer one)."""
        if not self._tables():
            raise DataError(f"the market store {self.path} holds no data yet: run `perphedge data import` first")
        try:
            rows = self.con.execute("SELECT max(version) FROM schema_version").fetchall()
            row = rows[0] if rows else None
        except duckdb.Error as exc:
            raise DataError(f"{self.path} is not a perphedge market store") from exc
        if not row or row[0] is None:
            raise DataError(f"the market store {self.path} holds no data yet: run `perphedge data import` first")
        if int(row[0]) > SCHEMA_VERSION:
            raise DataError(
                f"the market store {self.path} has schema v{int(row[0])}, newer than this perphedge "
                f"(v{SCHEMA_VERSION}); upgrade perphedge"
            )
        return int(row[0])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One DuckDB transaction: committed on success, rolled back on any error.

        Nested use joins the outer transaction (DuckDB has no savepoints): everything commits or
        rolls back together with it.
        """
        if self._in_transaction:
            yield
            return
        self.con.execute("BEGIN TRANSACTION")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._in_transaction = False
            with contextlib.suppress(duckdb.Error):
                self.con.execute("ROLLBACK")
            raise
        self._in_transaction = False
        try:
            self.con.execute("COMMIT")
        except duckdb.Error as exc:
            with contextlib.suppress(duckdb.Error):
                self.con.execute("ROLLBACK")
            raise DataError(f"writing to the market store {self.path} failed: {_one_line(exc)}") from exc

    # ------------------------------------------------------------------ writes

    def upsert(self, table: str, frame: pd.DataFrame) -> int:
        """Insert or replace the rows of ``frame`` into ``table`` in one transaction; returns the row count."""
        if table not in TABLE_COLUMNS:
            raise DataError(f"unknown table {table!r}")
        cols = TABLE_COLUMNS[table]
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise DataError(f"cannot write {table}: missing columns {missing}")
        if frame.empty:
            return 0
        view = frame.loc[:, list(cols)]
        name = f"_incoming_{table}"
        self.con.register(name, view)
        try:
            with self.transaction():
                self.con.execute(
                    f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) SELECT {', '.join(cols)} FROM {name}"
                )
        except duckdb.Error as exc:
            raise DataError(f"writing {len(view)} rows to {table} failed: {_one_line(exc)}") from exc
        finally:
            with contextlib.suppress(duckdb.Error):
                self.con.unregister(name)
        return len(view)

    def upsert_instruments(self, source: str, instruments: Sequence[Instrument]) -> int:
        """Store instrument specs (with their margin tiers) under ``source``."""
        rows = []
        for inst in instruments:
            tiers = [[t.floor, t.mmr, t.max_leverage, t.maintenance_amount] for t in inst.margin.tiers]
            rows.append(
                (
                    source,
                    inst.ccxt_symbol or inst.symbol,
                    inst.symbol,
                    inst.kind.value,
                    inst.base,
                    inst.quote,
                    inst.settle,
                    inst.contract_size,
                    inst.lot_size,
                    inst.tick_size,
                    inst.max_leverage,
                    inst.margin.style.value,
                    json.dumps(tiers),
                    inst.liquidation_method.value,
                    inst.funding_interval_hours,
                    inst.maker_fee,
                    inst.taker_fee,
                    inst.source,
                )
            )
        with self.transaction():
            self.con.executemany(
                "INSERT OR REPLACE INTO instruments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "now()::TIMESTAMP)",
                rows,
            )
        return len(rows)

    # ------------------------------------------------------------------ the imports journal

    def begin_run(self, kind: str, source: str) -> int:
        """Record the start of an import or fetch (committed at once) and return its id.

        Runs still ``running`` are from processes that ended without finishing (this connection
        holds the file's write lock, so no other writer is alive): they become ``failed``.
        """
        if self._in_transaction:
            raise DataError("begin_run must be called outside a transaction (its row must survive a rollback)")
        try:
            with self.transaction():
                self.con.execute(
                    "UPDATE imports SET state = 'failed', detail = ? WHERE state = 'running'",
                    [INTERRUPTED],
                )
                rows = self.con.execute("SELECT coalesce(max(id), 0) + 1 FROM imports").fetchall()
                run_id = int(rows[0][0])
                self.con.execute(
                    "INSERT INTO imports (id, kind, started, state, source) "
                    "VALUES (?, ?, now()::TIMESTAMP, 'running', ?)",
                    [run_id, kind, source],
                )
        except duckdb.Error as exc:
            raise DataError(f"cannot record the {kind} in the market store {self.path}: {_one_line(exc)}") from exc
        return run_id

    def finish_run(self, run_id: int, *, state: str, files: int, rows: int, detail: str | None = None) -> None:
        """Close a run as ``complete`` or ``failed`` (inside the caller's transaction when there is one)."""
        if state not in RUN_STATES[1:]:
            raise DataError(f"invalid run state {state!r}")
        try:
            with self.transaction():
                self.con.execute(
                    "UPDATE imports SET state = ?, finished = now()::TIMESTAMP, files = ?, rows = ?, detail = ? "
                    "WHERE id = ?",
                    [state, files, rows, detail, run_id],
                )
        except duckdb.Error as exc:
            raise DataError(f"cannot record the end of run #{run_id} in {self.path}: {_one_line(exc)}") from exc

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest ``limit`` imports and fetches, newest first."""
        frame = self.query(
            "SELECT id, kind, started, finished, state, source, files, rows, detail FROM imports "
            "ORDER BY id DESC LIMIT ?",
            [limit],
        )
        return [_run_dict(r) for r in frame.to_dict(orient="records")]

    def unfinished_runs(self) -> list[dict[str, Any]]:
        """Runs that did not complete and were not completed since by a run of the same kind and source."""
        frame = self.query("""
            SELECT id, kind, started, finished, state, source, files, rows, detail FROM imports i
            WHERE state <> 'complete' AND NOT EXISTS (
                SELECT 1 FROM imports j
                WHERE j.kind = i.kind AND j.source = i.source AND j.state = 'complete' AND j.id > i.id)
            ORDER BY id""")
        return [_run_dict(r) for r in frame.to_dict(orient="records")]

    # ------------------------------------------------------------------ reads

    def last_ts(self, table: str, source: str, symbol: str, timeframe: str | None = None) -> Any:
        """Newest timestamp of one series (naive UTC datetime) or None."""
        key = "asset" if table == "basis" else ("name" if table == "sentiment" else "symbol")
        sql = f"SELECT max(ts) FROM {table} WHERE source = ? AND {key} = ?"
        params: list[Any] = [source, symbol]
        if timeframe is not None and table in ("candles", "basis"):
            sql += " AND timeframe = ?"
            params.append(timeframe)
        rows = self.con.execute(sql, params).fetchall()
        row = rows[0] if rows else None
        return row[0] if row else None

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run a read query and return a DataFrame."""
        try:
            return self.con.execute(sql, list(params or [])).df()
        except duckdb.Error as exc:
            raise DataError(f"market store query failed: {exc}") from exc

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        out = {}
        for table in ("instruments", *TABLE_COLUMNS):
            rows = self.con.execute(f"SELECT count(*) FROM {table}").fetchall()
            row = rows[0] if rows else None
            out[table] = int(row[0]) if row else 0
        return out

    def instruments(self) -> list[dict[str, Any]]:
        """Stored instrument rows."""
        frame = self.query("SELECT * FROM instruments ORDER BY source, symbol")
        return [dict(r) for r in frame.to_dict(orient="records")]


def _run_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    def text(value: Any) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return str(value)

    finished = row.get("finished")
    return {
        "id": int(row["id"]),
        "kind": str(row["kind"]),
        "started": text(row["started"]),
        "finished": None if finished is None or str(finished) in ("NaT", "nan", "None") else str(finished),
        "state": str(row["state"]),
        "source": str(row["source"]),
        "files": int(row["files"]),
        "rows": int(row["rows"]),
        "detail": text(row.get("detail")),
    }
