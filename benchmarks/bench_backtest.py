"""Backtest speed goals (run by hand: `.venv/bin/python benchmarks/bench_backtest.py`).

1. One 8-year daily backtest of 10 assets (synthetic random-walk prices, one BTC proxy leg, static
   policy): goal < 10 ms after warm-up, and >= 50x faster than the pandas row-by-row baseline
   (benchmarks/baseline_backtest.py, tested to agree with the engine).
2. A 1,000-configuration sweep on the sample history, both cores: goal < 5 s.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_backtest import baseline_static_linear
from perphedge.config import parse_run
from perphedge.core.hedge import CollateralSource, SizingMethod
from perphedge.data.importer import parse_sample
from perphedge.data.sample import shared_or_bundled
from perphedge.data.store import MarketStore
from perphedge.specs import default_registry
from perphedge.usecases.backtest import LegData, Prepared, run
from perphedge.usecases.data import import_frames
from perphedge.usecases.sweep import run_sweep

ROOT = shared_or_bundled(
    Path(os.environ.get("PERPHEDGE_SAMPLE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
)


def synthetic(n: int = 2922, assets: int = 10) -> Prepared:
    rng = np.random.default_rng(42)
    dates = pd.date_range("2018-01-01", periods=n, freq="D", tz="UTC")
    btc = 10_000 * np.exp(np.cumsum(rng.normal(0.0005, 0.035, n)))
    closes = {"BTC": btc}
    q = {}
    for i in range(assets):
        name = f"A{i}"
        closes[name] = 10 * np.exp(np.cumsum(rng.normal(0.0005, 0.05, n)))
        q[name] = 1_000 / closes[name][0]
    inst = default_registry().get("binance:BTCUSDT")
    leg = LegData(
        instrument=inst,
        weights=dict.fromkeys(q, 1.0),
        o=btc,
        h=btc * 1.02,
        lo=btc * 0.98,
        c=btc,
        funding=np.full(n, 0.0003),
        funding_assumed_days=0,
        funding_series="synthetic",
    )
    return Prepared(
        dates=dates,
        days=np.arange(n, dtype=np.int64),
        closes=closes,
        quantities=q,
        cash0=0.0,
        legs=[leg],
        proxy="BTC",
        btc_close=btc,
        fear_greed=None,
        scope_assets=list(q),
        collateral=CollateralSource.STABLE,
        leverage=2.0,
        method=SizingMethod.NOTIONAL,
        betas={},
    )


def main() -> None:
    prep = synthetic()
    cfg = parse_run(
        {
            "portfolio": {"holdings": [{"asset": "BTC", "quantity": 1}], "prices": {"BTC": 1}},
            "start": "2018-01-01",
            "end": "2025-12-31",
            "policy": {"kind": "static", "ratio": 0.5, "band": 0.1},
            "costs": {"taker_fee": 0.0005, "slippage_bps": 2},
        },
        "bench",
    )
    run(prep, cfg, config_hash="bench", full=False)  # warm-up (numba compile / cache load)
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        doc = run(prep, cfg, config_hash="bench", full=False)
        times.append(time.perf_counter() - t0)
    engine = statistics.median(times)
    spot = sum(q * prep.closes[a] for a, q in prep.quantities.items())
    leg = prep.legs[0]
    frame = pd.DataFrame(
        {"spot": spot, "exposure": spot, "close": leg.c, "high": leg.h, "funding": leg.funding}, index=prep.dates
    )
    t0 = time.perf_counter()
    base = baseline_static_linear(
        frame,
        ratio=0.5,
        band=0.1,
        leverage=2.0,
        lot=leg.instrument.lot_size,
        mmr=leg.instrument.margin.tiers[0].mmr,
        taker=0.0005,
        slippage=2e-4,
    )
    t_base = time.perf_counter() - t0
    full = run(prep, cfg, config_hash="bench")
    assert np.allclose(full["_series"]["hedged"], base.to_numpy(), rtol=1e-9)
    print(f"{'case':64} {'value':>12}")
    print(
        f"{'backtest, 8 years daily (2922 days), 10 assets, engine (median)':64} {engine * 1000:9.2f} ms   goal < 10 ms"
    )
    print(
        f"{'same backtest, pandas row-by-row baseline':64} {t_base * 1000:9.1f} ms   "
        f"x{t_base / engine:.0f} slower (goal >= 50x)"
    )
    print(
        f"{'  (hedged end value engine / baseline)':64} {doc['hedged']['end_value_usd']:12,.0f} / {base.iloc[-1]:,.0f}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "s.duckdb"
        with MarketStore(store) as st:
            import_frames(st, parse_sample(ROOT), source=str(ROOT))
        grid = Path(tmp) / "grid.yaml"
        base_run = Path(__file__).resolve().parents[1] / "runs" / "altcoins-50pct.yaml"
        ratios = [round(0.1 * i, 2) for i in range(1, 11)]
        bands = [0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4]
        levs = [1.5, 2, 2.5, 3, 3.5, 4, 5, 6, 8, 10]
        grid.write_text(
            f"base: {base_run}\ngrid:\n  policy.ratio: {ratios}\n  policy.band: {bands}\n"
            f"  hedge.leverage: {levs}\nrank_by: hedged.sharpe\n"
        )
        reg = default_registry()
        for workers in (1, 2):
            t0 = time.perf_counter()
            res = run_sweep(grid, store_path=str(store), registry=reg, workers=workers)
            wall = time.perf_counter() - t0
            label = f"sweep of {res['configurations']} configurations (sample, 2021-2025), {workers} process(es)"
            print(f"{label:64} {wall:9.2f} s    {'goal < 5 s' if workers == 2 else ''}")


if __name__ == "__main__":
    main()
