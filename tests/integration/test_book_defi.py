"""`perphedge book` over DeFi positions through the real CLI (issue 14, item 5): a v3 pool's delta counts in the
book's net delta at the feed's prices, so `book rebalance` sizes the short on the pool's *changing* delta.

The expected deltas are the Uniswap v3 amounts (whitepaper eq. 6.29–6.30) computed here, not read from the engine.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_cli

L, PA, PB, LOT = 4000.0, 1500.0, 2500.0, 0.001


def _eth_held(price: float) -> float:
    """ETH held by the pool at ``price``: L·(1/√P' − 1/√p_b), P' = P clipped to the range."""
    sp = math.sqrt(min(max(price, PA), PB))
    return L * (1 / sp - 1 / math.sqrt(PB))


def _contracts(eth: float) -> float:
    return math.floor(eth / LOT + 0.5) * LOT


def _portfolio(path: Path, eth_price: float, **extra: Any) -> None:
    doc: dict[str, Any] = {
        "name": "v3 LP",
        "prices": {"ETH": eth_price},
        "holdings": [],
        "positions": [{"kind": "lp_v3", "pair": ["ETH", "USDC"], "range": [PA, PB], "liquidity": L}],
        "hedge": {"ratio": 1.0, "instrument": "binance:ETHUSDT", "leverage": 2, "collateral": "stable"},
    }
    doc.update(extra)
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")


def _json(*args: str, home: Path) -> Any:
    r = run_cli(*args, "--format", "json", home=home)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_book_hedges_a_v3_pool_on_its_changing_delta(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pf = tmp_path / "lp.yaml"
    _portfolio(pf, 2000.0)
    book = tmp_path / "lp.book.yaml"
    r = run_cli(
        "book", "init", str(book), "--portfolio", str(pf), "--paper", "binance", "--balance", "USDT=30000", home=home
    )  # fmt: skip (a pool's delta grows as the price falls: margin for the larger short)
    assert r.returncode == 0, r.stderr
    assert "feed portfolio" in r.stdout

    st = _json("book", "status", str(book), home=home)
    (pos,) = st["defi_positions"]
    x0 = _eth_held(2000.0)
    assert pos["kind"] == "lp_v3" and pos["hedged"] is True and pos["range_status"] == "in"
    assert pos["delta"]["ETH"] == pytest.approx(x0, abs=1e-8)
    assert pos["delta_usd"]["ETH"] == pytest.approx(x0 * 2000.0, abs=0.01)
    value0 = x0 * 2000.0 + L * (math.sqrt(2000.0) - math.sqrt(PA))
    assert st["value"]["defi_positions_usd"] == pytest.approx(value0, rel=1e-12)
    assert st["delta"]["exposure_usd"] == pytest.approx(x0 * 2000.0, rel=1e-12)
    assert st["delta"]["by_asset"]["ETH"] == pytest.approx(x0 * 2000.0, rel=1e-12)  # no hedge yet

    ex = _json("book", "rebalance", str(book), "--execute", "--yes", home=home)
    (order,) = ex["orders"]
    assert (order["side"], order["contracts"]) == ("sell", pytest.approx(_contracts(x0)))
    st = _json("book", "status", str(book), home=home)
    assert st["delta"]["net_delta_usd"] == pytest.approx((x0 - _contracts(x0)) * 2000.0, abs=1e-6)

    # ETH up 15%: the pool sold ETH along its curve; its delta fell, so the short is too big → buy back
    _portfolio(pf, 2300.0)
    x1 = _eth_held(2300.0)
    st = _json("book", "status", str(book), home=home)
    assert st["defi_positions"][0]["delta"]["ETH"] == pytest.approx(x1, abs=1e-8)
    assert st["delta"]["exposure_usd"] == pytest.approx(x1 * 2300.0, rel=1e-12)
    assert st["delta"]["hedge_delta_usd"] == pytest.approx(-_contracts(x0) * 2300.0, rel=1e-9)
    assert st["hedge"]["rebalance_due"] is True
    dry = _json("book", "rebalance", str(book), home=home)
    (order,) = dry["orders"]
    assert order["side"] == "buy" and order["contracts_after"] == pytest.approx(_contracts(x1))
    assert order["contracts"] == pytest.approx(_contracts(x0) - _contracts(x1))
    _json("book", "rebalance", str(book), "--execute", "--yes", home=home)

    # ETH down to 1700: the pool holds more ETH than at the start → sell more
    _portfolio(pf, 1700.0)
    x2 = _eth_held(1700.0)
    dry = _json("book", "rebalance", str(book), home=home)
    (order,) = dry["orders"]
    assert order["side"] == "sell" and order["contracts_after"] == pytest.approx(_contracts(x2))
    assert x2 > x0 > x1

    # above the range the pool is all USDC: delta 0, the hedge closes
    _portfolio(pf, 2600.0)
    st = _json("book", "status", str(book), home=home)
    assert st["defi_positions"][0]["range_status"] == "above"
    assert st["defi_positions"][0]["delta_usd"]["ETH"] == 0.0 and st["delta"]["exposure_usd"] == 0.0
    dry = _json("book", "rebalance", str(book), home=home)
    (order,) = dry["orders"]
    assert order["side"] == "buy" and order["contracts_after"] == 0.0 and order["reduce_only"] is True


def test_book_counts_holdings_and_positions_together(tmp_path: Path) -> None:
    # 2 ETH held + the pool: the hedge offsets both (the holdings' value and the pool's delta)
    home = tmp_path / "home"
    pf = tmp_path / "mixed.yaml"
    _portfolio(pf, 2000.0, holdings=[{"asset": "ETH", "quantity": 2.0}])
    book = tmp_path / "mixed.book.yaml"
    r = run_cli("book", "init", str(book), "--portfolio", str(pf), "--paper", "binance", home=home)
    assert r.returncode == 0, r.stderr
    st = _json("book", "status", str(book), home=home)
    want = (2.0 + _eth_held(2000.0)) * 2000.0
    assert st["delta"]["exposure_usd"] == pytest.approx(want, rel=1e-12)
    assert st["value"]["holdings_usd"] == pytest.approx(4000.0 + st["value"]["defi_positions_usd"], rel=1e-12)
    dry = _json("book", "rebalance", str(book), home=home)
    assert dry["orders"][0]["contracts"] == pytest.approx(_contracts(2.0 + _eth_held(2000.0)))


def test_book_init_needs_the_positions_prices_for_the_portfolio_feed(tmp_path: Path) -> None:
    pf = tmp_path / "lp.yaml"
    _portfolio(pf, 2000.0, prices={})
    r = run_cli(
        "book", "init", str(tmp_path / "b.yaml"), "--portfolio", str(pf), "--paper", "binance", "--feed", "portfolio",
        home=tmp_path / "home",
    )  # fmt: skip
    assert r.returncode == 2 and "gives no price for ETH" in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_replay_of_a_pool_book_equals_the_backtest(tmp_path: Path, store_home: Path) -> None:
    """`book replay` ticks the real book over stored history: with a v3 pool (and 1 ETH held) its equity, fees and
    rebalances equal `perphedge backtest` of the emitted run (which hedges the pool's delta bar by bar)."""
    from tests.integration.test_book_replay import _compare

    book = tmp_path / "lp.book.yaml"
    doc = {
        "book": 1,
        "id": "0d0e0f10",
        "portfolio": {
            "name": "lp + eth",
            "holdings": [{"asset": "ETH", "quantity": 1.0}],
            "positions": [{"kind": "lp_v3", "pair": ["ETH", "USDC"], "range": [PA, PB], "liquidity": L}],
            "hedge": {"instrument": "binance:ETHUSDT", "leverage": 2, "collateral": "stable", "ratio": 1.0},
        },
        "step": "1d",
        "policy": {"kind": "drift_band", "ratio": 1.0, "band": 0.05},
        "feed": {"kind": "store"},
        "accounts": [{"name": "paper", "kind": "paper", "exchange": "binance", "balances": {"USDT": 30000}}],
    }
    book.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    run_file = tmp_path / "equivalent.run.yaml"
    r = run_cli(
        "book", "replay", str(book), "--from", "2023-02-01", "--to", "2023-09-30", "--emit-run", str(run_file),
        "--out", str(tmp_path / "rep"), "--format", "json", home=store_home,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    b = run_cli("backtest", str(run_file), "--out", str(tmp_path / "bt"), "--format", "json", home=store_home)
    assert b.returncode == 0, b.stderr
    bt = json.loads((tmp_path / "bt" / "result.json").read_text(encoding="utf-8"))
    _compare(rep, bt)
    assert rep["rebalances"] == bt["rebalances"] > 5  # the band follows the pool's delta, not a fixed notional
    assert rep["hedge_effectiveness"] == pytest.approx(bt["hedge_effectiveness"], rel=1e-9)
    assert rep["hedge_effectiveness"] > 0.9
