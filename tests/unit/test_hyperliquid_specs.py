"""Hyperliquid perpetuals in the bundled specs, and why their liquidation method is ``binance_usdm``.

Hyperliquid documents ("Liquidations", hyperliquid.gitbook.io/hyperliquid-docs/trading/liquidations; reference
implementation hyperliquid-dex/ts-examples examples/LiquidationPx.tsx, getIsolatedLiquidationPrice):

    liq_price = price − side · margin_available / position_size / (1 − l · side),  l = 1 / maintenance leverage

with ``margin_available`` = isolated margin (+ unrealised PnL) − maintenance margin required (isolated) or cross
account value − cross maintenance margin (cross), ``side`` +1 long / −1 short, and the maintenance margin half the
initial margin at the asset's max leverage ("Margin tiers": ``maintenance_margin = notional · rate − deduction``).
Solving ``equity(P) = MM(P)`` with the maintenance margin valued at P is what core's ``binance_usdm`` method does, so
the same number comes out; these tests show it on worked examples and on a class of inputs.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.core.contracts import Side, liquidation_price
from perphedge.core.hedge import CollateralSource, HedgeLeg, HedgeRequest, LegRequest, plan_hedge
from perphedge.core.instruments import ContractKind, LiquidationMethod
from perphedge.core.portfolio import Holding, Portfolio
from perphedge.exchange.fake_hyperliquid import valid_price
from perphedge.specs import InstrumentRegistry

SPEC = {  # symbol: (szDecimals, max leverage, tier-2 floor USDC, tier-2 max leverage)
    "BTC": (5, 40, 150_000_000, 20),
    "ETH": (4, 25, 100_000_000, 15),
    "SOL": (2, 20, 70_000_000, 10),
}


def hl_formula(side: int, size: float, price: float, margin_available: float, maint_leverage: float) -> float:
    """Hyperliquid's documented formula, as written in its docs (see the module docstring)."""
    lev = 1.0 / maint_leverage
    return price - side * margin_available / size / (1.0 - lev * side)


@pytest.mark.parametrize("coin", sorted(SPEC))
def test_spec_values(registry: InstrumentRegistry, coin: str) -> None:
    szd, max_lev, floor2, lev2 = SPEC[coin]
    inst = registry.get(f"hyperliquid:{coin}")
    assert inst.ccxt_symbol == f"{coin}/USDC:USDC"
    assert registry.get(f"hyperliquid:{coin}/USDC:USDC") is inst
    assert inst.kind is ContractKind.LINEAR
    assert (inst.base, inst.quote, inst.settle) == (coin, "USDC", "USDC")
    assert inst.contract_size == 1
    assert inst.lot_size == pytest.approx(10.0**-szd)
    assert inst.tick_size == pytest.approx(10.0 ** -(6 - szd))  # finest step; 5 significant figures cap it above
    assert inst.max_leverage == max_lev
    assert inst.funding_interval_hours == 1
    assert (inst.maker_fee, inst.taker_fee) == (0.00015, 0.00045)
    assert inst.liquidation_method is LiquidationMethod.BINANCE_USDM
    tiers = inst.margin.tiers
    assert [t.floor for t in tiers] == [0, floor2]
    assert [t.max_leverage for t in tiers] == [max_lev, lev2]
    # maintenance rate = half the initial margin rate at the tier's max leverage
    assert [t.mmr for t in tiers] == pytest.approx([0.5 / max_lev, 0.5 / lev2])
    # deduction chained so the maintenance margin is continuous at the floor
    assert tiers[1].maintenance_amount == pytest.approx(floor2 * (0.5 / lev2 - 0.5 / max_lev))
    below = inst.margin.maintenance_margin(floor2 * (1 - 1e-12))
    above = inst.margin.maintenance_margin(floor2)
    assert above == pytest.approx(below, rel=1e-9)
    assert "hyperliquid" in inst.source.lower() and "Liquidations" in inst.source
    assert inst.as_of


@pytest.mark.parametrize("coin", sorted(SPEC))
def test_tick_is_the_finest_step_and_the_venue_caps_significant_figures(
    registry: InstrumentRegistry, coin: str
) -> None:
    inst = registry.get(f"hyperliquid:{coin}")
    szd = SPEC[coin][0]
    decimals = 6 - szd
    threshold = 10.0 ** (5 - decimals)  # below it a multiple of the tick has at most 5 significant figures
    price = threshold - inst.tick_size
    assert valid_price(f"{price:.{decimals}f}", szd)
    assert not valid_price(f"{price + inst.tick_size / 10:.{decimals + 1}f}", szd)  # finer than the tick
    above = threshold * 1.5 + inst.tick_size  # a multiple of the tick with 6 significant figures
    assert not valid_price(f"{above:.{decimals}f}", szd)
    assert valid_price(f"{round(above):d}", szd)  # integers are always accepted


def test_worked_example_isolated_btc_short() -> None:
    """1 BTC short at 100,000 with 10x isolated margin (10,000 USDC), BTC maintenance leverage 80 (max 40x).

    Hyperliquid: margin_available = 10,000 − 100,000/80 = 8,750; liq = 100,000 + 8,750 / (1 + 1/80)
    = 108,641.975308642 (by hand). Core's binance_usdm: (10,000 + 100,000)/(1 + 0.0125), the same.
    """
    expected = 100_000 + 8_750 / 1.0125
    assert expected == pytest.approx(108_641.975308642, abs=1e-6)
    assert hl_formula(-1, 1.0, 100_000, 10_000 - 100_000 / 80, 80) == pytest.approx(expected, rel=1e-12)
    from perphedge.specs import default_registry

    inst = default_registry().get("hyperliquid:BTC")
    lp = liquidation_price(
        kind=inst.kind,
        method=inst.liquidation_method,
        side=Side.SHORT,
        size=1.0,
        entry=100_000,
        margin=10_000,
        schedule=inst.margin,
    )
    assert lp.price == pytest.approx(expected, rel=1e-12)
    assert lp.mmr == 0.0125 and lp.tier_index == 0


def test_worked_example_isolated_eth_long(registry: InstrumentRegistry) -> None:
    """1 ETH long at 3,000 with 10x isolated margin (300 USDC), ETH maintenance leverage 50 (max 25x).

    margin_available = 300 − 3,000·0.02 = 240; liq = 3,000 − 240/(1 − 0.02) = 2,755.10204081633 (by hand).
    """
    inst = registry.get("hyperliquid:ETH")
    expected = 3_000 - 240 / 0.98
    assert expected == pytest.approx(2_755.10204081633, abs=1e-8)
    assert hl_formula(1, 1.0, 3_000, 240, 50) == pytest.approx(expected, rel=1e-12)
    lp = liquidation_price(
        kind=inst.kind,
        method=inst.liquidation_method,
        side="long",
        size=1.0,
        entry=3_000,
        margin=300,
        schedule=inst.margin,
    )
    assert lp.price == pytest.approx(expected, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    coin=st.sampled_from(sorted(SPEC)),
    side=st.sampled_from([1, -1]),
    entry=st.floats(min_value=1.0, max_value=200_000.0),
    notional=st.floats(min_value=10.0, max_value=5_000_000.0),
    leverage=st.floats(min_value=1.0, max_value=40.0),
    move=st.floats(min_value=-0.3, max_value=0.3),
)
def test_core_equals_hyperliquid_formula_in_the_first_tier(
    coin: str, side: int, entry: float, notional: float, leverage: float, move: float
) -> None:
    """For any side, size, entry and leverage (first tier), core's LP equals Hyperliquid's, and Hyperliquid's
    formula gives the same LP whatever current price it is evaluated at (equity moves with the price)."""
    from perphedge.specs import default_registry

    inst = default_registry().get(f"hyperliquid:{coin}")
    lev = min(leverage, inst.max_leverage)
    size = notional / entry
    margin = notional / lev
    maint_lev = 2 * inst.max_leverage
    mm_rate = 1 / maint_lev
    core = liquidation_price(
        kind=inst.kind,
        method=inst.liquidation_method,
        side=Side.LONG if side > 0 else Side.SHORT,
        size=size,
        entry=entry,
        margin=margin,
        schedule=inst.margin,
    ).price
    hl_at_entry = hl_formula(side, size, entry, margin - notional * mm_rate, maint_lev)
    now = entry * (1 + move)
    equity_now = margin + side * size * (now - entry)
    hl_at_now = hl_formula(side, size, now, equity_now - size * now * mm_rate, maint_lev)
    if hl_at_entry <= 1e-9 * entry:  # no liquidation price (a long fully collateralised): core says None
        assert core is None
        return
    assert core is not None
    assert core == pytest.approx(hl_at_entry, rel=1e-9)
    assert hl_at_now == pytest.approx(hl_at_entry, rel=1e-9)


def test_beyond_the_first_tier_core_solves_with_the_tier_at_the_liquidation_price(
    registry: InstrumentRegistry,
) -> None:
    """A 200M USDC BTC short (second tier, 20x): core's LP makes equity equal the tiered maintenance margin."""
    inst = registry.get("hyperliquid:BTC")
    size, entry, margin = 2_000.0, 100_000.0, 200_000_000 / 15
    lp = liquidation_price(
        kind=inst.kind,
        method=inst.liquidation_method,
        side="short",
        size=size,
        entry=entry,
        margin=margin,
        schedule=inst.margin,
    )
    assert lp.price is not None and lp.tier_index == 1
    equity = margin - size * (lp.price - entry)
    assert equity == pytest.approx(inst.margin.maintenance_margin(size * lp.price), rel=1e-9)
    # the documented formula with the second tier's rate and its deduction in margin_available agrees
    mm_at_entry = inst.margin.maintenance_margin(size * entry)
    assert hl_formula(-1, size, entry, margin - mm_at_entry, 40) == pytest.approx(lp.price, rel=1e-9)


def test_hourly_funding_per_day_matches_an_eight_hour_venue(registry: InstrumentRegistry) -> None:
    """A 1-hour interval: 24 settlements a day, and the same daily funding as an 8-hour venue at the same 8h rate."""
    pf = Portfolio(name="p", prices={"BTC": 60_000, "SOL": 150}, holdings=(Holding(asset="SOL", quantity=100),))

    def leg(inst: str) -> HedgeLeg:
        plan = plan_hedge(
            pf,
            HedgeRequest(
                ratio=1.0,
                proxy_legs=(LegRequest(instrument=registry.get(inst)),),
                leverage=2.0,
                collateral=CollateralSource.STABLE,
                funding_rate_8h=0.0001,
            ),
        )
        return plan.legs[0]

    hl, bn = leg("hyperliquid:BTC"), leg("binance:BTCUSDT")
    assert hl.settlements_per_day == 24
    assert bn.settlements_per_day == 3
    assert hl.funding_usd_per_day > 0
    assert math.isfinite(hl.notional_usd) and hl.notional_usd > 0
    assert hl.funding_usd_per_day == pytest.approx(bn.funding_usd_per_day * hl.notional_usd / bn.notional_usd, rel=1e-9)
