"""Replay = backtest on more books than test_book_replay: schedule, events, fear & greed, trend, beta, min-variance
sizing, two proxy legs, top-ups, Bybit linear (with liquidations and reopening), Deribit and BitMEX inverse, and
8h books with daily-data policies. Same comparison (`_compare`): every bar's equity, funding, fees, slippage,
rebalances and liquidations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_book_replay import _both, _compare, store_8h  # noqa: F401  (fixture)

ALTS: dict[str, Any] = {
    "name": "alts",
    "holdings": [{"asset": "ETH", "value_usd": 6000}, {"asset": "SOL", "value_usd": 4000}],
    "hedge": {"instrument": "binance:BTCUSDT", "leverage": 2, "ratio": 1.0},
}
ETH8H: dict[str, Any] = {
    "name": "eth",
    "holdings": [{"asset": "ETH", "value_usd": 10000}],
    "hedge": {"instrument": "binance:BTCUSDT", "leverage": 2},
}


def _paper(exchange: str) -> list[dict[str, Any]]:
    return [{"name": "paper", "kind": "paper", "exchange": exchange, "balances": {"USDT": 20000}}]


CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    (
        "schedule",
        "2022-01-01",
        "2022-12-31",
        {
            "policy": {
                "kind": "schedule",
                "schedule": [
                    {"from": "2022-01-01", "ratio": 0.5},
                    {"from": "2022-05-01", "ratio": 0.9},
                    {"from": "2022-09-15", "ratio": 0.2},
                ],
            }
        },
    ),
    (
        "events",
        "2022-01-01",
        "2022-12-31",
        {
            "policy": {
                "kind": "events",
                "ratio": 0.4,
                "events": [
                    {"date": "2022-06-15", "ratio": 1.0},
                    {"date": "2022-11-10", "ratio": 0.9, "before_days": 2},
                ],
            }
        },
    ),
    (
        "fear_greed",
        "2021-01-01",
        "2022-12-31",
        {
            "policy": {
                "kind": "fear_greed",
                "band": 0.1,
                "table": [{"max": 20, "ratio": 0.625}, {"max": 39, "ratio": 0.4}, {"max": 100, "ratio": 0.1}],
            }
        },
    ),
    (
        "trend",
        "2021-01-01",
        "2022-12-31",
        {"policy": {"kind": "trend", "sma_days": 30, "ratio_on": 1.0, "ratio_off": 0.2, "band": 0.1}},
    ),
    ("beta", "2021-06-01", "2022-12-31", {"policy": {"kind": "beta", "ratio": 1.0, "band": 0.1, "window_days": 60}}),
    (
        "min_variance sizing",
        "2021-06-01",
        "2022-12-31",
        {"portfolio": ALTS | {"hedge": {"instrument": "binance:BTCUSDT", "leverage": 2, "method": "min_variance"}}},
    ),
    (
        "two proxy legs",
        "2022-01-01",
        "2022-12-31",
        {
            "portfolio": ALTS
            | {
                "hedge": {
                    "legs": [
                        {"instrument": "binance:BTCUSDT", "weight": 0.6},
                        {"instrument": "binance:ETHUSDT", "weight": 0.4},
                    ],
                    "leverage": 2,
                }
            }
        },
    ),
    (
        "top-ups linear 3x",
        "2021-01-01",
        "2021-12-31",
        {
            "portfolio": ALTS | {"hedge": {"instrument": "binance:BTCUSDT", "leverage": 3}},
            "policy": {"kind": "drift_band", "ratio": 1.0, "band": 0.5},
            "margin": {"top_up": True, "top_up_level": 0.7},
        },
    ),
    (
        "bybit linear 5x liquidated, reopens",
        "2021-01-01",
        "2021-06-30",
        {
            "portfolio": ALTS | {"hedge": {"instrument": "bybit:BTCUSDT", "leverage": 5}},
            "policy": {"kind": "drift_band", "ratio": 1.0, "band": 0.9},
            "margin": {"reopen_after_days": 5},
            "accounts": _paper("bybit"),
        },
    ),
    (
        "bybit inverse buy",
        "2022-01-01",
        "2022-12-31",
        {
            "portfolio": ALTS | {"hedge": {"instrument": "bybit:BTCUSD", "leverage": 2, "collateral": "buy"}},
            "accounts": _paper("bybit"),
        },
    ),
    (
        "deribit inverse 3x top-ups",
        "2021-01-01",
        "2021-12-31",
        {
            "portfolio": ALTS | {"hedge": {"instrument": "deribit:BTC-PERPETUAL", "leverage": 3, "collateral": "buy"}},
            "margin": {"top_up": True, "top_up_level": 0.7},
            "accounts": _paper("deribit"),
        },
    ),
    (
        "8h fear_greed",
        "2023-03-01",
        "2023-06-30",
        {
            "step": "8h",
            "policy": {
                "kind": "fear_greed",
                "band": 0.05,
                "table": [{"max": 40, "ratio": 0.9}, {"max": 55, "ratio": 0.5}, {"max": 100, "ratio": 0.1}],
            },
            "portfolio": ETH8H,
        },
    ),
    (
        "8h calendar inverse",
        "2023-03-01",
        "2023-06-30",
        {
            "step": "8h",
            "policy": {"kind": "calendar", "ratio": 0.8, "every_days": 3},
            "portfolio": ETH8H | {"hedge": {"instrument": "binance:BTCUSD_PERP", "leverage": 2, "collateral": "buy"}},
        },
    ),
]


@pytest.mark.parametrize(("label", "start", "end", "over"), CASES, ids=[c[0] for c in CASES])
def test_replay_equals_backtest_on_more_books(
    label: str, start: str, end: str, over: dict[str, Any], tmp_path: Path, sample_store_path: Path, request: Any
) -> None:
    store = request.getfixturevalue("store_8h") if over.get("step") == "8h" else sample_store_path
    rep, bt = _both(tmp_path, store, start, end, **over)
    _compare(rep, bt)
    assert rep["rebalances"] >= 1
    if "liquidated" in label:
        assert rep["liquidations"], "the 5x leg must be liquidated in the spring 2021 rally"
    if "top-ups" in label:
        assert rep["top_ups"] >= 1
