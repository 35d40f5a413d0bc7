"""DeFi positions in a backtest (issue 14): their path over the history, the hedge's target and the result.

:func:`perphedge.usecases.backtest.prepare` builds the portfolio's positions at the start's closes
(:func:`prepare_positions`); each bar they are valued from that bar's prices
(:func:`perphedge.core.defi_path.position_path`), the hedge of the assets in scope targets their delta
(the kernel's per-bar exposure, so every policy rebalances the perpetual to the pool's *changing* delta),
pools earn the run file's assumed ``defi.fee_apr`` and a lending position is liquidated at the first bar
its health factor falls below 1. :func:`defi_document` is the result's ``defi`` section: the positions
alone against positions + hedge (variance of the PnL per bar, hedge effectiveness), and what gamma costs
(impermanent loss, convexity, the hedge's PnL, fees and slippage of its rebalances).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from perphedge.core.defi import LendingPosition, LpV2Position, LpV3Position, Position, StakedPosition
from perphedge.core.defi_path import PositionPath, delta_pnl, fee_income, position_path
from perphedge.core.units import is_stablecoin, normalise_asset
from perphedge.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from perphedge.config import PortfolioFile, RunFile

__all__ = [
    "DefiPrepared",
    "defi_document",
    "fee_apr_of",
    "position_assets",
    "prepare_positions",
    "scope_delta",
]

_POOLS = (LpV2Position, LpV3Position)


@dataclass(frozen=True, slots=True, kw_only=True)
class DefiPrepared:
    """The portfolio's DeFi positions (read at the start's closes) and their paths over the run's bars."""

    positions: tuple[Position, ...]
    in_scope: tuple[bool, ...]
    paths: tuple[PositionPath, ...]

    @property
    def has_pools(self) -> bool:
        return any(isinstance(p, _POOLS) for p in self.positions)

    @property
    def value_usd(self) -> np.ndarray:
        """All positions' value (USD) per bar."""
        return np.asarray(sum(p.value_usd for p in self.paths), dtype=np.float64)


def position_assets(pfile: PortfolioFile) -> set[str]:
    """Non-stable assets the portfolio's positions hold or owe (each must be priced every bar)."""
    out: set[str] = set()
    for p in pfile.positions:
        names: list[str] = [*(p.pair or ()), *(p.supplied or {}), *(p.borrowed or {})]
        if p.underlying:
            names.append(p.underlying)
        out |= {normalise_asset(a) for a in names}
    return {a for a in out if not is_stablecoin(a)}


def prepare_positions(
    positions: Sequence[Position],
    scope: str,
    frames: Mapping[str, pd.DataFrame],
) -> DefiPrepared:
    """Each position's path over the bars of ``frames`` (close, low, high per asset)."""
    cols = set(frames["close"].columns)

    def series(field: str) -> dict[str, np.ndarray]:
        return {a: frames[field][a].to_numpy(dtype=np.float64) for a in cols}

    closes, lows, highs = series("close"), series("low"), series("high")
    paths = tuple(position_path(p, closes, lows, highs) for p in positions)
    in_scope = tuple(scope in ("all", p.group) for p in positions)
    return DefiPrepared(positions=tuple(positions), in_scope=in_scope, paths=paths)


def scope_delta(defi: DefiPrepared) -> dict[str, np.ndarray]:
    """USD delta per asset per bar of the positions in the hedge's scope (what the legs offset)."""
    out: dict[str, np.ndarray] = {}
    for path, inside in zip(defi.paths, defi.in_scope, strict=True):
        if inside:
            for a, d in path.delta_usd.items():
                out[a] = out[a] + d if a in out else d.copy()
    return out


def fee_apr_of(run_cfg: RunFile, defi: DefiPrepared | None, source: str = "") -> float:
    """The pools' assumed fee APR (0 without ``defi:``); ``defi:`` without any pool is refused."""
    if run_cfg.defi is None:
        return 0.0
    if defi is None or not defi.has_pools:
        where = f"{source}: " if source else ""
        raise ConfigError(
            f"{where}field `defi.fee_apr`: the portfolio has no pool position (lp_v2, lp_v3) to earn it: "
            "remove `defi:`, or add the pool under `positions:`"
        )
    return float(run_cfg.defi.fee_apr)


def _r(x: float, nd: int = 2) -> float | None:
    return round(float(x), nd) if math.isfinite(x) else None


def _assumptions(defi: DefiPrepared, fee_apr: float, given: bool, bar_hours: float) -> list[str]:
    out: list[str] = []
    if defi.has_pools:
        if given:
            out.append(
                f"pool fees: an assumed {fee_apr:.2%} a year of each pool position's value (run file `defi.fee_apr`), "
                f"accrued each {bar_hours:g}h bar on the value at the previous close while the pool is in range "
                "(v3: between its bounds), held as cash and not compounded; not measured on chain"
            )
        else:
            out.append("pool fees: none assumed (the run file gives no `defi.fee_apr`): the pools earn nothing here")
        out.append(
            "pool price: the base's USD close over the quote's (stablecoins at 1.0), no arbitrage lag, no gas; "
            "the pool's amounts follow its curve at every close"
        )
    if any(isinstance(p, StakedPosition) for p in defi.positions):
        out.append("staked tokens: worth `rate` of their underlying every bar (no staking yield, no depeg)")
    if any(isinstance(p, LendingPosition) for p in defi.positions):
        out.append(
            "lending: the health factor at each bar's worst prices (collateral at the low, debt at the high); below 1 "
            "the position is liquidated in full at those prices, losing the bonus on the debt repaid; no interest"
        )
    out.append("the hedge's target is the delta of the positions in scope at each close, not their value")
    return out


def _hedge_effectiveness_pnl(hedged: np.ndarray, unhedged: np.ndarray) -> tuple[float, float, float | None]:
    """Std of the PnL per bar (USD) unhedged and hedged, and 1 − Var(hedged)/Var(unhedged)."""
    du, dh = np.diff(unhedged), np.diff(hedged)
    vu, vh = float(np.var(du)), float(np.var(dh))
    return math.sqrt(vu), math.sqrt(vh), (1.0 - vh / vu if vu > 0 else None)


def defi_document(
    defi: DefiPrepared,
    *,
    closes: Mapping[str, np.ndarray],
    dates: pd.DatetimeIndex,
    fee_apr: float,
    fee_given: bool,
    bar_hours: float,
    fees_by_position: Sequence[np.ndarray],
    holdings_delta: Mapping[str, np.ndarray],
    legs: Sequence[tuple[str, np.ndarray, np.ndarray]],
    leg_totals: Mapping[str, float],
    rebalances: int,
    hedged: np.ndarray,
    unhedged: np.ndarray,
) -> dict[str, Any]:
    """The result's ``defi`` section.

    ``legs``: per hedge leg (its base asset, its USD delta per bar, its contribution to the hedged book per bar);
    ``leg_totals``: the legs' summed ``fees_usd``, ``slippage_usd`` and ``funding_received_usd``.
    """
    n = len(dates)
    first, last = 0, n - 1
    rows: list[dict[str, Any]] = []
    il_total = gamma_total = 0.0
    for i, (pos, path, fees) in enumerate(zip(defi.positions, defi.paths, fees_by_position, strict=True)):
        start_px = {a: float(c[first]) for a, c in closes.items()}
        end_px = {a: float(c[last]) for a, c in closes.items()}
        row: dict[str, Any] = {
            "index": i,
            "kind": pos.kind.value,
            "label": pos.label,
            "group": pos.group,
            "hedged": defi.in_scope[i],
            "start_value_usd": _r(path.value_usd[first]),
            "end_value_usd": _r(path.value_usd[last]),
            "value_change_usd": _r(path.value_usd[last] - path.value_usd[first]),
            "start_delta_usd": {a: _r(d[first]) for a, d in path.delta_usd.items()},
            "end_delta_usd": {a: _r(d[last]) for a, d in path.delta_usd.items()},
            "fees_earned_usd": _r(float(fees.sum())),
        }
        gamma = path.value_usd[1:] - path.value_usd[:-1] - delta_pnl(path.delta_usd, closes)[1:]
        row["gamma_pnl_usd"] = _r(float(gamma.sum()))
        gamma_total += float(gamma.sum())
        if isinstance(pos, _POOLS):
            held0 = {a: float(q) for a, q in pos.amounts(start_px).items()}
            hold_end = sum(q * end_px.get(a, 1.0) for a, q in held0.items())  # stablecoins at 1
            il = float(path.value_usd[last]) - hold_end
            il_total += il
            row["start_amounts"] = {a: _r(q, 8) for a, q in held0.items()}
            row["end_amounts"] = {a: _r(float(q), 8) for a, q in pos.amounts(end_px).items()}
            row["hold_value_usd"] = _r(hold_end)
            row["impermanent_loss_usd"] = _r(il)
            row["impermanent_loss_pct"] = _r(il / hold_end, 6) if hold_end > 0 else None
            row["bars_earning_fees"] = int(path.earning.sum())
            if isinstance(pos, LpV3Position):
                row["range"] = [pos.p_a, pos.p_b]
                out_idx = np.nonzero(path.earning == 0)[0]
                row["bars_out_of_range"] = int(out_idx.size)
                row["first_out_of_range"] = str(dates[out_idx[0]].date()) if out_idx.size else None
        if isinstance(pos, LendingPosition):
            assert path.health_factor is not None and path.health_factor_worst is not None
            hf_w = path.health_factor_worst
            live = hf_w[: path.liquidation.bar + 1] if path.liquidation else hf_w
            k = int(np.argmin(live))
            row["health_factor_start"] = _r(float(path.health_factor[first]), 6)
            row["health_factor_min"] = _r(float(live[k]), 6)
            row["health_factor_min_date"] = str(dates[k].date())
            liq = path.liquidation
            row["liquidation"] = (
                None
                if liq is None
                else {
                    "date": str(dates[liq.bar].date()),
                    "health_factor": _r(liq.health_factor, 6),
                    "collateral_usd": _r(liq.collateral_usd),
                    "debt_repaid_usd": _r(liq.debt_repaid_usd),
                    "collateral_seized_usd": _r(liq.collateral_seized_usd),
                    "loss_usd": _r(liq.loss_usd),
                    "bad_debt_usd": _r(liq.bad_debt_usd),
                    "supplied_left": {a: _r(q, 8) for a, q in liq.supplied_left.items()},
                }
            )
        rows.append(row)
    value = defi.value_usd
    fees_total = float(sum(float(f.sum()) for f in fees_by_position))
    book_delta: dict[str, np.ndarray] = {a: d.copy() for a, d in holdings_delta.items()}
    for path in defi.paths:
        for a, d in path.delta_usd.items():
            book_delta[a] = book_delta[a] + d if a in book_delta else d.copy()
    hedge_pnl = 0.0
    for base, leg_delta, book_usd in legs:
        book_delta[base] = book_delta[base] + leg_delta if base in book_delta else leg_delta.copy()
        hedge_pnl += float(book_usd[last])
    net_delta_pnl = float(delta_pnl(book_delta, closes).sum())
    std_u, std_h, he = _hedge_effectiveness_pnl(hedged, unhedged)
    costs = leg_totals["fees_usd"] + leg_totals["slippage_usd"]
    return {
        "fee_apr": fee_apr,
        "fee_apr_assumed": fee_given,
        "assumptions": _assumptions(defi, fee_apr, fee_given, bar_hours),
        "positions": rows,
        "start_value_usd": _r(value[first]),
        "end_value_usd": _r(value[last]),
        "value_change_usd": _r(value[last] - value[first]),
        "fees_earned_usd": _r(fees_total),
        "impermanent_loss_usd": _r(il_total),
        "gamma_pnl_usd": _r(gamma_total),
        "hedge_pnl_usd": _r(hedge_pnl),
        "hedge_fees_usd": _r(leg_totals["fees_usd"]),
        "hedge_slippage_usd": _r(leg_totals["slippage_usd"]),
        "hedge_funding_usd": _r(leg_totals["funding_received_usd"]),
        "hedge_price_pnl_usd": _r(hedge_pnl - leg_totals["funding_received_usd"] + costs),
        "rebalances": rebalances,
        "net_delta_pnl_usd": _r(net_delta_pnl),
        "pnl_std_usd": {"unhedged": _r(std_u), "hedged": _r(std_h)},
        "hedge_effectiveness_pnl": _r(he, 6) if he is not None else None,
    }


def fee_paths(defi: DefiPrepared, fee_apr: float, bar_hours: float) -> list[np.ndarray]:
    """Fees each position earns per bar (USD); 0 for staked and lending positions."""
    bar_years = bar_hours / (24.0 * 365.0)
    return [fee_income(p.value_usd, p.earning, fee_apr, bar_years) for p in defi.paths]


def _usd(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+,.0f}"


def summary_lines(d: Mapping[str, Any]) -> list[str]:
    """The ``defi`` section in a few lines of text (report and terminal)."""
    he = d["hedge_effectiveness_pnl"]
    std = d["pnl_std_usd"]
    lines = [
        f"DeFi positions {d['start_value_usd']:,.0f} → {d['end_value_usd']:,.0f} USD "
        f"({_usd(d['value_change_usd'])}), fees earned {_usd(d['fees_earned_usd'])} USD at an assumed "
        f"{d['fee_apr']:.1%} a year" + ("" if d["fee_apr_assumed"] else " (none given: set `defi.fee_apr`)"),
        f"PnL per bar: std {std['unhedged']:,.0f} USD unhedged, {std['hedged']:,.0f} USD hedged"
        + (f": the hedge removes {he:.1%} of the variance" if he is not None else ""),
        f"gamma: impermanent loss {_usd(d['impermanent_loss_usd'])} USD vs holding the start amounts; convexity "
        f"{_usd(d['gamma_pnl_usd'])} USD that rebalancing at each close cannot keep; hedge PnL "
        f"{_usd(d['hedge_pnl_usd'])} USD ({_usd(d['hedge_price_pnl_usd'])} price, {_usd(d['hedge_funding_usd'])} "
        f"funding, −{d['hedge_fees_usd']:,.0f} fees, −{d['hedge_slippage_usd']:,.0f} slippage over "
        f"{d['rebalances']} rebalances); net delta PnL {_usd(d['net_delta_pnl_usd'])} USD",
    ]
    for p in d["positions"]:
        text = f"positions[{p['index']}] {p['label']}: {p['start_value_usd']:,.0f} → {p['end_value_usd']:,.0f} USD"
        if "impermanent_loss_usd" in p:
            text += f", IL {_usd(p['impermanent_loss_usd'])} USD, fees {_usd(p['fees_earned_usd'])} USD"
        if p.get("bars_out_of_range"):
            text += f", out of range {p['bars_out_of_range']} bars (first {p['first_out_of_range']})"
        if "health_factor_min" in p:
            text += f", health factor {p['health_factor_start']:.3f} → min {p['health_factor_min']:.3f}"
            text += f" ({p['health_factor_min_date']})"
            liq = p.get("liquidation")
            if liq:
                text += f", liquidated {liq['date']} (loss {liq['loss_usd']:,.0f} USD)"
        lines.append(text)
    return lines


def notes_html(d: Mapping[str, Any]) -> str:
    """The ``defi`` section for the HTML report: the summary and every assumption, stated."""
    import html

    parts = ["<h3>DeFi positions</h3><ul>"]
    parts += [f"<li>{html.escape(line)}</li>" for line in summary_lines(d)]
    parts.append("</ul><h4>Assumptions</h4><ul>")
    parts += [f"<li>{html.escape(a)}</li>" for a in d["assumptions"]]
    parts.append("</ul>")
    return "".join(parts)
