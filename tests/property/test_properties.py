"""Hypothesis invariants of the contract maths and the hedge sizing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from perphedge.core import contracts as C
from perphedge.core.hedge import CollateralSource, HedgeRequest, LegRequest, plan_hedge
from perphedge.core.instruments import MarginSchedule
from perphedge.core.portfolio import Holding, Portfolio
from perphedge.specs import InstrumentRegistry, bundled_instruments

REGISTRY = InstrumentRegistry(bundled_instruments())
prices = st.floats(min_value=1.0, max_value=1e6, allow_nan=False)
sizes = st.floats(min_value=1.0, max_value=1e8, allow_nan=False)
kinds = st.sampled_from(["inverse", "linear"])
sides = st.sampled_from(["long", "short"])
leverages = st.floats(min_value=1.0, max_value=100.0)
mmrs = st.floats(min_value=0.001, max_value=0.05)

TIERS = MarginSchedule.marginal(
    [(0, 0.004, 125), (5, 0.005, 100), (10, 0.01, 50), (20, 0.025, 20), (50, 0.05, 10), (100, 0.1, 5), (200, 0.125, 4)]
)


@given(kinds, sizes, prices, prices)
def test_pnl_antisymmetry(kind: str, size: float, entry: float, exit: float) -> None:
    assert C.pnl(kind, "long", size, entry, exit) == pytest.approx(-C.pnl(kind, "short", size, entry, exit))


@given(
    kinds, sides, sizes, prices, st.floats(min_value=1.01, max_value=100.0), mmrs, st.sampled_from(["entry", "at_lp"])
)
def test_equity_at_liquidation_equals_maintenance_margin(
    kind: str, side: str, size: float, entry: float, lev: float, mmr: float, family: str
) -> None:
    assume(1.0 / lev > mmr * 1.05)  # opening margin above maintenance
    method = {
        ("inverse", "entry"): "mm_on_entry_value",
        ("inverse", "at_lp"): "mm_at_liquidation_price",
        ("linear", "entry"): "bybit_linear",
        ("linear", "at_lp"): "binance_usdm",
    }[(kind, family)]
    sched = MarginSchedule.single(mmr)
    margin = C.initial_margin(kind, size, entry, lev)
    res = C.liquidation_price(
        kind=kind, method=method, side=side, size=size, entry=entry, margin=margin, schedule=sched
    )
    assert res.price is not None
    value_basis = entry if family == "entry" else res.price
    mm = sched.maintenance_margin(C.position_value(kind, size, value_basis))
    eq = C.equity(kind, side, size, entry, margin, res.price)
    assert eq == pytest.approx(mm, rel=1e-7, abs=1e-9 * C.position_value(kind, size, entry))
    bp = C.bankruptcy_price(kind, side, size, entry, margin)
    assert bp is not None
    # liquidation comes before bankruptcy
    assert (res.price > bp) if side == "long" else (res.price < bp)


@given(sides, st.floats(min_value=1e3, max_value=1e9), prices, st.floats(min_value=1.01, max_value=20.0))
def test_tiered_lp_lands_in_its_own_tier(side: str, q: float, entry: float, lev: float) -> None:
    margin = C.initial_margin("inverse", q, entry, lev)
    res = C.liquidation_price(
        kind="inverse", method="mm_at_liquidation_price", side=side, size=q, entry=entry, margin=margin, schedule=TIERS
    )
    assume(res.price is not None)
    assert res.price is not None
    eq = C.equity("inverse", side, q, entry, margin, res.price)
    assert eq == pytest.approx(TIERS.maintenance_margin(q / res.price), rel=1e-6, abs=1e-9 * q / entry)


@given(st.floats(min_value=0.001, max_value=1e4), prices, prices)
def test_one_x_inverse_short_on_own_coin_keeps_usd_value(coins: float, entry: float, later: float) -> None:
    q = coins * entry
    equity_usd = (coins + C.inverse_pnl_coin("short", q, entry, later)) * later
    assert equity_usd == pytest.approx(q, rel=1e-9)
    res = C.liquidation_price(
        kind="inverse",
        method="mm_at_liquidation_price",
        side="short",
        size=q,
        entry=entry,
        margin=coins,
        schedule=MarginSchedule.single(0.005),
    )
    assert res.price is None


PF_PRICES = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0, "AVAX": 30.0, "DOT": 6.5, "LINK": 15.0}


def portfolio(alt_values: list[float], major: float) -> Portfolio:
    holdings = [
        Holding(asset="BTC", quantity=major / 60_000),
        Holding(asset="ETH", quantity=major / 3_000),
        Holding(asset="USDT", quantity=2 * major),
    ]
    holdings += [
        Holding(asset=a, quantity=v / PF_PRICES[a])
        for a, v in zip(("SOL", "AVAX", "DOT", "LINK"), alt_values, strict=False)
    ]
    return Portfolio(name="p", prices=PF_PRICES, holdings=tuple(holdings))


alt_lists = st.lists(st.floats(min_value=1_000, max_value=200_000), min_size=1, max_size=4)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    alt_lists,
    st.floats(min_value=50_000, max_value=1_000_000),
    # every bundled instrument whose coin the generated portfolio prices (Hyperliquid lists AAVE, ADA, … too)
    st.sampled_from([i for i in REGISTRY.ids() if REGISTRY.get(i).base in PF_PRICES]),
    st.floats(min_value=1.5, max_value=5.0),
    st.sampled_from(list(CollateralSource)),
)
def test_full_hedge_has_zero_net_delta(
    alts: list[float], major: float, inst_id: str, lev: float, source: CollateralSource
) -> None:
    inst = REGISTRY.get(inst_id)
    if source is CollateralSource.STABLE:
        assume(not inst.is_inverse)
    if source is CollateralSource.HOLDINGS:
        assume(sum(alts) <= major)
        assume(inst.settle in ("BTC", "ETH", "USDT"))  # the generated portfolio holds no USDC (Hyperliquid's margin)
        lev = max(lev, 4.0)  # margin <= 3·major/4 fits in the BTC, ETH or USDT held
    pf = portfolio(alts, major)
    plan = plan_hedge(
        pf, HedgeRequest(ratio=1.0, proxy_legs=(LegRequest(instrument=inst),), leverage=lev, collateral=source)
    )
    leg = plan.legs[0]
    lot_usd = inst.lot_size * inst.contract_size * (1.0 if inst.is_inverse else leg.entry_price)
    assert abs(plan.net_delta_usd) <= 0.5 * lot_usd + 1e-6 * pf.exposure_usd
    assert plan.net_delta_usd == pytest.approx(plan.residual_usd, abs=1e-6 * pf.exposure_usd)


@settings(max_examples=200)
@given(
    alt_lists,
    st.floats(min_value=50_000, max_value=500_000),
    st.floats(min_value=0.1, max_value=10.0),
    st.sampled_from(["binance:BTCUSD_PERP", "bybit:BTCUSD", "binance:BTCUSDT"]),
    st.floats(0.1, 2.0),
)
def test_scaling_the_portfolio_scales_the_hedge(
    alts: list[float], major: float, k: float, inst_id: str, ratio: float
) -> None:
    inst = REGISTRY.get(inst_id)
    source = CollateralSource.BUY if inst.is_inverse else CollateralSource.STABLE
    req = HedgeRequest(ratio=ratio, proxy_legs=(LegRequest(instrument=inst),), leverage=2.0, collateral=source)
    a = plan_hedge(portfolio(alts, major), req)
    b = plan_hedge(portfolio(alts, major).scaled(k), req)
    assert b.target_usd == pytest.approx(k * a.target_usd, rel=1e-9)
    assert b.legs[0].contracts_exact == pytest.approx(k * a.legs[0].contracts_exact, rel=1e-9)
    assert b.legs[0].collateral_amount == pytest.approx(
        b.legs[0].contracts * a.legs[0].collateral_amount / a.legs[0].contracts, rel=1e-9
    )
