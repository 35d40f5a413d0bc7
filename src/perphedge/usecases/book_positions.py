"""DeFi positions in a book (issue 14, item 5): their delta counts in the book's net delta at every tick.

The book's history comes from :func:`perphedge.usecases.backtest.prepare`, which reads the portfolio's positions
at the closes of the policy origin (``Prepared.defi``). At a tick they are valued from the feed's prices (no
on-chain reads): a pool's delta is the base it holds at that price, so ``book rebalance`` sizes the short on
the pool's *current* delta. Only the call sites of :mod:`perphedge.usecases.book` that compute the holdings'
delta call in here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from perphedge.core.defi import LendingPosition, Position
from perphedge.core.portfolio import Holding, Portfolio
from perphedge.core.units import is_stablecoin
from perphedge.usecases.backtest_defi import position_assets

if TYPE_CHECKING:
    from perphedge.config import PortfolioFile
    from perphedge.usecases.backtest import Prepared

__all__ = [
    "add_positions_exposure",
    "legs_portfolio",
    "position_assets",
    "positions_delta_usd",
    "positions_section",
    "positions_value_usd",
]


def legs_portfolio(pfile: PortfolioFile) -> Portfolio:
    """A stand-in portfolio to resolve the hedge's legs: one unit of every coin held or in a position (the legs
    depend on which assets are exposed, not on amounts or prices)."""
    holdings = [Holding(asset=h.asset.upper(), quantity=h.quantity or 1.0) for h in pfile.holdings]
    held = {h.asset for h in holdings if not h.is_stable}
    holdings += [Holding(asset=a, quantity=1.0, group=None) for a in sorted(position_assets(pfile) - held)]
    return Portfolio(name=pfile.name, holdings=tuple(holdings), prices={h.asset: 1.0 for h in holdings})


def _positions(prep: Prepared) -> tuple[tuple[Position, bool], ...]:
    if prep.defi is None:
        return ()
    return tuple(zip(prep.defi.positions, prep.defi.in_scope, strict=True))


def _delta(pos: Position, prices: Mapping[str, float]) -> dict[str, float]:
    return {a: float(v) for a, v in pos.delta_usd(prices).items()}


def add_positions_exposure(
    e: float,
    prep: Prepared,
    betas: Mapping[str, np.ndarray],
    weights: Mapping[str, float],
    t: int,
    prices: Mapping[str, float],
) -> float:
    """``e`` plus the delta (USD, at ``prices``) of the positions in the hedge's scope that this leg offsets, in the
    backtest's order (after the holdings); ``e`` itself without positions."""
    if prep.defi is None:
        return e
    delta: dict[str, float] = {}
    for pos, in_scope in _positions(prep):
        if in_scope:
            for a, v in _delta(pos, prices).items():
                delta[a] = delta[a] + v if a in delta else v
    for a, w in weights.items():
        if a in delta:
            e += w * betas[a][t] * delta[a]
    return e


def positions_delta_usd(prep: Prepared, prices: Mapping[str, float]) -> dict[str, float]:
    """USD delta per asset of all the book's positions at ``prices``."""
    out: dict[str, float] = {}
    for pos, _ in _positions(prep):
        for a, v in _delta(pos, prices).items():
            out[a] = out.get(a, 0.0) + v
    return out


def positions_value_usd(prep: Prepared, prices: Mapping[str, float]) -> float:
    """USD value of all the book's positions at ``prices`` (lending net of debt)."""
    return float(sum(float(pos.value_usd(prices)) for pos, _ in _positions(prep)))


def positions_section(prep: Prepared, prices: Mapping[str, float]) -> list[dict[str, Any]]:
    """The status document's ``defi_positions``: each position at ``prices`` (value, amounts, delta, and what
    is particular to its kind, as in the plan), whether the hedge covers it, and warnings of a liquidatable loan."""
    from perphedge.usecases.documents import position_document

    rows: list[dict[str, Any]] = []
    entries = _positions(prep)
    if not entries:
        return rows
    needed = {a for pos, _ in entries for a in pos.assets if not is_stablecoin(a)}
    px = {a: float(prices[a]) for a in needed}
    pf = Portfolio(name="book", holdings=(), prices=px, positions=tuple(pos for pos, _ in entries))
    for i, (pos, in_scope) in enumerate(entries):
        row = position_document(pf, i, pos) | {"hedged": in_scope}
        if isinstance(pos, LendingPosition) and row.get("health_factor") is not None and row["health_factor"] < 1:
            row["warning"] = "health factor below 1: the loan can be liquidated now"
        rows.append(row)
    return rows
