"""Stress maths: first-passage probabilities, Monte Carlo paths with intraday highs, liquidation odds.

Monte Carlo simulates joint daily paths of every asset and, per path, keeps only what the
stress report needs: each asset's terminal price ratio, each hedge underlying's running maximum
of the intraday high (liquidation of a short), of the close, its largest one-day jump from the
previous close, and its largest intraday high over the highest close before it (liquidation
despite daily margin top-ups: a top-up only adds margin, so a short's liquidation price with
top-ups is the running maximum of the initial one and close × (1 + d), d the initial distance;
the path is liquidated iff some high / max(1, highest close before it) reaches 1 + d). Three
models: stationary block bootstrap of historical daily log returns (highs from the same historical
days), GBM, and Student-t returns (ν = 4, scaled to the same volatility); for the parametric
models the intraday high is drawn from the exact distribution of a Brownian bridge's maximum.
Memory is bounded: paths are produced in chunks and reduced on the fly. Kernels have plain twins (``*_python``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from perphedge.errors import ConfigError

__all__ = [
    "BGK_BETA",
    "MODELS",
    "bgk_upper_hit_probability",
    "memory_estimate",
    "normal_cdf",
    "simulate",
    "simulate_numpy",
]

try:  # numba's prange is plain range outside compiled code
    from numba import prange
except ImportError:  # pragma: no cover - numba is a locked dependency
    prange = range  # type: ignore[misc]

Array = NDArray[np.float64]
MODELS = ("bootstrap", "gbm", "student_t")
#: Broadie–Glasserman–Kou continuity correction: ζ(1/2)/√(2π).
BGK_BETA = 0.5825971579390106


def normal_cdf(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def bgk_upper_hit_probability(
    sigma: float, drift: float, horizon_days: float, barrier_ratio: float, monitoring_days: float | None = 1.0
) -> float:
    """P(a GBM starting at 1 reaches ``barrier_ratio`` (> 1) within the horizon).

    ``sigma`` and ``drift`` are annualised (365 days; drift of the price, μ). With
    ``monitoring_days`` the barrier is checked once per that many days, using the
    Broadie–Glasserman–Kou correction (barrier × exp(β·σ·√Δt)); ``None`` means continuous.
    """
    if barrier_ratio <= 1.0:
        return 1.0
    t = horizon_days / 365.0
    if sigma <= 0 or t <= 0:
        return 0.0
    b = barrier_ratio
    if monitoring_days is not None:
        b *= math.exp(BGK_BETA * sigma * math.sqrt(monitoring_days / 365.0))
    h = math.log(b)
    nu = drift - 0.5 * sigma * sigma
    s = sigma * math.sqrt(t)
    return normal_cdf((-h + nu * t) / s) + math.exp(2.0 * nu * h / (sigma * sigma)) * normal_cdf((-h - nu * t) / s)


# ----------------------------------------------------------------------------------------------- kernels


def _sim_bootstrap_python(
    returns: Array,
    highs: Array,
    starts: Array,
    lengths: Array,
    watch: Array,
    horizon: int,
    terminal: Array,
    max_high: Array,
    max_jump: Array,
    max_close: Array,
    max_over_peak: Array,
) -> None:
    """Stationary block bootstrap; ``starts``/``lengths`` (per path, per block) pick historical days."""
    n_paths = terminal.shape[0]
    n_assets = returns.shape[1]
    n_hist = returns.shape[0]
    n_watch = watch.shape[0]
    for p in prange(n_paths):
        logp = np.zeros(n_assets)
        mh = np.zeros(n_watch)
        mj = np.zeros(n_watch)
        mc = np.zeros(n_watch)
        mp = np.zeros(n_watch)
        day = 0
        b = 0
        while day < horizon:
            start = int(starts[p, b])
            length = int(lengths[p, b])
            b += 1
            for k in range(length):
                if day >= horizon:
                    break
                src = (start + k) % n_hist
                for w in range(n_watch):
                    a = int(watch[w])
                    hi = logp[a] + highs[src, w]
                    mh[w] = max(mh[w], hi)
                    mj[w] = max(mj[w], highs[src, w])
                    mp[w] = max(mp[w], hi - mc[w])  # mc: highest close so far (the start included)
                for a in range(n_assets):
                    logp[a] += returns[src, a]
                for w in range(n_watch):
                    mc[w] = max(mc[w], logp[int(watch[w])])
                day += 1
        for a in range(n_assets):
            terminal[p, a] = math.exp(logp[a])
        for w in range(n_watch):
            max_high[p, w] = math.exp(mh[w])
            max_jump[p, w] = math.exp(mj[w])
            max_close[p, w] = math.exp(mc[w])
            max_over_peak[p, w] = math.exp(mp[w])


def _sim_parametric_python(
    chol: Array,
    mu_daily: Array,
    sd_daily: Array,
    shocks: Array,
    uniforms: Array,
    scale: Array,
    watch: Array,
    terminal: Array,
    max_high: Array,
    max_jump: Array,
    max_close: Array,
    max_over_peak: Array,
) -> None:
    """Correlated normal (or Student-t via per-day ``scale``) log returns; intraday high from the Brownian-bridge
    maximum ``(r + sqrt(r² − 2σ²·ln U))/2``."""
    n_paths, horizon, n_assets = shocks.shape
    n_watch = watch.shape[0]
    for p in prange(n_paths):
        logp = np.zeros(n_assets)
        mh = np.zeros(n_watch)
        mj = np.zeros(n_watch)
        mc = np.zeros(n_watch)
        mp = np.zeros(n_watch)
        r = np.zeros(n_assets)
        for t in range(horizon):
            for a in range(n_assets):
                z = 0.0
                for j in range(a + 1):
                    z += chol[a, j] * shocks[p, t, j]
                r[a] = mu_daily[a] + sd_daily[a] * z * scale[p, t]
            for w in range(n_watch):
                a = int(watch[w])
                s = sd_daily[a] * scale[p, t]
                u = uniforms[p, t, w]
                jump = 0.5 * (r[a] + math.sqrt(r[a] * r[a] - 2.0 * s * s * math.log(u)))
                hi = logp[a] + jump
                mh[w] = max(mh[w], hi)
                mj[w] = max(mj[w], jump)
                mp[w] = max(mp[w], hi - mc[w])  # mc: highest close so far (the start included)
            for a in range(n_assets):
                logp[a] += r[a]
            for w in range(n_watch):
                mc[w] = max(mc[w], logp[int(watch[w])])
        for a in range(n_assets):
            terminal[p, a] = math.exp(logp[a])
        for w in range(n_watch):
            max_high[p, w] = math.exp(mh[w])
            max_jump[p, w] = math.exp(mj[w])
            max_close[p, w] = math.exp(mc[w])
            max_over_peak[p, w] = math.exp(mp[w])


def _jit(fn: Callable[..., Any], parallel: bool = False) -> Callable[..., Any]:
    if os.environ.get("PERPHEDGE_DISABLE_NUMBA") == "1":
        return fn
    import numba

    return numba.njit(cache=True, parallel=parallel)(fn)


_sim_bootstrap = _jit(_sim_bootstrap_python, parallel=True)
_sim_parametric = _jit(_sim_parametric_python, parallel=True)


def memory_estimate(*, model: str, paths: int, horizon: int, n_assets: int, n_watch: int, chunk: int = 20_000) -> int:
    """Peak bytes :func:`simulate` allocates: its outputs plus one chunk's random draws (float64)."""
    n = min(paths, chunk)
    outputs = paths * (n_assets + 4 * n_watch)
    if model == "bootstrap":
        draws = 2 * n * horizon  # block starts and lengths
    else:
        draws = n * horizon * (n_assets + n_watch + 3)  # shocks, uniforms, chi-square and scale
    return 8 * (outputs + draws)


def _cholesky(corr: Array) -> Array:
    """Lower Cholesky factor of a correlation matrix, also of a singular one (|ρ| = 1, a duplicated asset):
    a zero pivot gets a zero column (exact for a positive semi-definite matrix)."""
    try:
        return np.asarray(np.linalg.cholesky(corr), dtype=np.float64)
    except np.linalg.LinAlgError:
        pass
    n = len(corr)
    low = np.zeros((n, n))
    for j in range(n):
        d = float(corr[j, j] - low[j, :j] @ low[j, :j])
        if d < -1e-9:
            raise ConfigError("the correlation matrix is not positive semi-definite")
        low[j, j] = math.sqrt(max(d, 0.0))
        for i in range(j + 1, n):
            rest = float(corr[i, j] - low[i, :j] @ low[j, :j])
            if low[j, j] > 1e-9:
                low[i, j] = rest / low[j, j]
            elif abs(rest) > 1e-7:
                raise ConfigError("the correlation matrix is not positive semi-definite")
    return low


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def simulate(
    *,
    model: str,
    paths: int,
    horizon: int,
    watch: list[int],
    seed: int | np.random.Generator | None,
    returns: Array | None = None,
    highs: Array | None = None,
    block: float = 10.0,
    mu_annual: Array | None = None,
    sigma_annual: Array | None = None,
    corr: Array | None = None,
    dof: float = 4.0,
    chunk: int = 20_000,
    plain: bool = False,
    workers: int = 1,
) -> dict[str, Array]:
    """Simulate ``paths`` joint paths of ``horizon`` days.

    Bootstrap needs ``returns`` (history × assets, daily log returns) and ``highs`` (history × watched, the log of
    each day's high over the previous close). GBM and Student-t need ``mu_annual``, ``sigma_annual`` and ``corr``.
    ``watch`` lists the asset columns whose highs matter (hedge underlyings). Returns ``terminal`` (paths × assets,
    price ratios), ``max_high`` (intraday), ``max_close`` (daily closes) and ``max_jump`` (largest high over the
    previous close) and ``max_over_peak`` (largest intraday high over the highest close before it, the start
    counting as a close of 1: a short topped up at every close to its initial distance d, never withdrawing margin,
    is liquidated iff this reaches 1 + d), paths × watched, ratios ≥ 1.
    """
    if model not in MODELS:
        raise ConfigError(f"invalid `--model`: must be one of {', '.join(MODELS)}, was {model!r}")
    if paths < 1 or horizon < 1:
        raise ConfigError(f"invalid Monte Carlo size: paths and horizon must be >= 1, were {paths}, {horizon}")
    rng = np.random.default_rng(seed)
    w_arr = np.asarray(watch, dtype=np.float64)
    if model == "bootstrap":
        if returns is None or highs is None or len(returns) < 30:
            raise ConfigError("the bootstrap model needs at least 30 days of joint history in the store")
        n_assets = returns.shape[1]
    else:
        if mu_annual is None or sigma_annual is None or corr is None:
            raise ConfigError(f"the {model} model needs drifts, volatilities and correlations")
        n_assets = len(sigma_annual)
    terminal = np.empty((paths, n_assets))
    max_high = np.empty((paths, len(watch)))
    max_jump = np.empty((paths, len(watch)))
    max_close = np.empty((paths, len(watch)))
    max_over_peak = np.empty((paths, len(watch)))
    for lo, hi in _chunks(paths, chunk):
        n = hi - lo
        sub_seed = rng.integers(0, 2**63 - 1)
        sub = np.random.default_rng(sub_seed)
        t_out, mh_out, mj_out, mc_out = terminal[lo:hi], max_high[lo:hi], max_jump[lo:hi], max_close[lo:hi]
        mp_out = max_over_peak[lo:hi]
        if model == "bootstrap":
            assert returns is not None and highs is not None
            max_blocks = horizon  # at least one day per block
            lengths = np.minimum(sub.geometric(1.0 / block, size=(n, max_blocks)), horizon).astype(np.float64)
            starts = sub.integers(0, len(returns), size=(n, max_blocks)).astype(np.float64)
            fn = _sim_bootstrap_python if plain else _sim_bootstrap
            fn(
                np.ascontiguousarray(returns),
                np.ascontiguousarray(highs),
                starts,
                lengths,
                w_arr,
                horizon,
                t_out,
                mh_out,
                mj_out,
                mc_out,
                mp_out,
            )
        else:
            assert mu_annual is not None and sigma_annual is not None and corr is not None
            sd = np.asarray(sigma_annual, dtype=np.float64) / math.sqrt(365.0)
            mu = (np.asarray(mu_annual, dtype=np.float64) - 0.5 * np.asarray(sigma_annual) ** 2) / 365.0
            chol = _cholesky(np.asarray(corr, dtype=np.float64))
            shocks = sub.standard_normal((n, horizon, n_assets))
            uniforms = sub.random((n, horizon, len(watch)))
            uniforms = np.maximum(uniforms, 1e-300)
            if model == "student_t":
                chi = sub.chisquare(dof, size=(n, horizon))
                scale = np.sqrt(dof / chi) * math.sqrt((dof - 2.0) / dof)  # unit variance, fat tails
            else:
                scale = np.ones((n, horizon))
            fn = _sim_parametric_python if plain else _sim_parametric
            fn(chol, mu, sd, shocks, uniforms, scale, w_arr, t_out, mh_out, mj_out, mc_out, mp_out)
    return {
        "terminal": terminal,
        "max_high": max_high,
        "max_jump": max_jump,
        "max_close": max_close,
        "max_over_peak": max_over_peak,
    }


def simulate_numpy(
    *,
    paths: int,
    horizon: int,
    watch: list[int],
    seed: int,
    returns: Array,
    highs: Array,
    block: float = 10.0,
    chunk: int = 2_000,
) -> dict[str, Array]:
    """The same block bootstrap written the plain vectorised-numpy way (benchmark baseline)."""
    rng = np.random.default_rng(seed)
    n_hist, n_assets = returns.shape
    terminal = np.empty((paths, n_assets))
    max_high = np.empty((paths, len(watch)))
    max_jump = np.empty((paths, len(watch)))
    for lo, hi in _chunks(paths, chunk):
        n = hi - lo
        idx = np.empty((n, horizon), dtype=np.int64)
        for p in range(n):
            row: list[int] = []
            while len(row) < horizon:
                length = min(int(rng.geometric(1.0 / block)), horizon)
                start = int(rng.integers(0, n_hist))
                row.extend((start + np.arange(length)) % n_hist)
            idx[p] = row[:horizon]
        r = returns[idx]  # n × horizon × assets
        logp = np.cumsum(r, axis=1)
        terminal[lo:hi] = np.exp(logp[:, -1, :])
        prev = np.concatenate([np.zeros((n, 1, n_assets)), logp[:, :-1, :]], axis=1)
        h = highs[idx]  # n × horizon × watched
        path_high = prev[:, :, watch] + h
        max_high[lo:hi] = np.exp(np.maximum(path_high.max(axis=1), 0.0))
        max_jump[lo:hi] = np.exp(np.maximum(h.max(axis=1), 0.0))
    return {"terminal": terminal, "max_high": max_high, "max_jump": max_jump}
