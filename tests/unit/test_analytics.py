"""Estimators and hedge effectiveness on synthetic returns: exact identities and look-ahead freedom."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.core import analytics as A
from perphedge.errors import DataError


def synthetic(n: int = 1500, beta: float = 1.4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = rng.normal(0, 0.03, n)
    return beta * f + rng.normal(0, 0.03, n), f


def test_ols_matches_numpy_lstsq() -> None:
    s, f = synthetic()
    coef, *_ = np.linalg.lstsq(np.column_stack([np.ones_like(f), f]), s, rcond=None)
    fit = A.ols(s, f)
    assert fit.beta == pytest.approx(coef[1], abs=1e-10)
    assert fit.alpha == pytest.approx(coef[0], abs=1e-10)
    assert fit.correlation == pytest.approx(np.corrcoef(s, f)[0, 1], abs=1e-12)


def test_he_identities() -> None:
    s, f = synthetic()
    assert A.hedge_effectiveness(s, s, 1.0) == pytest.approx(1.0)  # an asset against itself
    fit = A.ols(s, f)
    assert A.hedge_effectiveness(s, f, fit.beta) == pytest.approx(fit.r2, abs=1e-12)  # HE of h* is ρ²
    assert A.hedge_effectiveness(s, f, 0.0) == pytest.approx(0.0)


@settings(max_examples=100)
@given(st.floats(-3, 3), st.floats(0.01, 10), st.floats(-0.5, 0.5), st.integers(0, 10_000))
def test_min_variance_ratio_is_the_best_static_ratio(beta: float, scale: float, bump: float, seed: int) -> None:
    s, f = synthetic(300, beta, seed)
    h = A.ols(s, f).beta
    best = A.hedge_effectiveness(s, f, h)
    assert best >= A.hedge_effectiveness(s, f, h + bump) - 1e-12
    assert A.hedge_effectiveness(scale * s, f, scale * h) == pytest.approx(best, abs=1e-9)  # units don't matter


def test_inverse_usd_returns_without_basis_equal_simple_returns() -> None:
    rng = np.random.default_rng(3)
    spot = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.03, 400)))
    x = A.inverse_usd_returns(spot, spot)
    r = spot[1:] / spot[:-1] - 1
    assert np.allclose(x, r, rtol=0, atol=1e-15)
    alt = spot[1:] / spot[:-1] * 1.2 - 0.2 + rng.normal(0, 0.01, 399)  # some altcoin
    assert A.ols(alt, x).beta == pytest.approx(A.ols(alt, r).beta, abs=1e-12)
    # with a basis the inverse ratio differs slightly, not wildly
    perp = spot * (1 + rng.normal(0, 0.0005, 400))
    assert A.ols(alt, A.inverse_usd_returns(spot, perp)).beta == pytest.approx(A.ols(alt, r).beta, rel=0.02)


def test_downside_and_stress_betas_see_asymmetry() -> None:
    rng = np.random.default_rng(5)
    f = rng.normal(0, 0.03, 5000)
    s = np.where(f < 0, 2.0, 0.5) * f + rng.normal(0, 0.005, 5000)
    assert A.downside_beta(s, f).beta == pytest.approx(2.0, abs=0.05)
    assert A.stress_beta(s, f, k=1.5).beta == pytest.approx(2.0, abs=0.15)
    assert A.ols(s, f).beta < 1.6


def test_multi_factor_and_nonneg() -> None:
    rng = np.random.default_rng(7)
    btc, eth = rng.normal(0, 0.03, (2, 2000))
    s = 1.5 * btc - 0.3 * eth + rng.normal(0, 0.01, 2000)
    w, r2 = A.multi_factor(s, np.column_stack([btc, eth]))
    assert w == pytest.approx([1.5, -0.3], abs=0.03) and 0.9 < r2 < 1
    wn, r2n = A.multi_factor(s, np.column_stack([btc, eth]), nonneg=True)
    assert (wn >= 0).all() and wn[1] == 0 and r2n <= r2


def test_ewma_matches_its_definition() -> None:
    s, f = synthetic(200)
    lam = 0.9
    out = A.ewma_ratios(s, f, lam=lam, warmup=5)
    t = 150
    weights = np.array([(1 - lam) * lam ** (t - i) for i in range(1, t + 1)])
    cov = lam**t * s[0] * f[0] + (weights * s[1 : t + 1] * f[1 : t + 1]).sum()
    var = lam**t * f[0] ** 2 + (weights * f[1 : t + 1] ** 2).sum()
    assert out[t] == pytest.approx(cov / var, rel=1e-12)
    assert np.isnan(out[:5]).all()


def test_non_overlapping_blocks() -> None:
    r = np.arange(15, dtype=float)
    assert A.non_overlapping(r, 7).tolist() == [21.0, 70.0]


@pytest.mark.parametrize("estimator", A.ESTIMATORS)
def test_walk_forward_never_sees_the_scored_period(estimator: str) -> None:
    """Changing everything from day t on cannot change any ratio applied up to and including day t."""
    s, f = synthetic(900, seed=11)
    base = A.walk_forward(s, f, estimator, window=120, step=5).ratios
    rng = np.random.default_rng(1)
    for t in (130, 400, 777):
        s2, f2 = s.copy(), f.copy()
        s2[t:] = rng.normal(0, 0.2, len(s) - t)
        f2[t:] = rng.normal(0, 0.2, len(s) - t)
        other = A.walk_forward(s2, f2, estimator, window=120, step=5).ratios
        np.testing.assert_array_equal(base[: t + 1], other[: t + 1])


def test_walk_forward_rolling_equals_a_plain_loop() -> None:
    s, f = synthetic(400, seed=2)
    wf = A.walk_forward(s, f, "rolling_ols", window=60)
    loop = [A.ols(s[t - 60 : t], f[t - 60 : t]).beta for t in range(60, 400)]
    np.testing.assert_allclose(wf.ratios[60:], loop, rtol=1e-10)
    exp = A.walk_forward(s, f, "expanding_ols", window=60).ratios
    np.testing.assert_allclose(exp[60:], [A.ols(s[:t], f[:t]).beta for t in range(60, 400)], rtol=1e-9)
    assert wf.hedge_effectiveness == pytest.approx(A.hedge_effectiveness(s[60:], f[60:], wf.ratios[60:]), abs=1e-12)


def test_bad_inputs() -> None:
    with pytest.raises(DataError, match="NaN"):
        A.ols(np.array([1.0, np.nan, 2.0]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(DataError, match="zero variance"):
        A.ols(np.array([1.0, 2.0, 3.0]), np.ones(3))
    with pytest.raises(DataError, match="window"):
        A.walk_forward(*synthetic(50), "rolling_ols", window=60)
    with pytest.raises(DataError, match="unknown estimator"):
        A.walk_forward(*synthetic(200), "magic", window=60)
