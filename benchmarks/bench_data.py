"""Market-data speed goals (run by hand: `.venv/bin/python benchmarks/bench_data.py`).

1. Import all of the sample data (PERPHEDGE_SAMPLE_DATA) into a fresh store: goal < 5 s.
2. Read an aligned 8-year daily frame of 13 assets (close, warm): goal < 50 ms.
3. Fetch through ccxt from the fake exchange: the same requests replayed with plain urllib give
   the server's own time; the ratio shows whether our code or the server bounds the fetch.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from perphedge.data import reader
from perphedge.data.importer import parse_sample
from perphedge.data.sample import shared_or_bundled
from perphedge.data.store import MarketStore
from perphedge.exchange.ccxt_source import RetryPolicy, make_exchange
from perphedge.exchange.fake import FakeExchange
from perphedge.usecases.data import FetchRequest, fetch_into, import_frames

ROOT = shared_or_bundled(
    Path(os.environ.get("PERPHEDGE_SAMPLE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
)
ASSETS = ["BTC", "ETH", "SOL", "AVAX", "DOT", "LINK", "ADA", "MATIC", "UNI", "AAVE", "DOGE", "XRP", "BNB"]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        t0 = time.perf_counter()
        with MarketStore(path) as store:
            reports = import_frames(store, parse_sample(ROOT), source=str(ROOT)).files
        t_import = time.perf_counter() - t0
        rows = sum(r.rows for r in reports)
        with MarketStore(path, read_only=True) as store:
            reader.ohlc(store, ASSETS, "2018-01-01", "2025-12-31")
            reads = []
            for _ in range(50):
                t0 = time.perf_counter()
                frame = reader.ohlc(store, ASSETS, "2018-01-01", "2025-12-31")["close"]
                reads.append(time.perf_counter() - t0)
        print(f"{'case':48} {'value':>12} {'goal':>10}")
        print(
            f"{'import sample (' + str(len(reports)) + ' files, ' + format(rows, ',') + ' rows)':48} "
            f"{t_import:10.2f} s {'< 5 s':>10}"
        )
        print(f"{'aligned close frame ' + str(frame.shape) + ' min':48} {min(reads) * 1000:9.1f} ms {'< 50 ms':>10}")
        print(f"{'aligned close frame median':48} {statistics.median(reads) * 1000:9.1f} ms")

        for latency in (0.0, 0.02):
            with FakeExchange(ROOT, latency=latency) as fx:
                client = make_exchange("binance", base_url=fx.url)
                client.rateLimit = 1
                t0 = time.perf_counter()
                with MarketStore(Path(tmp) / f"fetch-{latency}.duckdb") as store:
                    req = FetchRequest(
                        exchange="binance",
                        spot=tuple(f"{a}/USDT" for a in ASSETS[:6]),
                        perps=("BTC/USDT:USDT", "BTC/USD:BTC", "ETH/USDT:USDT"),
                        since="2017-01-01",
                        until="2025-12-31",
                    )
                    res = fetch_into(store, req, client=client, policy=RetryPolicy())
                t_fetch = time.perf_counter() - t0
                log = list(fx.log)
                t0 = time.perf_counter()
                for path_q, _status in log:
                    with urllib.request.urlopen(fx.url + path_q) as resp:
                        resp.read()
                t_server = time.perf_counter() - t0
            n = sum(s.rows for s in res.series)
            label = f"fetch, server latency {latency * 1000:.0f} ms: {len(log)} requests"
            print(f"{label:48} {t_fetch:10.2f} s   ({n:,} rows, {n / t_fetch:,.0f} rows/s)")
            print(
                f"{'  same requests replayed with urllib (server)':48} {t_server:10.2f} s   "
                f"ratio fetch/server {t_fetch / t_server:.2f}"
            )


if __name__ == "__main__":
    main()
