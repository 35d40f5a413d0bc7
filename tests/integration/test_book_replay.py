"""Replay = backtest: ``book replay`` runs the real tick (snapshot → paper sync → status → plan → limits →
crash-safe execution) over stored history; its equity, funding, fees, slippage, rebalances and liquidations equal
``perphedge backtest`` of the book's equivalent run (issue 10, item 7)."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_cli

REL = 1e-9


def add_8h_candles(path: Path) -> None:
    """8h candles of BTC and ETH (2023-01-01 → 2024-07-01) from the sample's Binance basis file (spot open and
    close; high and low are the larger and smaller of the two: the file has no intrabar range)."""
    from perphedge.data.store import MarketStore

    with MarketStore(path) as st:
        frame = st.query(
            "SELECT 'binance' AS source, asset || '/USDT' AS symbol, '8h' AS timeframe, ts, spot_open AS open, "
            "greatest(spot_open, spot_close) AS high, least(spot_open, spot_close) AS low, spot_close AS close, "
            "0.0 AS volume FROM basis WHERE source = 'binance' AND timeframe = '8h' ORDER BY asset, ts"
        )
        st.upsert("candles", frame)


@pytest.fixture(scope="module")
def store_8h(sample_store_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store8h") / "sample8h.duckdb"
    path.write_bytes(sample_store_path.read_bytes())
    add_8h_candles(path)
    return path


def _book(tmp: Path, **over: Any) -> Path:
    doc: dict[str, Any] = {
        "book": 1,
        "id": "0a1b2c3d",
        "name": "replay test",
        "portfolio": {
            "name": "eth sol",
            "holdings": [{"asset": "ETH", "value_usd": 6000}, {"asset": "SOL", "value_usd": 4000}],
            "hedge": {"instrument": "binance:BTCUSDT", "leverage": 2, "ratio": 1.0},
        },
        "step": "1d",
        "policy": {"kind": "drift_band", "ratio": 0.6, "band": 0.1},
        "feed": {"kind": "store"},
        "accounts": [{"name": "paper", "kind": "paper", "exchange": "binance", "balances": {"USDT": 20000}}],
    }
    for k, v in over.items():
        doc[k] = v
    path = tmp / "t.book.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _close(a: float, b: float, rel: float = REL) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-7)


def _compare(replay: dict[str, Any], bt: dict[str, Any]) -> None:
    assert len(replay["equity"]) == len(bt["equity"])
    for r, b in zip(replay["equity"], bt["equity"], strict=True):
        assert r["date"][:10] == b["date"]  # the replay gives 8h bars their time (2023-03-01T08:00)
        assert _close(r["unhedged_usd"], b["unhedged_usd"]), (r, b)
        assert _close(r["hedged_usd"], b["hedged_usd"]), (r, b)
    for key in ("funding_received_usd", "fees_usd", "slippage_usd"):
        assert _close(replay[key], bt[key]), (key, replay[key], bt[key])
    assert replay["rebalances"] == bt["rebalances"]
    assert len(replay["liquidations"]) == len(bt["liquidations"])
    for r, b in zip(replay["liquidations"], bt["liquidations"], strict=True):
        assert r["date"] == b["date"]
        assert r["instrument"] == b["instrument"]
        assert _close(r["price"], b["price"])
        assert _close(r["loss_usd"], b["loss_usd"])


def _both(tmp: Path, store: Path, start: str, end: str, **over: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    from perphedge.data.store import MarketStore
    from perphedge.specs import default_registry
    from perphedge.usecases import backtest as BT
    from perphedge.usecases import book as B

    lb = B.load_book(_book(tmp, **over))
    d0, d1 = date.fromisoformat(start), date.fromisoformat(end)
    rep = B.replay(lb, d0, d1, store_path=tmp / "journal.sqlite", market_store=str(store))
    run_cfg, pfile, _ = B.book_to_run(lb, d0, d1)
    with MarketStore(store, read_only=True) as ms:
        prep = BT.prepare(run_cfg, pfile, ms, default_registry())
    bt = BT.public(BT.run(prep, run_cfg, config_hash="x"))
    return rep, bt


CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("static linear 1d", "2022-01-01", "2022-12-31", {"policy": {"kind": "static", "ratio": 0.8}}),
    (
        "drift_band linear 8h",
        "2023-03-01",
        "2023-06-30",
        {
            "step": "8h",
            "portfolio": {  # the sample has 8h candles of BTC and ETH only
                "name": "eth",
                "holdings": [{"asset": "ETH", "value_usd": 10000}],
                "hedge": {"instrument": "binance:BTCUSDT", "leverage": 2, "ratio": 1.0},
            },
        },
    ),
    ("calendar", "2021-06-01", "2022-06-01", {"policy": {"kind": "calendar", "ratio": 0.7, "every_days": 7}}),
    ("volatility", "2021-01-01", "2022-12-31", {"policy": {"kind": "volatility", "ratio": 0.5, "band": 0.1}}),
    (
        "funding_aware",
        "2021-01-01",
        "2021-12-31",
        {"policy": {"kind": "funding_aware", "ratio": 0.8, "band": 0.1, "lookback_days": 7}},
    ),
    (
        "inverse buy collateral",
        "2022-01-01",
        "2022-12-31",
        {
            "hedge": {"instrument": "binance:BTCUSD_PERP", "collateral": "buy", "leverage": 2},
            "margin": {"top_up": True, "top_up_level": 0.6},
        },
    ),
    (
        "inverse holdings collateral",
        "2022-01-01",
        "2022-09-30",
        {
            "portfolio": {
                "name": "btc eth",
                "holdings": [{"asset": "BTC", "value_usd": 5000}, {"asset": "ETH", "value_usd": 5000}],
                "hedge": {"instrument": "binance:BTCUSD_PERP", "collateral": "holdings", "leverage": 2},
            }
        },
    ),
    (
        "inverse 3x liquidated, reopens",
        "2021-01-01",
        "2021-05-31",
        {
            "hedge": {"instrument": "binance:BTCUSD_PERP", "collateral": "buy", "leverage": 3},
            "policy": {"kind": "drift_band", "ratio": 1.0, "band": 0.9},
            "margin": {"reopen_after_days": 7},
        },
    ),
]


@pytest.mark.parametrize(("label", "start", "end", "over"), CASES, ids=[c[0] for c in CASES])
def test_replay_equals_backtest(
    label: str, start: str, end: str, over: dict[str, Any], tmp_path: Path, sample_store_path: Path, request: Any
) -> None:
    store = request.getfixturevalue("store_8h") if over.get("step") == "8h" else sample_store_path
    rep, bt = _both(tmp_path, store, start, end, **over)
    _compare(rep, bt)
    if "liquidated" in label:
        assert rep["liquidations"], "the 3x inverse leg must be liquidated in early 2021"
        assert rep["rebalances"] > 1, "the leg reopens after reopen_after_days"
    else:
        assert rep["rebalances"] >= 1


def test_replay_cli_equals_backtest_cli(tmp_path: Path, store_home: Path) -> None:
    """Through the real CLI: `book replay --emit-run` then `perphedge backtest` on the emitted run file."""
    book = _book(tmp_path, hedge={"instrument": "binance:BTCUSD_PERP", "collateral": "buy", "leverage": 2})
    run_file = tmp_path / "equivalent.run.yaml"
    r = run_cli(
        "book", "replay", str(book), "--from", "2022-01-01", "--to", "2022-06-30", "--emit-run", str(run_file),
        "--out", str(tmp_path / "rep"), "--format", "json", home=store_home,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert (tmp_path / "rep" / "replay.json").is_file()
    b = run_cli("backtest", str(run_file), "--out", str(tmp_path / "bt"), "--format", "json", home=store_home)
    assert b.returncode == 0, b.stderr
    bt = json.loads((tmp_path / "bt" / "result.json").read_text(encoding="utf-8"))
    _compare(rep, bt)
