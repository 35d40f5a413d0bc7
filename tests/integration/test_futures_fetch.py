"""`perphedge data fetch --futures` through ccxt against the fake exchange's Binance COIN-M dated contracts."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from perphedge.data.store import MarketStore
from perphedge.exchange.ccxt_futures import listed_contracts
from perphedge.exchange.ccxt_source import CcxtSource, make_exchange
from perphedge.exchange.fake import FakeExchange
from tests.conftest import run_cli, sample_dir

FUT = "futures/BINANCE_BTCUSD_quarterly_1d_2021.csv"


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir()) as fx:
        yield fx


def _fetch(fx: FakeExchange, store: Path, *args: str) -> object:
    return run_cli(
        "data", "fetch", "--exchange", "binance", "--store", str(store), *args, env={"PERPHEDGE_EXCHANGE_URL": fx.url}
    )


def test_listed_contracts_and_quarter_types(fake: FakeExchange) -> None:
    fake.now_ms = int(pd.Timestamp("2021-04-01", tz="UTC").value // 1_000_000)
    client = make_exchange("binance", base_url=fake.url)
    client.rateLimit = 1
    contracts = listed_contracts(CcxtSource("binance", client=client), "BTC")
    assert [(c.native, c.symbol, c.active, c.kind, c.contract_size) for c in contracts] == [
        ("BTCUSD_210326", "BTC/USD:BTC-210326", False, "inverse", 100.0),
        ("BTCUSD_210625", "BTC/USD:BTC-210625", True, "inverse", 100.0),
        ("BTCUSD_210924", "BTC/USD:BTC-210924", True, "inverse", 100.0),
    ]
    markets = client.load_markets()
    assert markets["BTC/USD:BTC-210625"]["info"]["contractType"] == "CURRENT_QUARTER"
    assert markets["BTC/USD:BTC-210924"]["info"]["contractType"] == "NEXT_QUARTER"
    assert contracts[1].expiry_ms == int(pd.Timestamp("2021-06-25 08:00", tz="UTC").value // 1_000_000)


def test_fetch_equals_the_sample_file_and_is_idempotent(fake: FakeExchange, tmp_path: Path) -> None:
    store = tmp_path / "f.duckdb"
    r = _fetch(fake, store, "--futures", "BTC", "--since", "2021-01-01", "--until", "2021-12-31", "-f", "json")
    assert r.returncode == 0, r.stderr  # type: ignore[attr-defined]
    doc = json.loads(r.stdout)  # type: ignore[attr-defined]
    assert doc["schema"] == "perphedge.data-fetch-futures/1" and doc["rows"] == 441
    with MarketStore(store, read_only=True) as s:
        got = s.query(
            "SELECT strftime(ts, '%Y-%m-%d') AS timestamp, symbol AS contract, "
            "strftime(expiry, '%Y-%m-%dT%H:%M:%SZ') AS expiry, open, high, low, close "
            "FROM futures_candles ORDER BY symbol, ts"
        )
    src = pd.read_csv(sample_dir() / FUT)[["timestamp", "contract", "expiry", "open", "high", "low", "close"]]
    src = src.sort_values(["contract", "timestamp"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, src, check_exact=True)
    again = _fetch(fake, store, "--futures", "BTC", "--since", "2021-01-01", "--until", "2021-12-31", "-f", "json")
    assert again.returncode == 0 and json.loads(again.stdout)["rows"] == 441  # type: ignore[attr-defined]
    with MarketStore(store, read_only=True) as s:
        assert int(s.query("SELECT count(*) AS n FROM futures_candles")["n"][0]) == 441


def test_fetch_window_keeps_bars_before_delivery(fake: FakeExchange, tmp_path: Path) -> None:
    store = tmp_path / "f.duckdb"
    r = _fetch(fake, store, "--futures", "BTC", "--since", "2021-03-20", "--until", "2021-03-31", "-f", "json")
    assert r.returncode == 0, r.stderr  # type: ignore[attr-defined]
    by = {c["contract"]: c for c in json.loads(r.stdout)["contracts"]}  # type: ignore[attr-defined]
    assert by["BTCUSD_210326"]["last"] == "2021-03-25 00:00:00" and by["BTCUSD_210326"]["rows"] == 6
    rows = [r for r in csv.DictReader((sample_dir() / FUT).open()) if r["contract"] == "BTCUSD_210924"]
    assert by["BTCUSD_210924"]["first"] == f"{rows[0]['timestamp']} 00:00:00"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--futures", "ETH", "--since", "2021-01-01"], "lists no dated futures on ETH"),
        (["--futures", "B/TC", "--since", "2021-01-01"], "`--futures`"),
        (["--futures", "", "--since", "2021-01-01"], "`--futures`"),
        (["--futures", "BTC", "--since", "2021-01-01", "--spot", "BTC/USDT"], "without --spot or --perps"),
        (["--futures", "BTC", "--since", "2021-06-01", "--until", "2021-01-01"], "--until"),
        (["--futures", "BTC", "--since", "01/06/2021"], "--since"),
        (["--futures", "BTC", "--since", "2019-01-01", "--until", "2019-12-31"], "no daily candles"),
    ],
)
def test_wrong_fetch_inputs(fake: FakeExchange, tmp_path: Path, args: list[str], message: str) -> None:
    r = _fetch(fake, tmp_path / "f.duckdb", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)  # type: ignore[attr-defined]
    err = r.stderr  # type: ignore[attr-defined]
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_analyze_a_fetched_store_takes_spot_from_candles(fake: FakeExchange, tmp_path: Path) -> None:
    store = tmp_path / "f.duckdb"
    assert _fetch(fake, store, "--futures", "BTC", "--since", "2021-01-01", "--until", "2021-12-31").returncode == 0  # type: ignore[attr-defined]
    r = run_cli("analyze", "--futures", "--store", str(store))
    assert r.returncode == 2 and "no spot close of BTC" in r.stderr
    r = _fetch(
        fake, store, "--spot", "BTC/USDT", "--perps", "BTC/USD:BTC", "--since", "2021-01-01", "--until", "2021-12-31"
    )
    assert r.returncode == 0, r.stderr  # type: ignore[attr-defined]
    r = run_cli("analyze", "--futures", "--store", str(store), "-f", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    # the same numbers as from the imported sample (spot closes equal prices/BTC.csv)
    assert doc["basis_annualized"]["median"] == pytest.approx(0.19776529794909112, rel=1e-9)
    # the fake serves the perpetual's funding of 2023-24 only: 2021 entries have none to compare with, and say so
    assert doc["carry_vs_funding"]["skipped_without_funding"] == doc["basis_annualized"]["n"]
