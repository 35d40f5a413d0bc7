"""Sweeps and Monte Carlo on the engines (run by hand: `.venv/bin/python benchmarks/bench_dask.py`).

Prints configurations/s (a sweep of the altcoins run) and paths/s (bootstrap Monte Carlo, 365 days × 10 assets,
the liquidation check of 10 legs) in-process, on a local Dask cluster of 1 and of 2 workers, the overhead of
Dask against the in-process engine, peak memory (RSS) of a 10k- and a 1M-path run in a fresh process, and the
time 10M paths would take at the measured steady rate. Options: ``--paths N`` (Monte Carlo, default 200,000),
``--configs N`` (sweep, default 48), ``--rss-paths N`` (the large RSS run, default 1,000,000).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ASSETS = ["BTC", "ETH", "SOL", "AVAX", "DOT", "LINK", "ADA", "UNI", "DOGE", "XRP"]


def _root() -> Path:
    from perphedge.data.sample import shared_or_bundled

    return shared_or_bundled(Path(os.environ.get("PERPHEDGE_SAMPLE_DATA", REPO.parent / "shared" / "data")))


def _store(tmp: Path) -> Path:
    from perphedge.data.importer import parse_sample
    from perphedge.data.store import MarketStore
    from perphedge.usecases.data import import_frames

    path = tmp / "s.duckdb"
    with MarketStore(path) as store:
        import_frames(store, parse_sample(_root()), source=str(_root()))
    return path


def mc_shared(store_path: Path) -> dict[str, Any]:
    """Bootstrap inputs of 10 assets and one leverage with a 2x linear short on each (10 liquidation checks)."""
    from perphedge.data.reader import ohlc
    from perphedge.data.store import MarketStore

    with MarketStore(store_path, read_only=True) as store:
        frames = ohlc(store, ASSETS, "2022-01-01", "2025-12-31", fields=("high", "close"))
    close, high = frames["close"], frames["high"]
    returns = np.log(close / close.shift(1)).iloc[1:].to_numpy()
    highs = np.log(high / close.shift(1)).iloc[1:].clip(lower=0).to_numpy()
    legs = [(0, i, i, 1.49, 10_000.0, 5_000.0, 100.0, 0.0) for i in range(len(ASSETS))]
    return {
        "model": "bootstrap",
        "horizon": 365,
        "watch": list(range(len(ASSETS))),
        "returns": returns,
        "highs": highs,
        "mu": None,
        "sigma": None,
        "corr": None,
        "holdings": [(i, 10_000.0) for i in range(len(ASSETS))],
        "levels": [(2.0, legs)],
    }


def rss_child(store_path: str, paths: int) -> None:
    from perphedge.usecases.engine import InProcessEngine
    from perphedge.usecases.montecarlo import run_chunks

    shared = mc_shared(Path(store_path))
    t0 = time.perf_counter()
    run_chunks(shared, paths=paths, seed=1, engine=InProcessEngine(), n_assets=len(ASSETS))
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{paths} {dt:.3f} {rss:.0f}")


def _grid(tmp: Path, n: int) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    grid = tmp / "grid.yaml"
    grid.write_text(
        f"base: {REPO / 'runs' / 'altcoins-50pct.yaml'}\n"
        f"sample:\n  method: lhs\n  n: {n}\n  seed: 1\n  ranges:\n    policy.ratio: [0.2, 1.0]\n"
        "    policy.band: [0.02, 0.3]\n"
    )
    return grid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=200_000)
    ap.add_argument("--configs", type=int, default=48)
    ap.add_argument("--rss-paths", type=int, default=1_000_000)
    ap.add_argument("--rss-child", nargs=2)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]))
        return
    from perphedge.specs import default_registry
    from perphedge.usecases.engine import DaskEngine, InProcessEngine
    from perphedge.usecases.montecarlo import run_chunks
    from perphedge.usecases.sweep import run_sweep

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        store = _store(tmp)
        shared = mc_shared(store)
        grid = _grid(tmp, args.configs)
        registry = default_registry(None)
        run_chunks(shared, paths=2_000, seed=0, engine=InProcessEngine(), n_assets=10)  # compile the kernels
        run_sweep(grid, store_path=str(store), registry=registry, engine=InProcessEngine(), batch=4)
        results: dict[str, tuple[float, float]] = {}

        def measure(label: str, engine: Any) -> None:
            # steady state: the workers have loaded the compiled kernels once (a real run pays this once, ~1-3 s)
            run_sweep(_grid(tmp / "warm", 4), store_path=str(store), registry=registry, engine=engine, batch=1)
            run_chunks(shared, paths=20_000, seed=0, engine=engine, n_assets=10)
            t0 = time.perf_counter()
            a = run_sweep(grid, store_path=str(store), registry=registry, engine=engine)
            t_sweep = time.perf_counter() - t0
            t0 = time.perf_counter()
            b = run_chunks(shared, paths=args.paths, seed=1, engine=engine, n_assets=10)
            t_mc = time.perf_counter() - t0
            results[label] = (a["configurations"] / t_sweep, b["paths"] / t_mc)

        import numba

        threads = numba.get_num_threads()
        measure(f"in-process ({threads} numba threads)", InProcessEngine())
        numba.set_num_threads(1)
        measure("in-process (1 numba thread)", InProcessEngine())
        numba.set_num_threads(threads)
        for n in (1, 2):
            t0 = time.perf_counter()
            with DaskEngine("local", n) as eng:
                start = time.perf_counter() - t0
                measure(f"dask local, {n} worker(s) (start {start:.1f} s)", eng)
        print(f"sweep: {args.configs} configurations of runs/altcoins-50pct.yaml (lhs over ratio, band)")
        print(f"Monte Carlo: {args.paths:,} bootstrap paths x 365 days x 10 assets, 10 legs checked")
        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine)")
        print(f"{'engine':52} {'configs/s':>10} {'paths/s':>12}")
        for label, (c, p) in results.items():
            print(f"{label:52} {c:10.1f} {p:12,.0f}")
        base_c, base_p = results["in-process (1 numba thread)"]
        d1 = next(v for k, v in results.items() if "1 worker" in k)
        d2 = next(v for k, v in results.items() if "2 worker" in k)
        print(
            f"overhead of 1 Dask worker vs in-process (1 thread): sweep {1 - d1[0] / base_c:+.1%}, "
            f"Monte Carlo {1 - d1[1] / base_p:+.1%}"
        )
        print(f"speed-up of 2 workers vs 1: sweep x{d2[0] / d1[0]:.2f}, Monte Carlo x{d2[1] / d1[1]:.2f}")
        print(f"10,000,000 paths at the 2-worker steady rate: {10_000_000 / d2[1] / 60:.1f} min (extrapolated)")
        for paths in (10_000, args.rss_paths):
            out = subprocess.run(
                [sys.executable, __file__, "--rss-child", str(store), str(paths)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            print(f"peak RSS, {paths:>10,} paths in-process: {out[2]:>6} MB ({float(out[1]):.1f} s)")


if __name__ == "__main__":
    main()
