"""``data fetch`` without a network fails fast with one line; bad fetch options are one line; fetches are journalled."""

from __future__ import annotations

import json
import logging
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import ccxt
import pandas as pd
import pytest

from perphedge.data.store import MarketStore
from perphedge.errors import ConfigError, ExchangeError
from perphedge.exchange.ccxt_source import RetryPolicy, _call, make_exchange, unreachable_reason
from perphedge.exchange.fake import FakeExchange, Fault
from perphedge.usecases.data import FetchRequest, SeriesResult, StatusRequest, fetch_data, fetch_into
from perphedge.usecases.data import status as store_status
from tests.conftest import run_cli, sample_dir

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, seed=1)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the socket is: nothing listens there


@pytest.mark.parametrize("url", ["closed-port", "http://nonexistent.invalid", "http://no-such-host.invalid:8443/x"])
def test_fetch_without_network_fails_fast_with_one_line(tmp_path: Path, url: str) -> None:
    if url == "closed-port":
        url = f"http://127.0.0.1:{closed_port()}"
    store = tmp_path / "s.duckdb"
    t0 = time.monotonic()
    r = run_cli(
        "data",
        "fetch",
        "--exchange",
        "binance",
        "--spot",
        "BTC/USDT",
        "--since",
        "2024-01-01",
        "--store",
        str(store),
        env={"PERPHEDGE_EXCHANGE_URL": url},
    )
    elapsed = time.monotonic() - t0
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("perphedge: error: binance: cannot reach http://"), lines[0]
    assert ("connection refused" in lines[0]) or ("does not resolve" in lines[0])
    assert "check PERPHEDGE_EXCHANGE_URL" in lines[0] and "WARNING" not in r.stderr and "Traceback" not in r.stderr
    assert elapsed < 15, elapsed
    assert not store.exists()  # the exchange is reached before the store is touched


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


class _Client:
    id = "fake"
    last_response_headers: dict[str, str] = {}  # noqa: RUF012


def _refused() -> None:
    try:
        socket.create_connection(("127.0.0.1", closed_port()), timeout=1)
    except OSError as exc:
        raise ccxt.NetworkError("fake GET http://127.0.0.1:1/api") from exc


def test_unreachable_exchange_gives_up_within_the_budget(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    counter = SeriesResult(kind="ohlcv", symbol="X", timeframe="1d")
    policy = RetryPolicy(max_retries=50, base_delay=0.5, max_delay=30, unreachable_budget=10, seed=0)
    with caplog.at_level(logging.INFO, logger="perphedge.fetch"), pytest.raises(ExchangeError) as exc:
        _call(_Client(), "load_markets", _refused, policy, random.Random(0), counter, clock.sleep, clock)
    assert "fake: cannot reach http://127.0.0.1:1: connection refused" in str(exc.value)
    assert clock.now <= 10 and sum(clock.slept) <= 10 and 2 <= len(clock.slept) <= 5
    assert counter.retries == len(clock.slept)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # silent until the one error line
    with pytest.raises(ExchangeError, match=r"connection refused \(1 attempts"):
        _call(_Client(), "x", _refused, RetryPolicy(unreachable_budget=0), random.Random(0), None, clock.sleep, clock)


def test_other_network_errors_keep_their_full_retry_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()

    def timeout() -> None:
        raise ccxt.RequestTimeout("fake GET http://x/api read timed out")

    policy = RetryPolicy(max_retries=6, base_delay=1, max_delay=30, unreachable_budget=1, seed=0)
    with caplog.at_level(logging.WARNING, logger="perphedge.fetch"), pytest.raises(ExchangeError) as exc:
        _call(_Client(), "x", timeout, policy, random.Random(0), None, clock.sleep, clock)
    assert "failed after 7 attempts" in str(exc.value) and len(clock.slept) == 6 and clock.now > 10
    assert len([r for r in caplog.records if "retry" in r.getMessage()]) == 6


def test_unreachable_reasons() -> None:
    def error_of(fn: object) -> BaseException:
        try:
            fn()  # type: ignore[operator]
        except BaseException as exc:
            return exc
        raise AssertionError("no error")

    assert unreachable_reason(error_of(_refused)) == "connection refused"
    gai = ccxt.NetworkError("x")
    gai.__cause__ = socket.gaierror(-2, "Name or service not known")
    assert unreachable_reason(gai) == "the host name does not resolve"
    down = ccxt.NetworkError("x")
    down.__context__ = OSError(101, "Network is unreachable")
    assert unreachable_reason(down) == "network unreachable"
    assert unreachable_reason(ccxt.RequestTimeout("read timed out")) is None
    dropped = ccxt.NetworkError("x")
    dropped.__cause__ = ConnectionResetError(104, "Connection reset by peer")
    assert unreachable_reason(dropped) is None
    client = make_exchange("binance", base_url=f"http://nonexistent.invalid:{closed_port()}")
    assert unreachable_reason(error_of(client.load_markets)) == "the host name does not resolve"


BAD_OPTIONS = {
    "retries": (["--retries", "-1"], "invalid `--retries`: must be a whole number >= 0, was -1"),
    "since": (["--since", "01/02/2024"], "invalid `--since`: must be an ISO 8601 date"),
    "until_before": (["--until", "2023-01-01"], "invalid `--until`: 2023-01-01 is before `--since` 2024-01-01"),
    "timeframe": (["--timeframe", "3d"], "invalid `--timeframe`: must be one of"),
    "exchange": (["--exchange", "kraken"], "invalid `--exchange`: fetching supports binance, bybit"),
    "twice": (["--spot", "BTC/USDT,BTC/USDT"], "invalid `--spot`: BTC/USDT is listed twice"),
    "nothing": (["--spot", ","], "nothing to fetch"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_fetch_options_are_one_line(tmp_path: Path, case: str) -> None:
    extra, expected = BAD_OPTIONS[case]
    args = {"--exchange": "binance", "--spot": "BTC/USDT", "--since": "2024-01-01"}
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        args[flag] = value
    flat = [x for kv in args.items() for x in kv]
    r = run_cli(
        "data",
        "fetch",
        *flat,
        "--store",
        str(tmp_path / "s.duckdb"),
        env={"PERPHEDGE_EXCHANGE_URL": "http://127.0.0.1:1"},
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and expected in r.stderr, r.stderr
    assert not (tmp_path / "s.duckdb").exists()


@pytest.mark.parametrize("url", ["ftp://example.com", "127.0.0.1:8080", "http://"])
def test_exchange_url_must_be_http(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERPHEDGE_EXCHANGE_URL", url)
    with pytest.raises(ConfigError, match="invalid PERPHEDGE_EXCHANGE_URL"):
        make_exchange("binance")
    monkeypatch.setenv("PERPHEDGE_EXCHANGE_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("PERPHEDGE_EXCHANGE_TIMEOUT_MS", "soon")
    with pytest.raises(ConfigError, match="PERPHEDGE_EXCHANGE_TIMEOUT_MS: must be a number of milliseconds > 0"):
        make_exchange("binance")


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir()) as fx:
        yield fx


def test_a_fetch_that_fails_midway_is_journalled_and_a_rerun_completes_it(fake: FakeExchange, tmp_path: Path) -> None:
    client = make_exchange("binance", base_url=fake.url, timeout_ms=10_000)
    client.rateLimit = 1
    req = FetchRequest(
        exchange="binance", spot=("SOL/USDT",), perps=("BTC/USDT:USDT",), since="2024-01-01", until="2024-06-30"
    )
    path = tmp_path / "s.duckdb"
    fake.inject(Fault("500", "fundingRate"))
    with MarketStore(path) as store, pytest.raises(ExchangeError, match="failed after 1 attempts"):
        fetch_into(store, req, client=client, policy=RetryPolicy(max_retries=0))
    doc = store_status(StatusRequest(store=path))
    assert doc["complete"] is False
    (run,) = doc["incomplete"]
    assert run["kind"] == "fetch" and run["state"] == "failed", run
    assert run["detail"].startswith("binance: fetch_funding_rate_history BTC/USDT:USDT since "), run
    assert run["rows"] > 0  # the candle pages before the failure are stored (each its own transaction)
    out = fetch_data(
        FetchRequest(
            exchange="binance",
            spot=("SOL/USDT",),
            perps=("BTC/USDT:USDT",),
            since="2024-01-01",
            until="2024-06-30",
            store=path,
        ),
        client=client,
        policy=FAST,
    )
    assert out["schema"] == "perphedge.data-fetch/1" and out["fetch_id"] == 2
    assert [s["resumed_from"] is not None for s in out["series"]] == [True, True, False]
    doc = store_status(StatusRequest(store=path))
    assert doc["complete"] is True and [r["state"] for r in doc["imports"]] == ["complete", "failed"]
    funding = {(s["table"], s["symbol"]): s for s in doc["series"]}[("funding", "BTC/USDT:USDT")]
    src = pd.read_csv(sample_dir() / "funding" / "BINANCE_BTCUSDT.csv")
    expected = int(((src["timestamp"] >= "2024-01-01") & (src["timestamp"] <= "2024-06-30T00:00:00Z")).sum())
    assert funding["rows"] == expected == 181 * 3 + 1 and funding["missing"] == 0
    r = run_cli("data", "status", "--store", str(path), "--format", "json")
    assert json.loads(r.stdout)["complete"] is True
