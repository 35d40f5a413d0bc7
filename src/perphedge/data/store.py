"""The market store: one embedded DuckDB file.

Default location ``$PERPHEDGE_HOME/market.duckdb`` (``~/.perphedge`` when unset), created and
migrated on open (``schema_version`` table). Timestamps are stored as naive ``TIMESTAMP`` values
that mean UTC; readers hand them back tz-aware.

Writes are idempotent upserts keyed on (source, symbol, timeframe, ts) for candles, (source,
symbol, ts) for funding, and each call is one transaction: a failed or killed batch leaves the
store as it was before it. DuckDB lets one process write a file at a time; a second process gets
a clear :class:`~perphedge.errors.DataError` after waiting up to ``lock_timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from perphedge.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from perphedge.core.instruments import Instrument

__all__ = ["SCHEMA_VERSION", "MarketStore", "default_store_path"]

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
)
SCHEMA_VERSION = len(MIGRATIONS)

_COLUMNS: dict[str, tuple[str, ...]] = {
    "candles": ("source", "symbol", "timeframe", "ts", "open", "high", "low", "close", "volume"),
    "funding": ("source", "symbol", "ts", "rate", "interval_hours", "mark_price"),
    "basis": (
        "source",
        "asset",
        "ts",
        "timeframe",
        "spot_open",
        "spot_close",
        "perp_linear_open",
        "perp_linear_close",
        "perp_inverse_open",
        "perp_inverse_close",
    ),
    "sentiment": ("source", "name", "ts", "value"),
}


def default_store_path() -> Path:
    """``$PERPHEDGE_HOME/market.duckdb`` (``~/.perphedge/market.duckdb`` by default)."""
    home = os.environ.get("PERPHEDGE_HOME")
    root = Path(home) if home else Path.home() / ".perphedge"
    if root.exists() and not root.is_dir():
        where = f"PERPHEDGE_HOME={home}" if home else str(root)
        raise ConfigError(f"{where} is a file; it must be a directory (the market store is its market.duckdb)")
    return root / "market.duckdb"


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
        target = str(self.path)
        if target != ":memory:":
            p = Path(target)
            if read_only and not p.exists():
                raise DataError(f"no market store at {p}: run `perphedge data import` or `perphedge data fetch` first")
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataError(f"cannot create the folder of the market store {p}: {exc.strerror or exc}") from exc
        self.con = self._connect(target, read_only, lock_timeout)
        if not read_only:
            self._migrate()
        else:
            self._check_version()

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
                    raise DataError(f"cannot open the market store {target}: {text}") from exc
                if time.monotonic() >= deadline:
                    raise DataError(
                        f"the market store {target} is in use by another perphedge process; waited "
                        f"{lock_timeout:g} s ({text.splitlines()[0]})"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except duckdb.Error as exc:
                raise DataError(f"cannot open the market store {target}: {exc}") from exc

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> MarketStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with contextlib.suppress(duckdb.Error):
            self.con.close()

    def _migrate(self) -> None:
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
            with self.transaction():
                self.con.execute(MIGRATIONS[version - 1])
                self.con.execute("INSERT INTO schema_version VALUES (?, now()::TIMESTAMP)", [version])

    def _check_version(self) -> None:
        try:
            rows = self.con.execute("SELECT max(version) FROM schema_version").fetchall()
            row = rows[0] if rows else None
        except duckdb.Error as exc:
            raise DataError(f"{self.path} is not a perphedge market store") from exc
        if not row or row[0] is None or int(row[0]) != SCHEMA_VERSION:
            raise DataError(f"the market store {self.path} needs migrating: open it once for writing")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One DuckDB transaction: committed on success, rolled back on any error."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        else:
            self.con.execute("COMMIT")

    # ------------------------------------------------------------------ writes

    def upsert(self, table: str, frame: pd.DataFrame) -> int:
        """Insert or replace the rows of ``frame`` into ``table`` in one transaction; returns the row count."""
        if table not in _COLUMNS:
            raise DataError(f"unknown table {table!r}")
        cols = _COLUMNS[table]
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
            raise DataError(f"writing {len(view)} rows to {table} failed: {exc}") from exc
        finally:
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
        for table in ("instruments", *_COLUMNS):
            rows = self.con.execute(f"SELECT count(*) FROM {table}").fetchall()
            row = rows[0] if rows else None
            out[table] = int(row[0]) if row else 0
        return out

    def instruments(self) -> list[dict[str, Any]]:
        """Stored instrument rows."""
        frame = self.query("SELECT * FROM instruments ORDER BY source, symbol")
        return [dict(r) for r in frame.to_dict(orient="records")]
