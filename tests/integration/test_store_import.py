"""The DuckDB store and the importers, on the real sample data and on crafted bad files."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from perphedge.data.importer import ImportReport, parse_file, parse_sample, perp_ccxt_symbol
from perphedge.data.store import SCHEMA_VERSION, MarketStore
from perphedge.errors import DataError
from perphedge.usecases.data import import_frames
from tests.conftest import sample_dir


def import_sample(store: MarketStore, root: Path) -> None:
    import_frames(store, parse_sample(root), source=str(root))


def import_file(store: MarketStore, path: Path, **options: Any) -> ImportReport:
    parsed = parse_file(path, **options)
    import_frames(store, [parsed], source=str(path))
    return parsed.report()


def _rows(path: Path) -> int:
    with path.open() as fh:
        return sum(1 for _ in csv.DictReader(fh))


def test_schema_is_created_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with MarketStore(path) as store:
        assert store.query("SELECT max(version) AS v FROM schema_version")["v"][0] == SCHEMA_VERSION
    with MarketStore(path, read_only=True) as store:  # reopening does not migrate twice
        assert len(store.query("SELECT * FROM schema_version")) == SCHEMA_VERSION


def test_sample_import_matches_the_files_and_is_idempotent(sample_store_path: Path, tmp_path: Path) -> None:
    root = sample_dir()
    with MarketStore(sample_store_path, read_only=True) as store:
        for asset in ("BTC", "SOL", "MATIC"):
            n = store.query("SELECT count(*) AS n FROM candles WHERE symbol = ?", [f"{asset}/USDT"])["n"][0]
            assert n == _rows(root / "prices" / f"{asset}.csv")
        btc = store.query(
            "SELECT ts, open, high, low, close, volume FROM candles WHERE symbol = 'BTC/USDT' ORDER BY ts"
        )
        src = pd.read_csv(root / "prices" / "BTC.csv")
        assert (btc["close"].to_numpy() == src["close"].to_numpy()).all()
        assert str(btc["ts"].iloc[0].date()) == src["timestamp"].iloc[0]
        f = store.query(
            "SELECT rate, interval_hours FROM funding WHERE source='binance' AND symbol='BTC/USDT:USDT' ORDER BY ts"
        )
        assert len(f) == _rows(root / "funding" / "BINANCE_BTCUSDT.csv") and set(f["interval_hours"]) == {8.0}
        bitmex = store.query("SELECT interval_hours, count(*) AS n FROM funding WHERE source='bitmex' GROUP BY 1")
        assert dict(zip(bitmex["interval_hours"], bitmex["n"], strict=True))[24.0] == 22  # the early 24h rows
        deribit = store.query("SELECT DISTINCT interval_hours AS h FROM funding WHERE source = 'deribit'")
        assert deribit["h"].tolist() == [1.0]
        counts = store.counts()
    again = tmp_path / "twice.duckdb"
    with MarketStore(again) as store:
        import_sample(store, root)
        import_sample(store, root)
        assert store.counts() == counts


@pytest.mark.parametrize(
    "native,expected",
    [
        ("BTCUSDT", "BTC/USDT:USDT"),
        ("ETH-USDT-SWAP", "ETH/USDT:USDT"),
        ("BTCUSD_PERP", "BTC/USD:BTC"),
        ("ETHUSD", "ETH/USD:ETH"),
        ("BTC-USD-SWAP", "BTC/USD:BTC"),
        ("BTC-PERPETUAL", "BTC/USD:BTC"),
        ("XBTUSD", "BTC/USD:BTC"),
    ],
)
def test_perp_symbols(native: str, expected: str) -> None:
    assert perp_ccxt_symbol("x", native) == expected


BAD = {
    "missing_column": ("timestamp,open,high,low\n2024-01-01,1,2,0.5\n", "missing column `close`"),
    "bad_date": (
        "timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10\n2024-13-45,1,2,0.5,1.5,10\n",
        "line 3: unparsable timestamp",
    ),
    "negative": (
        "timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10\n2024-01-02,-1,2,0.5,1.5,10\n",
        "line 3: prices must be > 0",
    ),
    "ohlc": (
        "timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10\n2024-01-02,1,1.2,0.5,1.5,10\n",
        "line 3: OHLC inconsistent",
    ),
    "dup": (
        "timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10\n2024-01-01,1,2,0.5,1.6,10\n",
        "line 3: duplicate timestamp",
    ),
    "not_number": (
        "timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,abc,10\n",
        "line 2: `close` is not a number",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_ohlcv_file_is_rejected_whole(tmp_path: Path, case: str) -> None:
    text, expected = BAD[case]
    path = tmp_path / f"{case}.csv"
    path.write_text(text)
    with MarketStore(tmp_path / "s.duckdb") as store:
        with pytest.raises(DataError) as exc:
            import_file(store, path, kind="ohlcv", source="x", symbol="Y/USDT")
        assert str(path) in str(exc.value) and expected in str(exc.value)
        assert store.counts()["candles"] == 0


def test_identical_duplicates_are_merged_and_funding_interval_inferred(tmp_path: Path) -> None:
    ohlcv = tmp_path / "o.csv"
    ohlcv.write_text("timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10\n2024-01-01,1,2,0.5,1.5,10\n")
    funding = tmp_path / "f.csv"
    funding.write_text(
        "timestamp,funding_rate\n2024-01-01T00:00:00Z,0.0001\n2024-01-01T04:00:00Z,0.0002\n"
        "2024-01-01T08:00:00Z,-0.0001\n"
    )
    with MarketStore(tmp_path / "s.duckdb") as store:
        assert import_file(store, ohlcv, kind="ohlcv", source="x", symbol="Y/USDT").rows == 1
        rep = import_file(store, funding, kind="funding", source="x", symbol="Y/USDT:USDT")
        assert rep.rows == 3
        assert set(store.query("SELECT interval_hours FROM funding")["interval_hours"]) == {4.0}


def test_column_mapping_time_zone_and_parquet(tmp_path: Path) -> None:
    src = tmp_path / "theirs.csv"
    src.write_text("Date,O,H,L,C,Vol\n2023-07-01 01:00,10,11,9,10.5,5\n2023-12-01 00:00,10,11,9,10.5,5\n")
    cols = {"timestamp": "Date", "open": "O", "high": "H", "low": "L", "close": "C", "volume": "Vol"}
    with MarketStore(tmp_path / "s.duckdb") as store:
        import_file(
            store,
            src,
            kind="ohlcv",
            source="kraken",
            symbol="SOL/USD",
            timeframe="1h",
            columns=cols,
            tz="Europe/London",
        )
        ts = [str(t) for t in store.query("SELECT strftime(ts, '%Y-%m-%d %H:%M:%S') AS t FROM candles ORDER BY 1")["t"]]
        assert ts == ["2023-07-01 00:00:00", "2023-12-01 00:00:00"]  # BST is UTC+1 in July, UTC in December
        pq = tmp_path / "p.parquet"
        store.con.execute(
            f"COPY (SELECT '2024-01-0' || i AS timestamp, 1.0 AS open, 2.0 AS high, 0.5 AS low, "
            f"1.5 AS close, 3.0 AS volume FROM range(1, 4) t(i)) TO '{pq}' (FORMAT parquet)"
        )
        assert import_file(store, pq, kind="ohlcv", source="pq", symbol="Z/USDT").rows == 3


def test_failed_transaction_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    with MarketStore(tmp_path / "s.duckdb") as store:
        frame = pd.DataFrame(
            {
                "source": "x",
                "symbol": "A/USDT",
                "timeframe": "1d",
                "ts": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                "open": 1.0,
                "high": 2.0,
                "low": 0.5,
                "close": 1.5,
                "volume": 1.0,
            }
        )
        store.upsert("candles", frame)
        with pytest.raises(RuntimeError), store.transaction():
            store.con.execute("DELETE FROM candles")
            raise RuntimeError("killed mid-batch")
        assert store.counts()["candles"] == 2
        store.upsert("candles", frame.assign(close=1.7))  # upsert replaces, never duplicates
        assert store.query("SELECT count(*) AS n, max(close) AS c FROM candles").iloc[0].tolist() == [2, 1.7]


def test_second_process_gets_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "busy.duckdb"
    MarketStore(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('ok', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        t0 = time.monotonic()
        with pytest.raises(DataError, match="in use by another perphedge process"):
            MarketStore(path, lock_timeout=0.5)
        assert time.monotonic() - t0 >= 0.5  # it waited before giving up
    finally:
        holder.kill()
        holder.wait()
    MarketStore(path, lock_timeout=5).close()  # free again
