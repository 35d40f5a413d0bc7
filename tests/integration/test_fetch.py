"""ccxt fetch against the fake exchange on 127.0.0.1: exact data, faults, kill and resume."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import ccxt
import pandas as pd
import pytest

from perphedge.data.store import MarketStore
from perphedge.errors import ExchangeError
from perphedge.exchange.ccxt_source import RetryPolicy, _call, make_exchange
from perphedge.exchange.fake import FakeExchange, Fault
from perphedge.usecases.data import FetchRequest, FetchResult, SeriesResult, fetch_into
from tests.conftest import sample_dir

SPOT = ["BTC/USDT", "SOL/USDT"]
PERPS = ["BTC/USDT:USDT", "BTC/USD:BTC"]
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, seed=1)


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir()) as fx:
        yield fx


def fetch(
    store: MarketStore,
    exchange: str,
    *,
    spot: list[str] | None = None,
    perps: list[str] | None = None,
    since: str,
    until: str | None = None,
    client: Any,
    policy: RetryPolicy,
) -> FetchResult:
    req = FetchRequest(exchange=exchange, spot=tuple(spot or ()), perps=tuple(perps or ()), since=since, until=until)
    return fetch_into(store, req, client=client, policy=policy)


def client(fx: FakeExchange, exchange: str = "binance", timeout_ms: int = 10_000) -> Any:
    c = make_exchange(exchange, base_url=fx.url, timeout_ms=timeout_ms)
    c.rateLimit = 1
    return c


def dump(path: Path | str) -> dict[str, pd.DataFrame]:
    with MarketStore(path, read_only=True) as store:
        return {
            "candles": store.query(
                "SELECT source, symbol, timeframe, ts, open, high, low, close, volume FROM candles ORDER BY ALL"
            ),
            "funding": store.query("SELECT source, symbol, ts, rate, interval_hours FROM funding ORDER BY ALL"),
            "instruments": store.query(
                "SELECT source, symbol, kind, contract_size, tiers FROM instruments ORDER BY ALL"
            ),
        }


def assert_same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    for key, frame in a.items():
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), b[key].reset_index(drop=True), check_exact=True)


def test_full_fetch_equals_the_source_files(fake: FakeExchange, tmp_path: Path) -> None:
    root = sample_dir()
    with MarketStore(tmp_path / "s.duckdb") as store:
        res = fetch(
            store,
            "binance",
            spot=SPOT,
            perps=PERPS,
            since="2017-01-01",
            until="2025-12-31",
            client=client(fake),
            policy=FAST,
        )
        assert all(s.retries == 0 for s in res.series)
        for sym, asset in (("BTC/USDT", "BTC"), ("SOL/USDT", "SOL"), ("BTC/USDT:USDT", "BTC")):
            got = store.query(
                "SELECT strftime(ts, '%Y-%m-%d') AS timestamp, open, high, low, close, volume "
                "FROM candles WHERE symbol = ? ORDER BY ts",
                [sym],
            )
            src = pd.read_csv(root / "prices" / f"{asset}.csv")
            pd.testing.assert_frame_equal(got, src, check_exact=True)
        for sym, name in (("BTC/USDT:USDT", "BINANCE_BTCUSDT"), ("BTC/USD:BTC", "BINANCE_BTCUSD_PERP")):
            got = store.query(
                "SELECT strftime(ts, '%Y-%m-%dT%H:%M:%SZ') AS timestamp, rate AS funding_rate, "
                "interval_hours FROM funding WHERE symbol = ? ORDER BY ts",
                [sym],
            )
            src = pd.read_csv(root / "funding" / f"{name}.csv")
            pd.testing.assert_frame_equal(got[["timestamp", "funding_rate"]], src, check_exact=True)
            assert set(got["interval_hours"]) == {8.0}
        inst = store.query("SELECT symbol, kind, contract_size FROM instruments ORDER BY symbol")
        assert inst.values.tolist() == [["BTC/USD:BTC", "inverse", 100.0], ["BTC/USDT:USDT", "linear", 1.0]]


def test_bybit_fetch_newest_first_pages(fake: FakeExchange, tmp_path: Path) -> None:
    root = sample_dir()
    with MarketStore(tmp_path / "s.duckdb") as store:
        fetch(
            store,
            "bybit",
            spot=["BTC/USDT"],
            perps=["BTC/USDT:USDT", "ETH/USD:ETH"],
            since="2020-06-01",
            until="2025-12-31",
            client=client(fake, "bybit"),
            policy=FAST,
        )
        for sym, name in (("BTC/USDT:USDT", "BYBIT_BTCUSDT"), ("ETH/USD:ETH", "BYBIT_ETHUSD")):
            got = store.query(
                "SELECT strftime(ts, '%Y-%m-%dT%H:%M:%SZ') AS timestamp, rate AS funding_rate "
                "FROM funding WHERE symbol = ? ORDER BY ts",
                [sym],
            )
            pd.testing.assert_frame_equal(got, pd.read_csv(root / "funding" / f"{name}.csv"), check_exact=True)
        n = store.query("SELECT count(*) AS n FROM candles WHERE symbol = 'BTC/USDT'")["n"][0]
        src = pd.read_csv(root / "prices" / "BTC.csv")
        assert n == int((src["timestamp"] >= "2020-06-01").sum())


def test_faults_are_retried_and_change_nothing(
    fake: FakeExchange, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with MarketStore(tmp_path / "clean.duckdb") as store:
        fetch(
            store,
            "binance",
            spot=SPOT,
            perps=PERPS,
            since="2017-01-01",
            until="2025-12-31",
            client=client(fake),
            policy=FAST,
        )
    fake.inject(
        Fault("429", "klines", retry_after=0.3),
        Fault("500", "fundingRate"),
        Fault("drop", "klines"),
        Fault("slow", "fundingRate", delay=1.5),
        Fault("overlap", "klines", rows=7),
        Fault("overlap", "fundingRate", rows=5),
        Fault("500", "exchangeInfo"),
    )
    t0 = time.monotonic()
    with caplog.at_level("WARNING", logger="perphedge.fetch"), MarketStore(tmp_path / "faulty.duckdb") as store:
        res = fetch(
            store,
            "binance",
            spot=SPOT,
            perps=PERPS,
            since="2017-01-01",
            until="2025-12-31",
            client=client(fake, timeout_ms=700),
            policy=FAST,
        )
    assert time.monotonic() - t0 >= 0.3  # Retry-After was waited out
    assert sum(s.retries for s in res.series) >= 4
    assert len([r for r in caplog.records if "retry" in r.getMessage()]) >= 5
    assert not fake.faults
    assert_same(dump(tmp_path / "clean.duckdb"), dump(tmp_path / "faulty.duckdb"))


def test_retry_after_is_honoured_and_retries_end() -> None:
    class Fake:
        id = "fake"
        last_response_headers: ClassVar[dict[str, str]] = {"Retry-After": "2.5"}

    slept: list[float] = []
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ccxt.RateLimitExceeded("429")
        return "ok"

    counter = SeriesResult(kind="ohlcv", symbol="X", timeframe="1d")
    out = _call(Fake(), "x", flaky, RetryPolicy(base_delay=0.01, seed=0), random.Random(0), counter, slept.append)
    assert out == "ok" and counter.retries == 2 and all(s >= 2.5 for s in slept)

    def down() -> None:
        raise ccxt.ExchangeNotAvailable("503")

    with pytest.raises(ExchangeError, match="failed after 3 attempts"):
        _call(Fake(), "x", down, RetryPolicy(max_retries=2, base_delay=0.01), random.Random(0), None, slept.append)

    def bad() -> None:
        raise ccxt.BadSymbol("nope")

    with pytest.raises(ExchangeError, match="unknown symbol"):
        _call(Fake(), "x", bad, RetryPolicy(), random.Random(0), None, slept.append)


def test_unknown_symbol_is_a_clear_error(fake: FakeExchange, tmp_path: Path) -> None:
    with MarketStore(tmp_path / "s.duckdb") as store, pytest.raises(ExchangeError, match="has no market 'PEPE/USDT'"):
        fetch(store, "binance", spot=["PEPE/USDT"], since="2024-01-01", client=client(fake), policy=FAST)


def _cli_fetch(fx: FakeExchange, store: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PERPHEDGE_EXCHANGE_URL=fx.url, PERPHEDGE_RATE_LIMIT_MS="1", COLUMNS="120")
    exe = str(Path(sys.executable).parent / "perphedge")
    return subprocess.Popen(
        [
            exe,
            "data",
            "fetch",
            "--exchange",
            "binance",
            "--spot",
            ",".join(SPOT),
            "--perps",
            ",".join(PERPS),
            "--since",
            "2017-01-01",
            "--until",
            "2025-12-31",
            "--store",
            str(store),
            "--format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_killed_and_resumed_fetch_ends_identical(tmp_path: Path) -> None:
    rng = random.Random(20261122)
    with FakeExchange(sample_dir(), latency=0.05) as fx:
        with MarketStore(tmp_path / "reference.duckdb") as store:
            fetch(
                store,
                "binance",
                spot=SPOT,
                perps=PERPS,
                since="2017-01-01",
                until="2025-12-31",
                client=client(fx),
                policy=FAST,
            )
        reference = dump(tmp_path / "reference.duckdb")
        t0 = time.monotonic()
        clean = _cli_fetch(fx, tmp_path / "clean-cli.duckdb")
        _, err = clean.communicate(timeout=120)
        assert clean.returncode == 0, err
        duration = time.monotonic() - t0
        assert_same(reference, dump(tmp_path / "clean-cli.duckdb"))
        for trial in range(3):
            target = tmp_path / f"killed-{trial}.duckdb"
            kills = 0
            for attempt in range(20):
                proc = _cli_fetch(fx, target)
                try:
                    # kill somewhere in the run: start-up, market loading, or between/inside pages; each later
                    # attempt gets longer, so a loaded machine (start-up slower than when `duration` was measured)
                    # still makes progress instead of being killed during start-up twenty times
                    _, err = proc.communicate(timeout=rng.uniform(0.2, 0.7) * duration * (1 + attempt / 2))
                except subprocess.TimeoutExpired:
                    sig = signal.SIGINT if (trial == 0 and kills == 0) else signal.SIGKILL
                    proc.send_signal(sig)
                    proc.communicate()
                    kills += 1
                    continue
                assert proc.returncode == 0, err
                break
            else:
                pytest.fail("the fetch never completed")
            assert kills >= 1, "the fetch finished before it could be killed"
            assert_same(reference, dump(target))
