"""Daily margin top-ups only ever add margin: with top-ups a short is liquidated no more often than without.

The top-up rule: at every close the short's liquidation price becomes max(previous LP, close × (1 + d)), d the
initial distance LP/entry − 1; it is never lowered (that would withdraw margin after the price fell). The kernels
reduce a path to ``max_over_peak`` = the largest intraday high over the highest close before it (the entry
counting as a close of 1); the path is liquidated with top-ups iff that reaches 1 + d.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perphedge.config import parse_portfolio
from perphedge.core import stress as S
from perphedge.specs import default_registry
from perphedge.usecases.montecarlo import _leg_outcomes, monte_carlo
from perphedge.usecases.plan import plan_portfolio


def explicit_topups(returns: np.ndarray, highs: np.ndarray, d: float) -> bool:
    """Reference: walk the path day by day, raising (never lowering) the LP at each close. Liquidated?"""
    lp = 1.0 + d
    close = 1.0
    for r, h in zip(returns, highs, strict=True):
        if close * math.exp(h) >= lp:
            return True
        close *= math.exp(r)
        lp = max(lp, close * (1.0 + d))
    return False


def explicit_no_topup(returns: np.ndarray, highs: np.ndarray, d: float) -> bool:
    close = 1.0
    for r, h in zip(returns, highs, strict=True):
        if close * math.exp(h) >= 1.0 + d:
            return True
        close *= math.exp(r)
    return False


def run_bootstrap_kernel(returns: np.ndarray, highs: np.ndarray, plain: bool) -> dict[str, np.ndarray]:
    """One path that walks the history in order (one block from day 0), through the kernel itself."""
    horizon = len(returns)
    out = {k: np.empty((1, 1)) for k in ("max_high", "max_jump", "max_close", "max_over_peak")}
    terminal = np.empty((1, 1))
    fn = S._sim_bootstrap_python if plain else S._sim_bootstrap
    fn(
        np.ascontiguousarray(returns.reshape(-1, 1)),
        np.ascontiguousarray(highs.reshape(-1, 1)),
        np.zeros((1, horizon)),
        np.full((1, horizon), float(horizon)),
        np.zeros(1),
        horizon,
        terminal,
        out["max_high"],
        out["max_jump"],
        out["max_close"],
        out["max_over_peak"],
    )
    return out


day_returns = st.lists(st.floats(-0.3, 0.3, allow_nan=False), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), d=st.floats(0.001, 1.0), plain=st.booleans())
def test_kernel_statistic_matches_the_explicit_top_up_rule(data: st.DataObject, d: float, plain: bool) -> None:
    rets = np.array(data.draw(day_returns))
    # a day's high is at or above both its open (the previous close) and its close
    extra = np.array(data.draw(st.lists(st.floats(0.0, 0.2), min_size=len(rets), max_size=len(rets))))
    highs = np.maximum(rets, 0.0) + extra
    out = run_bootstrap_kernel(rets, highs, plain)
    with_top = bool(out["max_over_peak"][0, 0] >= 1.0 + d)
    without = bool(out["max_high"][0, 0] >= 1.0 + d)
    # away from the float boundary the kernel's verdicts are the explicit walk's
    lo = explicit_topups(rets, highs, d * (1 - 1e-9) - 1e-12)
    hi = explicit_topups(rets, highs, d * (1 + 1e-9) + 1e-12)
    if lo == hi:
        assert with_top == lo
    if explicit_no_topup(rets, highs, d * (1 - 1e-9) - 1e-12) == explicit_no_topup(rets, highs, d * (1 + 1e-9)):
        assert without == explicit_no_topup(rets, highs, d)
    assert not (with_top and not without)  # pathwise: liquidated with top-ups => liquidated without


def test_a_fall_then_a_bounce_no_longer_liquidates_the_topped_up_short() -> None:
    """The old rule restored the distance at every close (withdrawing margin after a fall), so a 50% fall followed by
    a 10% bounce liquidated a short 5% from its LP with top-ups, but not without. Now neither does."""
    rets = np.log(np.array([0.7, 0.75, 1.08]))  # closes 0.70, 0.525, 0.567
    highs = np.log(np.array([1.0, 0.7, 1.10]))  # third day: high 10% over the previous close, far under entry
    out = run_bootstrap_kernel(rets, highs, plain=True)
    assert out["max_jump"][0, 0] == pytest.approx(1.10)  # the old statistic: would have liquidated at d = 5%
    assert out["max_over_peak"][0, 0] == pytest.approx(1.0)  # the entry is the highest close: no new high over it
    assert out["max_high"][0, 0] == pytest.approx(1.0)
    assert not explicit_topups(rets, highs, 0.05) and not explicit_no_topup(rets, highs, 0.05)


def test_a_rally_with_small_daily_steps_is_survived_only_with_top_ups() -> None:
    rets = np.full(20, math.log(1.03))  # +3% a day: +80% over 20 days
    highs = np.full(20, math.log(1.04))
    out = run_bootstrap_kernel(rets, highs, plain=False)
    assert out["max_over_peak"][0, 0] == pytest.approx(1.04)
    assert out["max_high"][0, 0] == pytest.approx(1.03**19 * 1.04)
    assert explicit_no_topup(rets, highs, 0.2) and not explicit_topups(rets, highs, 0.2)
    assert out["max_high"][0, 0] >= 1.2 > out["max_over_peak"][0, 0]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=st.sampled_from(["bootstrap", "gbm", "student_t"]),
    seed=st.integers(0, 2**32),
    sigma=st.floats(0.1, 2.0),
    mu=st.floats(-1.0, 1.0),
)
def test_simulated_paths_never_liquidate_more_with_top_ups(model: str, seed: int, sigma: float, mu: float) -> None:
    rng = np.random.default_rng(seed)
    hist = rng.normal(mu / 365, sigma / math.sqrt(365), (200, 2))
    highs = np.maximum(hist[:, :1], 0.0) + np.abs(rng.normal(0, sigma / 30, (200, 1)))
    sim = S.simulate(
        model=model,
        paths=400,
        horizon=60,
        watch=[0],
        seed=seed,
        returns=hist,
        highs=highs,
        mu_annual=np.array([mu, mu]),
        sigma_annual=np.array([sigma, sigma * 1.3]),
        corr=np.array([[1.0, 0.6], [0.6, 1.0]]),
    )
    assert np.all(sim["max_over_peak"] >= 1.0)
    assert np.all(sim["max_over_peak"] <= sim["max_high"] * (1 + 1e-12))
    assert np.all(sim["max_over_peak"] <= sim["max_jump"] * (1 + 1e-12))


def _plan(instrument: str, collateral: str, leverage: float, asset: str = "SOL") -> Any:
    doc = {
        "name": "t",
        "prices": {"BTC": 60000, "SOL": 150},
        "holdings": [{"asset": asset, "value_usd": 10000}],
        "hedge": {"ratio": 1.0, "instrument": instrument, "leverage": leverage, "collateral": collateral},
    }
    return plan_portfolio(parse_portfolio(doc, "t.yaml"), source="t.yaml", registry=default_registry()).plan


HEDGES = [
    ("binance:BTCUSDT", "stable", "SOL"),  # linear
    ("binance:BTCUSD_PERP", "buy", "SOL"),  # inverse, bought collateral
    ("binance:BTCUSD_PERP", "holdings", "BTC"),  # inverse, coin from the holdings
]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hedge=st.sampled_from(HEDGES),
    frac=st.floats(0.0, 1.0),
    model=st.sampled_from(["gbm", "student_t"]),
    sigma=st.floats(0.2, 2.0),
    seed=st.integers(0, 2**31),
)
def test_monte_carlo_top_ups_never_raise_the_liquidation_probability(
    hedge: tuple[str, str, str], frac: float, model: str, sigma: float, seed: int
) -> None:
    instrument, collateral, asset = hedge
    registry = default_registry()
    max_lev = registry.get(instrument).max_leverage
    low = 1.1 if collateral == "buy" else 1.0
    lev = round(low + frac * (max_lev - low), 2)
    plan = _plan(instrument, collateral, 2.0 if collateral == "buy" else 1.0, asset)
    mc = monte_carlo(
        plan,
        None,
        model=model,
        paths=500,
        horizon=30,
        seed=seed,
        leverages=[lev, max_lev],
        sigma=sigma,
        correlation=0.7,
        drift=0.0,
    )
    assert mc["liquidation"]
    for row in mc["liquidation"]:
        assert row["liquidation_probability_with_top_up"] <= row["liquidation_probability"]
        assert row["top_up_added_usd_mean"] >= 0 and row["top_up_added_usd_p95"] >= 0
    for v in mc["by_leverage"].values():
        if "error" not in v:
            assert v["any_leg_with_top_up"] <= v["any_leg"]


@pytest.mark.parametrize(("instrument", "collateral", "asset"), HEDGES)
@pytest.mark.parametrize("lev", [3.0, 15.0, 50.0])
def test_pathwise_each_path_liquidated_with_top_ups_is_liquidated_without(
    instrument: str, collateral: str, asset: str, lev: float
) -> None:
    plan = _plan(instrument, collateral, lev, asset)
    sim = S.simulate(
        model="gbm",
        paths=3000,
        horizon=90,
        watch=[0],
        seed=int(lev),
        mu_annual=np.zeros(1),
        sigma_annual=np.array([0.8]),
        corr=np.eye(1),
    )
    for leg in plan.legs:
        o = _leg_outcomes(
            leg, sim["terminal"][:, 0], sim["max_high"][:, 0], sim["max_over_peak"][:, 0], sim["max_close"][:, 0], 90
        )
        assert not np.any(o["liquidated_with_top_up"] & ~o["liquidated"])
        assert o["liquidated"].mean() > 0  # the comparison is not vacuous: σ = 80% over 90 days liquidates some
        assert o["liquidated_with_top_up"].mean() < o["liquidated"].mean()
        assert np.all(o["top_up_added_usd"] >= 0)  # margin is only ever added
        assert np.all((o["top_up_added_usd"] > 0) == (sim["max_close"][:, 0] > 1.0))


def test_plain_and_numba_twins_agree_on_the_new_statistic() -> None:
    rng = np.random.default_rng(9)
    hist = rng.normal(0, 0.04, (250, 2))
    highs = np.abs(rng.normal(0, 0.03, (250, 2)))
    for model in S.MODELS:
        kw: dict[str, Any] = {
            "model": model,
            "paths": 200,
            "horizon": 50,
            "watch": [0, 1],
            "seed": 1,
            "returns": hist,
            "highs": highs,
            "mu_annual": np.array([0.0, 0.1]),
            "sigma_annual": np.array([0.7, 0.9]),
            "corr": np.array([[1.0, 0.5], [0.5, 1.0]]),
        }
        a, b = S.simulate(**kw), S.simulate(**kw, plain=True)
        np.testing.assert_allclose(a["max_over_peak"], b["max_over_peak"], rtol=1e-12)


def test_a_singular_correlation_moves_the_assets_together() -> None:
    sim = S.simulate(
        model="gbm",
        paths=300,
        horizon=20,
        watch=[0],
        seed=4,
        mu_annual=np.zeros(2),
        sigma_annual=np.array([0.5, 0.5]),
        corr=np.ones((2, 2)),
    )
    np.testing.assert_allclose(sim["terminal"][:, 0], sim["terminal"][:, 1], rtol=1e-6)


@pytest.mark.parametrize(
    "corr",
    [
        [[1.0, 1.0], [1.0, 1.0]],
        [[1.0, -1.0], [-1.0, 1.0]],
        [[1.0, 1.0, 0.5], [1.0, 1.0, 0.5], [0.5, 0.5, 1.0]],
        [[1.0, 0.3, 0.3], [0.3, 1.0, 1.0], [0.3, 1.0, 1.0]],
    ],
)
def test_cholesky_of_singular_correlations_is_exact(corr: list[list[float]]) -> None:
    c = np.array(corr)
    low = S._cholesky(c)
    assert np.allclose(low, np.tril(low))
    np.testing.assert_allclose(low @ low.T, c, atol=1e-12)


def test_cholesky_refuses_an_impossible_matrix() -> None:
    from perphedge.errors import ConfigError

    with pytest.raises(ConfigError, match="positive semi-definite"):
        S._cholesky(np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]]))
