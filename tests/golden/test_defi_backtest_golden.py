"""The delta-neutral LP, by hand: a pool backtested on a synthetic path against closed forms (issue 14, item 4).

A v2 pool on ETH/USDC with liquidity ``L`` holds ``x = L/√P`` ETH: its delta. Hedged at every close with a short
of ``x_t`` ETH (no fees, no slippage, no funding), the book's first-order PnL is 0 and what is left over a bar is
the pool's convexity ``V(P_t) − V(P_{t−1}) − x_{t−1}·(P_t − P_{t−1}) = −L·(√P_t − √P_{t−1})²/√P_{t−1}`` (≤ 0): the
gamma cost. So the hedged book earns the fees minus that sum; the numbers below are computed here from the path,
not read from the engine.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from perphedge.config import parse_portfolio, parse_run
from perphedge.data.store import MarketStore
from perphedge.specs import default_registry
from perphedge.usecases.backtest import prepare, run

START = "2024-01-01"


def _store(path: Path, eth: np.ndarray, *, spread: float = 0.0, btc: np.ndarray | None = None) -> Path:
    """A store with daily ETH candles closing at ``eth`` (lows/highs ``spread`` around) and BTC (flat by default)."""
    n = len(eth)
    ts = pd.date_range(START, periods=n, freq="1D")
    frames = []
    for sym, c in (("ETH/USDT", eth), ("BTC/USDT", np.full(n, 50_000.0) if btc is None else btc)):
        o = np.concatenate([[c[0]], c[:-1]])
        frames.append(
            pd.DataFrame(
                {
                    "source": "binance",
                    "symbol": sym,
                    "timeframe": "1d",
                    "ts": ts,
                    "open": o,
                    "high": np.maximum(o, c) * (1 + spread),
                    "low": np.minimum(o, c) * (1 - spread),
                    "close": c,
                    "volume": 1.0,
                }
            )
        )
    with MarketStore(path) as store:
        for f in frames:
            store.upsert("candles", f)
    return path


def _path(n: int, seed: int, p0: float = 2000.0, vol: float = 0.04) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return p0 * np.exp(np.concatenate([[0.0], np.cumsum(rng.normal(0.0, vol, n - 1))]))


def _backtest(
    store: Path,
    positions: list[dict[str, Any]],
    n: int,
    *,
    fee_apr: float | None,
    policy: dict[str, Any] | None = None,
    holdings: list[dict[str, Any]] | None = None,
    scope: str = "all",
) -> dict[str, Any]:
    end = (pd.Timestamp(START) + pd.Timedelta(days=n - 1)).date().isoformat()
    doc: dict[str, Any] = {
        "portfolio": "synthetic",
        "start": START,
        "end": end,
        "hedge": {"instrument": "binance:ETHUSDT", "leverage": 2, "collateral": "stable", "scope": scope},
        "policy": policy or {"kind": "calendar", "ratio": 1.0, "every_days": 1},
        "costs": {"taker_fee": 0.0, "slippage_bps": 0.0},
        "funding": {"history": False, "assumed_rate_8h": 0.0},
    }
    if fee_apr is not None:
        doc["defi"] = {"fee_apr": fee_apr}
    run_cfg = parse_run(doc, "golden run")
    pfile = parse_portfolio({"name": "lp", "holdings": holdings or [], "positions": positions}, "golden portfolio")
    with MarketStore(store, read_only=True) as s:
        prep = prepare(run_cfg, pfile, s, default_registry())
    return run(prep, run_cfg, config_hash="golden")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_v2_hedged_every_bar_earns_fees_minus_the_gamma_cost(tmp_path: Path, seed: int) -> None:
    n, liquidity, apr = 180, 10_000.0, 0.20
    eth = _path(n, seed)
    store = _store(tmp_path / "s.duckdb", eth)
    x0, y0 = liquidity / math.sqrt(eth[0]), liquidity * math.sqrt(eth[0])  # the pool at the start's close
    doc = _backtest(
        store, [{"kind": "lp_v2", "pair": ["ETH", "USDC"], "amounts": {"ETH": x0, "USDC": y0}}], n, fee_apr=apr
    )
    sq = np.sqrt(eth)
    gamma = float(np.sum(-liquidity * (sq[1:] - sq[:-1]) ** 2 / sq[:-1]))  # the convexity, bar by bar
    value = 2.0 * liquidity * sq
    fees = float(np.sum(apr / 365.0 * value[:-1]))  # on the previous close's value; a v2 pool always earns
    il = float(value[-1] - (x0 * eth[-1] + y0))  # against holding the start amounts
    d = doc["defi"]
    assert d["gamma_pnl_usd"] == pytest.approx(gamma, abs=0.01)
    assert d["fees_earned_usd"] == pytest.approx(fees, abs=0.01)
    assert d["impermanent_loss_usd"] == pytest.approx(il, abs=0.01)
    assert d["value_change_usd"] == pytest.approx(value[-1] - value[0], abs=0.01)
    # ~0 delta PnL: the short tracks the pool's ETH (off by the 0.001 ETH lot at most)
    lot_bound = 0.0005 * float(np.sum(np.abs(np.diff(eth))))
    assert abs(d["net_delta_pnl_usd"]) <= lot_bound + 0.01
    assert abs(d["net_delta_pnl_usd"]) < 0.01 * abs(gamma)
    # the hedged book: fees minus the gamma cost (and nothing else: no costs, no funding)
    eq = doc["equity"]
    hedged_pnl = eq[-1]["hedged_usd"] - eq[0]["hedged_usd"]
    assert hedged_pnl == pytest.approx(fees + gamma, abs=lot_bound + 0.02)
    assert d["rebalances"] == n and d["hedge_fees_usd"] == 0.0
    # the LP alone swings with ETH; LP + hedge barely moves
    assert d["hedge_effectiveness_pnl"] > 0.99
    du = np.diff([r["unhedged_usd"] for r in eq])
    assert d["pnl_std_usd"]["unhedged"] == pytest.approx(float(np.std(du)), abs=0.01)
    # the hedge's PnL is minus the pool's delta PnL: the pool's value change + hedge = convexity (+ lot residue)
    assert d["value_change_usd"] + d["hedge_pnl_usd"] == pytest.approx(gamma, abs=lot_bound + 0.02)


def test_without_a_fee_apr_the_pool_earns_nothing_and_a_warning_says_so(tmp_path: Path) -> None:
    n = 60
    eth = _path(n, 7)
    store = _store(tmp_path / "s.duckdb", eth)
    doc = _backtest(store, [{"kind": "lp_v2", "pair": ["ETH", "USDC"], "amounts": {"ETH": 10.0, "USDC": 20_000.0}}], n,
                    fee_apr=None)  # fmt: skip
    assert doc["defi"]["fees_earned_usd"] == 0.0 and doc["defi"]["fee_apr_assumed"] is False
    assert any("earn no fees" in w for w in doc["warnings"])
    value = 2.0 * math.sqrt(10.0 * 20_000.0) * np.sqrt(eth)
    np.testing.assert_allclose([r["unhedged_usd"] for r in doc["equity"]], value, rtol=1e-12)


def test_v3_earns_only_in_range_and_the_hedge_closes_above_it(tmp_path: Path) -> None:
    # up from 2000 through the top of [1500, 2500]: all USDC above it, delta 0, nothing left to hedge
    eth = np.concatenate([np.linspace(2000.0, 2700.0, 40), np.full(10, 2700.0)])
    n = len(eth)
    store = _store(tmp_path / "s.duckdb", eth)
    liquidity, pa, pb, apr = 4000.0, 1500.0, 2500.0, 0.5
    doc = _backtest(
        store,
        [{"kind": "lp_v3", "pair": ["ETH", "USDC"], "range": [pa, pb], "liquidity": liquidity}],
        n,
        fee_apr=apr,
        policy={"kind": "drift_band", "ratio": 1.0, "band": 0.02},
    )
    sp = np.sqrt(np.clip(eth, pa, pb))
    x = liquidity * (1 / sp - 1 / math.sqrt(pb))
    y = liquidity * (sp - math.sqrt(pa))
    value = x * eth + y
    inside = (eth > pa) & (eth < pb)
    fees = float(np.sum(apr / 365.0 * value[:-1] * inside[:-1]))
    p = doc["defi"]["positions"][0]
    assert p["fees_earned_usd"] == pytest.approx(fees, abs=0.01)
    assert p["bars_out_of_range"] == int((~inside).sum())
    first_out = int(np.argmax(~inside))
    assert p["first_out_of_range"] == (pd.Timestamp(START) + pd.Timedelta(days=first_out)).date().isoformat()
    assert p["start_delta_usd"]["ETH"] == pytest.approx(x[0] * eth[0], abs=0.01)
    assert p["end_delta_usd"]["ETH"] == 0.0 and p["end_amounts"]["ETH"] == 0.0
    assert p["end_amounts"]["USDC"] == pytest.approx(liquidity * (math.sqrt(pb) - math.sqrt(pa)), rel=1e-9)
    np.testing.assert_allclose(
        [r["unhedged_usd"] for r in doc["equity"]],
        value + np.concatenate([[0.0], np.cumsum(apr / 365.0 * value[:-1] * inside[:-1])]),
        rtol=1e-12,
    )
    assert doc["legs"][0]["days_hedged"] == first_out  # flat from the first close above the range


def test_lending_is_liquidated_on_the_first_bar_below_a_health_factor_of_one(tmp_path: Path) -> None:
    # 10 ETH supplied, 12,000 USDC borrowed, LT 0.83: liquidated when ETH < 12000/(10·0.83) = 1445.78
    eth = np.concatenate([np.linspace(2000.0, 1500.0, 20), [1480.0, 1460.0, 1450.0, 1700.0, 1800.0]])
    n = len(eth)
    spread = 0.01  # lows 1% under the lower of open and close
    store = _store(tmp_path / "s.duckdb", eth, spread=spread)
    doc = _backtest(
        store,
        [{"kind": "lending", "supplied": {"ETH": 10}, "borrowed": {"USDC": 12000}, "liquidation_threshold": 0.83,
          "liquidation_bonus": 0.05}],
        n,
        fee_apr=None,
    )  # fmt: skip
    opens = np.concatenate([[eth[0]], eth[:-1]])
    lows = np.minimum(opens, eth) * (1 - spread)
    hf = 10 * lows * 0.83 / 12000
    t = int(np.argmax(hf < 1))
    p = doc["defi"]["positions"][0]
    liq = p["liquidation"]
    assert liq["date"] == (pd.Timestamp(START) + pd.Timedelta(days=t)).date().isoformat()
    assert liq["health_factor"] == pytest.approx(hf[t], abs=1e-6)
    assert liq["loss_usd"] == pytest.approx(0.05 * 12000, abs=0.01)  # the bonus on the debt repaid
    left = 10 - 12000 * 1.05 / lows[t]  # ETH seized at the bar's low
    assert liq["supplied_left"]["ETH"] == pytest.approx(left, abs=1e-8)
    assert p["end_value_usd"] == pytest.approx(left * eth[-1], abs=0.01)
    assert p["end_delta_usd"]["ETH"] == pytest.approx(left * eth[-1], abs=0.01)
    assert p["health_factor_start"] == pytest.approx(10 * eth[0] * 0.83 / 12000, abs=1e-6)
    hfs = [r["health_factor"] for r in doc["equity"]]
    assert hfs[t - 1] == pytest.approx(10 * eth[t - 1] * 0.83 / 12000, rel=1e-9) and hfs[t] is None
    assert any("liquidated on" in w for w in doc["warnings"])
    # the hedge follows the smaller delta once the debt is gone (rebalanced every bar)
    unhedged = np.array([r["unhedged_usd"] for r in doc["equity"]])
    np.testing.assert_allclose(unhedged[:t], 10 * eth[:t] - 12000, rtol=1e-12)
    np.testing.assert_allclose(unhedged[t:], left * eth[t:], rtol=1e-9)


def test_scope_hedges_only_the_positions_of_its_group(tmp_path: Path) -> None:
    # 0.1 BTC held (group core) and a v2 pool (group lp); scope lp: the short tracks the pool's ETH, BTC stays open
    n, liquidity = 90, 5_000.0
    eth, btc = _path(n, 11), _path(n, 12, p0=50_000.0)
    store = _store(tmp_path / "s.duckdb", eth, btc=btc)
    pool = {"kind": "lp_v2", "pair": ["ETH", "USDC"], "group": "lp",
            "amounts": {"ETH": liquidity / math.sqrt(eth[0]), "USDC": liquidity * math.sqrt(eth[0])}}  # fmt: skip
    doc = _backtest(
        store, [pool], n, fee_apr=0.1, holdings=[{"asset": "BTC", "quantity": 0.1, "group": "core"}], scope="lp"
    )
    assert doc["defi"]["positions"][0]["hedged"] is True and doc["legs"][0]["weights"] == {"ETH": 1.0}
    sq = np.sqrt(eth)
    gamma = float(np.sum(-liquidity * (sq[1:] - sq[:-1]) ** 2 / sq[:-1]))
    fees = float(np.sum(0.1 / 365.0 * 2 * liquidity * sq[:-1]))
    eq = doc["equity"]
    hedged_pnl = eq[-1]["hedged_usd"] - eq[0]["hedged_usd"]
    lot_bound = 0.0005 * float(np.sum(np.abs(np.diff(eth))))
    # what is left: the unhedged BTC, the pool's fees and its convexity
    assert hedged_pnl == pytest.approx(0.1 * (btc[-1] - btc[0]) + fees + gamma, abs=lot_bound + 0.02)
    # the first-order PnL of the whole book is the BTC's alone
    assert doc["defi"]["net_delta_pnl_usd"] == pytest.approx(0.1 * (btc[-1] - btc[0]), abs=lot_bound + 0.02)
