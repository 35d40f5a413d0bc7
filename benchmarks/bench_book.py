"""Speed of `perphedge book` (issue 10, item 8), run by hand: `.venv/bin/python benchmarks/bench_book.py`.

Goals:
* a status + policy cycle (snapshot, paper sync, status document, the policy's plan, alerts, journal row) of a
  book with 50 holdings and 5 legs in < 100 ms after start-up (no exchange latency: the portfolio feed);
* a one-year 8h replay (1,095 ticks through the real tick) in < 10 s.

No timing is asserted in the test suite; quote the numbers this prints.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

ASSETS = ["BTC", "ETH", "SOL", "AVAX", "DOT", "LINK", "ADA", "UNI", "AAVE", "DOGE", "XRP", "BNB", "MATIC"]
PRICES = {
    "BTC": 60000.0, "ETH": 3000.0, "SOL": 150.0, "AVAX": 30.0, "DOT": 6.5, "LINK": 15.0, "ADA": 0.5, "UNI": 8.0,
    "AAVE": 90.0, "DOGE": 0.12, "XRP": 0.55, "BNB": 550.0, "MATIC": 0.7,
}  # fmt: skip
LEGS = [  # every bundled Binance perpetual: three linear, two inverse (collateral bought)
    ("binance:BTCUSDT", 0.4),
    ("binance:ETHUSDT", 0.2),
    ("binance:SOLUSDT", 0.15),
    ("binance:BTCUSD_PERP", 0.15),
    ("binance:ETHUSD_PERP", 0.1),
]


def add_8h_candles(path: Path) -> None:
    """8h candles of BTC and ETH from the sample's Binance basis file (2023-01-01 → 2024-07-01; the sample has no
    other 8h candles): spot open and close, high and low the larger and smaller of the two."""
    from perphedge.data.store import MarketStore

    with MarketStore(path) as st:
        frame = st.query(
            "SELECT 'binance' AS source, asset || '/USDT' AS symbol, '8h' AS timeframe, ts, spot_open AS open, "
            "greatest(spot_open, spot_close) AS high, least(spot_open, spot_close) AS low, spot_close AS close, "
            "0.0 AS volume FROM basis WHERE source = 'binance' AND timeframe = '8h' ORDER BY asset, ts"
        )
        st.upsert("candles", frame)


def write_book(folder: Path, *, feed: str, step: str = "1d") -> Path:
    holdings = []
    for i in range(50):
        a = ASSETS[i % len(ASSETS)]
        holdings.append({"asset": a, "value_usd": 1000 + 137 * i, "group": f"g{i // len(ASSETS)}"})
    doc = {
        "book": 1,
        "id": "be9c0001",
        "portfolio": {
            "name": "fifty holdings",
            "prices": PRICES,
            "holdings": holdings,
            "hedge": {"legs": [{"instrument": i, "weight": w} for i, w in LEGS], "leverage": 2, "ratio": 0.8},
        },
        "step": step,
        "policy": {"kind": "drift_band", "ratio": 0.8, "band": 0.05},
        "policy_origin": "2026-01-01",
        "feed": {"kind": feed},
        "store": "bench.sqlite",
        "accounts": [{"name": "paper", "kind": "paper", "exchange": "binance", "balances": {"USDT": 200000}}],
    }
    p = folder / "bench.book.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return p


def bench_cycle(cycles: int) -> list[float]:
    from perphedge.usecases import book as B

    with tempfile.TemporaryDirectory() as tmp:
        lb = B.load_book(write_book(Path(tmp), feed="portfolio"))
        now = int(time.time() * 1000)
        s = B.open_session(lb, writer=True, now_ms=now)
        try:
            B.tick(s, now, decide=True, execute=True)  # opens the five legs; start-up (numba, imports) ends here
            times = []
            for k in range(1, cycles + 1):
                t0 = time.perf_counter()
                r = B.tick(s, now + k * 60_000, decide=True, execute=False)
                times.append(time.perf_counter() - t0)
                assert len(r.status["accounts"][0]["positions"]) == 5
            return times
        finally:
            B.close_session(s)


def bench_replay(store: str | None) -> tuple[float, int]:
    from perphedge.usecases import book as B

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        doc = yaml.safe_load(write_book(folder, feed="store", step="8h").read_text())
        # the sample has 8h candles of BTC and ETH only: 50 holdings of those two, hedged with both perpetuals
        doc["portfolio"]["holdings"] = [
            {"asset": "ETH" if i % 2 else "BTC", "value_usd": 1000 + 137 * i, "group": f"g{i // 2}"} for i in range(50)
        ]
        doc["portfolio"]["hedge"]["legs"] = [
            {"instrument": "binance:BTCUSDT", "weight": 0.6},
            {"instrument": "binance:ETHUSDT", "weight": 0.4},
        ]
        (folder / "bench.book.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        lb = B.load_book(folder / "bench.book.yaml")
        market = folder / "market8h.duckdb"
        home = Path(os.environ.get("PERPHEDGE_HOME") or Path.home() / ".perphedge")
        shutil.copyfile(store or home / "market.duckdb", market)
        add_8h_candles(market)
        t0 = time.perf_counter()
        out = B.replay(
            lb, date(2023, 7, 1), date(2024, 6, 29), store_path=folder / "replay.sqlite", market_store=str(market)
        )
        return time.perf_counter() - t0, out["bars"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--store", default=None, help="market store with the sample imported (default: $PERPHEDGE_HOME)")
    args = ap.parse_args()
    times = bench_cycle(args.cycles)
    ms = sorted(t * 1000 for t in times)
    print(
        f"status + policy cycle, 50 holdings, 5 legs: median {statistics.median(ms):.1f} ms, "
        f"min {ms[0]:.1f}, max {ms[-1]:.1f} ({len(ms)} cycles; goal < 100 ms)"
    )
    secs, bars = bench_replay(args.store)
    print(
        f"replay 2023-07-01 → 2024-06-29, step 8h: {bars} ticks in {secs:.2f} s "
        f"({secs / bars * 1000:.2f} ms/tick; goal < 10 s)"
    )


if __name__ == "__main__":
    main()
