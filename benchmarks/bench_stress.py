"""Monte Carlo speed goal (run by hand: `.venv/bin/python benchmarks/bench_stress.py`).

100,000 bootstrap paths × 365 days × 10 assets, with the liquidation checks of 10 legs (running maximum of each
leg's intraday high, and its largest one-day jump): goal < 5 s on this 2-core machine, peak memory < 2 GB, and
>= 4x faster than the plain chunked-numpy version of the same simulation (perphedge.core.stress.simulate_numpy).
The history is 4 years of the sample's daily returns of 10 coins.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from perphedge.core.stress import simulate, simulate_numpy
from perphedge.data.importer import parse_sample
from perphedge.data.reader import ohlc
from perphedge.data.sample import shared_or_bundled
from perphedge.data.store import MarketStore
from perphedge.usecases.data import import_frames

ROOT = shared_or_bundled(
    Path(os.environ.get("PERPHEDGE_SAMPLE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
)
ASSETS = ["BTC", "ETH", "SOL", "AVAX", "DOT", "LINK", "ADA", "UNI", "DOGE", "XRP"]


def main() -> None:
    paths = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp, MarketStore(Path(tmp) / "s.duckdb") as store:
        import_frames(store, parse_sample(ROOT), source=str(ROOT))
        frames = ohlc(store, ASSETS, "2022-01-01", "2025-12-31", fields=("high", "close"))
    close, high = frames["close"], frames["high"]
    returns = np.log(close / close.shift(1)).iloc[1:].to_numpy()
    highs = np.log(high / close.shift(1)).iloc[1:].clip(lower=0).to_numpy()
    watch = list(range(len(ASSETS)))
    simulate(model="bootstrap", paths=1000, horizon=365, watch=watch, seed=0, returns=returns, highs=highs)  # warm-up
    t0 = time.perf_counter()
    fast = simulate(model="bootstrap", paths=paths, horizon=365, watch=watch, seed=1, returns=returns, highs=highs)
    t_fast = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    slow = simulate_numpy(paths=paths, horizon=365, watch=watch, seed=1, returns=returns, highs=highs)
    t_slow = time.perf_counter() - t0
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    p_fast = float((fast["max_high"][:, 0] >= 1.5).mean())
    p_slow = float((slow["max_high"][:, 0] >= 1.5).mean())
    label = f"{paths:,} paths x 365 days x {len(ASSETS)} assets, {len(watch)} legs checked"
    print(f"{'case':64} {'value':>10}")
    print(f"{'bootstrap Monte Carlo (numba, 2 cores): ' + label:64} {t_fast:8.2f} s   goal < 5 s")
    print(f"{'peak memory (RSS) after it':64} {rss_mb:8.0f} MB  goal < 2 GB")
    print(f"{'same simulation, plain chunked numpy':64} {t_slow:8.2f} s   x{t_slow / t_fast:.1f} slower (goal >= 4x)")
    print(f"{'peak memory (RSS) after the numpy baseline':64} {rss_after:8.0f} MB")
    print(f"{'P(BTC high reaches +50% within a year): numba / numpy':64} {p_fast:.4f} / {p_slow:.4f}")


if __name__ == "__main__":
    main()
