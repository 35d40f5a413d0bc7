"""Funding whose interval changes midway (8h → 4h → 1h): every consumer uses the interval in force at each
settlement — analyze's annual carry, backtest funding cash, plan's per-settlement/per-day/per-year figures, the
book's store feed. Every expected number is worked by hand from the series below (not by the code under test)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perphedge.config import parse_portfolio, parse_run
from perphedge.data.bookfeed import StoreFeed
from perphedge.data.store import MarketStore
from perphedge.specs import default_registry
from perphedge.usecases.analyze import funding_stats
from perphedge.usecases.backtest import prepare, run
from perphedge.usecases.plan import plan_portfolio

RATE = 0.0001  # every settlement pays 0.01 %, whatever its interval
BTC, SOL = 40_000.0, 100.0
DAYS = 40  # 2024-01-01 .. 2024-02-09
HOUR_MS = 3_600_000


def settlements() -> pd.DataFrame:
    """Days 1-10 every 8h (00, 08, 16), days 11-20 every 4h, days 21-40 every hour; 30 + 60 + 480 settlements.

    Each settlement's interval is the time since the previous one (the period it pays for, as ``data fetch``
    stores it): the 00:00 settlements that open the 4h and 1h stretches still close an 8h and a 4h period."""
    stamps = []
    for day in range(DAYS):
        hours = 8 if day < 10 else 4 if day < 20 else 1
        stamps += [pd.Timestamp("2024-01-01") + pd.Timedelta(days=day, hours=k * hours) for k in range(24 // hours)]
    interval = [8.0] + [(b - a) / pd.Timedelta(hours=1) for a, b in itertools.pairwise(stamps)]
    ts = stamps
    return pd.DataFrame(
        {
            "source": "binance",
            "symbol": "BTC/USDT:USDT",
            "ts": list(ts),
            "rate": RATE,
            "interval_hours": list(interval),
            "mark_price": np.nan,
        }
    )


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "m.duckdb"
    days = pd.date_range("2024-01-01", periods=DAYS + 5, freq="D")
    with MarketStore(path) as store:
        for sym, px in (("BTC/USDT", BTC), ("SOL/USDT", SOL)):
            store.upsert(
                "candles",
                pd.DataFrame(
                    {
                        "source": "binance",
                        "symbol": sym,
                        "timeframe": "1d",
                        "ts": days,
                        "open": px,
                        "high": px,
                        "low": px,
                        "close": px,
                        "volume": 1.0,
                    }
                ),
            )
        store.upsert("funding", settlements())
    return path


def test_the_series_is_what_the_tests_say() -> None:
    f = settlements()
    assert len(f) == 30 + 60 + 480
    assert f["interval_hours"].value_counts().to_dict() == {1.0: 479, 4.0: 60, 8.0: 31}
    assert f.set_index("ts").loc[pd.Timestamp("2024-01-11 00:00"), "interval_hours"] == 8.0
    assert f.set_index("ts").loc[pd.Timestamp("2024-01-11 04:00"), "interval_hours"] == 4.0


def test_data_check_sees_no_gap_at_the_changes(store_path: Path) -> None:
    from perphedge.usecases.data import CheckRequest, check

    assert [f for f in check(CheckRequest(store=store_path))["findings"] if f["table"] == "funding"] == []


def test_analyze_annual_carry_sums_the_settlements_in_force(store_path: Path) -> None:
    with MarketStore(store_path, read_only=True) as store:
        (row,) = funding_stats(store, None, None)
    assert row["settlements"] == 570
    assert row["interval_hours"] == [1.0, 4.0, 8.0]
    # the first and last days are left out (maybe partial): days 2-10 pay 3 settlements, 11-20 six, 21-39 24
    by_hand = (9 * 3 + 10 * 6 + 19 * 24) * RATE / 38 * 365
    assert row["short_carry_annual"] == pytest.approx(by_hand, rel=1e-12)
    assert by_hand == pytest.approx(0.5215657894736842, rel=1e-12)
    # an 8h assumption (three settlements a day) would have said 0.1095
    assert row["short_carry_annual"] > 4 * 3 * RATE * 365
    # worst 30 days: days 2-31 (9x3 + 10x6 + 11x24 settlements)
    assert row["worst_30d_carry"] == pytest.approx((9 * 3 + 10 * 6 + 11 * 24) * RATE, rel=1e-12)


def run_backtest(store_path: Path, end: str) -> dict[str, object]:
    run_cfg = parse_run(
        {
            "portfolio": "x",
            "start": "2024-01-01",
            "end": end,
            "step": "1d",
            "hedge": {"instrument": "binance:BTCUSDT", "leverage": 2, "collateral": "stable"},
            "policy": {"kind": "static", "ratio": 1.0, "band": 0.5},
        },
        "run",
    )
    pfile = parse_portfolio({"holdings": [{"asset": "SOL", "value_usd": 10_000}]}, "portfolio")
    with MarketStore(store_path, read_only=True) as store:
        prep = prepare(run_cfg, pfile, store, default_registry())
    return run(prep, run_cfg, config_hash="x")


def test_backtest_funding_cash_uses_every_settlement(store_path: Path) -> None:
    doc = run_backtest(store_path, "2024-02-08")
    # 0.25 BTC short (10,000 USD at 40,000), opened at the first close (2024-01-02 00:00); it then receives every
    # settlement after that instant up to the last bar's close (2024-02-09 00:00):
    # 01-02 08:00 .. 01-10 16:00: 9 days x 3 - 1 (the 00:00 of 01-02 is not after the opening) = 26,
    # 01-11 .. 01-20: 60, 01-21 .. 02-08: 19 x 24 = 456, and 02-09 00:00: 1 -> 543 settlements
    n = (9 * 3 - 1) + 60 + 19 * 24 + 1
    assert n == 543
    assert doc["funding_received_usd"] == pytest.approx(0.25 * BTC * RATE * n, rel=1e-9)
    assert doc["funding_received_usd"] == pytest.approx(543.0, rel=1e-9)
    assert not any("funding assumed" in w for w in doc["warnings"])  # type: ignore[attr-defined]


def test_backtest_funding_in_the_8h_stretch_only(store_path: Path) -> None:
    doc = run_backtest(store_path, "2024-01-09")
    # 01-02 08:00 .. 01-10 00:00: 8 days x 3 settlements
    assert doc["funding_received_usd"] == pytest.approx(0.25 * BTC * RATE * 24, rel=1e-9)


PORTFOLIO = {
    "prices": {"SOL": SOL, "BTC": BTC},
    "holdings": [{"asset": "SOL", "value_usd": 10_000}],
    "hedge": {"instrument": "binance:BTCUSDT", "leverage": 2, "collateral": "stable", "funding_rate_8h": 0.0001},
}


@pytest.mark.parametrize(
    ("as_of", "hours", "last"),
    [("2024-01-05", 8.0, "16:00"), ("2024-01-15", 4.0, "20:00"), ("2024-01-25", 1.0, "23:00")],
)
def test_plan_uses_the_interval_in_force_on_as_of(store_path: Path, as_of: str, hours: float, last: str) -> None:
    out = plan_portfolio(
        parse_portfolio(PORTFOLIO, "p.yaml"),
        source="p.yaml",
        registry=default_registry(),
        as_of=as_of,
        store_path=str(store_path),
    )
    (leg,) = out.plan.legs
    assert leg.instrument.funding_interval_hours == hours
    assert leg.settlements_per_day == 24 / hours
    # 0.01 % per 8h is 0.01 % x hours/8 per settlement; a day is three 8h periods whatever the interval
    notional = leg.notional_usd
    assert notional == pytest.approx(10_000.0)
    assert leg.funding_usd_per_day == pytest.approx(notional * 0.0001 * 3, rel=1e-12)
    assert leg.funding_coin_per_day == pytest.approx(notional * 0.0001 * 3, rel=1e-12)  # USDT-settled
    noted = [text for kind, text in out.warnings if kind == "funding_interval_in_force"]
    if hours == 8.0:
        assert noted == []
    else:
        assert noted == [
            f"binance:BTCUSDT: funding settles every {hours:g}h on {as_of} (store: settlement {as_of} {last} UTC), "
            f"not every 8h as its spec says; per-settlement figures use {hours:g}h"
        ]


def test_plan_document_per_settlement_per_day_per_year(store_path: Path) -> None:
    from perphedge.usecases.documents import plan_document

    out = plan_portfolio(
        parse_portfolio(PORTFOLIO, "p.yaml"),
        source="p.yaml",
        registry=default_registry(),
        as_of="2024-01-25",
        store_path=str(store_path),
    )
    doc = plan_document(out)
    (leg,) = doc["hedge"]["legs"]
    assert leg["funding_interval_hours"] == 1.0
    assert leg["funding_usd_per_day"] == pytest.approx(3.0)  # 10,000 x 0.0001 x 3
    assert leg["funding_usd_per_year"] == pytest.approx(1095.0)
    assert leg["funding_annual_rate"] == pytest.approx(0.1095)


def test_plan_without_store_funding_keeps_the_spec(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    with MarketStore(path) as store:
        days = pd.date_range("2024-01-01", periods=3, freq="D")
        for sym, px in (("BTC/USDT", BTC), ("SOL/USDT", SOL)):
            frame = pd.DataFrame(
                {"source": "binance", "symbol": sym, "timeframe": "1d", "ts": days, "open": px, "high": px}
            )
            frame = frame.assign(low=px, close=px, volume=1.0)
            store.upsert("candles", frame)
    out = plan_portfolio(
        parse_portfolio(PORTFOLIO, "p.yaml"),
        source="p.yaml",
        registry=default_registry(),
        as_of="2024-01-02",
        store_path=str(path),
    )
    assert out.plan.legs[0].instrument.funding_interval_hours == 8.0
    assert not [k for k, _ in out.warnings if k == "funding_interval_in_force"]


@pytest.mark.parametrize(("day", "hours"), [("2024-01-05", 8), ("2024-01-15", 4), ("2024-01-25", 1)])
def test_book_store_feed_rate_in_force_per_8h(store_path: Path, day: str, hours: int) -> None:
    feed = StoreFeed(
        store_path,
        source="binance",
        assets=["BTC", "SOL"],
        instruments={"binance:BTCUSDT": "binance:BTC/USDT:USDT"},
        step="1d",
        stale_after_s=10**9,
        assumed_rate_8h=0.0,
    )
    now = int(pd.Timestamp(f"{day} 12:00").value // 1_000_000)
    snap = feed.snapshot(now, now - 12 * HOUR_MS)
    # the rate in force, per 8h: one settlement of 0.01 % every `hours` hours is 0.01 % x 8/hours per 8h
    assert snap.funding_rate_8h["binance:BTCUSDT"] == pytest.approx(RATE * 8 / hours, rel=1e-12)
    # every settlement of the last 12 hours, each with its own time: 12/hours of them (00:00 excluded)
    settled = snap.funding["binance:BTCUSDT"]
    assert len(settled) == 12 // hours
    assert sum(s.rate for s in settled) == pytest.approx(RATE * (12 // hours), rel=1e-12)
