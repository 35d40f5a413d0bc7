"""DeFi position maths (core/defi.py): Uniswap v2/v3 amounts, value, delta, gamma, impermanent loss; Aave
health factor and liquidation price; staked tokens. Properties with hypothesis, errors with their field."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.core.defi import (
    DEFAULT_LIQUIDATION_BONUS,
    LendingPosition,
    LpV2Position,
    LpV3Position,
    StakedPosition,
    health_factor,
    hedged_move_pnl_usd,
    impermanent_loss_v2,
    v2_amounts,
    v3_amounts,
    v3_gamma,
    v3_implied_price,
    v3_liquidity_from_amounts,
    v3_value,
)
from perphedge.core.portfolio import Holding, Portfolio
from perphedge.errors import ConfigError

prices_st = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)
liq_st = st.floats(min_value=1e-3, max_value=1e9, allow_nan=False, allow_infinity=False)


@st.composite
def v3_case(draw: st.DrawFn) -> tuple[float, float, float, float]:
    """(L, p_a, p_b, P) with p_a < p_b by at least 0.1%, P anywhere from far below to far above the range."""
    p_a = draw(st.floats(min_value=1e-2, max_value=1e5))
    width = draw(st.floats(min_value=1.001, max_value=100.0))
    p = p_a * draw(st.floats(min_value=0.05, max_value=200.0))
    return draw(liq_st), p_a, p_a * width, p


# ------------------------------------------------------------------------------- v3 properties


@given(v3_case())
def test_v3_delta_between_zero_and_all_base(case: tuple[float, float, float, float]) -> None:
    liquidity, p_a, p_b, p = case
    pos = LpV3Position(base="ETH", quote="USDC", p_a=p_a, p_b=p_b, liquidity=liquidity)
    x = float(pos.amounts({"ETH": p})["ETH"])
    assert -1e-12 * pos.max_base <= x <= pos.max_base * (1 + 1e-12)
    y = float(pos.amounts({"ETH": p})["USDC"])
    assert -1e-12 * pos.max_quote <= y <= pos.max_quote * (1 + 1e-12)


@given(v3_case())
def test_v3_delta_is_the_derivative_of_value(case: tuple[float, float, float, float]) -> None:
    liquidity, p_a, p_b, p = case
    # stay away from the kinks at the bounds, where the derivative jumps (gamma is discontinuous, delta is not)
    if min(abs(p / p_a - 1), abs(p / p_b - 1)) < 1e-3:
        return
    h = p * 1e-6
    numeric = (float(v3_value(liquidity, p_a, p_b, p + h)) - float(v3_value(liquidity, p_a, p_b, p - h))) / (2 * h)
    x, _ = v3_amounts(liquidity, p_a, p_b, p)
    assert numeric == pytest.approx(float(x), rel=1e-5, abs=1e-9 * liquidity / math.sqrt(p_a))


@given(v3_case())
def test_v3_value_is_continuous_across_the_bounds(case: tuple[float, float, float, float]) -> None:
    liquidity, p_a, p_b, _ = case
    for bound in (p_a, p_b):
        below = float(v3_value(liquidity, p_a, p_b, bound * (1 - 1e-9)))
        at = float(v3_value(liquidity, p_a, p_b, bound))
        above = float(v3_value(liquidity, p_a, p_b, bound * (1 + 1e-9)))
        assert below == pytest.approx(at, rel=1e-7)
        assert above == pytest.approx(at, rel=1e-7)


@given(v3_case(), st.floats(min_value=0.01, max_value=100.0))
def test_v3_impermanent_loss_is_never_positive(case: tuple[float, float, float, float], ratio: float) -> None:
    liquidity, p_a, p_b, p = case
    pos = LpV3Position(base="ETH", quote="USDC", p_a=p_a, p_b=p_b, liquidity=liquidity)
    now = {"ETH": p}
    new = {"ETH": p * ratio}
    held = sum(float(q) * (new["ETH"] if a == "ETH" else 1.0) for a, q in pos.amounts(now).items())
    lp = float(pos.value_usd(new))
    assert lp - held <= 1e-9 * max(held, 1.0)


@given(liq_st, prices_st)
def test_v2_is_v3_on_the_full_range(liquidity: float, p: float) -> None:
    x2, y2 = v2_amounts(liquidity, p)
    x3, y3 = v3_amounts(liquidity, p * 1e-14, p * 1e14, p)
    assert float(x3) == pytest.approx(float(x2), rel=1e-6)
    assert float(y3) == pytest.approx(float(y2), rel=1e-6)
    v2 = LpV2Position(base="ETH", quote="USDC", liquidity=liquidity).value_usd({"ETH": p})
    assert float(v3_value(liquidity, p * 1e-14, p * 1e14, p)) == pytest.approx(float(v2), rel=1e-6)


@given(st.floats(min_value=1e-4, max_value=1e4))
def test_v2_impermanent_loss_is_never_positive_and_zero_only_unmoved(r: float) -> None:
    il = float(impermanent_loss_v2(r))
    assert il <= 1e-15
    if abs(r - 1) > 1e-3:
        assert il < 0
    assert float(impermanent_loss_v2(1.0)) == 0.0


@given(liq_st, prices_st, st.floats(min_value=0.01, max_value=100.0))
def test_v2_impermanent_loss_formula_matches_revaluation(liquidity: float, p: float, r: float) -> None:
    pos = LpV2Position(base="ETH", quote="USDC", liquidity=liquidity)
    x, y = (float(v) for v in pos.amounts({"ETH": p}).values())
    held = x * p * r + y
    assert float(pos.value_usd({"ETH": p * r})) / held - 1 == pytest.approx(float(impermanent_loss_v2(r)), abs=1e-9)


@given(v3_case())
def test_v3_liquidity_round_trips_through_amounts(case: tuple[float, float, float, float]) -> None:
    liquidity, p_a, p_b, p = case
    x, y = (float(v) for v in v3_amounts(liquidity, p_a, p_b, p))
    if p <= p_a:
        y = 0.0
    elif p >= p_b:
        x = 0.0
    elif min(x / (liquidity / math.sqrt(p_a)), y / (liquidity * math.sqrt(p_b))) < 1e-9:
        return  # a sliver of one token: the implied price is ill-conditioned
    assert v3_liquidity_from_amounts(x, y, p_a, p_b, p) == pytest.approx(liquidity, rel=1e-6)


@given(v3_case())
def test_v3_gamma_is_the_derivative_of_delta(case: tuple[float, float, float, float]) -> None:
    liquidity, p_a, p_b, p = case
    if min(abs(p / p_a - 1), abs(p / p_b - 1)) < 1e-3:
        return
    h = p * 1e-6
    x_up, _ = v3_amounts(liquidity, p_a, p_b, p + h)
    x_dn, _ = v3_amounts(liquidity, p_a, p_b, p - h)
    numeric = (float(x_up) - float(x_dn)) / (2 * h)
    g = float(v3_gamma(liquidity, p_a, p_b, p))
    assert g <= 0
    assert numeric == pytest.approx(g, rel=1e-4, abs=1e-12 * liquidity / p_a**1.5)


# ------------------------------------------------------------------------------- vectorised API


def test_value_and_delta_take_price_arrays() -> None:
    """The backtest's exposure per bar: one call over a whole price history, equal to the scalar calls."""
    pos = LpV3Position(base="ETH", quote="USDC", p_a=1500, p_b=2500, liquidity=4000)
    path = np.array([1000.0, 1500.0, 1800.0, 2000.0, 2400.0, 2500.0, 4000.0])
    values = pos.value_usd({"ETH": path})
    deltas = pos.delta_usd({"ETH": path})["ETH"]
    assert values.shape == deltas.shape == path.shape
    for i, p in enumerate(path):
        assert values[i] == pytest.approx(float(pos.value_usd({"ETH": float(p)})))
        assert deltas[i] == pytest.approx(float(pos.delta_usd({"ETH": float(p)})["ETH"]))
    assert deltas[-1] == 0.0  # above the range: all USDC
    assert deltas[0] == pytest.approx(pos.max_base * 1000.0)
    lend = LendingPosition(supplied={"ETH": 10}, borrowed={"USDC": 12000}, liquidation_threshold=0.83)
    hf = lend.health_factor({"ETH": path})
    assert hf[3] == pytest.approx(20000 * 0.83 / 12000)
    assert bool(hf[0] < 1) and bool(hf[-1] > 1)


# ------------------------------------------------------------------------------- lending


@given(
    st.floats(min_value=0.1, max_value=1e4),
    st.floats(min_value=10, max_value=1e5),
    st.floats(min_value=0.05, max_value=0.95),
    st.floats(min_value=0.05, max_value=0.9),
)
def test_health_factor_is_one_at_the_liquidation_price(qty: float, price: float, lt: float, ltv: float) -> None:
    debt = qty * price * lt * ltv  # HF = 1/ltv > 1 now
    pos = LendingPosition(supplied={"ETH": qty}, borrowed={"USDC": debt}, liquidation_threshold=lt)
    liq = pos.liquidation_price("ETH", {"ETH": price})
    assert liq is not None and liq < price
    assert liq == pytest.approx(price * ltv)
    assert float(pos.health_factor({"ETH": liq})) == pytest.approx(1.0)


def test_borrowed_coin_liquidates_on_a_rally() -> None:
    """USDC 10,000 supplied (LT 0.8), 2 ETH borrowed at 2,000: HF = 8,000/4,000 = 2; liquidated when
    2·p = 8,000, i.e. ETH at 4,000 (+100%); the ETH delta is −2 ETH."""
    pos = LendingPosition(supplied={"USDC": 10_000}, borrowed={"ETH": 2}, liquidation_threshold=0.8)
    prices = {"ETH": 2000.0}
    assert float(pos.health_factor(prices)) == pytest.approx(2.0)
    assert pos.liquidation_price("ETH", prices) == pytest.approx(4000.0)
    assert float(pos.delta_usd(prices)["ETH"]) == pytest.approx(-4000.0)
    assert "USDC" not in pos.delta_usd(prices)
    assert float(pos.value_usd(prices)) == pytest.approx(6000.0)
    # the collateral stablecoin depegging to 0.5 USD also liquidates it: 10,000 × 0.5 × 0.8 = 4,000
    assert pos.liquidation_price("USDC", prices) == pytest.approx(0.5)
    assert pos.liquidation_price("BTC", prices) is None


def test_health_factor_helper_and_no_debt() -> None:
    assert health_factor(30_000, 12_000, 0.83) == pytest.approx(2.075)
    assert health_factor(30_000, 0, 0.83) is None
    pos = LendingPosition(supplied={"ETH": 1}, liquidation_threshold=0.8)
    assert math.isinf(float(pos.health_factor({"ETH": 3000.0})))
    assert pos.liquidation_price("ETH", {"ETH": 3000.0}) is None


def test_liquidation_loss_is_the_bonus_on_the_debt() -> None:
    pos = LendingPosition(supplied={"ETH": 10}, borrowed={"USDC": 12000}, liquidation_threshold=0.83)
    assert pos.bonus_assumed and pos.bonus == DEFAULT_LIQUIDATION_BONUS
    assert float(pos.liquidation_loss_usd({"ETH": 1400.0})) == pytest.approx(0.05 * 12000)
    # collateral 10,500 below debt × (1 + bonus): the liquidator takes all of it, repaying 10,000
    assert float(pos.liquidation_loss_usd({"ETH": 1050.0})) == pytest.approx(0.05 * 10_000)
    stated = LendingPosition(
        supplied={"ETH": 10}, borrowed={"USDC": 12000}, liquidation_threshold=0.83, liquidation_bonus=0.075
    )
    assert not stated.bonus_assumed and stated.bonus == 0.075
    assert stated.scaled(2).supplied == {"ETH": 20.0} and not stated.scaled(2).bonus_assumed


# ------------------------------------------------------------------------------- staked


def test_staked_token_has_its_underlying_delta_and_a_depeg() -> None:
    pos = StakedPosition(asset="reth", underlying="eth", quantity=10, rate=1.1, depeg=0.05)
    assert pos.asset == "RETH" and pos.underlying == "ETH"
    prices = {"ETH": 3000.0}
    assert float(pos.value_usd(prices)) == pytest.approx(33_000.0)
    assert float(pos.delta_usd(prices)["ETH"]) == pytest.approx(33_000.0)
    assert float(pos.value_usd(prices, depeg=0.05)) == pytest.approx(31_350.0)
    assert pos.assets == ("ETH",)  # the token's own price is never read


def test_hedged_move_pnl_is_negative_for_pools_and_zero_for_linear_positions() -> None:
    prices = {"ETH": 2000.0}
    lp = LpV3Position(base="ETH", quote="USDC", p_a=1500, p_b=2500, liquidity=4000)
    staked = StakedPosition(asset="STETH", underlying="ETH", quantity=100)
    for m in (-0.01, 0.01, 0.05):
        assert hedged_move_pnl_usd(lp, prices, "ETH", m) < 0
        assert hedged_move_pnl_usd(staked, prices, "ETH", m) == pytest.approx(0.0, abs=1e-6)
    # ≈ ½·Γ·(P·m)² in USD: Γ = −L/(2 P^1.5) = −0.02236
    assert hedged_move_pnl_usd(lp, prices, "ETH", 0.01) == pytest.approx(0.5 * -0.0223606798 * 20.0**2, rel=0.02)


# ------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: LpV3Position(base="ETH", quote="eth", p_a=1, p_b=2, liquidity=1), "`pair`: must name two different"),
        (lambda: LpV3Position(base="ETH", quote="USDC", p_a=2, p_b=1, liquidity=1), "`range`: the lower bound"),
        (lambda: LpV3Position(base="ETH", quote="USDC", p_a=1, p_b=2, liquidity=0), "`liquidity`: must be"),
        (lambda: LpV3Position(base="ETH", quote="USDC", p_a=math.nan, p_b=2, liquidity=1), r"`range\[0\]`"),
        (lambda: LpV2Position(base="ETH", quote="USDC", liquidity=-1), "`liquidity`"),
        (lambda: StakedPosition(asset="STETH", underlying="steth", quantity=1), "`underlying`: must differ"),
        (lambda: StakedPosition(asset="X", underlying="USDC", quantity=1), "stablecoin"),
        (lambda: StakedPosition(asset="STETH", underlying="ETH", quantity=1, depeg=1.5), "`depeg`"),
        (lambda: StakedPosition(asset="STETH", underlying="ETH", quantity=1, rate=0), "`rate`"),
        (lambda: LendingPosition(supplied={}, liquidation_threshold=0.8), "`supplied`: a lending position needs"),
        (lambda: LendingPosition(supplied={"ETH": 1}, liquidation_threshold=1.0), "`liquidation_threshold`"),
        (lambda: LendingPosition(supplied={"ETH": 1}, borrowed={"eth": 1}), "both supplied and borrowed"),
        (lambda: LendingPosition(supplied={"ETH": 1}, liquidation_bonus=0.7), "`liquidation_bonus`"),
        (lambda: LendingPosition(supplied={"ETH": -1}), r"`supplied.ETH`"),
    ],
)
def test_positions_refuse_bad_values(make: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("x", "y", "price", "match"),
    [
        (1.0, 100.0, 1400.0, "below its range .* cannot hold 100"),
        (1.0, 100.0, 2600.0, "above its range .* cannot hold 1"),
        (1.0, 0.0, 2000.0, "inside its range .* only the first"),
        (0.0, 100.0, 2000.0, "inside its range .* only the second"),
        (9.4427191, 23966.1, 2200.0, "imply a pool price of 2000"),
        (0.0, 0.0, 2000.0, "not both 0"),
    ],
)
def test_v3_amounts_must_fit_the_range_at_the_price(x: float, y: float, price: float, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        v3_liquidity_from_amounts(x, y, 1500.0, 2500.0, price)


def test_v2_amounts_must_be_worth_the_same_in_each_token() -> None:
    with pytest.raises(ConfigError, match=r"imply a pool price of 2500 USDC per ETH, \+25.0%"):
        LpV2Position.from_amounts(base="ETH", quote="USDC", x=1.0, y=2500.0, price=2000.0)
    ok = LpV2Position.from_amounts(base="ETH", quote="USDC", x=1.0, y=2010.0, price=2000.0)
    assert ok.liquidity == pytest.approx(math.sqrt(2010.0))


# ------------------------------------------------------------------------------- portfolio


def test_portfolio_counts_positions_by_delta_and_value() -> None:
    pf = Portfolio(
        name="p",
        holdings=(Holding(asset="BTC", quantity=1),),
        prices={"BTC": 60_000, "ETH": 2000},
        positions=(
            LpV3Position(base="ETH", quote="USDC", p_a=1500, p_b=2500, liquidity=4000, group="lp"),
            LendingPosition(supplied={"USDC": 10_000}, borrowed={"ETH": 2}, liquidation_threshold=0.8),
        ),
    )
    lp_delta = 4000 * (1 / math.sqrt(2000) - 1 / 50) * 2000
    assert pf.exposure_by_asset() == pytest.approx({"BTC": 60_000, "ETH": lp_delta - 4000})
    assert pf.exposure_usd == pytest.approx(60_000 + lp_delta - 4000)
    assert pf.value_usd == pytest.approx(60_000 + 42_851.5426 + 6_000, rel=1e-8)
    assert pf.scope_exposure("lp") == pytest.approx({"ETH": lp_delta})
    assert pf.exposure_by_group() == pytest.approx({"ungrouped": 60_000 - 4000, "lp": lp_delta})
    doubled = pf.scaled(2)
    assert doubled.exposure_usd == pytest.approx(2 * pf.exposure_usd)
    assert doubled.value_usd == pytest.approx(2 * pf.value_usd)
    with pytest.raises(ConfigError, match="nothing is in group 'core'"):
        pf.scope_exposure("core")


def test_portfolio_of_positions_only_and_missing_prices() -> None:
    pos = StakedPosition(asset="STETH", underlying="ETH", quantity=100)
    pf = Portfolio(name="s", holdings=(), prices={"ETH": 3000}, positions=(pos,))
    assert pf.value_usd == pytest.approx(300_000) and pf.exposure_usd == pytest.approx(300_000)
    with pytest.raises(ConfigError, match=r"no price for ETH: .*`positions\[0\]`"):
        Portfolio(name="s", holdings=(), prices={}, positions=(pos,))
    with pytest.raises(ConfigError, match="holds nothing"):
        Portfolio(name="s", holdings=(), prices={})


@settings(max_examples=50)
@given(st.floats(min_value=0.01, max_value=100.0))
def test_v3_implied_price_inverts_the_amounts(ratio: float) -> None:
    p = 1500.0 + 1000.0 * ratio / 101.0
    x, y = v3_amounts(4000.0, 1500.0, 2500.0, p)
    assert v3_implied_price(float(x), float(y), 1500.0, 2500.0) == pytest.approx(p, rel=1e-9)


def test_v3_amounts_fix_the_liquidity_at_the_price_they_imply() -> None:
    """Amounts read at pool price 2010 (0.5% off the file's 2000): L is still exactly the on-chain 4000."""
    x, y = v3_amounts(4000.0, 1500.0, 2500.0, 2010.0)
    assert v3_liquidity_from_amounts(float(x), float(y), 1500.0, 2500.0, 2000.0) == pytest.approx(4000.0, rel=1e-9)
