"""Coverage, quality checks and the reading API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perphedge.data import quality, reader
from perphedge.data.store import MarketStore
from perphedge.errors import DataError
from tests.conftest import run_cli, sample_dir

ASSETS = ["BTC", "ETH", "SOL", "AVAX", "DOT", "LINK", "ADA", "MATIC", "UNI", "AAVE", "DOGE", "XRP", "BNB"]


def candles(symbol: str, days: list[str], closes: list[float]) -> pd.DataFrame:
    c = np.array(closes, dtype=float)
    return pd.DataFrame(
        {
            "source": "t",
            "symbol": symbol,
            "timeframe": "1d",
            "ts": pd.to_datetime(days),
            "open": c,
            "high": c * 1.01,
            "low": c * 0.99,
            "close": c,
            "volume": 1.0,
        }
    )


def test_status_and_check_find_what_is_wrong(tmp_path: Path) -> None:
    days = [str(d.date()) for d in pd.date_range("2024-01-01", periods=40)]
    good = candles("A/USDT", days[:10] + days[13:], [100.0 + i for i in range(37)])  # 3 days missing
    spike = [100.0] * 20
    spike[10] = 1000.0  # a bad print
    spiky = candles("B/USDT", days[:20], [100.0 * (1 + 0.01 * np.sin(i)) if i != 10 else 1000.0 for i in range(20)])
    flat = candles("C/USDT", days[:12], [5.0] * 12).assign(high=5.0, low=5.0)
    with MarketStore(tmp_path / "q.duckdb") as store:
        for f in (good, spiky, flat):
            store.upsert("candles", f)
        store.con.execute("UPDATE candles SET low = close * 1.5 WHERE symbol = 'A/USDT' AND ts = '2024-01-05'")
        st = {s.symbol: s for s in quality.status(store)}
        assert st["A/USDT"].rows == 37 and st["A/USDT"].missing == 3
        kinds = {(f.kind, f.symbol.split()[0]) for f in quality.check(store, stale_days=7)}
    assert ("gap", "A/USDT") in kinds
    assert ("ohlc", "A/USDT") in kinds
    assert ("outlier", "B/USDT") in kinds
    assert ("stale", "B/USDT") in kinds  # ends 20 days before A
    assert ("flat", "C/USDT") in kinds


def test_sample_status_matches_its_readme(sample_store_path: Path) -> None:
    with MarketStore(sample_store_path, read_only=True) as store:
        st = {(s.table, s.source, s.symbol): s for s in quality.status(store)}
        findings = quality.check(store)
    assert st[("funding", "deribit", "BTC/USD:BTC")].missing == 2  # 2020-08-27 06:00 and 07:00
    assert st[("sentiment", "alternative.me", "fear_greed")].missing == 4
    assert all(st[("candles", "binance", f"{a}/USDT")].missing == 0 for a in ASSETS)
    assert st[("funding", "binance_dailymean", "BTC/USDT:USDT")].missing == 0
    stale = [f for f in findings if f.kind == "stale"]
    # MATIC delisted 2024-09-09; the inverse perpetual's mark closes of futures/ cover 2021-01..09 only
    assert sorted(f.symbol for f in stale) == ["BTC/USD:BTC 1d", "MATIC/USDT 1d"]
    assert not [f for f in findings if f.kind in ("ohlc", "duplicate")]


def test_aligned_frame_respects_listing_dates(sample_store_path: Path) -> None:
    with MarketStore(sample_store_path, read_only=True) as store:
        frames = reader.ohlc(store, ASSETS, "2018-01-01", "2025-12-31", fields=("close", "high", "low"))
        close = frames["close"]
        assert list(close.columns) == ASSETS
        assert str(close.index.tz) == "UTC" and close.index.is_monotonic_increasing
        assert len(close) == (pd.Timestamp("2025-12-31") - pd.Timestamp("2018-01-01")).days + 1
        assert close["SOL"].first_valid_index() == pd.Timestamp("2020-08-11", tz="UTC")
        assert close.loc[:"2020-08-10", "SOL"].isna().all()
        assert close.loc["2024-09-10":, "MATIC"].isna().all()  # no forward fill after delisting
        assert (frames["high"] >= frames["low"]).where(frames["low"].notna(), True).all().all()
        assert close.loc["2024-03-13", "BTC"] == 73072.41
        with pytest.raises(DataError, match="no 1d candles of PEPE/USDT"):
            reader.ohlc(store, ["BTC", "PEPE"])
        prices = reader.prices_as_of(store, ["BTC", "MATIC"], "2025-01-01")
        assert prices["BTC"][1].date().isoformat() == "2025-01-01"
        assert prices["MATIC"][1].date().isoformat() == "2024-09-09"  # last close before the date
        daily = reader.funding_daily(store, "deribit", "BTC/USD:BTC", "2020-01-01", "2020-01-01 23:59")
        hourly = reader.funding_series(store, "deribit", "BTC/USD:BTC", "2020-01-01", "2020-01-01 23:59")
        assert len(hourly) == 24 and daily.iloc[0] == pytest.approx(hourly["rate"].sum())
        assert reader.sentiment(store).loc["2022-06-18"] == 6


def test_fill_gaps_only_inside_an_assets_life(tmp_path: Path) -> None:
    with MarketStore(tmp_path / "g.duckdb") as store:
        store.upsert(
            "candles", candles("A/USDT", ["2024-01-01", "2024-01-02", "2024-01-04"], [1, 2, 4]).assign(source="binance")
        )
        store.upsert(
            "candles", candles("B/USDT", ["2024-01-03", "2024-01-04", "2024-01-05"], [7, 8, 9]).assign(source="binance")
        )
        raw = reader.ohlc(store, ["A", "B"])["close"]
        filled = reader.ohlc(store, ["A", "B"], fill_gaps=True)["close"]
    assert np.isnan(raw.loc["2024-01-03", "A"]) and filled.loc["2024-01-03", "A"] == 2
    assert np.isnan(filled.loc["2024-01-05", "A"])  # after A's last candle: not filled
    assert filled["B"].iloc[:2].isna().all()  # before B existed: not filled


def test_data_cli_import_status_check_and_plan_as_of(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = run_cli("data", "import", str(sample_dir()), "--format", "json", home=home)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["rows"] > 100_000 and Path(doc["store"]) == home / "market.duckdb"
    r = run_cli("data", "status", "--format", "json", home=home)
    assert r.returncode == 0, r.stderr
    assert any(s["symbol"] == "SOL/USDT" and s["rows"] == 1969 for s in json.loads(r.stdout)["series"])
    r = run_cli("data", "check", home=home)
    assert r.returncode == 0 and "stale" in r.stdout
    assert run_cli("data", "check", "--strict", home=home).returncode == 1
    r = run_cli(
        "plan",
        "examples/altcoins-stored-prices.yaml",
        "--as-of",
        "2024-03-13",
        "--format",
        "json",
        columns=120,
        home=home,
    )
    assert r.returncode == 0, r.stderr
    pf = json.loads(r.stdout)["portfolio"]
    assert pf["prices_usd"]["BTC"] == 73072.41 and pf["prices_usd"]["SOL"] == 163.9
    assert pf["price_sources"]["SOL"] == "store: binance SOL/USDT 1d close 2024-03-13"
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,1\n2024-01-02,1,2,0.5,0,1\n")
    r = run_cli("data", "import", str(bad), "--kind", "ohlcv", "--source", "x", "--symbol", "Y/USDT", home=home)
    assert r.returncode == 2 and "line 3: prices must be > 0" in r.stderr and "Traceback" not in r.stderr


def test_status_without_a_store_is_a_clear_error(tmp_path: Path) -> None:
    r = run_cli("data", "status", home=tmp_path / "empty")
    assert r.returncode == 2 and "no market store" in r.stderr
    r = run_cli("plan", "examples/altcoins-stored-prices.yaml", "--as-of", "latest", home=tmp_path / "empty")
    assert r.returncode == 2 and "no market store" in r.stderr and "altcoins-stored-prices.yaml" in r.stderr
