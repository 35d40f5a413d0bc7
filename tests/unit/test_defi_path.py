"""DeFi positions along a price path (core/defi_path.py): value, delta, fee-earning bars, lending liquidation, and the
PnL decomposition the backtest reports. Expected values are closed forms computed here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.core.defi import LendingPosition, LpV2Position, LpV3Position, StakedPosition
from perphedge.core.defi_path import delta_pnl, fee_income, position_path

prices_st = st.lists(st.floats(min_value=50.0, max_value=50_000.0), min_size=2, max_size=60)


@settings(max_examples=60, deadline=None)
@given(path=prices_st, liquidity=st.floats(min_value=1.0, max_value=1e6))
def test_a_v2_pool_is_short_gamma_on_every_bar(path: list[float], liquidity: float) -> None:
    eth = np.array(path)
    pos = LpV2Position(base="ETH", quote="USDC", liquidity=liquidity)
    p = position_path(pos, {"ETH": eth})
    np.testing.assert_allclose(p.value_usd, 2 * liquidity * np.sqrt(eth), rtol=1e-12)
    np.testing.assert_allclose(p.delta_usd["ETH"], liquidity * np.sqrt(eth), rtol=1e-12)  # half the value
    gamma = np.diff(p.value_usd) - delta_pnl(p.delta_usd, {"ETH": eth})[1:]
    sq = np.sqrt(eth)
    np.testing.assert_allclose(gamma, -liquidity * np.diff(sq) ** 2 / sq[:-1], rtol=1e-6, atol=1e-6 * liquidity)
    assert (gamma <= 1e-9 * liquidity * sq.max()).all()
    assert (p.earning == 1.0).all()


@settings(max_examples=60, deadline=None)
@given(path=prices_st)
def test_a_v3_pool_earns_only_inside_its_range_and_its_delta_is_bounded(path: list[float]) -> None:
    eth = np.array(path)
    pos = LpV3Position(base="ETH", quote="USDC", p_a=1500.0, p_b=2500.0, liquidity=4000.0)
    p = position_path(pos, {"ETH": eth})
    inside = (eth > 1500.0) & (eth < 2500.0)
    np.testing.assert_array_equal(p.earning, inside.astype(float))
    coin = p.delta_usd["ETH"] / eth
    assert (coin >= -1e-12).all() and (coin <= pos.max_base + 1e-9).all()
    assert np.all(coin[eth >= 2500.0] == 0.0)
    np.testing.assert_allclose(coin[eth <= 1500.0], pos.max_base, rtol=1e-12)


def test_staked_tokens_are_linear() -> None:
    eth = np.array([3000.0, 2500.0, 3500.0])
    p = position_path(StakedPosition(asset="STETH", underlying="ETH", quantity=100, rate=1.1), {"ETH": eth})
    np.testing.assert_allclose(p.value_usd, 110 * eth)
    gamma = np.diff(p.value_usd) - delta_pnl(p.delta_usd, {"ETH": eth})[1:]
    np.testing.assert_allclose(gamma, 0.0, atol=1e-9)
    assert (p.earning == 0).all() and p.health_factor is None


def _loan() -> LendingPosition:
    return LendingPosition(
        supplied={"ETH": 10}, borrowed={"USDC": 12000}, liquidation_threshold=0.83, liquidation_bonus=0.05
    )


def test_a_loan_above_one_is_never_liquidated() -> None:
    eth = np.array([3000.0, 2000.0, 1500.0, 1600.0])
    p = position_path(_loan(), {"ETH": eth}, {"ETH": eth * 0.99}, {"ETH": eth * 1.01})
    assert p.liquidation is None
    assert p.health_factor is not None and p.health_factor_worst is not None
    np.testing.assert_allclose(p.health_factor, 10 * eth * 0.83 / 12000)
    np.testing.assert_allclose(p.health_factor_worst, 10 * eth * 0.99 * 0.83 / 12000)
    np.testing.assert_allclose(p.value_usd, 10 * eth - 12000)


def test_a_loan_is_liquidated_at_the_first_bar_whose_low_breaks_it() -> None:
    eth = np.array([3000.0, 1500.0, 1460.0, 1700.0, 1200.0])
    lows = np.array([3000.0, 1480.0, 1400.0, 1650.0, 1100.0])
    p = position_path(_loan(), {"ETH": eth}, {"ETH": lows}, {"ETH": eth})
    liq = p.liquidation
    assert liq is not None and liq.bar == 2
    assert liq.health_factor == pytest.approx(10 * 1400 * 0.83 / 12000)
    assert liq.loss_usd == pytest.approx(600.0) and liq.bad_debt_usd == 0.0
    left = 10 - 12600 / 1400
    assert liq.supplied_left["ETH"] == pytest.approx(left)
    np.testing.assert_allclose(p.value_usd[2:], left * eth[2:])  # no debt after: never liquidated again
    assert p.health_factor is not None and np.isinf(p.health_factor[2:]).all()
    np.testing.assert_allclose(p.delta_usd["ETH"][:2], 10 * eth[:2])


def test_an_underwater_loan_loses_all_its_collateral_and_leaves_bad_debt() -> None:
    eth = np.array([3000.0, 1000.0, 1100.0])
    p = position_path(_loan(), {"ETH": eth})  # closes as the worst prices: 10 ETH at 1000 < 12,000 of debt
    liq = p.liquidation
    assert liq is not None and liq.bar == 1
    assert liq.collateral_seized_usd == pytest.approx(10_000.0)
    assert liq.debt_repaid_usd == pytest.approx(10_000.0 / 1.05)
    assert liq.bad_debt_usd == pytest.approx(12_000.0 - 10_000.0 / 1.05)
    assert liq.supplied_left["ETH"] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(p.value_usd[1:], 0.0, atol=1e-9)


def test_a_loan_owing_a_coin_has_a_negative_delta_and_is_liquidated_by_its_high() -> None:
    loan = LendingPosition(supplied={"USDC": 10_000}, borrowed={"ETH": 2}, liquidation_threshold=0.8)
    eth = np.array([3000.0, 3500.0, 3900.0])
    highs = np.array([3000.0, 3600.0, 4100.0])  # HF = 8000 / (2·P) < 1 above 4000
    p = position_path(loan, {"ETH": eth}, {"ETH": eth}, {"ETH": highs})
    np.testing.assert_allclose(p.delta_usd["ETH"][:2], -2 * eth[:2])
    assert p.liquidation is not None and p.liquidation.bar == 2
    assert p.liquidation.loss_usd == pytest.approx(0.05 * 2 * 4100)  # the assumed 5% bonus


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(min_value=0.0, max_value=1e7), min_size=1, max_size=40),
    apr=st.floats(min_value=0.0, max_value=5.0),
)
def test_fee_income_accrues_on_the_previous_close(values: list[float], apr: float) -> None:
    v = np.array(values)
    earning = (np.arange(len(v)) % 3 != 0).astype(float)
    f = fee_income(v, earning, apr, 1 / 365)
    assert f[0] == 0.0
    expected = [apr / 365 * v[t - 1] * earning[t - 1] for t in range(1, len(v))]
    np.testing.assert_allclose(f[1:], expected, rtol=1e-12, atol=0.0)
    assert math.isclose(float(f.sum()), float(sum(expected)), rel_tol=1e-9, abs_tol=1e-9)
