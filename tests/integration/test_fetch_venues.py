"""``data fetch`` of Hyperliquid and OKX (candles, funding) against the fake exchange, and funding intervals that
change (8h → 4h → 1h) detected and stored per settlement."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from perphedge.data.store import MarketStore
from perphedge.errors import ConfigError
from perphedge.exchange.ccxt_source import CcxtSource, RetryPolicy, make_exchange
from perphedge.exchange.fake import FakeExchange
from perphedge.exchange.fake_hyperliquid import HyperliquidState
from perphedge.usecases.data import FetchRequest, fetch_into
from tests.conftest import run_cli, sample_dir

HOUR = 3_600_000
DAY = 86_400_000
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, seed=1)
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir()) as fx:
        yield fx


def client(fx: FakeExchange, exchange: str) -> Any:
    c = make_exchange(exchange, base_url=fx.url, timeout_ms=10_000)
    c.rateLimit = 1
    return c


def hl_state(fx: FakeExchange) -> HyperliquidState:
    state = fx.venue_state["hyperliquid"]
    assert isinstance(state, HyperliquidState)
    return state


def info_calls(fx: FakeExchange) -> int:
    return sum(1 for _, method, path, _ in fx.requests if method == "POST" and path == "/info")


def sample_rows(name: str) -> list[tuple[int, float]]:
    with (sample_dir() / "funding" / f"{name}.csv").open() as fh:
        return [
            (int(pd.Timestamp(r["timestamp"]).value // 1_000_000), float(r["funding_rate"])) for r in csv.DictReader(fh)
        ]


# ------------------------------------------------------------------------------------------- Hyperliquid


def test_hyperliquid_funding_pages_by_time_500_a_call(fake: FakeExchange) -> None:
    rates = [(T0 + k * HOUR, (k % 97 - 40) / 1_000_000) for k in range(1300)]
    hl_state(fake).history_overrides["BTC"] = [*rates, (T0 + 1300 * HOUR, 0.5)]  # one past the range
    src = CcxtSource("hyperliquid", client=client(fake, "hyperliquid"), policy=FAST)
    src.markets()
    before = info_calls(fake)
    pages = list(src.funding_pages("BTC/USDC:USDC", T0, T0 + 1299 * HOUR, default_interval=1.0))
    assert info_calls(fake) - before == 3
    assert [len(p.frame) for p in pages] == [500, 500, 300]
    frame = pd.concat([p.frame for p in pages], ignore_index=True)
    got = [(int(t.value // 1_000_000), r) for t, r in zip(frame["ts"], frame["rate"], strict=True)]
    assert got == rates  # nothing lost, nothing twice, in order
    assert set(frame["interval_hours"]) == {1.0}
    assert all(not p.notes for p in pages)


@pytest.mark.parametrize("n", [1, 499, 500, 501, 1000, 1001])
def test_hyperliquid_page_counts(fake: FakeExchange, n: int) -> None:
    hl_state(fake).history_overrides["ETH"] = [(T0 + k * HOUR, 1e-5) for k in range(n)]
    src = CcxtSource("hyperliquid", client=client(fake, "hyperliquid"), policy=FAST)
    src.markets()
    before = info_calls(fake)
    pages = list(src.funding_pages("ETH/USDC:USDC", T0, T0 + 10_000 * HOUR, default_interval=1.0))
    assert sum(len(p.frame) for p in pages) == n
    # full pages, then one short page (an empty one when the last page was full: asked twice before believing it)
    assert info_calls(fake) - before == n // 500 + 1 + (n % 500 == 0)
    # the history ends long before `until`: said so, never silently
    notes = [note for p in pages for note in p.notes]
    assert len(notes) == 1 and "answered no funding after" in notes[0]


def test_hyperliquid_fetch_into_store(fake: FakeExchange, tmp_path: Path) -> None:
    req = FetchRequest(
        exchange="hyperliquid", perps=("BTC/USDC:USDC", "AVAX/USDC:USDC"), since="2024-01-01", until="2024-01-10"
    )
    with MarketStore(tmp_path / "s.duckdb") as store:
        res = fetch_into(store, req, client=client(fake, "hyperliquid"), policy=FAST)
        candles = store.query("SELECT symbol, ts, close FROM candles WHERE source = 'hyperliquid' ORDER BY ALL")
        funding = store.query("SELECT symbol, ts, rate, interval_hours FROM funding ORDER BY ALL")
        inst = store.query("SELECT symbol, funding_interval_hours, max_leverage FROM instruments ORDER BY ALL")
    assert res.exchange == "hyperliquid"
    assert len(candles[candles["symbol"] == "BTC/USDC:USDC"]) == 10
    btc = pd.read_csv(sample_dir() / "prices" / "BTC.csv").set_index("timestamp")
    first = candles[candles["symbol"] == "BTC/USDC:USDC"].iloc[0]
    assert first["close"] == btc.loc["2024-01-01", "close"]
    per = funding.groupby("symbol").size().to_dict()
    assert per == {"AVAX/USDC:USDC": 9 * 24 + 1, "BTC/USDC:USDC": 9 * 24 + 1}  # hourly, both ends included
    assert set(funding["interval_hours"]) == {1.0}
    # the derived BTC history: each hour carries its Binance 8h settlement's rate / 8
    binance = dict(sample_rows("BINANCE_BTCUSDT"))
    t = int(pd.Timestamp("2024-01-01 08:00").value // 1_000_000)
    btc_f = funding[funding["symbol"] == "BTC/USDC:USDC"].set_index("ts")
    assert btc_f.loc[pd.Timestamp("2024-01-01 05:00"), "rate"] == pytest.approx(binance[t] / 8, rel=1e-12)
    assert set(inst["funding_interval_hours"]) == {1.0}
    assert dict(zip(inst["symbol"], inst["max_leverage"], strict=True)) == {
        "AVAX/USDC:USDC": 10.0,
        "BTC/USDC:USDC": 40.0,
    }


def test_hyperliquid_spot_is_refused(fake: FakeExchange, tmp_path: Path) -> None:
    req = FetchRequest(exchange="hyperliquid", spot=("BTC/USDC",), since="2024-01-01", until="2024-01-02")
    with MarketStore(tmp_path / "s.duckdb") as store, pytest.raises(Exception, match="hyperliquid has no market"):
        fetch_into(store, req, client=client(fake, "hyperliquid"), policy=FAST)


# ------------------------------------------------------------------------------------------- OKX


@pytest.mark.parametrize(("perp", "native"), [("BTC/USDT:USDT", "BTC-USDT-SWAP"), ("BTC/USD:BTC", "BTC-USD-SWAP")])
def test_okx_linear_and_inverse_candles_and_funding(fake: FakeExchange, tmp_path: Path, perp: str, native: str) -> None:
    fake.now_ms = int(pd.Timestamp("2024-07-02").value // 1_000_000)
    req = FetchRequest(exchange="okx", perps=(perp,), since="2023-06-01", until="2024-07-01")
    with MarketStore(tmp_path / "s.duckdb") as store:
        res = fetch_into(store, req, client=client(fake, "okx"), policy=FAST)
        candles = store.query("SELECT ts, open, high, low, close FROM candles ORDER BY ts")
        funding = store.query("SELECT ts, rate, interval_hours FROM funding ORDER BY ts")
    # candles: every day of the window, equal to the sample (the fake's perpetual candles are the spot ones)
    btc = pd.read_csv(sample_dir() / "prices" / "BTC.csv")
    btc = btc[(btc["timestamp"] >= "2023-06-01") & (btc["timestamp"] <= "2024-07-01")]
    assert len(candles) == len(btc) == 397
    assert candles["close"].tolist() == btc["close"].tolist()
    assert res.series[0].pages == 2  # 300 candles a call
    # funding: the last 3 months only (OKX), every settlement of them, 100 a page
    oldest = fake.now_ms - 92 * DAY
    want = [(ms, r) for ms, r in sample_rows(f"OKX_{native}") if oldest <= ms <= fake.now_ms - DAY]
    got = [(int(t.value // 1_000_000), r) for t, r in zip(funding["ts"], funding["rate"], strict=True)]
    assert got == want and len(got) > 200
    assert set(funding["interval_hours"]) == {8.0}
    notes = res.series[1].notes
    assert len(notes) == 1 and "last 3 months" in notes[0]


def test_okx_unknown_symbol(fake: FakeExchange, tmp_path: Path) -> None:
    req = FetchRequest(exchange="okx", perps=("DOGE/USDT:USDT",), since="2024-01-01", until="2024-01-02")
    with MarketStore(tmp_path / "s.duckdb") as store, pytest.raises(Exception, match="okx has no market"):
        fetch_into(store, req, client=client(fake, "okx"), policy=FAST)


def test_unsupported_exchange_is_refused() -> None:
    with pytest.raises(ConfigError, match="fetching supports binance, bybit, okx, hyperliquid"):
        make_exchange("kraken")


# ------------------------------------------------------------------------------------------- changing intervals


def changing_series(start: int) -> tuple[list[tuple[int, str]], list[float]]:
    """20 settlements 8h apart, 20 at 4h, 30 at 1h; one 4h settlement missing (a gap, not a change)."""
    rows: list[tuple[int, str]] = []
    intervals: list[float] = []
    ms = start
    for n, h in ((20, 8), (20, 4), (30, 1)):
        for _ in range(n):
            ms += h * HOUR
            rows.append((ms, repr(0.0001 * h / 8)))
            intervals.append(float(h))
    del rows[30], intervals[30]  # the 11th 4h settlement is missing
    return rows, intervals


@pytest.mark.parametrize(
    ("exchange", "perp", "key"),
    [
        ("binance", "BTC/USDT:USDT", ("binance", "BTCUSDT")),
        ("bybit", "BTC/USDT:USDT", ("bybit", "BTCUSDT")),
        ("okx", "BTC/USDT:USDT", ("okx", "BTC-USDT-SWAP")),
    ],
)
def test_fetch_detects_interval_changes(
    fake: FakeExchange, tmp_path: Path, exchange: str, perp: str, key: tuple[str, str]
) -> None:
    rows, intervals = changing_series(T0)
    fake.data.funding[key] = rows
    fake.now_ms = T0 + 30 * DAY
    req = FetchRequest(exchange=exchange, perps=(perp,), since="2024-01-01", until="2024-01-31", funding=True)
    with MarketStore(tmp_path / "s.duckdb") as store:
        res = fetch_into(store, req, client=client(fake, exchange), policy=FAST)
        got = store.query("SELECT ts, interval_hours FROM funding ORDER BY ts")
    assert [int(t.value // 1_000_000) for t in got["ts"]] == [r[0] for r in rows]
    assert got["interval_hours"].tolist() == intervals
    notes = res.series[-1].notes
    changes = [n for n in notes if "interval changed" in n]
    assert changes == [
        "funding interval changed from 8h to 4h at 2024-01-07 20:00:00",
        "funding interval changed from 4h to 1h at 2024-01-11 01:00:00",
    ]
    assert any("1 funding settlement(s) missing before 2024-01-09 16:00:00 (every 4h)" in n for n in notes)


def test_resumed_fetch_keeps_the_interval_in_force(fake: FakeExchange, tmp_path: Path) -> None:
    rows, intervals = changing_series(T0)
    fake.data.funding[("binance", "BTCUSDT")] = rows
    path = tmp_path / "s.duckdb"
    with MarketStore(path) as store:
        first = fetch_into(
            store,
            FetchRequest(exchange="binance", perps=("BTC/USDT:USDT",), since="2024-01-01", until="2024-01-10T23:00"),
            client=client(fake, "binance"),
            policy=FAST,
        )
        second = fetch_into(
            store,
            FetchRequest(exchange="binance", perps=("BTC/USDT:USDT",), since="2024-01-01", until="2024-01-31"),
            client=client(fake, "binance"),
            policy=FAST,
        )
        got = store.query("SELECT interval_hours FROM funding ORDER BY ts")["interval_hours"].tolist()
    assert got == intervals
    assert [n for n in first.series[-1].notes if "changed" in n] == [
        "funding interval changed from 8h to 4h at 2024-01-07 20:00:00"
    ]
    assert [n for n in second.series[-1].notes if "changed" in n] == [
        "funding interval changed from 4h to 1h at 2024-01-11 01:00:00"
    ]


def test_cli_fetch_prints_the_interval_notes(fake: FakeExchange, tmp_path: Path) -> None:
    rows, _ = changing_series(T0)
    fake.data.funding[("binance", "BTCUSDT")] = rows
    env = {"PERPHEDGE_EXCHANGE_URL": fake.url, "PERPHEDGE_RATE_LIMIT_MS": "1"}
    args = ["data", "fetch", "--exchange", "binance", "--perps", "BTC/USDT:USDT", "--since", "2024-01-01"]
    out = run_cli(*args, "--until", "2024-01-31", "--store", str(tmp_path / "a.duckdb"), "--format", "json", env=env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert "BTC/USDT:USDT: funding interval changed from 8h to 4h at 2024-01-07 20:00:00" in doc["notes"]
    table = run_cli(*args, "--until", "2024-01-31", "--store", str(tmp_path / "b.duckdb"), env=env, columns=250)
    assert table.returncode == 0, table.stderr
    assert "note: BTC/USDT:USDT: funding interval changed from 4h to 1h at 2024-01-11 01:00:00" in table.stdout


@pytest.mark.parametrize(("exchange", "perp"), [("hyperliquid", "ETH/USDC:USDC"), ("okx", "BTC/USD:BTC")])
def test_fetch_in_two_runs_equals_one(fake: FakeExchange, tmp_path: Path, exchange: str, perp: str) -> None:
    fake.now_ms = int(pd.Timestamp("2024-07-02").value // 1_000_000)
    whole, parts = tmp_path / "whole.duckdb", tmp_path / "parts.duckdb"
    c = client(fake, exchange)
    with MarketStore(whole) as store:
        fetch_into(
            store, FetchRequest(exchange=exchange, perps=(perp,), since="2024-05-01", until="2024-06-30"), client=c
        )
    with MarketStore(parts) as store:
        for until in ("2024-05-20T13:00", "2024-06-30"):
            req = FetchRequest(exchange=exchange, perps=(perp,), since="2024-05-01", until=until)
            fetch_into(store, req, client=c, policy=FAST)

    def dump(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        with MarketStore(path, read_only=True) as store:
            return (
                store.query("SELECT ts, open, high, low, close FROM candles ORDER BY ts"),
                store.query("SELECT ts, rate, interval_hours FROM funding ORDER BY ts"),
            )

    a, b = dump(whole), dump(parts)
    assert len(a[1]) > 100
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(x, y, check_exact=True)


def test_a_series_at_another_interval_than_the_spec_is_noted(fake: FakeExchange, tmp_path: Path) -> None:
    fake.data.funding[("binance", "BTCUSDT")] = [(T0 + k * 4 * HOUR, "0.0001") for k in range(1, 40)]
    req = FetchRequest(exchange="binance", perps=("BTC/USDT:USDT",), since="2024-01-01", until="2024-01-08")
    with MarketStore(tmp_path / "s.duckdb") as store:
        res = fetch_into(store, req, client=client(fake, "binance"), policy=FAST)
        got = store.query("SELECT interval_hours FROM funding")["interval_hours"]
    assert set(got) == {4.0} and len(got) == 39
    assert res.series[-1].notes == [
        "funding settles every 4h at 2024-01-07 12:00:00 but the instrument spec says 8h: the stored interval is "
        "used per settlement (plan --as-of reads it)"
    ]
