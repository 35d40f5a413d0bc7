"""Monte Carlo of a hedge plan: PnL distributions, liquidation odds per leg and leverage, the leverage to use.

Used by ``perphedge stress`` and ``perphedge plan --leverage auto``. The simulation itself is
:func:`perphedge.core.stress.simulate`; this module turns its price paths into the plan's PnL.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from perphedge.core.hedge import CollateralSource, HedgeLeg, HedgePlan, plan_hedge
from perphedge.core.stress import MODELS, simulate
from perphedge.errors import ConfigError, DataError, PerphedgeError

if TYPE_CHECKING:
    from perphedge.data.store import MarketStore
    from perphedge.usecases.engine import Engine

__all__ = [
    "LEVERAGE_GRID",
    "default_max_memory",
    "format_bytes",
    "leverage_candidates",
    "memory_needed",
    "monte_carlo",
    "parse_bytes",
    "recommend",
    "run_chunks",
]

LEVERAGE_GRID = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 25.0, 50.0)


_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str, what: str = "--max-memory") -> int:
    """``4GB`` / ``512MB`` / ``1.5GiB`` / ``1000000`` → bytes (> 0)."""
    import re

    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise ConfigError(f"invalid `{what}`: {text!r} is not an amount of memory such as 4GB or 512MB")
    value = int(float(m.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ConfigError(f"invalid `{what}`: must be > 0, was {text!r}")
    return value


def format_bytes(n: float) -> str:
    """Bytes in the largest decimal unit that keeps the number >= 1 (``1.6 GB``)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def default_max_memory() -> int:
    """Half the machine's physical memory (bytes); 4 GB when the system does not say."""
    import os

    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 4 * 10**9
    return int(total // 2) if total > 0 else 4 * 10**9


def _leg_lp_ratio(leg: HedgeLeg) -> float:
    lp = leg.liquidation_price
    return math.inf if lp is None else lp / leg.entry_price


def _with_leverage(plan: HedgePlan, lev: float) -> HedgePlan:
    return plan_hedge(plan.portfolio, replace(plan.request, leverage=lev))


def leverage_candidates(plan: HedgePlan, requested: list[float] | None = None) -> list[float]:
    """Leverages to test: the requested ones, else a grid up to every leg's maximum (above 1 for bought inverse)."""
    max_lev = min(leg.instrument.max_leverage for leg in plan.legs) if plan.legs else 1.0
    needs_above_one = any(
        leg.instrument.is_inverse and leg.collateral_source is CollateralSource.BUY for leg in plan.legs
    )
    grid = requested or list(LEVERAGE_GRID)
    out = [x for x in grid if x <= max_lev and (x > 1.0 or not needs_above_one)]
    return sorted(set(out))


def _history(store: MarketStore, assets: list[str], watch: list[str], years: float = 4.0) -> dict[str, Any]:
    from perphedge.data.reader import ohlc

    frames = ohlc(store, assets, fields=("high", "close"))
    close = frames["close"].dropna()
    if len(close) < 60:
        raise DataError(f"fewer than 60 days of joint history for {', '.join(assets)} in the store")
    close = close.iloc[-int(years * 365) - 1 :]
    high = frames["high"].reindex(close.index)
    logr = np.log(close / close.shift(1)).iloc[1:]
    highs = np.log(high[watch] / close[watch].shift(1)).iloc[1:].clip(lower=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(logr.to_numpy(), rowvar=False).reshape(len(assets), len(assets))
    undefined = ~np.isfinite(corr)  # an asset whose price never moved: no correlation (simulated as 0)
    corr = np.where(undefined, 0.0, corr)
    np.fill_diagonal(corr, 1.0)
    return {
        "returns": logr.to_numpy(),
        "highs": highs.to_numpy(),
        "first": str(logr.index[0].date()),
        "last": str(logr.index[-1].date()),
        "sigma": logr.std().to_numpy() * math.sqrt(365),
        "mu": logr.mean().to_numpy() * 365 + 0.5 * (logr.std().to_numpy() * math.sqrt(365)) ** 2,
        "corr": corr,
        "corr_undefined": undefined,
    }


def _leg_outcomes(
    leg: HedgeLeg,
    ratio: np.ndarray,
    max_high: np.ndarray,
    max_over_peak: np.ndarray,
    max_close: np.ndarray,
    horizon: int,
) -> dict[str, np.ndarray]:
    """USD PnL of one short leg per path (liquidated: its margin is lost), with and without daily top-ups.

    Top-ups only add margin: at each close the liquidation price is raised to close × LP/entry if that is
    higher, never lowered, so a path is liquidated with top-ups iff some intraday high over the highest
    close before it reaches LP/entry (``max_over_peak``), which implies it is liquidated without.
    The margin the top-ups add over the horizon (zero maintenance margin, so first order), with k = LP/entry and
    M = highest close / entry: a linear short needs q·k·(M·E − E) = notional·k·(M − 1) USD; an inverse short
    needs Q/k·(1/E − 1/(M·E)) coin, notional/k·(M − 1) USD at the highest close. Never negative (M ≥ 1).
    """
    lp = _leg_lp_ratio(leg)
    liq = max_high >= lp
    liq_topped = max_over_peak >= lp
    n = leg.notional_usd
    m_usd = leg.collateral_usd
    funding = leg.funding_usd_per_day * horizon
    if leg.instrument.is_inverse and leg.collateral_source is CollateralSource.BUY:
        alive = leg.collateral_amount * leg.entry_price * (ratio - 1) + n * (1 - ratio)
        dead = -m_usd * np.ones_like(ratio)
    elif leg.instrument.is_inverse:
        alive = n * (1 - ratio)
        dead = -m_usd * ratio  # the coins posted from the holdings are gone
    else:
        alive = -n * (ratio - 1)
        dead = -m_usd * np.ones_like(ratio)
    pnl = np.where(liq, dead, alive + funding)
    if not math.isfinite(lp):  # no liquidation price: nothing to top up
        added = np.zeros_like(ratio)
    else:
        added = n * (1.0 / lp if leg.instrument.is_inverse else lp) * (max_close - 1.0)
    return {"pnl": pnl, "liquidated": liq, "liquidated_with_top_up": liq_topped, "top_up_added_usd": added}


def _risk(pnl: np.ndarray) -> dict[str, float]:
    q5 = float(np.quantile(pnl, 0.05))
    return {
        "mean_usd": float(pnl.mean()),
        "p5_usd": q5,
        "p50_usd": float(np.median(pnl)),
        "p95_usd": float(np.quantile(pnl, 0.95)),
        "var_95_usd": -q5,
        "es_95_usd": -float(pnl[pnl <= q5].mean()),
    }


def _assumptions(
    *,
    model: str,
    assets: list[str],
    proxy: str,
    hist: dict[str, Any] | None,
    sigma: float | None,
    drift: float | None,
    correlation: float | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Volatilities, drifts and correlations the simulation uses, and where each came from (never a silent default).

    A parametric model without stored history needs ``sigma`` and, for more than one asset, ``correlation``.
    """
    n = len(assets)
    window = f"store {hist['first']} → {hist['last']}" if hist is not None else "no stored history"
    if hist is None and model != "bootstrap":
        missing = []
        if sigma is None:
            missing.append("--sigma (annual volatility, e.g. 0.6)")
        if correlation is None and n > 1:
            missing.append(f"--correlation (between {', '.join(assets)}, e.g. 0.7)")
        if missing:
            raise ConfigError(
                f"the {model} model has no stored history to estimate from: give {' and '.join(missing)}, "
                "or import history (`perphedge data import`)"
            )
    if sigma is not None:
        if hist is not None and proxy in assets and hist["sigma"][assets.index(proxy)] > 0:
            sig = hist["sigma"] * (sigma / hist["sigma"][assets.index(proxy)])
            sig_src = f"--sigma {sigma:g} for {proxy}; other assets keep their volatility ratio to {proxy} ({window})"
        else:
            sig = np.full(n, sigma)
            sig_src = f"--sigma {sigma:g} for every asset"
    else:
        assert hist is not None
        sig = hist["sigma"].copy()
        sig_src = window
    if drift is not None:
        mu = np.full(n, drift)
        mu_src = f"--drift {drift:g} for every asset"
    elif hist is not None:
        mu = hist["mu"].copy()
        mu_src = f"historical mean ({window})"
    else:
        mu = np.zeros(n)
        mu_src = "0 (no --drift and no stored history)"
    if correlation is not None:
        corr = np.full((n, n), correlation)
        np.fill_diagonal(corr, 1.0)
        corr_src = f"--correlation {correlation:g} between every pair"
    elif hist is not None:
        corr = hist["corr"]
        corr_src = window
        if hist["corr_undefined"].any():
            corr_src += "; null: undefined (an asset with zero variance), simulated as 0"
    else:
        corr = np.eye(n)
        corr_src = "single asset"
    if n > 1 and np.linalg.eigvalsh(corr).min() < -1e-10:
        lowest = -1.0 / (n - 1)
        raise ConfigError(
            f"invalid `--correlation`: {correlation:g} between every pair of {n} assets is not a valid correlation "
            f"matrix (not positive semi-definite); it must be >= {lowest:.3f}"
        )
    if model == "bootstrap":
        sig_src = mu_src = corr_src = f"resampled history ({window}); figures shown are its estimates"
    doc = {
        "model": model,
        "volatility_annual": dict(zip(assets, map(float, sig), strict=True)),
        "volatility_source": sig_src,
        "drift_annual": dict(zip(assets, map(float, mu), strict=True)),
        "drift_source": mu_src,
        "correlation": {
            f"{a}/{b}": None if hist is not None and correlation is None and hist["corr_undefined"][i, j] else float(c)
            for i, a in enumerate(assets)
            for j, b in enumerate(assets)
            if i < j and math.isfinite(c := corr[i, j])
        },
        "correlation_source": corr_src,
        "history": {"first": hist["first"], "last": hist["last"]} if hist is not None else None,
    }
    return sig, mu, corr, doc


# ------------------------------------------------------------------ chunked simulation and mergeable summaries
#
# The paths are simulated in chunks of a fixed size (a function of the model, horizon and asset count only, never
# of the number of workers), chunk ``i`` seeded with ``SeedSequence(seed).spawn(n_chunks)[i]``. Each chunk is
# reduced where it was simulated to a summary that merges exactly and in any order:
#   * counts (liquidated paths per leg and leverage, with and without top-ups): integers;
#   * means (PnL, highest close): per-chunk float sums, added with ``math.fsum`` (correctly rounded, so the total
#     does not depend on the order in which chunks arrive);
#   * quantiles (5%, median, 95%, VaR, ES, the top-up reserve): fixed-bin histograms (integer counts). PnL bins are
#     logarithmic in |USD| with relative width ``USD_BIN`` (a quantile is reported at its bin's geometric middle:
#     within ±0.025 % of the exact sample quantile; |PnL| < 1 cent is 0); price-ratio bins (highest high and close
#     over the entry, >= 1) have relative width ``RATIO_BIN`` (±0.0025 %).
# Only summaries travel between workers and the caller, memory is bounded by one chunk plus the histograms
# whatever the path count, and the reported numbers are identical with 1, 2 or N workers for the same seed.

USD_BIN = 5e-4
USD_FLOOR = 1e-2
USD_MAX_K = math.ceil(math.log(1e17) / USD_BIN)  # up to 1e15 USD (larger values share the last bin)
RATIO_BIN = 5e-5
RATIO_MAX_K = math.ceil(math.log(1e3) / RATIO_BIN)  # up to 1000× the entry price
_USD_BINS = 2 * USD_MAX_K + 1
_RATIO_BINS = RATIO_MAX_K + 1
CHUNK_DRAWS = 4_000_000  # random draws per chunk (32 MB of float64)
MAX_CHUNK = 20_000


def chunk_paths(model: str, horizon: int, n_assets: int, n_watch: int) -> int:
    """Paths per chunk: bounded draws per chunk; depends on the problem only, never on the worker count."""
    per_path = 2 * horizon if model == "bootstrap" else horizon * (n_assets + n_watch + 3)
    return max(64, min(MAX_CHUNK, CHUNK_DRAWS // max(per_path, 1)))


def _usd_bins(v: np.ndarray) -> np.ndarray:
    a = np.abs(v)
    with np.errstate(divide="ignore"):
        k = np.floor(np.log(np.maximum(a, USD_FLOOR) / USD_FLOOR) / USD_BIN) + 1
    k = np.where(a < USD_FLOOR, 0, np.minimum(k, USD_MAX_K)).astype(np.int64)
    return np.where(v < 0, -k, k) + USD_MAX_K


def _usd_values(idx: np.ndarray) -> np.ndarray:
    k = idx.astype(np.float64) - USD_MAX_K
    mag = USD_FLOOR * np.exp((np.abs(k) - 0.5) * USD_BIN)
    return np.where(k == 0, 0.0, np.sign(k) * mag)


def _ratio_bins(v: np.ndarray) -> np.ndarray:
    k = np.floor(np.log(np.maximum(v, 1.0)) / RATIO_BIN) + 1
    return np.where(v <= 1.0, 0, np.minimum(k, RATIO_MAX_K)).astype(np.int64)


def _ratio_values(idx: np.ndarray) -> np.ndarray:
    k = idx.astype(np.float64)
    return np.where(k == 0, 1.0, np.exp((k - 0.5) * RATIO_BIN))


def _hist_quantile(counts: np.ndarray, q: float, values: Callable[[np.ndarray], np.ndarray]) -> float:
    """numpy's default (linear) quantile of the binned sample, each value at its bin's middle."""
    cum = np.cumsum(counts)
    n = int(cum[-1])
    h = (n - 1) * q
    lo, hi = math.floor(h), math.ceil(h)
    b = np.searchsorted(cum, np.array([lo, hi]), side="right")
    v = values(b)
    return float(v[0] + (h - lo) * (v[1] - v[0]))


def _hist_risk(counts: np.ndarray, mean: float) -> dict[str, float]:
    q5 = _hist_quantile(counts, 0.05, _usd_values)
    nz = np.nonzero(counts)[0]
    vals = _usd_values(nz)
    tail = vals <= q5
    es = -float(np.dot(vals[tail], counts[nz][tail]) / counts[nz][tail].sum())
    return {
        "mean_usd": mean,
        "p5_usd": q5,
        "p50_usd": _hist_quantile(counts, 0.5, _usd_values),
        "p95_usd": _hist_quantile(counts, 0.95, _usd_values),
        "var_95_usd": -q5,
        "es_95_usd": es,
    }


def _leg_params(leg: HedgeLeg, col: int, watch: int, horizon: int) -> tuple[Any, ...]:
    inverse_buy = leg.instrument.is_inverse and leg.collateral_source is CollateralSource.BUY
    kind = 2 if inverse_buy else (1 if leg.instrument.is_inverse else 0)
    return (
        kind,
        col,
        watch,
        _leg_lp_ratio(leg),
        leg.notional_usd,
        leg.collateral_usd,
        leg.funding_usd_per_day * horizon,
        leg.collateral_amount * leg.entry_price if inverse_buy else 0.0,
    )


def _leg_pnl(p: tuple[Any, ...], terminal: np.ndarray, max_high: np.ndarray, over_peak: np.ndarray) -> Any:
    kind, col, w, lp, n, m_usd, funding, coll_usd = p
    ratio = terminal[:, col]
    liq = max_high[:, w] >= lp
    liq_top = over_peak[:, w] >= lp
    if kind == 2:
        alive = coll_usd * (ratio - 1) + n * (1 - ratio)
        dead = -m_usd * np.ones_like(ratio)
    elif kind == 1:
        alive = n * (1 - ratio)
        dead = -m_usd * ratio
    else:
        alive = -n * (ratio - 1)
        dead = -m_usd * np.ones_like(ratio)
    return np.where(liq, dead, alive + funding), liq, liq_top


def _mc_batch(shared: dict[str, Any], batch: list[tuple[int, int, Any]]) -> dict[str, Any]:
    """Simulate the chunks of one batch and reduce them to one mergeable summary (runs on a worker)."""
    n_lev = len(shared["levels"])
    n_watch = len(shared["watch"])
    n_counts = sum(2 + 2 * len(legs) for _, legs in shared["levels"])
    counts = np.zeros(n_counts, dtype=np.int64)
    usd = np.zeros((1 + n_lev, _USD_BINS), dtype=np.int64)
    ratio = np.zeros((2 * n_watch, _RATIO_BINS), dtype=np.int64)
    sums: list[np.ndarray] = []
    n_total = 0
    for _index, n, seq in batch:
        sim = simulate(
            model=shared["model"],
            paths=n,
            horizon=shared["horizon"],
            watch=shared["watch"],
            seed=np.random.default_rng(seq),
            returns=shared["returns"],
            highs=shared["highs"],
            mu_annual=shared["mu"],
            sigma_annual=shared["sigma"],
            corr=shared["corr"],
            chunk=n,
        )
        terminal, max_high, max_close, over_peak = (
            sim["terminal"],
            sim["max_high"],
            sim["max_close"],
            sim["max_over_peak"],
        )
        spot = np.zeros(n)
        for col, value in shared["holdings"]:
            spot += value * (terminal[:, col] - 1.0)
        if not (np.isfinite(spot).all() and np.isfinite(max_high).all() and np.isfinite(max_close).all()):
            raise DataError("the Monte Carlo produced non-finite prices (check the stored history)")
        chunk_sums = [float(spot.sum())]
        usd[0] += np.bincount(_usd_bins(spot), minlength=_USD_BINS)
        c = 0
        for li, (_lev, legs) in enumerate(shared["levels"]):
            hedge = np.zeros(n)
            any_liq = np.zeros(n, dtype=bool)
            any_top = np.zeros(n, dtype=bool)
            for p in legs:
                pnl, liq, liq_top = _leg_pnl(p, terminal, max_high, over_peak)
                hedge += pnl
                any_liq |= liq
                any_top |= liq_top
                counts[c] += int(liq.sum())
                counts[c + 1] += int(liq_top.sum())
                c += 2
            counts[c] += int(any_liq.sum())
            counts[c + 1] += int(any_top.sum())
            c += 2
            net = spot + hedge
            chunk_sums.append(float(net.sum()))
            usd[1 + li] += np.bincount(_usd_bins(net), minlength=_USD_BINS)
        for w in range(n_watch):
            chunk_sums.append(float(max_close[:, w].sum()))
            ratio[w] += np.bincount(_ratio_bins(max_high[:, w]), minlength=_RATIO_BINS)
            ratio[n_watch + w] += np.bincount(_ratio_bins(max_close[:, w]), minlength=_RATIO_BINS)
        sums.append(np.array(chunk_sums))
        n_total += n
    u_idx = np.flatnonzero(usd)
    r_idx = np.flatnonzero(ratio)
    return {
        "paths": n_total,
        "counts": counts,
        "sums": sums,
        "usd": (u_idx, usd.ravel()[u_idx]),
        "ratio": (r_idx, ratio.ravel()[r_idx]),
    }


def memory_needed(
    *, model: str, paths: int, horizon: int, n_assets: int, n_watch: int, n_leverages: int, workers: int = 1
) -> int:
    """Peak bytes of one :func:`monte_carlo` run on this machine: per worker one chunk's simulation and per-path
    arrays plus its histograms, and the caller's merged histograms. Independent of ``paths`` beyond one chunk."""
    from perphedge.core.stress import memory_estimate

    chunk = min(paths, chunk_paths(model, horizon, n_assets, n_watch))
    sim = memory_estimate(model=model, paths=chunk, horizon=horizon, n_assets=n_assets, n_watch=n_watch, chunk=chunk)
    per_path = 8 * chunk * (n_leverages + 8)
    hists = 8 * ((1 + n_leverages) * _USD_BINS + 2 * n_watch * _RATIO_BINS)
    return workers * (sim + per_path + 2 * hists) + 2 * hists


def monte_carlo(
    plan: HedgePlan,
    store: MarketStore | None,
    *,
    model: str,
    paths: int,
    horizon: int,
    seed: int,
    leverages: list[float],
    sigma: float | None = None,
    drift: float | None = None,
    correlation: float | None = None,
    max_liq_prob: float = 0.01,
    max_memory: int | None = None,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """Distributions of hedged and unhedged PnL, liquidation odds per leg and leverage, expected funding.

    ``max_memory`` (bytes): refuse up front when the estimated peak memory is larger (``None``: half the RAM).
    ``engine``: where the path chunks run (``None``: this process); the numbers do not depend on it.
    """
    from perphedge.usecases.engine import InProcessEngine

    if model not in MODELS:
        raise ConfigError(f"invalid `--model`: must be one of {', '.join(MODELS)}, was {model!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"invalid `--seed`: must be a whole number >= 0, was {seed!r}")
    if isinstance(paths, bool) or not isinstance(paths, int) or paths < 1:
        raise ConfigError(f"invalid `--paths`: must be a whole number >= 1, was {paths!r}")
    engine = engine or InProcessEngine()
    pf = plan.portfolio
    held = sorted({h.asset for h in pf.holdings if not h.is_stable})
    bases = sorted({leg.instrument.base for leg in plan.legs})
    assets = sorted(set(held) | set(bases))
    idx = {a: i for i, a in enumerate(assets)}
    levels = sorted(set(leverages) | {plan.request.leverage})
    local_workers = 1 if engine.describe().get("cluster", "local") != "local" else max(1, engine.workers)
    need = memory_needed(
        model=model,
        paths=paths,
        horizon=horizon,
        n_assets=len(assets),
        n_watch=len(bases),
        n_leverages=len(levels),
        workers=local_workers,
    )
    limit = default_max_memory() if max_memory is None else max_memory
    if need > limit:
        raise ConfigError(
            f"the Monte Carlo needs about {format_bytes(need)} ({paths:,} paths × {horizon} days, {len(assets)} "
            f"assets, {len(levels)} leverages, {local_workers} worker(s) here), more than `--max-memory` "
            f"{format_bytes(limit)}: use a shorter --horizon, fewer --leverage values or --workers, "
            "or raise --max-memory"
        )
    hist: dict[str, Any] | None = None
    if store is not None:
        hist = _history(store, assets, bases)
    if model == "bootstrap" and hist is None:
        raise DataError("the bootstrap model resamples stored history: import or fetch it, or use --model gbm")
    sig, mu, corr, assumptions = _assumptions(
        model=model,
        assets=assets,
        proxy=plan.request.proxy_asset,
        hist=hist,
        sigma=sigma,
        drift=drift,
        correlation=correlation,
    )
    by_lev: dict[float, dict[str, Any]] = {}
    level_specs: list[tuple[float, list[tuple[Any, ...]]]] = []
    level_plans: dict[float, HedgePlan] = {}
    for lev in levels:
        try:
            p = _with_leverage(plan, lev)
        except PerphedgeError as exc:
            by_lev[lev] = {"error": str(exc)}
            continue
        level_plans[lev] = p
        legs = [_leg_params(leg, idx[leg.instrument.base], bases.index(leg.instrument.base), horizon) for leg in p.legs]
        level_specs.append((lev, legs))
    shared = {
        "model": model,
        "horizon": horizon,
        "watch": [idx[b] for b in bases],
        "returns": hist["returns"] if hist else None,
        "highs": hist["highs"] if hist else None,
        "mu": mu,
        "sigma": sig,
        "corr": corr,
        "holdings": [(idx[h.asset], pf.value_of(h)) for h in pf.holdings if not h.is_stable],
        "levels": level_specs,
    }
    if model == "bootstrap":  # refuse a short history here, not in every task
        assert hist is not None
        if len(hist["returns"]) < 30:
            raise ConfigError("the bootstrap model needs at least 30 days of joint history in the store")
    summary = run_chunks(shared, paths=paths, seed=seed, engine=engine, n_assets=len(assets))
    n = summary["paths"]
    counts, sums, usd, ratio = summary["counts"], summary["sums"], summary["usd"], summary["ratio"]
    n_watch = len(bases)
    rows = []
    c = 0
    for li, (lev, _legs) in enumerate(level_specs):
        p = level_plans[lev]
        for leg in p.legs:
            w = bases.index(leg.instrument.base)
            lp = _leg_lp_ratio(leg)
            prob = counts[c] / n
            q95_high = _hist_quantile(ratio[w], 0.95, _ratio_values)
            q95_close = _hist_quantile(ratio[n_watch + w], 0.95, _ratio_values)
            mean_close = sums[1 + len(level_specs) + w] / n
            factor = (
                0.0 if not math.isfinite(lp) else leg.notional_usd * (1.0 / lp if leg.instrument.is_inverse else lp)
            )
            rows.append(
                {
                    "instrument": leg.instrument.id,
                    "leverage": lev,
                    "liquidation_price_ratio": lp,
                    "liquidation_probability": float(prob),
                    "liquidation_probability_with_top_up": float(counts[c + 1] / n),
                    "top_up_reserve_usd_p95": float(leg.notional_usd * max(0.0, q95_high - lp))
                    if math.isfinite(lp)
                    else 0.0,
                    "top_up_added_usd_mean": float(factor * (mean_close - 1.0)),
                    "top_up_added_usd_p95": float(factor * (q95_close - 1.0)),
                    "standard_error": math.sqrt(max(prob * (1 - prob), 0) / n),
                }
            )
            c += 2
        by_lev[lev] = {
            "any_leg": float(counts[c] / n),
            "any_leg_with_top_up": float(counts[c + 1] / n),
            "notional_usd": sum(leg.notional_usd for leg in p.legs),
            "collateral_usd": sum(leg.collateral_usd for leg in p.legs),
            "hedged": _hist_risk(usd[1 + li], sums[1 + li] / n),
            "_hist": usd[1 + li],
        }
        c += 2
    by_lev = dict(sorted(by_lev.items()))
    base = by_lev.get(plan.request.leverage, {})
    return {
        "model": model,
        "paths": paths,
        "horizon_days": horizon,
        "seed": seed,
        "history": assumptions["history"],
        "volatility_annual": assumptions["volatility_annual"],
        "assumptions": assumptions,
        "memory_estimate_bytes": need,
        "chunk_paths": summary["chunk_paths"],
        "quantile_method": (
            f"fixed logarithmic bins: PnL within ±{USD_BIN / 2:.3%} (|PnL| < {USD_FLOOR:g} USD counts as 0), "
            f"price ratios within ±{RATIO_BIN / 2:.4%}; counts and means exact"
        ),
        "unhedged": _hist_risk(usd[0], sums[0] / n),
        "hedged": base.get("hedged"),
        "var_95_usd": base.get("hedged", {}).get("var_95_usd"),
        "es_95_usd": base.get("hedged", {}).get("es_95_usd"),
        "expected_funding_usd": sum(leg.funding_usd_per_day for leg in plan.legs) * horizon,
        "liquidation": rows,
        "by_leverage": {str(k): {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in by_lev.items()},
        "recommended": recommend(by_lev, max_liq_prob),
        "_histograms": {
            "unhedged": _sparse_usd(usd[0]),
            "hedged": _sparse_usd(base["_hist"]) if base.get("_hist") is not None else None,
        },
    }


def _sparse_usd(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bin values in USD, path counts) of the non-empty bins: what a PnL histogram plot needs."""
    nz = np.flatnonzero(counts)
    return _usd_values(nz), counts[nz]


def run_chunks(shared: dict[str, Any], *, paths: int, seed: int, engine: Engine, n_assets: int) -> dict[str, Any]:
    """Simulate ``paths`` in fixed chunks on ``engine`` and merge the summaries (exact, order-independent)."""
    chunk = chunk_paths(shared["model"], shared["horizon"], n_assets, len(shared["watch"]))
    n_chunks = math.ceil(paths / chunk)
    seqs = np.random.SeedSequence(seed).spawn(n_chunks)
    sizes = [min(chunk, paths - i * chunk) for i in range(n_chunks)]
    # batches: a few per worker for balance, each >= ~5M path-days so the per-task overhead stays small;
    # the batching never changes the numbers (every merge below is exact)
    per_batch = max(1, math.ceil(5_000_000 / (chunk * shared["horizon"])))
    per_batch = min(per_batch, max(1, math.ceil(n_chunks / (4 * max(1, engine.workers)))))
    batches = (
        [(i, sizes[i], seqs[i]) for i in range(lo, min(n_chunks, lo + per_batch))]
        for lo in range(0, n_chunks, per_batch)
    )
    n_lev = len(shared["levels"])
    n_watch = len(shared["watch"])
    n_counts = sum(2 + 2 * len(legs) for _, legs in shared["levels"])
    counts = np.zeros(n_counts, dtype=np.int64)
    usd = np.zeros((1 + n_lev) * _USD_BINS, dtype=np.int64)
    ratio = np.zeros(2 * n_watch * _RATIO_BINS, dtype=np.int64)
    sums: list[np.ndarray] = []
    total = 0
    for _i, part in engine.map_batches(_mc_batch, batches, shared):
        total += part["paths"]
        counts += part["counts"]
        sums.extend(part["sums"])
        usd[part["usd"][0]] += part["usd"][1]
        ratio[part["ratio"][0]] += part["ratio"][1]
    if total != paths:  # pragma: no cover - every batch reports its paths
        raise DataError(f"the Monte Carlo merged {total:,} paths, expected {paths:,}")
    stacked = np.vstack(sums) if sums else np.zeros((0, 1 + n_lev + n_watch))
    return {
        "paths": total,
        "chunk_paths": chunk,
        "counts": counts,
        "sums": [math.fsum(stacked[:, j]) for j in range(stacked.shape[1])],
        "usd": usd.reshape(1 + n_lev, _USD_BINS),
        "ratio": ratio.reshape(2 * n_watch, _RATIO_BINS),
    }


def recommend(by_lev: dict[float, dict[str, Any]], max_liq_prob: float) -> dict[str, Any]:
    """The largest leverage whose P(any leg liquidated) stays at or under the target, without and with top-ups."""
    ok = {k: v for k, v in by_lev.items() if "error" not in v}

    def best(key: str) -> float | None:
        good = [lev for lev, v in ok.items() if v[key] <= max_liq_prob]
        return max(good) if good else None

    plain, topped = best("any_leg"), best("any_leg_with_top_up")
    return {
        "max_liquidation_probability": max_liq_prob,
        "without_top_up": plain,
        "with_top_up": topped,
        # what each choice commits: notional and margin (collateral) of all legs, USD
        "without_top_up_notional_usd": ok[plain]["notional_usd"] if plain is not None else None,
        "without_top_up_collateral_usd": ok[plain]["collateral_usd"] if plain is not None else None,
        "with_top_up_notional_usd": ok[topped]["notional_usd"] if topped is not None else None,
        "with_top_up_collateral_usd": ok[topped]["collateral_usd"] if topped is not None else None,
    }
