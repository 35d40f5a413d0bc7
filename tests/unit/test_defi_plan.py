"""Hedge sizing on DeFi deltas (core/hedge.py with positions): the target is the delta, not the value;
scaling the positions scales the hedge; debt lowers the target."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perphedge.core.defi import LendingPosition, LpV3Position, StakedPosition
from perphedge.core.hedge import CollateralSource, HedgeRequest, LegRequest, plan_hedge
from perphedge.core.portfolio import Portfolio
from perphedge.core.scenarios import Scenario, evaluate
from perphedge.specs import InstrumentRegistry


def request(registry: InstrumentRegistry, ratio: float = 1.0) -> HedgeRequest:
    return HedgeRequest(
        ratio=ratio,
        proxy_legs=(LegRequest(instrument=registry.get("binance:ETHUSDT")),),
        leverage=2,
        collateral=CollateralSource.STABLE,
    )


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.floats(min_value=100, max_value=1e5),
    st.floats(min_value=0.5, max_value=0.95),
    st.floats(min_value=1.05, max_value=2.0),
    st.floats(min_value=0.1, max_value=1.0),
    st.floats(min_value=1.5, max_value=10.0),
)
def test_target_is_the_lp_delta_and_scales(
    registry: InstrumentRegistry, liquidity: float, low: float, high: float, ratio: float, factor: float
) -> None:
    price = 2000.0
    pos = LpV3Position(base="ETH", quote="USDC", p_a=price * low, p_b=price * high, liquidity=liquidity)
    pf = Portfolio(name="lp", holdings=(), prices={"ETH": price}, positions=(pos,))
    delta = float(pos.delta_usd({"ETH": price})["ETH"])
    if ratio * delta < 20:  # rounds to 0 contracts of 0.001 ETH: refused, tested elsewhere
        return
    plan = plan_hedge(pf, request(registry, ratio))
    assert plan.target_usd == pytest.approx(ratio * delta)
    assert plan.target_usd < ratio * float(pos.value_usd({"ETH": price}))  # never the value: x·P < x·P + y
    scaled = plan_hedge(pf.scaled(factor), request(registry, ratio))
    assert scaled.target_usd == pytest.approx(factor * plan.target_usd)
    # the net delta is the unhedged share of the delta, plus the lot rounding (half a 0.001 ETH lot)
    assert abs(plan.net_delta_usd - (1 - ratio) * delta) <= 0.0005 * price + 1e-6


def test_debt_in_a_coin_lowers_the_target(registry: InstrumentRegistry) -> None:
    pf = Portfolio(
        name="p",
        holdings=(),
        prices={"ETH": 2000.0},
        positions=(
            StakedPosition(asset="STETH", underlying="ETH", quantity=10),
            LendingPosition(supplied={"USDC": 20000}, borrowed={"ETH": 4}, liquidation_threshold=0.8),
        ),
    )
    plan = plan_hedge(pf, request(registry))
    assert plan.target_usd == pytest.approx(6 * 2000.0)
    assert plan.legs[0].contracts == pytest.approx(6.0)


def test_net_short_positions_open_no_leg_and_say_why(registry: InstrumentRegistry) -> None:
    pf = Portfolio(
        name="p",
        holdings=(),
        prices={"ETH": 2000.0},
        positions=(LendingPosition(supplied={"USDC": 20000}, borrowed={"ETH": 4}, liquidation_threshold=0.8),),
    )
    plan = plan_hedge(pf, request(registry, 0.0))
    assert plan.legs == ()
    from perphedge.errors import InfeasibleHedgeError

    with pytest.raises(InfeasibleHedgeError, match="no exposure to offset"):
        plan_hedge(pf, request(registry, 1.0))


def test_scenario_pnl_is_exact_revaluation(registry: InstrumentRegistry) -> None:
    pos = LpV3Position(base="ETH", quote="USDC", p_a=1500, p_b=2500, liquidity=4000)
    pf = Portfolio(name="lp", holdings=(), prices={"ETH": 2000.0}, positions=(pos,))
    plan = plan_hedge(pf, request(registry))
    res = evaluate(plan, Scenario(name="x", proxy_return=-0.5))
    expected = float(pos.value_usd({"ETH": 1000.0})) - float(pos.value_usd({"ETH": 2000.0}))
    assert res.spot_pnl_usd == pytest.approx(expected)
    assert res.positions[0].range == "below"
    assert res.positions[0].impermanent_loss_usd is not None and res.positions[0].impermanent_loss_usd < 0


def test_range_scenarios_for_a_stablecoin_base_move_the_quote(registry: InstrumentRegistry) -> None:
    """Pair [USDC, ETH] on [0.0004, 0.0006] ETH per USDC at ETH 2000 (P = 0.0005): the range's low bound
    is reached when ETH rises to 2500 (+25%), its high bound when ETH falls to 1666.67 (−16.7%)."""
    from perphedge.core.scenarios import position_scenarios

    pos = LpV3Position(base="USDC", quote="ETH", p_a=0.0004, p_b=0.0006, liquidity=100)
    pf = Portfolio(name="lp", holdings=(), prices={"ETH": 2000.0}, positions=(pos,))
    plan = plan_hedge(pf, request(registry))
    scen = {s.name: s for s in position_scenarios(plan)}
    assert set(scen) == {"ETH +25.0% (#0 at range low 0.0004)", "ETH -16.7% (#0 at range high 0.0006)"}
    low = scen["ETH +25.0% (#0 at range low 0.0004)"]
    assert low.shocks["ETH"] == pytest.approx(0.25) and low.proxy_return == pytest.approx(0.25)
    res = evaluate(plan, low)
    assert res.positions[0].range == "below"  # all USDC (the base) at and below p_a
