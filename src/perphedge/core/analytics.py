"""Hedge analytics on return arrays: betas, hedge ratios, hedge effectiveness, walk-forward tests.

Pure numpy: float64 arrays in, numbers or arrays out; no dates, files or pandas. Inputs are
aligned return series without NaN (the caller drops the days either side is missing).

Hedge effectiveness (Ederington): ``HE = 1 − Var(s − h·f) / Var(s)`` for spot returns ``s``,
hedge-instrument returns ``f`` and hedge ratio ``h``. The minimum-variance ratio is
``h* = Cov(s, f)/Var(f)`` (the OLS slope), and its in-sample HE is ``ρ²``.

For an inverse (coin-margined) short of notional ``N``, the USD value of its PnL over a period
is ``N·S₁·(1/F₁ − 1/F₀)`` (coin PnL valued at the spot price ``S₁``), so its USD return per unit
of notional is ``x = S₁·(1/F₀ − 1/F₁)`` (:func:`inverse_usd_returns`); with no basis (``F = S``)
``x`` is the simple return and the inverse ratio equals the linear one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from numpy.typing import NDArray

from perphedge.errors import DataError

__all__ = [
    "ESTIMATORS",
    "FitResult",
    "WalkForward",
    "downside_beta",
    "ewma_ratios",
    "hedge_effectiveness",
    "inverse_usd_returns",
    "multi_factor",
    "non_overlapping",
    "ols",
    "stress_beta",
    "tracking_error",
    "walk_forward",
]

Array = NDArray[np.float64]


def _clean(*arrays: Array, min_obs: int = 3) -> tuple[Array, ...]:
    out = tuple(np.asarray(a, dtype=np.float64) for a in arrays)
    n = len(out[0])
    if any(len(a) != n for a in out):
        raise DataError(f"return series differ in length: {[len(a) for a in out]}")
    if n < min_obs:
        raise DataError(f"too few observations: {n} (need at least {min_obs})")
    if any(not np.isfinite(a).all() for a in out):
        raise DataError("return series contain NaN or infinite values: align and drop missing days first")
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class FitResult:
    """OLS of ``s`` on ``f``: ``s = alpha + beta·f + e``."""

    alpha: float
    beta: float
    correlation: float
    r2: float
    n: int

    @property
    def hedge_effectiveness(self) -> float:
        """In-sample HE of the minimum-variance ratio (= ρ²)."""
        return self.r2


def ols(s: Array, f: Array) -> FitResult:
    """Slope, intercept, correlation and R² of ``s`` on ``f`` (the minimum-variance ratio is the slope)."""
    s, f = _clean(s, f)
    fm, sm = f.mean(), s.mean()
    df, ds = f - fm, s - sm
    vf = float(df @ df)
    vs = float(ds @ ds)
    if vf <= 0:
        raise DataError("the hedge instrument's returns have zero variance")
    cov = float(df @ ds)
    beta = cov / vf
    corr = cov / math.sqrt(vf * vs) if vs > 0 else 0.0
    return FitResult(alpha=float(sm - beta * fm), beta=beta, correlation=corr, r2=corr * corr, n=len(s))


def hedge_effectiveness(s: Array, f: Array, h: float | Array) -> float:
    """``1 − Var(s − h·f)/Var(s)``; ``h`` a scalar or one ratio per observation."""
    s, f = _clean(s, f, min_obs=2)
    hedged = s - np.asarray(h, dtype=np.float64) * f
    vs = float(np.var(s))
    if vs <= 0:
        raise DataError("the spot returns have zero variance")
    return 1.0 - float(np.var(hedged)) / vs


def tracking_error(s: Array, f: Array, h: float | Array, periods_per_year: float = 365.0) -> float:
    """Annualised standard deviation of the hedged returns ``s − h·f``."""
    s, f = _clean(s, f, min_obs=2)
    return float(np.std(s - np.asarray(h, dtype=np.float64) * f, ddof=1) * math.sqrt(periods_per_year))


def downside_beta(s: Array, f: Array) -> FitResult:
    """OLS on the days the hedge instrument fell (``f < 0``)."""
    s, f = _clean(s, f)
    mask = f < 0
    return ols(s[mask], f[mask])


def stress_beta(s: Array, f: Array, k: float = 2.0) -> FitResult:
    """OLS on the days the hedge instrument fell more than ``k`` standard deviations below its mean."""
    s, f = _clean(s, f)
    mask = f < f.mean() - k * f.std()
    if mask.sum() < 3:
        mask = f <= np.quantile(f, 0.05)  # fewer than three such days: the worst 5% instead
    return ols(s[mask], f[mask])


def multi_factor(s: Array, factors: Array, nonneg: bool = False) -> tuple[Array, float]:
    """Least-squares weights of ``s`` on several factor return columns (with intercept), and R².

    ``nonneg=True`` searches every subset of factors and keeps the best fit whose weights are
    all >= 0 (exact non-negative least squares for the few factors used here).
    """
    s = np.asarray(s, dtype=np.float64)
    x = np.asarray(factors, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    _clean(s, *x.T)
    k = x.shape[1]
    total = float(((s - s.mean()) ** 2).sum())

    def fit(cols: tuple[int, ...]) -> tuple[Array, float]:
        w = np.zeros(k)
        if cols:
            design = np.column_stack([np.ones(len(s)), x[:, cols]])
            coef, *_ = np.linalg.lstsq(design, s, rcond=None)
            w[list(cols)] = coef[1:]
            resid = s - design @ coef
        else:
            resid = s - s.mean()
        r2 = 1.0 - float(resid @ resid) / total if total > 0 else 0.0
        return w, r2

    best = fit(tuple(range(k)))
    if not nonneg or (best[0] >= 0).all():
        return best
    candidates = []
    for size in range(k - 1, -1, -1):
        for cols in combinations(range(k), size):
            w, r2 = fit(cols)
            if (w >= 0).all():
                candidates.append((r2, w))
    r2, w = max(candidates, key=lambda c: c[0])
    return w, r2


def ewma_ratios(s: Array, f: Array, lam: float = 0.94, warmup: int = 20) -> Array:
    """RiskMetrics EWMA hedge ratio known at the end of each day: ``Cov_λ(s, f)/Var_λ(f)``.

    Element ``t`` uses returns ``0..t`` only (zero-mean EWMA, as RiskMetrics); the first ``warmup``
    values are NaN.
    """
    s, f = _clean(s, f)
    if not 0 < lam < 1:
        raise DataError(f"invalid EWMA lambda: must be in (0, 1), was {lam}")
    out = np.full(len(s), np.nan)
    cov = float(s[0] * f[0])
    var = float(f[0] * f[0])
    for t in range(1, len(s)):
        cov = lam * cov + (1 - lam) * s[t] * f[t]
        var = lam * var + (1 - lam) * f[t] * f[t]
        if t >= warmup and var > 0:
            out[t] = cov / var
    return out


def inverse_usd_returns(spot: Array, perp: Array) -> Array:
    """USD return per unit notional of an inverse perpetual, ``S₁·(1/F₀ − 1/F₁)``, from price levels."""
    spot = np.asarray(spot, dtype=np.float64)
    perp = np.asarray(perp, dtype=np.float64)
    if spot.shape != perp.shape or len(spot) < 2:
        raise DataError("spot and perpetual price series must have the same length (>= 2)")
    if (spot <= 0).any() or (perp <= 0).any():
        raise DataError("prices must be > 0")
    return spot[1:] * (1.0 / perp[:-1] - 1.0 / perp[1:])


def non_overlapping(log_returns: Array, horizon: int) -> Array:
    """Sum log returns over consecutive non-overlapping blocks of ``horizon`` observations."""
    r = np.asarray(log_returns, dtype=np.float64)
    n = (len(r) // horizon) * horizon
    if n == 0:
        raise DataError(f"fewer than {horizon} observations for a {horizon}-period horizon")
    return np.asarray(r[:n].reshape(-1, horizon).sum(axis=1), dtype=np.float64)


# ----------------------------------------------------------------------------------------------- walk-forward

#: A downside or stress ratio needs this many such days in its window, else the plain ratio is used.
MIN_REGIME_OBS = 10

#: Estimators evaluated out of sample. ``rolling_ols`` (trailing window), ``expanding_ols`` (all
#: history so far), ``ewma`` (RiskMetrics λ = 0.94 over all history so far), ``downside`` and
#: ``stress`` (betas of down / stress days in the trailing window), ``naive`` (ratio 1).
ESTIMATORS: tuple[str, ...] = ("rolling_ols", "expanding_ols", "ewma", "downside", "stress", "naive")


@dataclass(frozen=True, slots=True, kw_only=True)
class WalkForward:
    """Out-of-sample result of one estimator: every ratio was estimated only from earlier data."""

    estimator: str
    hedge_effectiveness: float
    tracking_error: float
    mean_ratio: float
    n_oos: int
    ratios: Array  # ratio applied to each scored observation
    first_scored: int  # index of the first scored observation


def _masked_ratio(ws: Array, wf: Array, mask: Array, min_obs: int = 3) -> Array:
    """Row-wise OLS slope of ``ws`` on ``wf`` over the entries where ``mask`` is true (NaN below ``min_obs``)."""
    m = mask.astype(np.float64)
    cnt = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mf = (m * wf).sum(axis=1) / cnt
        ms = (m * ws).sum(axis=1) / cnt
        cov = (m * (wf - mf[:, None]) * (ws - ms[:, None])).sum(axis=1)
        var = (m * (wf - mf[:, None]) ** 2).sum(axis=1)
        out = np.where((cnt >= min_obs) & (var > 0), cov / var, np.nan)
    return np.asarray(out, dtype=np.float64)


def _window_ratios(s: Array, f: Array, estimator: str, window: int, lam: float, k: float) -> Array:
    """Ratio known at the start of each observation ``t`` (from ``[t − window, t)`` or all of ``[0, t)``)."""
    from numpy.lib.stride_tricks import sliding_window_view

    n = len(s)
    out = np.full(n, np.nan)
    if estimator == "naive":
        out[window:] = 1.0
        return out
    if estimator == "ewma":
        known = ewma_ratios(s, f, lam=lam, warmup=min(window, 20))
        out[window:] = known[window - 1 : n - 1]  # known at the end of day t - 1
        return out
    if estimator == "expanding_ols":
        cs, cf = np.cumsum(s), np.cumsum(f)
        csf, cff = np.cumsum(s * f), np.cumsum(f * f)
        t = np.arange(window, n)
        cnt = t.astype(np.float64)
        sf, ss, ff, sff = cf[t - 1], cs[t - 1], csf[t - 1], cff[t - 1]
        cov = ff - sf * ss / cnt
        var = sff - sf * sf / cnt
        with np.errstate(invalid="ignore", divide="ignore"):
            out[window:] = np.where(var > 0, cov / var, np.nan)
        return out
    ws = sliding_window_view(s, window)[:-1]  # row j: observations [j, j + window) → ratio for t = j + window
    wf = sliding_window_view(f, window)[:-1]
    if estimator == "rolling_ols":
        mask = np.ones_like(wf, dtype=bool)
    elif estimator == "downside":
        mask = wf < 0
    elif estimator == "stress":
        mask = wf < (wf.mean(axis=1) - k * wf.std(axis=1))[:, None]
    else:
        raise DataError(f"unknown estimator {estimator!r}; use one of {', '.join(ESTIMATORS)}")
    ratios = _masked_ratio(ws, wf, mask, min_obs=3 if estimator == "rolling_ols" else MIN_REGIME_OBS)
    if estimator in ("downside", "stress"):  # too few such days in the window: the plain rolling ratio
        fallback = _masked_ratio(ws, wf, np.ones_like(wf, dtype=bool))
        ratios = np.where(np.isfinite(ratios), ratios, fallback)
    out[window:] = ratios
    return out


def walk_forward(
    s: Array,
    f: Array,
    estimator: str,
    window: int,
    step: int = 1,
    lam: float = 0.94,
    periods_per_year: float = 365.0,
    k: float = 2.0,
) -> WalkForward:
    """Estimate on observations ``[t − window, t)``, apply to ``[t, t + step)``, roll; score all applied days.

    The ratio applied at observation ``t`` never depends on observation ``t`` or later (the
    expanding and EWMA estimators use all of ``[0, t)``).
    """
    s, f = _clean(s, f)
    n = len(s)
    if window < 10 or window >= n:
        raise DataError(f"walk-forward needs 10 <= window < observations ({n}), was {window}")
    if step < 1:
        raise DataError(f"invalid step {step}")
    if estimator not in ESTIMATORS:
        raise DataError(f"unknown estimator {estimator!r}; use one of {', '.join(ESTIMATORS)}")
    known = _window_ratios(s, f, estimator, window, lam, k)
    ratios = np.full(n, np.nan)
    for t in range(window, n, step):  # re-estimate every `step` observations, hold in between
        ratios[t : t + step] = known[t]
    scored = np.isfinite(ratios)
    if scored.sum() < 3:
        raise DataError(f"walk-forward of {estimator}: fewer than 3 scored observations")
    so, fo, ho = s[scored], f[scored], ratios[scored]
    return WalkForward(
        estimator=estimator,
        hedge_effectiveness=hedge_effectiveness(so, fo, ho),
        tracking_error=tracking_error(so, fo, ho, periods_per_year),
        mean_ratio=float(ho.mean()),
        n_oos=int(scored.sum()),
        ratios=ratios,
        first_scored=int(np.argmax(scored)),
    )
