"""``perphedge analyze``: betas, hedge ratios and hedge effectiveness from the market store.

Returns are UTC daily simple returns of Binance spot closes (the hedge's USD PnL is linear in
simple returns), the first days after each listing skipped; multi-day horizons use
non-overlapping blocks. Out-of-sample effectiveness is walk-forward: each ratio is estimated on a
trailing window and applied to the next observation only (:func:`perphedge.core.analytics.walk_forward`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from perphedge.core import analytics as A
from perphedge.core.parsing import parse_days  # re-exported: the one rule for day counts
from perphedge.core.units import normalise_asset
from perphedge.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from perphedge.data.store import MarketStore

__all__ = ["CRASH_WINDOWS", "AnalyzeRequest", "analyze", "estimate_betas", "parse_days", "simple_returns"]

ANALYZE_SCHEMA = "perphedge.analyze/1"
LISTING_SKIP_DAYS = 7  # listing-day candles are extreme (sample README); skip the first week

#: Named crash windows of the sample history (inclusive UTC dates).
CRASH_WINDOWS: tuple[tuple[str, str, str], ...] = (
    ("2020-03 COVID crash", "2020-03-05", "2020-03-20"),
    ("2021-05 crash", "2021-05-10", "2021-05-25"),
    ("2022-05 LUNA", "2022-05-05", "2022-05-20"),
    ("2022-11 FTX", "2022-11-05", "2022-11-15"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalyzeRequest:
    """What to analyse."""

    assets: tuple[str, ...]
    proxy: str = "BTC"
    since: str | None = None
    until: str | None = None
    window_days: int = 180
    horizons: tuple[int, ...] = (1, 7)
    factors: tuple[str, ...] = ("BTC", "ETH")
    nonneg: bool = False
    lam: float = 0.94
    stress_k: float = 2.0
    drawdown_stress: float = 0.20
    source: str = "binance"
    funding: bool = True

    def __post_init__(self) -> None:
        if not self.assets:
            raise ConfigError("invalid `--assets`: name at least one asset, e.g. SOL,AVAX")
        if self.window_days < 30:
            raise ConfigError(f"invalid `--window`: at least 30 days, was {self.window_days}")
        if not self.horizons or any(h < 1 for h in self.horizons):
            raise ConfigError(f"invalid `--horizon`: days >= 1, were {list(self.horizons)}")
        proxy = normalise_asset(self.proxy)
        if proxy in {normalise_asset(a) for a in self.assets}:
            raise ConfigError(
                f"invalid `--assets`: {proxy} is also the proxy (`--proxy {proxy}`); an asset hedged with itself "
                "has beta 1 by construction: drop it from --assets or choose another --proxy"
            )


def simple_returns(
    store: MarketStore, assets: Sequence[str], since: str | None, until: str | None, source: str = "binance"
) -> pd.DataFrame:
    """Daily simple returns (UTC), NaN before each listing (+ the first week) and after delisting."""
    from perphedge.data.reader import ohlc

    close = ohlc(store, assets, since, until, source=source)["close"]
    rets = close / close.shift(1) - 1.0
    for col in rets.columns:
        first = close[col].first_valid_index()
        if first is not None:
            rets.loc[: first + np.timedelta64(LISTING_SKIP_DAYS, "D"), col] = np.nan
    return rets.iloc[1:]


def _pair(rets: pd.DataFrame, a: str, b: str) -> tuple[np.ndarray, np.ndarray, Any]:
    both = rets[[a, b]].dropna()
    return both[a].to_numpy(), both[b].to_numpy(), both.index


def _horizon(s: np.ndarray, f: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    if h == 1:
        return s, f
    ls, lf = np.log1p(s), np.log1p(f)
    return np.expm1(A.non_overlapping(ls, h)), np.expm1(A.non_overlapping(lf, h))


def _fit(fit: A.FitResult) -> dict[str, float]:
    return {"beta": fit.beta, "correlation": fit.correlation, "r2": fit.r2, "n": fit.n}


def _regimes(s: np.ndarray, f: np.ndarray, idx: Any, proxy_close: pd.Series, req: AnalyzeRequest) -> dict[str, Any]:
    import pandas as pd

    px = proxy_close.reindex(idx)
    drawdown = (px / proxy_close.cummax().reindex(idx) - 1.0).to_numpy()
    vol = pd.Series(f, index=idx).rolling(30).std().to_numpy()
    vol_cut = np.nanquantile(vol, 0.9) if np.isfinite(vol).any() else np.inf
    out: dict[str, Any] = {}
    for name, stress in (("drawdown", drawdown <= -req.drawdown_stress), ("volatility", vol >= vol_cut)):
        regime = {}
        for label, mask in (("calm", ~stress), ("stress", stress)):
            regime[label] = _fit(A.ols(s[mask], f[mask])) if mask.sum() >= 10 else None
        out[name] = regime
    windows = []
    for label, start, end in CRASH_WINDOWS:
        mask = (idx >= pd.Timestamp(start, tz="UTC")) & (idx <= pd.Timestamp(end, tz="UTC"))
        if mask.sum() < 5:
            continue
        fit = A.ols(s[mask], f[mask])
        windows.append(
            {
                "name": label,
                "start": start,
                "end": end,
                **_fit(fit),
                "asset_return": float(np.prod(1 + s[mask]) - 1),
                "proxy_return": float(np.prod(1 + f[mask]) - 1),
            }
        )
    out["crash_windows"] = windows
    out["definition"] = (
        f"stress = proxy {req.drawdown_stress:.0%} or more below its running peak (drawdown), or "
        "its 30-day volatility in the top decile (volatility)"
    )
    return out


def _asset(rets: pd.DataFrame, closes: pd.DataFrame, asset: str, req: AnalyzeRequest) -> dict[str, Any]:
    s, f, idx = _pair(rets, asset, req.proxy)
    if len(s) < req.window_days + 30:
        raise DataError(
            f"{asset}: only {len(s)} days with both {asset} and {req.proxy} returns; need at least "
            f"{req.window_days + 30} for a {req.window_days}-day walk-forward (earlier --since?)"
        )
    fit = A.ols(s, f)
    out: dict[str, Any] = {
        "asset": asset,
        "n_days": len(s),
        "first": str(idx[0].date()),
        "last": str(idx[-1].date()),
        "beta": fit.beta,
        "correlation": fit.correlation,
        "r2": fit.r2,
        # the same fit on log returns: less swayed by one extreme day (DOGE +392% on 2021-01-28)
        "log_returns": _fit(A.ols(np.log1p(s), np.log1p(f))),
        "hedge_effectiveness": A.hedge_effectiveness(s, f, fit.beta),
        "tracking_error": A.tracking_error(s, f, fit.beta),
        "unhedged_volatility": float(np.std(s, ddof=1) * math.sqrt(365)),
        "downside_beta": A.downside_beta(s, f).beta,
        "stress_beta": A.stress_beta(s, f, req.stress_k).beta,
    }
    factors = [x for x in req.factors if x != asset and x in rets.columns]
    if factors:
        joined = rets[[asset, *factors]].dropna()
        w, r2 = A.multi_factor(joined[asset].to_numpy(), joined[factors].to_numpy(), nonneg=req.nonneg)
        out["multi_factor"] = {
            "factors": factors,
            "weights": dict(zip(factors, map(float, w), strict=True)),
            "r2": r2,
            "nonneg": req.nonneg,
            "n": len(joined),
        }
        best = max(r2, fit.r2)
    else:
        best = fit.r2
    out["unhedgeable_variance"] = 1.0 - best
    oos: dict[str, Any] = {}
    for h in req.horizons:
        sh, fh = _horizon(s, f, h)
        window = max(10, req.window_days // h)
        if len(sh) <= window + 3:
            continue
        per: dict[str, Any] = {}
        for est in A.ESTIMATORS:
            wf = A.walk_forward(sh, fh, est, window, lam=req.lam, periods_per_year=365.0 / h, k=req.stress_k)
            per[est] = {
                "oos_hedge_effectiveness": wf.hedge_effectiveness,
                "tracking_error": wf.tracking_error,
                "mean_ratio": wf.mean_ratio,
                "n_oos": wf.n_oos,
            }
        fit_h = A.ols(sh, fh)
        oos[f"{h}d"] = {
            "window_obs": window,
            "in_sample_hedge_effectiveness": fit_h.r2,
            "beta": fit_h.beta,
            "estimators": per,
        }
    out["horizons"] = oos
    first = oos.get("1d") or next(iter(oos.values()), None)
    out["oos_hedge_effectiveness"] = (
        {k: v["oos_hedge_effectiveness"] for k, v in first["estimators"].items()} if first else {}
    )
    out["regimes"] = _regimes(s, f, idx, closes[req.proxy], req)
    rolling = A.walk_forward(s, f, "rolling_ols", min(req.window_days, len(s) - 4)).ratios
    out["_rolling"] = (idx, rolling)
    return out


def _proxy_perp_returns(store: MarketStore, source: str, proxy: str) -> pd.DataFrame | None:
    """Daily returns of the proxy's perpetuals from the basis table (linear; inverse in USD accounting)."""
    import pandas as pd

    g = store.query(
        "SELECT ts, spot_close, perp_linear_close, perp_inverse_close FROM basis "
        "WHERE source = ? AND asset = ? AND hour(ts) = 16 ORDER BY ts",
        [source, proxy],
    )
    if len(g) < 40:
        return None
    # the 8h candle opening at 16:00 closes at 24:00 UTC: that day's daily close
    idx = pd.DatetimeIndex(g["ts"].dt.floor("D")).tz_localize("UTC")[1:]
    spot, lin, inv = (g[c].to_numpy() for c in ("spot_close", "perp_linear_close", "perp_inverse_close"))
    return pd.DataFrame({"linear": lin[1:] / lin[:-1] - 1, "inverse": A.inverse_usd_returns(spot, inv)}, index=idx)


def _instrument_hedge(asset: pd.Series, proxy_spot: pd.Series, perp: pd.DataFrame) -> dict[str, Any] | None:
    """Minimum-variance ratio and HE of the asset on the proxy's own perpetuals, where their prices exist."""
    joined = perp.join(asset.rename("s")).join(proxy_spot.rename("spot")).dropna()
    if len(joined) < 30:
        return None
    s = joined["s"].to_numpy()
    out: dict[str, Any] = {
        "first": str(joined.index[0].date()),
        "last": str(joined.index[-1].date()),
        "n_days": len(joined),
    }
    for name in ("linear", "inverse", "spot"):
        fit = A.ols(s, joined[name].to_numpy())
        out[name if name != "spot" else "proxy_spot"] = {"min_variance_ratio": fit.beta, "hedge_effectiveness": fit.r2}
    return out


def _basket(rets: pd.DataFrame, req: AnalyzeRequest) -> dict[str, Any] | None:
    assets = [a for a in req.assets if a != req.proxy]
    if len(assets) < 2:
        return None
    joined = rets[[*assets, req.proxy]].dropna()
    if len(joined) < req.window_days + 30:
        return None
    s = joined[assets].mean(axis=1).to_numpy()  # equal-weighted, rebalanced daily
    f = joined[req.proxy].to_numpy()
    fit = A.ols(s, f)
    oos = {
        est: A.walk_forward(s, f, est, req.window_days, lam=req.lam, k=req.stress_k).hedge_effectiveness
        for est in A.ESTIMATORS
    }
    return {
        "assets": assets,
        "weights": "equal",
        "n_days": len(s),
        "first": str(joined.index[0].date()),
        "beta": fit.beta,
        "correlation": fit.correlation,
        "r2": fit.r2,
        # the same fit on log returns: less swayed by one extreme day (DOGE +392% on 2021-01-28)
        "log_returns": _fit(A.ols(np.log1p(s), np.log1p(f))),
        "hedge_effectiveness": A.hedge_effectiveness(s, f, fit.beta),
        "oos_hedge_effectiveness": oos,
    }


def funding_stats(store: MarketStore, since: str | None, until: str | None) -> list[dict[str, Any]]:
    """Funding per exchange and contract: level, sign, annual carry for a short (by year), worst 30 days."""
    from perphedge.data.reader import funding_daily, funding_series

    pairs = store.query("SELECT DISTINCT source, symbol FROM funding ORDER BY 1, 2")
    out = []
    for source, symbol in pairs.itertuples(index=False):
        try:
            raw = funding_series(store, source, symbol, since, until)
            daily = funding_daily(store, source, symbol, since, until)
        except DataError:
            continue
        if len(daily) < 2:
            continue
        full = daily.iloc[1:-1] if len(daily) > 3 else daily  # first/last days may be partial
        by_year = {str(y): float(g.mean() * 365) for y, g in full.groupby(full.index.year) if len(g) >= 30}
        roll30 = full.rolling(30).sum()
        out.append(
            {
                "source": source,
                "symbol": symbol,
                "settlements": len(raw),
                "first": str(raw.index[0]),
                "last": str(raw.index[-1]),
                "interval_hours": sorted({float(x) for x in raw["interval_hours"]}),
                "mean_rate": float(raw["rate"].mean()),
                "median_rate": float(raw["rate"].median()),
                "share_positive": float((raw["rate"] > 0).mean()),
                "short_carry_annual": float(full.mean() * 365),
                "short_carry_by_year": by_year,
                "worst_30d_carry": float(roll30.min()) if roll30.notna().any() else None,
                "worst_30d_end": str(roll30.idxmin().date()) if roll30.notna().any() else None,
                "note": "positive = a short receives; annual = mean daily funding × 365",
            }
        )
    return out


def basis_stats(store: MarketStore) -> list[dict[str, Any]]:
    """Perp–spot basis (bp) and the daily HE of spot hedged with each perpetual (USD accounting)."""
    frame = store.query("SELECT * FROM basis ORDER BY source, asset, ts")
    out = []
    for (source, asset), g in frame.groupby(["source", "asset"], sort=True):
        row: dict[str, Any] = {
            "source": source,
            "asset": asset,
            "rows": len(g),
            "first": str(g["ts"].iloc[0]),
            "last": str(g["ts"].iloc[-1]),
        }
        for kind in ("linear", "inverse"):
            bp = (g[f"perp_{kind}_close"] / g["spot_close"] - 1.0) * 1e4
            q = np.quantile(bp, [0.01, 0.05, 0.5, 0.95, 0.99])
            row[f"{kind}_basis_bp"] = {
                "mean": float(bp.mean()),
                "p1": q[0],
                "p5": q[1],
                "median": q[2],
                "p95": q[3],
                "p99": q[4],
                "min": float(bp.min()),
                "max": float(bp.max()),
            }
        # daily closes: the 8h candle opening at 16:00 closes at 24:00 UTC
        daily = g[g["ts"].dt.hour == 16]
        spot = daily["spot_close"].to_numpy()
        lin = daily["perp_linear_close"].to_numpy()
        inv = daily["perp_inverse_close"].to_numpy()
        s = spot[1:] / spot[:-1] - 1
        for kind, f in (("linear", lin[1:] / lin[:-1] - 1), ("inverse", A.inverse_usd_returns(spot, inv))):
            fit = A.ols(s, f)
            row[f"{kind}_daily_hedge"] = {
                "min_variance_ratio": fit.beta,
                "hedge_effectiveness": fit.r2,
                "n_days": fit.n,
            }
        out.append(row)
    return out


def analyze(store: MarketStore, req: AnalyzeRequest) -> dict[str, Any]:
    """The ``perphedge.analyze/1`` document (plus private ``_rolling`` series for plots)."""
    proxy = normalise_asset(req.proxy)
    assets = tuple(dict.fromkeys(normalise_asset(a) for a in req.assets))
    factors = tuple(normalise_asset(x) for x in req.factors)
    req = AnalyzeRequest(
        **{
            **{f: getattr(req, f) for f in req.__dataclass_fields__},
            "assets": assets,
            "proxy": proxy,
            "factors": factors,
        }
    )
    wanted = list(dict.fromkeys([*assets, proxy, *factors]))
    from perphedge.data.reader import ohlc

    present = store.query("SELECT DISTINCT symbol FROM candles WHERE source = ? AND timeframe = '1d'", [req.source])[
        "symbol"
    ].tolist()
    held = ", ".join(sorted(p.split("/")[0] for p in present)) or "nothing"
    where = getattr(store, "path", None) or "the store"
    missing = [a for a in [*assets, proxy] if f"{a}/USDT" not in present]
    if missing:
        raise DataError(
            f"no daily {req.source} history of {', '.join(missing)} in {where}; it has {held} "
            "(import or fetch it with `perphedge data`)"
        )
    missing_factors = [x for x in factors if f"{x}/USDT" not in present]
    if missing_factors:
        raise DataError(
            f"invalid `--factors`: no daily {req.source} history of factor {', '.join(missing_factors)} in {where}; "
            f"it has {held} (fetch it, or leave it out of --factors)"
        )
    closes = ohlc(store, wanted, req.since, req.until, source=req.source)["close"]
    rets = simple_returns(store, wanted, req.since, req.until, source=req.source)
    results = [_asset(rets, closes, a, req) for a in assets]
    perp = _proxy_perp_returns(store, req.source, proxy)
    for res in results:
        res["instrument_hedge"] = _instrument_hedge(rets[res["asset"]], rets[proxy], perp) if perp is not None else None
    doc: dict[str, Any] = {
        "schema": ANALYZE_SCHEMA,
        "proxy": proxy,
        "since": req.since,
        "until": req.until,
        "window_days": req.window_days,
        "horizons": [f"{h}d" for h in req.horizons],
        "returns": "daily simple returns of Binance spot closes (UTC)",
        "estimators": list(A.ESTIMATORS),
        "assets": results,
        "basket": _basket(rets, req),
    }
    if req.funding:
        doc["funding"] = funding_stats(store, req.since, req.until)
        doc["basis"] = basis_stats(store)
    return doc


@dataclass(frozen=True, slots=True, kw_only=True)
class BetaEstimate:
    """Betas estimated for ``plan`` and the data they came from."""

    betas: dict[str, float]
    window_days: int
    start: str
    end: str
    method: str
    proxy: str
    n_days: dict[str, int] = field(default_factory=dict)


def estimate_betas(
    store: MarketStore, assets: Sequence[str], proxy: str, *, window_days: int, end: str | None, method: str
) -> BetaEstimate:
    """OLS hedge ratios of each asset on ``proxy`` over the ``window_days`` ending at ``end`` (daily simple returns)."""
    import pandas as pd

    proxy = normalise_asset(proxy)
    codes = [normalise_asset(a) for a in assets if normalise_asset(a) != proxy]
    last = pd.Timestamp(end, tz="UTC") if end else None
    start = None if last is None else (last - pd.Timedelta(days=window_days + LISTING_SKIP_DAYS + 2)).date().isoformat()
    rets = simple_returns(store, [*codes, proxy], start, end)
    rets = rets.iloc[-window_days:]
    betas: dict[str, float] = {}
    counts: dict[str, int] = {}
    for a in codes:
        s, f, _ = _pair(rets, a, proxy)
        if len(s) < 30:
            raise DataError(
                f"only {len(s)} days of {a} and {proxy} returns in the {window_days}-day window ending "
                f"{rets.index[-1].date()}; need 30 (give `betas:` in the file, or a longer --window)"
            )
        betas[a] = A.ols(s, f).beta
        counts[a] = len(s)
    return BetaEstimate(
        betas=betas,
        window_days=window_days,
        start=str(rets.index[0].date()),
        end=str(rets.index[-1].date()),
        method=method,
        proxy=proxy,
        n_days=counts,
    )
