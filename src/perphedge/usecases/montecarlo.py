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

__all__ = ["LEVERAGE_GRID", "leverage_candidates", "monte_carlo", "recommend"]

LEVERAGE_GRID = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 25.0, 50.0)


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
    return {
        "returns": logr.to_numpy(),
        "highs": highs.to_numpy(),
        "first": str(logr.index[0].date()),
        "last": str(logr.index[-1].date()),
        "sigma": logr.std().to_numpy() * math.sqrt(365),
        "mu": logr.mean().to_numpy() * 365 + 0.5 * (logr.std().to_numpy() * math.sqrt(365)) ** 2,
        "corr": np.corrcoef(logr.to_numpy(), rowvar=False).reshape(len(assets), len(assets)),
    }


def _leg_outcomes(
    leg: HedgeLeg, ratio: np.ndarray, max_high: np.ndarray, max_jump: np.ndarray, horizon: int
) -> dict[str, np.ndarray]:
    """USD PnL of one short leg per path (liquidated: its margin is lost), with and without daily top-ups."""
    lp = _leg_lp_ratio(leg)
    liq = max_high >= lp
    liq_topped = max_jump >= lp
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
    return {"pnl": pnl, "liquidated": liq, "liquidated_with_top_up": liq_topped}


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
    max_liq_prob: float = 0.01,
) -> dict[str, Any]:
    """Distributions of hedged and unhedged PnL, liquidation odds per leg and leverage, expected funding."""
    if model not in MODELS:
        raise ConfigError(f"invalid `--model`: must be one of {', '.join(MODELS)}, was {model!r}")
    pf = plan.portfolio
    held = sorted({h.asset for h in pf.holdings if not h.is_stable})
    bases = sorted({leg.instrument.base for leg in plan.legs})
    assets = sorted(set(held) | set(bases))
    idx = {a: i for i, a in enumerate(assets)}
    hist: dict[str, Any] | None = None
    if store is not None:
        hist = _history(store, assets, bases)
    if model == "bootstrap" and hist is None:
        raise DataError("the bootstrap model resamples stored history: import or fetch it, or use --model gbm")
    if hist is not None:
        sig = hist["sigma"].copy()
        mu = hist["mu"].copy()
        corr = hist["corr"]
    else:
        sig = np.full(len(assets), 0.8)
        mu = np.zeros(len(assets))
        corr = np.eye(len(assets))
    proxy = plan.request.proxy_asset
    if sigma is not None:  # the proxy's volatility is set; the others keep their ratio to it
        sig = sig * (sigma / sig[idx[proxy]]) if proxy in idx and sig[idx[proxy]] > 0 else np.full(len(assets), sigma)
    if drift is not None:
        mu = np.full(len(assets), drift)
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
    terminal, max_high, max_jump = sim["terminal"], sim["max_high"], sim["max_jump"]
    spot = np.zeros(paths)
    for h in pf.holdings:
        if not h.is_stable:
            spot += pf.value_of(h) * (terminal[:, idx[h.asset]] - 1.0)

    def risk(pnl: np.ndarray) -> dict[str, float]:
        q5 = float(np.quantile(pnl, 0.05))
        return {
            "mean_usd": float(pnl.mean()),
            "p5_usd": q5,
            "p50_usd": float(np.median(pnl)),
            "p95_usd": float(np.quantile(pnl, 0.95)),
            "var_95_usd": -q5,
            "es_95_usd": -float(pnl[pnl <= q5].mean()),
        }

    rows = []
    by_lev: dict[float, dict[str, Any]] = {}
    for lev in sorted(set(leverages) | {plan.request.leverage}):
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
            o = _leg_outcomes(leg, terminal[:, idx[leg.instrument.base]], max_high[:, w], max_jump[:, w], horizon)
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
                    "standard_error": math.sqrt(max(o["liquidated"].mean() * (1 - o["liquidated"].mean()), 0) / paths),
                }
            )
        by_lev[lev] = {
            "any_leg": float(any_liq.mean()),
            "any_leg_with_top_up": float(any_liq_top.mean()),
            "notional_usd": sum(leg.notional_usd for leg in p.legs),
            "collateral_usd": sum(leg.collateral_usd for leg in p.legs),
            "hedged": risk(spot + hedge),
            "_net": spot + hedge,
        }
    base = by_lev.get(plan.request.leverage, {})
    return {
        "model": model,
        "paths": paths,
        "horizon_days": horizon,
        "seed": seed,
        "history": {"first": hist["first"], "last": hist["last"]} if hist else None,
        "volatility_annual": dict(zip(assets, map(float, sig), strict=True)),
        "unhedged": risk(spot),
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
