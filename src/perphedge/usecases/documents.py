"""Results → plain dicts (the stable JSON documents) and table rows.

``perphedge.plan/1`` and ``perphedge.calc/1`` are stable: fields may be added, never renamed.
Amounts carry their unit in the name (``_usd``) or in a sibling ``*_asset`` field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from perphedge import __version__
from perphedge.core.contracts import fee
from perphedge.core.defi import (
    LendingPosition,
    LpV2Position,
    LpV3Position,
    Position,
    StakedPosition,
    hedged_move_pnl_usd,
)
from perphedge.core.hedge import HedgeLeg, HedgePlan
from perphedge.core.portfolio import Portfolio
from perphedge.core.scenarios import DriftLeg, PositionOutcome, ScenarioResult
from perphedge.core.units import Money
from perphedge.usecases.plan import CalcResult, CompareRow, PlanOutcome

__all__ = ["calc_document", "plan_document", "position_document"]

PLAN_SCHEMA = "perphedge.plan/1"
CALC_SCHEMA = "perphedge.calc/1"


def _r(x: float | None, nd: int | None = None) -> float | None:
    """Trim float noise for JSON: ``nd`` decimals (USD amounts), else 12 significant digits."""
    if x is None:
        return None
    if nd is None:
        return float(f"{float(x):.12g}")
    return round(float(x), nd)


def _leg(leg: HedgeLeg) -> dict[str, Any]:
    inst = leg.instrument
    settle_usd = leg.collateral_usd / leg.collateral_amount if leg.collateral_amount else 0.0
    per_day = leg.funding_usd_per_day
    fee_open = fee(inst.kind, leg.size, leg.entry_price, inst.taker_fee)
    return {
        "instrument": inst.id,
        "exchange": inst.exchange,
        "symbol": inst.symbol,
        "ccxt_symbol": inst.ccxt_symbol,
        "kind": inst.kind.value,
        "side": leg.side.value,
        "contracts": leg.contracts,
        "contracts_exact": _r(leg.contracts_exact, 6),
        "contract_size": inst.contract_size,
        "contract_size_unit": inst.contract_size_unit,
        "lot_size": inst.lot_size,
        "size": _r(leg.size),
        "size_unit": inst.contract_size_unit,
        "notional_usd": _r(leg.notional_usd, 2),
        "entry_price": leg.entry_price,
        "leverage": leg.leverage,
        "collateral_asset": leg.collateral_asset,
        "collateral_amount": _r(leg.collateral_amount),
        "collateral_usd": _r(leg.collateral_usd, 2),
        "collateral_source": leg.collateral_source.value,
        "initial_margin": _r(leg.initial_margin),
        "maintenance_margin": _r(leg.maintenance_margin),
        "margin_asset": leg.collateral_asset,
        "maintenance_margin_rate": leg.liquidation.mmr,
        "maintenance_amount": _r(leg.liquidation.maintenance_amount),
        "margin_tier": leg.liquidation.tier_index + 1,
        "liquidation_method": inst.liquidation_method.value,
        "liquidation_price": _r(leg.liquidation_price, 4),
        "liquidation_distance": _r(leg.liquidation_distance, 6),
        "bankruptcy_price": _r(leg.bankruptcy_price, 4),
        "covers_usd": {k: _r(v, 2) for k, v in leg.covers.items()},
        "target_delta_usd": _r(leg.target_delta_usd, 2),
        "delta_usd": _r(leg.delta_usd, 2),
        "residual_usd": _r(leg.residual_usd, 2),
        "naive_notional_usd": _r(leg.naive_notional_usd, 2),
        "naive_net_delta_usd": _r(leg.target_delta_usd + leg.naive_delta_usd, 2),
        "funding_rate_8h": leg.funding_rate_8h,
        "funding_interval_hours": inst.funding_interval_hours,
        "funding_rate_per_settlement": leg.funding_rate_per_settlement,
        "funding_per_settlement": _r(leg.funding_per_settlement),
        "funding_per_day": _r(leg.funding_coin_per_day),
        "funding_per_30d": _r(leg.funding_coin_per_day * 30),
        "funding_per_year": _r(leg.funding_coin_per_day * 365),
        "funding_asset": leg.collateral_asset,
        "funding_usd_per_day": _r(per_day, 4),
        "funding_usd_per_30d": _r(per_day * 30, 2),
        "funding_usd_per_year": _r(per_day * 365, 2),
        "funding_annual_rate": _r(per_day * 365 / leg.notional_usd, 6) if leg.notional_usd else None,
        "taker_fee_open": _r(fee_open),
        "taker_fee_open_usd": _r(fee_open * (settle_usd if inst.is_inverse else 1.0), 4),
        "spec_source": inst.source,
        "spec_as_of": inst.as_of,
    }


def position_document(pf: Portfolio, index: int, pos: Position) -> dict[str, Any]:
    """One DeFi position at the portfolio's prices: value, amounts, delta per asset and what is particular to it."""
    prices = pf.prices
    delta_usd = pf.position_delta_usd(pos)
    out: dict[str, Any] = {
        "index": index,
        "kind": pos.kind.value,
        "label": pos.label,
        "group": pos.group,
        "value_usd": _r(float(pos.value_usd(prices)), 2),
        "amounts": {a: _r(float(q)) for a, q in pos.amounts(prices).items()},
        "delta": {a: _r(v / pf.price(a)) for a, v in delta_usd.items()},
        "delta_usd": {a: _r(v, 2) for a, v in delta_usd.items()},
    }
    if isinstance(pos, LpV2Position | LpV3Position):
        out["pair"] = [pos.base, pos.quote]
        out["pool_price"] = _r(float(pos.pool_price(prices)))
        out["pool_price_unit"] = f"{pos.quote} per {pos.base}"
        out["liquidity"] = _r(pos.liquidity)
        if isinstance(pos, LpV3Position):
            out["range"] = [pos.p_a, pos.p_b]
            out["range_status"] = pos.range_status(prices)
            out["amounts_below_range"] = {pos.base: _r(pos.max_base), pos.quote: 0.0}
            out["amounts_above_range"] = {pos.base: 0.0, pos.quote: _r(pos.max_quote)}
        out["gamma"] = _r(float(pos.gamma(prices)))
        out["gamma_unit"] = f"{pos.base} per ({pos.quote} per {pos.base}): d(amount of {pos.base})/d(pool price)"
        if pos.base in delta_usd:  # a volatile base: the PnL of the delta-hedged position for a ±1% move
            out["hedged_pnl_usd_1pct_move"] = {
                "down": _r(hedged_move_pnl_usd(pos, prices, pos.base, -0.01), 4),
                "up": _r(hedged_move_pnl_usd(pos, prices, pos.base, 0.01), 4),
            }
    elif isinstance(pos, StakedPosition):
        out.update(
            {
                "asset": pos.asset,
                "underlying": pos.underlying,
                "quantity": _r(pos.quantity),
                "rate": pos.rate,
                "underlying_quantity": _r(pos.underlying_quantity),
                "depeg": pos.depeg,
            }
        )
    elif isinstance(pos, LendingPosition):
        hf = float(pos.health_factor(prices))
        out.update(
            {
                "supplied": dict(pos.supplied),
                "borrowed": dict(pos.borrowed),
                "collateral_usd": _r(float(pos.collateral_usd(prices)), 2),
                "debt_usd": _r(float(pos.debt_usd(prices)), 2),
                "liquidation_threshold": pos.liquidation_threshold,
                "liquidation_bonus": pos.bonus,
                "liquidation_bonus_assumed": pos.bonus_assumed,
                "health_factor": None if hf == float("inf") else _r(hf, 6),
                "liquidation_prices_usd": {
                    a: _r(pos.liquidation_price(a, prices), 4) for a in pos.assets if a in delta_usd
                },
            }
        )
    return out


def _position_outcome(o: PositionOutcome) -> dict[str, Any]:
    return {
        "index": o.index,
        "kind": o.kind,
        "label": o.label,
        "value_usd": _r(o.value_usd, 2),
        "pnl_usd": _r(o.pnl_usd, 2),
        "impermanent_loss_usd": _r(o.impermanent_loss_usd, 2),
        "range": o.range,
        "health_factor": _r(o.health_factor, 6),
        "liquidated": o.liquidated,
        "liquidation_loss_usd": _r(o.liquidation_loss_usd, 2),
        "depeg": _r(o.depeg, 6),
    }


def _scenario(s: ScenarioResult) -> dict[str, Any]:
    out = _scenario_base(s)
    if s.positions:
        out["positions_pnl_usd"] = _r(sum(o.pnl_usd for o in s.positions), 2)
        out["impermanent_loss_usd"] = _r(
            sum(o.impermanent_loss_usd for o in s.positions if o.impermanent_loss_usd is not None), 2
        )
        out["positions_liquidated"] = any(o.liquidated for o in s.positions)
        out["positions"] = [_position_outcome(o) for o in s.positions]
    return out


def _scenario_base(s: ScenarioResult) -> dict[str, Any]:
    return {
        "name": s.name,
        "proxy_return": _r(s.proxy_return, 6),
        "returns": {k: _r(v, 6) for k, v in s.returns.items()},
        "spot_pnl_usd": _r(s.spot_pnl_usd, 2),
        "hedge_pnl_usd": _r(s.hedge_pnl_usd, 2),
        "net_pnl_usd": _r(s.net_pnl_usd, 2),
        "offset_fraction": _r(s.offset_fraction, 6),
        "liquidated": s.liquidated,
        "legs": [
            {
                "instrument": o.instrument,
                "price": _r(o.price, 6),
                "pnl": _r(o.pnl_settle),
                "pnl_asset": o.settle_asset,
                "pnl_usd": _r(o.pnl_usd, 2),
                "liquidated": o.liquidated,
            }
            for o in s.legs
        ],
    }


def _plan_summary(plan: HedgePlan) -> dict[str, Any]:
    req = plan.request
    per_day = plan.funding_usd_per_day
    return {
        "ratio": req.ratio,
        "method": req.method.value,
        "scope": req.scope,
        "proxy": req.proxy_asset,
        "leverage": req.leverage,
        "collateral_source": req.collateral.value,
        "betas": {k: _r(v, 6) for k, v in plan.betas_used.items()},
        "scope_exposure_usd": _r(plan.scope_exposure_usd, 2),
        "target_usd": _r(plan.target_usd, 2),
        "hedged_usd": _r(-plan.hedge_delta_usd, 2),
        "achieved_ratio": _r(plan.achieved_ratio, 6),
        "residual_usd": _r(plan.residual_usd, 2),
        "net_delta_usd": _r(plan.net_delta_usd, 2),
        "net_delta_by_asset_usd": {k: _r(v, 2) for k, v in plan.net_delta_by_asset.items()},
        "notional_usd": _r(sum(leg.notional_usd for leg in plan.legs), 2),
        "collateral_usd": _r(sum(leg.collateral_usd for leg in plan.legs), 2),
        "funding_rate_8h": req.funding_rate_8h,
        "funding_usd_per_day": _r(per_day, 4),
        "funding_usd_per_30d": _r(per_day * 30, 2),
        "funding_usd_per_year": _r(per_day * 365, 2),
        "funding_assumed": True,
        "legs": [_leg(leg) for leg in plan.legs],
    }


def _drift(moves: dict[str, float], legs: tuple[DriftLeg, ...]) -> dict[str, Any]:
    return {
        "moves": {k: _r(v, 6) for k, v in moves.items()},
        "legs": [
            {
                "instrument": d.instrument,
                "price": _r(d.price, 6),
                "delta_usd": _r(d.delta_usd, 2),
                "target_delta_usd": _r(d.target_delta_usd, 2),
                "hedge_ratio_now": _r(d.hedge_ratio_now, 6),
                "contracts_to_trade": d.contracts_to_trade,
                "unrealised_pnl": _r(d.unrealised_pnl_settle),
                "equity": _r(d.equity_settle),
                "liquidation_distance_now": _r(d.liquidation_distance_now, 6),
                "liquidated": d.liquidated,
            }
            for d in legs
        ],
    }


def _compare_row(row: CompareRow) -> dict[str, Any]:
    out: dict[str, Any] = {"variant": row.variant, "instrument": row.instrument, "error": row.error}
    if row.plan is not None:
        out.update({k: v for k, v in _plan_summary(row.plan).items() if k != "legs"})
        out["legs"] = [leg.instrument.id for leg in row.plan.legs]
        dists = [leg.liquidation_distance for leg in row.plan.legs if leg.liquidation_distance is not None]
        out["min_liquidation_distance"] = _r(min(dists), 6) if dists else None
        out["scenarios"] = [
            {"name": s.name, "net_pnl_usd": _r(s.net_pnl_usd, 2), "liquidated": s.liquidated} for s in row.scenarios
        ]
    return out


def plan_document(outcome: PlanOutcome) -> dict[str, Any]:
    """The ``perphedge.plan/1`` document."""
    plan = outcome.plan
    pf = plan.portfolio
    total = pf.value_usd
    holdings = []
    for h in pf.holdings:
        value = pf.value_of(h)
        holdings.append(
            {
                "asset": h.asset,
                "quantity": _r(h.quantity),
                "price_usd": pf.price(h.asset),
                "value_usd": _r(value, 2),
                "weight": _r(value / total, 6) if total else None,
                "group": h.group,
                "stable": h.is_stable,
            }
        )
    doc: dict[str, Any] = {
        "schema": PLAN_SCHEMA,
        "perphedge_version": __version__,
        "source": outcome.source,
        "instrument_spec": outcome.instrument_spec,
        "portfolio": {
            "name": pf.name,
            "value_usd": _r(total, 2),
            "value_btc": _r(pf.value_in("BTC")),
            "value_eth": _r(pf.value_in("ETH")),
            "exposure_usd": _r(pf.exposure_usd, 2),
            "cash_usd": _r(pf.cash_usd, 2),
            "exposure_by_group_usd": {k: _r(v, 2) for k, v in pf.exposure_by_group().items()},
            "prices_usd": dict(pf.prices),
            "price_sources": dict(outcome.price_sources),
            "holdings": holdings,
        },
        "hedge": _plan_summary(plan),
        "scenarios": [_scenario(s) for s in outcome.scenarios],
        "warnings": [{"code": w.code, "message": w.message} for w in plan.warnings]
        + [{"code": code, "message": message} for code, message in outcome.warnings],
        "notes": list(plan.notes),
    }
    if pf.positions:
        port = doc["portfolio"]
        port["positions_value_usd"] = _r(pf.positions_value_usd, 2)
        port["exposure_by_asset_usd"] = {k: _r(v, 2) for k, v in pf.exposure_by_asset().items()}
        port["positions"] = [position_document(pf, i, p) for i, p in enumerate(pf.positions)]
    if outcome.leverage_recommendation:
        doc["hedge"]["leverage_recommendation"] = outcome.leverage_recommendation
    if outcome.beta_estimation:
        doc["hedge"]["beta_estimation"] = outcome.beta_estimation
    if outcome.compare:
        doc["compare"] = [_compare_row(row) for row in outcome.compare]
    if outcome.drift:
        doc["drift"] = _drift(outcome.drift_moves, outcome.drift)
    return doc


def _amount(value: float | None, unit: str) -> dict[str, Any]:
    return {"value": _r(value), "unit": unit}


def _money(m: Money | None) -> dict[str, Any] | None:
    """An amount with its asset, ``{value, unit}``; None stays None."""
    return None if m is None else {"value": _r(m.amount), "unit": m.asset.code}


def calc_document(res: CalcResult) -> dict[str, Any]:
    """The ``perphedge.calc/1`` document: every amount as ``{value, unit}``."""
    ci = res.input
    inst = ci.instrument
    s = res.settle
    quote = "USD" if inst.is_inverse else inst.quote
    return {
        "schema": CALC_SCHEMA,
        "perphedge_version": __version__,
        "instrument": inst.id,
        "kind": inst.kind.value,
        "side": ci.side.value,
        "contracts": ci.contracts,
        "contract_size": _amount(inst.contract_size, inst.contract_size_unit),
        "size": _amount(res.size, res.size_unit),
        "notional": _amount(res.notional_usd, quote),
        "position_value": _money(res.position_value),
        "entry_price": _amount(ci.entry, quote),
        "exit_price": _amount(ci.exit, quote) if ci.exit is not None else None,
        "mark_price": _amount(ci.mark if ci.mark is not None else ci.entry, quote),
        "leverage": ci.leverage,
        "margin_mode": ci.margin_mode,
        "margin": _money(res.margin),
        "initial_margin": _money(res.initial_margin),
        "maintenance_margin": _money(res.maintenance_margin),
        "maintenance_margin_rate": res.maintenance_margin_rate,
        "maintenance_amount": _money(res.maintenance_amount),
        "margin_tier": res.tier_index + 1,
        "liquidation_method": inst.liquidation_method.value,
        "liquidation_price": _amount(res.liquidation.price, quote),
        "liquidation_mmr": res.liquidation.mmr,
        "liquidation_maintenance_amount": _amount(res.liquidation.maintenance_amount, s),
        "liquidation_tier": res.liquidation.tier_index + 1,
        "liquidation_mm_basis": res.liquidation.value_basis,
        "bankruptcy_price": _amount(res.bankruptcy_price, quote),
        "pnl": _money(res.pnl),
        "pnl_usd": _money(res.pnl_usd),
        "roe": _r(res.roe, 8),
        "fee_rate": res.fee_rate,
        "fee_open": _money(res.fee_open),
        "fee_close": _money(res.fee_close),
        "net_pnl": _money(res.net_pnl),
        "funding_rate": 0.0 if inst.is_dated else ci.funding_rate,
        "funding_interval_hours": None if inst.is_dated else inst.funding_interval_hours,
        "expiry": None
        if inst.expiry_ms is None
        else datetime.fromtimestamp(inst.expiry_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "funding": _money(res.funding),
        "funding_usd": _money(res.funding_usd),
        "funding_per_day": _money(res.funding_per_day),
        "funding_sign": "positive = received; a positive rate means longs pay shorts",
    }
