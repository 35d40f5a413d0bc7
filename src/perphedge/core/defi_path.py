"""DeFi positions along a price history: value, delta, fee-earning bars and a lending position's liquidation.

Vectorised over the bars (numpy arrays of USD closes per asset) with the formulas of
:mod:`perphedge.core.defi`; the backtest hedges each bar's delta and the book each tick's.

* **Pools** (v2, v3): value and delta at each close; a pool *earns* (fees) on a bar when it is in range at
  the previous close (v2 always). Fee income is ``fee_apr × bar length (years) × value at the previous
  close`` on earning bars, held as cash (not compounded into the pool).
* **Staked** tokens: ``quantity × rate × underlying``, every bar (no staking yield, no depeg over history).
* **Lending**: the health factor at each bar's *worst* prices (collateral at the bar's low, debt at its
  high). The first bar it is below 1 the position is liquidated in full at those prices (as the plan
  assumes: the bonus is lost on all the debt repaid); the collateral left (none when the seizure takes all
  of it, the rest of the debt being the protocol's bad debt) is held from then on, without debt.

The per-bar decomposition of a hedged book's PnL: ``delta_pnl[t] = Σ_a delta_usd_a[t−1]·(c_a[t]/c_a[t−1] − 1)``
(first order), and a position's ``gamma_pnl[t] = V[t] − V[t−1] − delta_pnl[t]`` (the convexity a hedge
rebalanced at every close cannot keep: ``−L·(√P_t − √P_{t−1})²/√P_{t−1}`` for a v2 pool on a stable quote).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from perphedge.core.defi import (
    FloatArray,
    LendingPosition,
    LpV2Position,
    LpV3Position,
    Position,
)
from perphedge.core.units import is_stablecoin

__all__ = [
    "LendingLiquidation",
    "PositionPath",
    "delta_pnl",
    "fee_income",
    "position_path",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class LendingLiquidation:
    """A lending position liquidated at ``bar`` (worst prices of the bar): what it cost and what was left."""

    bar: int
    health_factor: float
    collateral_usd: float
    debt_repaid_usd: float
    collateral_seized_usd: float
    loss_usd: float
    bad_debt_usd: float
    supplied_left: dict[str, float]


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionPath:
    """One position along the bars: value and delta (USD) at each close, and what is particular to its kind."""

    value_usd: FloatArray
    delta_usd: dict[str, FloatArray]
    earning: FloatArray
    health_factor: FloatArray | None = None
    health_factor_worst: FloatArray | None = None
    liquidation: LendingLiquidation | None = None


def _price(prices: Mapping[str, FloatArray], asset: str, n: int) -> FloatArray:
    if asset in prices:
        return np.asarray(prices[asset], dtype=np.float64)
    if is_stablecoin(asset):
        return np.ones(n)
    raise KeyError(asset)


def _units_value(units: Mapping[str, float], prices: Mapping[str, FloatArray], n: int) -> FloatArray:
    out = np.zeros(n)
    for a, q in units.items():
        out = out + q * _price(prices, a, n)
    return out


def position_path(
    position: Position,
    closes: Mapping[str, FloatArray],
    lows: Mapping[str, FloatArray] | None = None,
    highs: Mapping[str, FloatArray] | None = None,
) -> PositionPath:
    """``position`` along the bars of ``closes`` (USD per asset; stablecoins default to 1).

    ``lows``/``highs`` (same shape) give a lending position's worst prices in each bar (closes when absent).
    """
    n = len(next(iter(closes.values()))) if closes else 0
    if isinstance(position, LendingPosition):
        return _lending_path(position, closes, lows or closes, highs or closes, n)
    value = np.broadcast_to(position.value_usd(closes), (n,)).astype(np.float64)
    delta = {a: np.broadcast_to(d, (n,)).astype(np.float64) for a, d in position.delta_usd(closes).items()}
    if isinstance(position, LpV2Position):
        earning = np.ones(n)
    elif isinstance(position, LpV3Position):
        p = position.pool_price(closes)
        earning = ((p > position.p_a) & (p < position.p_b)).astype(np.float64)
    else:
        earning = np.zeros(n)
    return PositionPath(value_usd=value, delta_usd=delta, earning=earning)


def _lending_path(
    pos: LendingPosition,
    closes: Mapping[str, FloatArray],
    lows: Mapping[str, FloatArray],
    highs: Mapping[str, FloatArray],
    n: int,
) -> PositionPath:
    sup, bor = dict(pos.supplied), dict(pos.borrowed)
    lt = pos.liquidation_threshold
    coll_c, debt_c = _units_value(sup, closes, n), _units_value(bor, closes, n)
    worst = {a: _price(lows, a, n) for a in sup} | {a: _price(highs, a, n) for a in bor}
    coll_w, debt_w = _units_value(sup, worst, n), _units_value(bor, worst, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        hf_c = np.where(debt_c > 0, coll_c * lt / np.where(debt_c > 0, debt_c, 1.0), np.inf)
        hf_w = np.where(debt_w > 0, coll_w * lt / np.where(debt_w > 0, debt_w, 1.0), np.inf)
    below = np.nonzero(hf_w < 1.0)[0]
    value = coll_c - debt_c
    delta = {a: q * _price(closes, a, n) for a, q in sup.items() if not is_stablecoin(a)}
    delta |= {a: -q * _price(closes, a, n) for a, q in bor.items() if not is_stablecoin(a)}
    liquidation: LendingLiquidation | None = None
    if below.size:
        t = int(below[0])
        coll, debt = float(coll_w[t]), float(debt_w[t])
        bonus = pos.bonus
        repaid = min(debt, coll / (1.0 + bonus))
        seized = min(coll, repaid * (1.0 + bonus))
        frac = seized / coll if coll > 0 else 1.0
        left = {a: q * (1.0 - frac) for a, q in sup.items()}
        liquidation = LendingLiquidation(
            bar=t,
            health_factor=float(hf_w[t]),
            collateral_usd=coll,
            debt_repaid_usd=repaid,
            collateral_seized_usd=seized,
            loss_usd=(coll - debt) - (coll - seized),
            bad_debt_usd=debt - repaid,
            supplied_left=left,
        )
        after = slice(t, n)
        value = value.copy()
        value[after] = _units_value(left, closes, n)[after]
        for a in list(delta):
            d = delta[a].copy()
            d[after] = left.get(a, 0.0) * _price(closes, a, n)[after]
            delta[a] = d
        hf_c = hf_c.copy()
        hf_c[after] = np.inf
    return PositionPath(
        value_usd=value,
        delta_usd=delta,
        earning=np.zeros(n),
        health_factor=hf_c,
        health_factor_worst=hf_w,
        liquidation=liquidation,
    )


def fee_income(value_usd: FloatArray, earning: FloatArray, fee_apr: float, bar_years: float) -> FloatArray:
    """Fees earned on each bar (USD): ``fee_apr · bar_years · value[t−1]`` when the pool earned at ``t−1``.

    Bar 0 earns nothing.
    """
    out = np.zeros(len(value_usd))
    out[1:] = fee_apr * bar_years * value_usd[:-1] * earning[:-1]
    return out


def delta_pnl(delta_usd: Mapping[str, FloatArray], closes: Mapping[str, FloatArray]) -> FloatArray:
    """First-order PnL per bar (USD): ``Σ_a delta_usd_a[t−1] · (c_a[t]/c_a[t−1] − 1)``; bar 0 is 0."""
    n = len(next(iter(closes.values()))) if closes else 0
    out = np.zeros(n)
    for a, d in delta_usd.items():
        c = _price(closes, a, n)
        out[1:] += d[:-1] * (c[1:] / c[:-1] - 1.0)
    return out
