"""Monte Carlo of a hedge plan: PnL distributions, liquidation odds per leg and leverage, the leverage to use.

Used by ``perphedge stress`` and ``perphedge plan --leverage auto``. The simulation itself is
:func:`perphedge.core.stress.simulate`; this module turns its price paths into the plan's PnL.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from perphedge.core.hedge import CollateralSource, HedgeLeg, HedgePlan, plan_hedge
from perphedge.core.stress import MODELS, simulate
from perphedge.errors import ConfigError, DataError, PerphedgeError

if TYPE_CHECKING:
    from perphedge.data.store import MarketStore

__all__ = [
    "LEVERAGE_GRID",
    "default_max_memory",
    "format_bytes",
    "leverage_candidates",
    "memory_needed",
    "monte_carlo",
    "parse_bytes",
    "recommend",
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


def memory_needed(*, model: str, paths: int, horizon: int, n_assets: int, n_watch: int, n_leverages: int) -> int:
    """Peak bytes of one :func:`monte_carlo` run: the simulation plus the per-path PnL kept per leverage."""
    from perphedge.core.stress import memory_estimate

    sim = memory_estimate(model=model, paths=paths, horizon=horizon, n_assets=n_assets, n_watch=n_watch)
    return sim + 8 * paths * (n_leverages + 8)


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
) -> dict[str, Any]:
    """Distributions of hedged and unhedged PnL, liquidation odds per leg and leverage, expected funding.

    ``max_memory`` (bytes): refuse up front when the estimated peak memory is larger (``None``: half the RAM).
    """
    if model not in MODELS:
        raise ConfigError(f"invalid `--model`: must be one of {', '.join(MODELS)}, was {model!r}")
    pf = plan.portfolio
    held = sorted({h.asset for h in pf.holdings if not h.is_stable})
    bases = sorted({leg.instrument.base for leg in plan.legs})
    assets = sorted(set(held) | set(bases))
    idx = {a: i for i, a in enumerate(assets)}
    levels = sorted(set(leverages) | {plan.request.leverage})
    need = memory_needed(
        model=model, paths=paths, horizon=horizon, n_assets=len(assets), n_watch=len(bases), n_leverages=len(levels)
    )
    limit = default_max_memory() if max_memory is None else max_memory
    if need > limit:
        raise ConfigError(
            f"the Monte Carlo needs about {format_bytes(need)} ({paths:,} paths × {horizon} days, {len(assets)} "
            f"assets, {len(levels)} leverages), more than `--max-memory` {format_bytes(limit)}: use fewer "
            "--paths or a shorter --horizon, or raise --max-memory"
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
    sim = simulate(
        model=model,
        paths=paths,
        horizon=horizon,
        watch=[idx[b] for b in bases],
        seed=seed,
        returns=hist["returns"] if hist else None,
        highs=hist["highs"] if hist else None,
        mu_annual=mu,
        sigma_annual=sig,
        corr=corr,
    )
    terminal, max_high, max_close, over_peak = sim["terminal"], sim["max_high"], sim["max_close"], sim["max_over_peak"]
    spot = np.zeros(paths)
    for h in pf.holdings:
        if not h.is_stable:
            spot += pf.value_of(h) * (terminal[:, idx[h.asset]] - 1.0)

    rows = []
    by_lev: dict[float, dict[str, Any]] = {}
    for lev in levels:
        try:
            p = _with_leverage(plan, lev)
        except PerphedgeError as exc:
            by_lev[lev] = {"error": str(exc)}
            continue
        hedge = np.zeros(paths)
        any_liq = np.zeros(paths, dtype=bool)
        any_liq_top = np.zeros(paths, dtype=bool)
        for leg in p.legs:
            w = bases.index(leg.instrument.base)
            o = _leg_outcomes(
                leg, terminal[:, idx[leg.instrument.base]], max_high[:, w], over_peak[:, w], max_close[:, w], horizon
            )
            hedge += o["pnl"]
            any_liq |= o["liquidated"]
            any_liq_top |= o["liquidated_with_top_up"]
            # margin to add (in time) so that 95% of paths never reach the liquidation price: N·(q95(max high) − LP/E)
            reserve = leg.notional_usd * max(0.0, float(np.quantile(max_high[:, w], 0.95)) - _leg_lp_ratio(leg))
            rows.append(
                {
                    "instrument": leg.instrument.id,
                    "leverage": lev,
                    "liquidation_price_ratio": _leg_lp_ratio(leg),
                    "liquidation_probability": float(o["liquidated"].mean()),
                    "liquidation_probability_with_top_up": float(o["liquidated_with_top_up"].mean()),
                    "top_up_reserve_usd_p95": float(reserve) if math.isfinite(_leg_lp_ratio(leg)) else 0.0,
                    "top_up_added_usd_mean": float(o["top_up_added_usd"].mean()),
                    "top_up_added_usd_p95": float(np.quantile(o["top_up_added_usd"], 0.95)),
                    "standard_error": math.sqrt(max(o["liquidated"].mean() * (1 - o["liquidated"].mean()), 0) / paths),
                }
            )
        by_lev[lev] = {
            "any_leg": float(any_liq.mean()),
            "any_leg_with_top_up": float(any_liq_top.mean()),
            "notional_usd": sum(leg.notional_usd for leg in p.legs),
            "collateral_usd": sum(leg.collateral_usd for leg in p.legs),
            "hedged": _risk(spot + hedge),
            "_net": spot + hedge,
        }
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
        "unhedged": _risk(spot),
        "hedged": base.get("hedged"),
        "var_95_usd": base.get("hedged", {}).get("var_95_usd"),
        "es_95_usd": base.get("hedged", {}).get("es_95_usd"),
        "expected_funding_usd": sum(leg.funding_usd_per_day for leg in plan.legs) * horizon,
        "liquidation": rows,
        "by_leverage": {str(k): {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in by_lev.items()},
        "recommended": recommend(by_lev, max_liq_prob),
        "_samples": {"unhedged": spot, "hedged": base.get("_net")},
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
