"""Unit tests of the contract maths beyond the reference vectors."""

from __future__ import annotations

import math

import pytest

from perphedge.core import contracts as C
from perphedge.core.instruments import LiquidationMethod, MarginSchedule, MarginTier, TierStyle
from perphedge.errors import ConfigError

BINANCE_COINM_BTC = MarginSchedule.marginal(
    [(0, 0.004, 125), (5, 0.005, 100), (10, 0.01, 50), (20, 0.025, 20), (50, 0.05, 10), (100, 0.1, 5), (200, 0.125, 4)]
)


def test_side_parse_and_sign() -> None:
    assert C.Side.parse("SHORT").sign == -1
    assert C.Side.parse("long").sign == 1
    with pytest.raises(ConfigError, match="must be long or short"):
        C.Side.parse("flat")


def test_linear_pnl_and_avg_entry() -> None:
    assert C.linear_pnl_quote("short", 2, 100, 90) == 20
    # Bybit USDT P&L page: (0.5×5000 + 0.3×6000)/0.8 = 5375
    assert C.linear_avg_entry([(0.5, 5000), (0.3, 6000)]) == pytest.approx(5375)


def test_inverse_avg_entry_is_harmonic_not_arithmetic() -> None:
    harmonic = C.inverse_avg_entry([(1000, 5000), (2000, 6000)])
    arithmetic = (1000 * 5000 + 2000 * 6000) / 3000
    assert harmonic == pytest.approx(5625)
    assert harmonic < arithmetic


def test_tier_chosen_at_liquidation_price_binance_coinm() -> None:
    # 600 BTC-worth short at 60k, 5x: value at entry 1,000 BTC falls in the last tier;
    # the LP must sit in a tier consistent with the value there.
    q, e = 60_000_000.0, 60_000.0
    wb = C.initial_margin("inverse", q, e, 5)
    res = C.liquidation_price(
        kind="inverse",
        method="mm_at_liquidation_price",
        side="short",
        size=q,
        entry=e,
        margin=wb,
        schedule=BINANCE_COINM_BTC,
    )
    assert res.price is not None
    value_at_lp = q / res.price
    tier = BINANCE_COINM_BTC.tiers[res.tier_index]
    assert tier.floor <= value_at_lp < BINANCE_COINM_BTC.cap(res.tier_index)
    # equity at LP equals the maintenance margin at LP (the defining equation)
    eq = C.equity("inverse", "short", q, e, wb, res.price)
    assert eq == pytest.approx(BINANCE_COINM_BTC.maintenance_margin(value_at_lp), rel=1e-9)


def test_tier_lookup_changes_lp_for_a_large_long() -> None:
    # a long whose value at LP is larger than at entry (inverse long: value Q/P grows as P falls)
    q, e = 2_000_000.0, 50_000.0  # 40 BTC at entry
    wb = C.initial_margin("inverse", q, e, 10)
    tiered = C.liquidation_price(
        kind="inverse",
        method="mm_at_liquidation_price",
        side="long",
        size=q,
        entry=e,
        margin=wb,
        schedule=BINANCE_COINM_BTC,
    )
    flat = C.liquidation_price(
        kind="inverse",
        method="mm_at_liquidation_price",
        side="long",
        size=q,
        entry=e,
        margin=wb,
        schedule=MarginSchedule.single(0.004),
    )
    assert tiered.price is not None and flat.price is not None
    assert tiered.tier_index >= 3  # 40+ BTC at LP → the 20–50 or higher tier
    assert tiered.price > flat.price  # more maintenance margin liquidates earlier


def test_size_linear_schedule_solver_matches_equation() -> None:
    sched = MarginSchedule(
        style=TierStyle.SIZE_LINEAR, tiers=(MarginTier(floor=0, mmr=0.01, max_leverage=50),), slope=0.00005
    )
    q, e = 3_000_000.0, 60_000.0
    wb = C.initial_margin("inverse", q, e, 3)
    res = C.liquidation_price(
        kind="inverse", method="mm_at_liquidation_price", side="short", size=q, entry=e, margin=wb, schedule=sched
    )
    assert res.price is not None
    eq = C.equity("inverse", "short", q, e, wb, res.price)
    assert eq == pytest.approx(sched.maintenance_margin(q / res.price), rel=1e-8)


def test_stepped_schedule_applies_rate_to_whole_position() -> None:
    sched = MarginSchedule(
        style=TierStyle.STEPPED,
        tiers=(MarginTier(floor=0, mmr=0.005, max_leverage=100), MarginTier(floor=200, mmr=0.01, max_leverage=66)),
    )
    assert sched.maintenance_margin(180) == pytest.approx(0.9)
    assert sched.maintenance_margin(230) == pytest.approx(2.3)


def test_marginal_schedule_is_continuous_at_tier_boundaries() -> None:
    for tier in BINANCE_COINM_BTC.tiers[1:]:
        below = BINANCE_COINM_BTC.maintenance_margin(tier.floor * (1 - 1e-12))
        at = BINANCE_COINM_BTC.maintenance_margin(tier.floor)
        assert at == pytest.approx(below, rel=1e-9)


def test_one_x_inverse_short_has_no_liquidation_or_bankruptcy() -> None:
    q, e = 50_000.0, 50_000.0
    wb = C.initial_margin("inverse", q, e, 1)
    assert C.bankruptcy_price("inverse", "short", q, e, wb) is None
    res = C.liquidation_price(
        kind="inverse",
        method="mm_at_liquidation_price",
        side="short",
        size=q,
        entry=e,
        margin=wb,
        schedule=MarginSchedule.single(0.005),
    )
    assert res.price is None


def test_entry_family_one_x_short_is_far_but_finite() -> None:
    # with MM fixed on entry value, equity tends to WB − Q/E = 0 as P → ∞, so LP = E/MMR
    res = C.liquidation_price(
        kind="inverse",
        method="mm_on_entry_value",
        side="short",
        size=50_000,
        entry=50_000,
        margin=1.0,
        schedule=MarginSchedule.single(0.005),
    )
    assert res.price == pytest.approx(50_000 / 0.005)


def test_linear_long_fully_collateralised_cannot_liquidate() -> None:
    res = C.liquidation_price(
        kind="linear",
        method="binance_usdm",
        side="long",
        size=1,
        entry=100,
        margin=100,
        schedule=MarginSchedule.single(0.01),
    )
    assert res.price is None
    assert C.bankruptcy_price("linear", "long", 1, 100, 100) is None


def test_cross_mode_uses_wallet_balance() -> None:
    iso = C.liquidation_price(
        kind="linear",
        method="binance_usdm",
        side="short",
        size=1,
        entry=60_000,
        margin=30_000,
        schedule=MarginSchedule.single(0.005),
    )
    cross = C.liquidation_price(
        kind="linear",
        method="binance_usdm",
        side="short",
        size=1,
        entry=60_000,
        margin=45_000,
        schedule=MarginSchedule.single(0.005),
    )
    assert iso.price is not None and cross.price is not None
    assert cross.price > iso.price


def test_method_kind_mismatch_is_an_error() -> None:
    with pytest.raises(ConfigError, match="for linear contracts"):
        C.liquidation_price(
            kind="inverse",
            method=LiquidationMethod.BINANCE_USDM,
            side="short",
            size=1000,
            entry=100,
            margin=5,
            schedule=MarginSchedule.single(0.01),
        )
    with pytest.raises(ConfigError, match="must be one of"):
        C.liquidation_price(
            kind="inverse",
            method="magic",
            side="short",
            size=1000,
            entry=100,
            margin=5,
            schedule=MarginSchedule.single(0.01),
        )


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_bad_prices_are_errors(bad: float) -> None:
    with pytest.raises(ConfigError):
        C.inverse_pnl_coin("long", 100, bad, 100)


def test_funding_sign_positive_rate_pays_the_short() -> None:
    assert C.funding_received("linear", "short", 1, 60_000, 0.0001) == pytest.approx(6.0)
    assert C.funding_received("linear", "long", 1, 60_000, 0.0001) == pytest.approx(-6.0)
    assert C.funding_received("inverse", "short", 60_000, 60_000, -0.0001) == pytest.approx(-0.0001)


def test_leverage_below_one_rejected() -> None:
    with pytest.raises(ConfigError, match=r"invalid `leverage`: must be >= 1, was 0.5"):
        C.initial_margin("inverse", 100, 100, 0.5)


def test_schedule_validation() -> None:
    with pytest.raises(ConfigError, match="first floor must be 0"):
        MarginSchedule.marginal([(5, 0.01, 10)])
    with pytest.raises(ConfigError, match="increase strictly"):
        MarginSchedule.marginal([(0, 0.01, 10), (0, 0.02, 5)])
    with pytest.raises(ConfigError, match="mmr"):
        MarginTier(floor=0, mmr=1.5, max_leverage=2)
