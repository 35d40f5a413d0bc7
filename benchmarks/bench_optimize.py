"""Speed goal of `perphedge optimize` (run by hand: `.venv/bin/python benchmarks/bench_optimize.py`).

The default search on the demo basket (examples/altcoins.yaml: SOL/AVAX/DOT, venue binance) over the sample
history: every design (hedges btc, eth, btc_eth, own × inverse/linear × ratios 0.25–1 × leverages 1–5 × 4 sizing
methods × collateral × band/calendar) run once through the numba leg kernel on data prepared once, then scored on
every walk-forward window with a bootstrap Monte Carlo (2,000 paths) per training and test window.
Goal: under 60 s on this 2-core machine (the first run also compiles the numba kernels, about 10 s more).

Baseline: the plain way — `backtest.prepare` + `backtest.run` per design (re-reading the store each time, as a
sweep does without its cache); timed on a few designs and extrapolated to the whole search.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get("PERPHEDGE_SAMPLE_DATA", REPO.parent / "shared" / "data"))


def main() -> None:
    from perphedge.config import parse_portfolio, parse_run, read_yaml
    from perphedge.data.importer import parse_sample
    from perphedge.data.sample import shared_or_bundled
    from perphedge.data.store import MarketStore
    from perphedge.errors import PerphedgeError
    from perphedge.specs import default_registry
    from perphedge.usecases.backtest import prepare, run
    from perphedge.usecases.data import import_frames
    from perphedge.usecases.optimize import OptimizeRequest, optimize, prepare_market

    root = shared_or_bundled(ROOT)
    file = str(REPO / "examples" / "altcoins.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.duckdb"
        with MarketStore(path) as store:
            import_frames(store, parse_sample(root), source=str(root))
        t0 = time.perf_counter()
        pdoc, _ = read_yaml(file)
        pfile = parse_portfolio(pdoc, file)
        registry = default_registry()
        req = OptimizeRequest(file=file, store_path=str(path))
        with MarketStore(path, read_only=True) as store:
            market = prepare_market(pfile, pdoc, store, registry, req)
        t_prep = time.perf_counter() - t0
        doc = optimize(market, req, source=file)
        t_total = time.perf_counter() - t0
        designs = doc["space"]["designs"]
        windows = len(doc["walk_forward"]["windows"])
        # baseline: prepare + run per design, store re-read each time (5 designs, extrapolated)
        sample = 5
        t1 = time.perf_counter()
        with MarketStore(path, read_only=True) as store:
            for ratio in (0.25, 0.5, 0.75, 1.0, 0.6)[:sample]:
                rc = parse_run(
                    {
                        "portfolio": pdoc,
                        "start": doc["period"]["start"],
                        "end": doc["period"]["end"],
                        "hedge": {"instrument": "binance:BTCUSDT", "leverage": 2, "collateral": "stable"},
                        "policy": {"kind": "drift_band", "ratio": ratio},
                        "margin": {"reopen_after_days": 1},
                    },
                    "bench",
                )
                # a design may be refused (e.g. wiped out by a BTC rally): its time still counts
                with contextlib.suppress(PerphedgeError):
                    run(prepare(rc, pfile, store, registry), rc, config_hash="bench", full=False)
        per_design = (time.perf_counter() - t1) / sample
    print(f"{'case':70} {'value':>12}")
    print(f"{'designs searched / walk-forward windows':70} {designs:>6} / {windows}")
    print(f"{'prepare data once (store read per hedge instrument set)':70} {t_prep:10.2f} s")
    print(f"{'run every design through the kernel (whole period)':70} {doc['timing']['evaluate_seconds']:10.2f} s")
    print(
        f"{'walk-forward scoring + Monte Carlo + Pareto front':70} "
        f"{doc['timing']['total_seconds'] - doc['timing']['evaluate_seconds']:10.2f} s"
    )
    print(f"{'total default search (numba on-disk cache warm)':70} {t_total:10.2f} s   goal < 60 s")
    print(
        f"{'plain baseline: prepare + backtest.run per design, extrapolated':70} {per_design * designs:10.2f} s   "
        f"x{per_design * designs / max(t_total, 1e-9):.1f} slower (and without any walk-forward or Monte Carlo)"
    )


if __name__ == "__main__":
    main()
