"""Monte Carlo against closed forms, kernel twins, and leverage candidates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perphedge.core.contracts import initial_margin, liquidation_price
from perphedge.core.instruments import MarginSchedule
from perphedge.core.stress import bgk_upper_hit_probability, simulate

ZERO_MM = MarginSchedule.single(1e-9)


def lp_ratio(kind: str, lev: float) -> float:
    size = 1.0 if kind == "linear" else 100_000.0
    res = liquidation_price(
        kind=kind,
        method="mm_at_liquidation_price",
        side="short",
        size=size,
        entry=100_000.0,
        margin=initial_margin(kind, size, 100_000.0, lev),
        schedule=ZERO_MM,
    )
    assert res.price is not None
    return res.price / 100_000.0


@pytest.mark.parametrize("lev", [2.0, 3.0, 5.0])
def test_inverse_at_l_liquidates_where_linear_at_l_minus_one_does(lev: float) -> None:
    assert lp_ratio("inverse", lev) == pytest.approx(lp_ratio("linear", lev - 1), rel=1e-6)


@pytest.mark.parametrize(
    ("sigma", "kind", "lev", "days"),
    [
        (0.6, "linear", 2.0, 90),
        (0.8, "linear", 3.0, 180),
        (0.5, "linear", 5.0, 30),
        (0.8, "inverse", 2.0, 365),
        (0.6, "inverse", 3.0, 90),
        (1.0, "inverse", 5.0, 60),
    ],
)
def test_gbm_monte_carlo_agrees_with_first_passage_closed_form(sigma: float, kind: str, lev: float, days: int) -> None:
    barrier = lp_ratio(kind, lev)
    n = 40_000
    sim = simulate(
        model="gbm",
        paths=n,
        horizon=days,
        watch=[0],
        seed=11,
        mu_annual=np.array([0.0]),
        sigma_annual=np.array([sigma]),
        corr=np.eye(1),
    )
    daily = float((sim["max_close"][:, 0] >= barrier).mean())
    intraday = float((sim["max_high"][:, 0] >= barrier).mean())
    for mc, cf in (
        (daily, bgk_upper_hit_probability(sigma, 0.0, days, barrier)),
        (intraday, bgk_upper_hit_probability(sigma, 0.0, days, barrier, monitoring_days=None)),
    ):
        se = math.sqrt(max(cf * (1 - cf), 1e-6) / n)
        assert abs(mc - cf) <= 4 * se + 1e-4, (mc, cf, se)
    assert intraday >= daily  # highs reach the barrier at least as often as closes


def test_closed_form_limits() -> None:
    assert bgk_upper_hit_probability(0.8, 0.0, 90, 1.0) == 1.0
    assert bgk_upper_hit_probability(0.0, 0.0, 90, 1.5) == 0.0
    assert bgk_upper_hit_probability(0.8, 0.0, 90, 1.5, None) > bgk_upper_hit_probability(0.8, 0.0, 90, 1.5)


@pytest.mark.parametrize("model", ["bootstrap", "gbm", "student_t"])
def test_numba_kernels_equal_their_plain_twins(model: str) -> None:
    rng = np.random.default_rng(2)
    hist = rng.normal(0, 0.03, (300, 3))
    highs = np.abs(rng.normal(0, 0.02, (300, 2)))
    kw = {
        "model": model,
        "paths": 300,
        "horizon": 40,
        "watch": [0, 2],
        "seed": 5,
        "returns": hist,
        "highs": highs,
        "mu_annual": np.array([0.1, 0.0, 0.2]),
        "sigma_annual": np.array([0.6, 0.9, 0.7]),
        "corr": np.array([[1, 0.5, 0.3], [0.5, 1, 0.4], [0.3, 0.4, 1]]),
    }
    a = simulate(**kw)  # type: ignore[arg-type]
    b = simulate(**kw, plain=True)  # type: ignore[arg-type]
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12)


def test_bootstrap_reproduces_history_exactly_when_it_is_constant() -> None:
    hist = np.full((100, 2), math.log(1.01))
    highs = np.full((100, 1), math.log(1.02))
    sim = simulate(model="bootstrap", paths=50, horizon=10, watch=[1], seed=0, returns=hist, highs=highs)
    assert np.allclose(sim["terminal"], 1.01**10)
    assert np.allclose(sim["max_high"], 1.01**9 * 1.02)
    assert np.allclose(sim["max_jump"], 1.02)
    again = simulate(model="bootstrap", paths=50, horizon=10, watch=[1], seed=0, returns=hist, highs=highs)
    assert np.array_equal(sim["terminal"], again["terminal"])  # seeded: reproducible


def test_student_t_has_fatter_tails_than_gbm() -> None:
    kw = {
        "paths": 40_000,
        "horizon": 1,
        "watch": [0],
        "seed": 3,
        "mu_annual": np.zeros(1),
        "sigma_annual": np.array([0.8]),
        "corr": np.eye(1),
    }
    g = np.log(simulate(model="gbm", **kw)["terminal"][:, 0])  # type: ignore[arg-type]
    t = np.log(simulate(model="student_t", **kw)["terminal"][:, 0])  # type: ignore[arg-type]
    assert np.std(t) == pytest.approx(np.std(g), rel=0.05)
    kurt = lambda x: float(np.mean((x - x.mean()) ** 4) / np.var(x) ** 2)  # noqa: E731
    assert kurt(t) > kurt(g) + 1.0
