"""``perphedge analyze``: betas, hedge ratios and hedge effectiveness from the market store.

Returns are UTC daily simple returns of Binance spot closes (the hedge's USD PnL is linear in
simple returns), the first days after each listing skipped; multi-day horizons use
non-overlapping blocks. Out-of-sample effectiveness is walk-forward: each ratio is estimated on a
trailing window and applied to the next observation only (:func:`perphedge.core.analytics.walk_forward`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from perphedge.core import analytics as A
from perphedge.core.parsing import parse_days  # re-exported: the one rule for day counts
from perphedge.core.units import normalise_asset
from perphedge.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from perphedge.data.store import MarketStore

__all__ = [
    "CRASH_WINDOWS",
    "LISTING_SKIP_DAYS",
    "AnalyzeRequest",
    "analyze",
    "estimate_betas",
    "listings",
    "parse_days",
    "run_analyze",
    "simple_returns",
]

T = TypeVar("T")
DEFAULT_FACTORS = ("BTC", "ETH")
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
    factors: tuple[str, ...] | None = None  # None: BTC and ETH, those the store has; named ones must be stored
    nonneg: bool = False
    lam: float = 0.94
    stress_k: float = 2.0
    drawdown_stress: float = 0.20
    source: str = "binance"
    funding: bool = True
    store_path: str | None = None  # the market store file (None: the default store)

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
        first, last = _day(self.since, "--since"), _day(self.until, "--until")
        if first is not None and last is not None and last < first:
            raise ConfigError(f"invalid `--until`: {self.until} is before `--since` {self.since}")


def _day(value: str | None, what: str) -> pd.Timestamp | None:
    """A UTC day from ``--since``/``--until`` text (ISO 8601)."""
    from datetime import datetime

    import pandas as pd

    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"invalid `{what}`: {value!r} is not an ISO 8601 date such as 2024-01-31") from None
    ts = pd.Timestamp(parsed)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.floor("D")


def listings(store: MarketStore, assets: Sequence[str], source: str = "binance") -> dict[str, pd.Timestamp]:
    """Each asset's first stored daily candle (its listing, as far as the store knows), UTC."""
    import pandas as pd

    from perphedge.data.reader import spot_symbol

    codes = [normalise_asset(a) for a in assets]
    symbols = {spot_symbol(a): a for a in codes}
    marks = ", ".join("?" for _ in symbols)
    frame = store.query(
        f"SELECT symbol, min(ts) AS first FROM candles WHERE source = ? AND timeframe = '1d' "
        f"AND symbol IN ({marks}) GROUP BY symbol",
        [source, *symbols],
    )
    return {symbols[sym]: pd.Timestamp(first).tz_localize("UTC") for sym, first in frame.itertuples(index=False)}


def simple_returns(
    store: MarketStore, assets: Sequence[str], since: str | None, until: str | None, source: str = "binance"
) -> pd.DataFrame:
    """Daily simple returns (UTC) dated ``since`` … ``until`` inclusive (the close before ``since`` is read).

    A return is NaN before the asset's listing, during the :data:`LISTING_SKIP_DAYS` days after it, and after
    delisting. The listing is the asset's first stored daily candle, not the first day of the window: an asset
    listed before ``since`` keeps every day of the window.
    """
    import pandas as pd

    from perphedge.data.reader import ohlc

    first_day, last_day = _day(since, "--since"), _day(until, "--until")
    if first_day is not None and last_day is not None and last_day < first_day:
        raise ConfigError(f"invalid `--until`: {until} is before `--since` {since}")
    start = None if first_day is None else first_day - pd.Timedelta(days=1)
    close = ohlc(store, assets, start, until, source=source)["close"]
    rets = close / close.shift(1) - 1.0
    listed = listings(store, list(close.columns), source)
    for col in rets.columns:
        first = listed.get(col)
        if first is not None:
            rets.loc[: first + pd.Timedelta(days=LISTING_SKIP_DAYS), col] = np.nan
    if first_day is not None:
        return rets.loc[first_day:]
    return rets.iloc[1:]


def _pair(rets: pd.DataFrame, a: str, b: str) -> tuple[np.ndarray, np.ndarray, Any]:
    both = rets[[a, b]].dropna()
    return both[a].to_numpy(), both[b].to_numpy(), both.index


def _horizon(s: np.ndarray, f: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    if h == 1:
        return s, f
    ls, lf = np.log1p(s), np.log1p(f)
    return np.expm1(A.non_overlapping(ls, h)), np.expm1(A.non_overlapping(lf, h))


def _fit(fit: A.FitResult | None) -> dict[str, float | None] | None:
    if fit is None:
        return None
    return {"beta": fit.beta, "correlation": fit.correlation, "r2": fit.r2, "n": fit.n}


def _defined(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """``fn(*args, **kwargs)``, or None when the statistic is undefined on these returns (zero variance, too few
    such days)."""
    try:
        return fn(*args, **kwargs)
    except DataError:
        return None


def _beta(fit: A.FitResult | None) -> float | None:
    return None if fit is None else fit.beta


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
            regime[label] = _fit(_defined(A.ols, s[mask], f[mask])) if mask.sum() >= 10 else None
        out[name] = regime
    windows = []
    for label, start, end in CRASH_WINDOWS:
        mask = (idx >= pd.Timestamp(start, tz="UTC")) & (idx <= pd.Timestamp(end, tz="UTC"))
        if mask.sum() < 5:
            continue
        fit = _fit(_defined(A.ols, s[mask], f[mask]))
        windows.append(
            {
                "name": label,
                "start": start,
                "end": end,
                **(fit or {"beta": None, "correlation": None, "r2": None, "n": int(mask.sum())}),
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
    fit = _defined(A.ols, s, f)
    beta = fit.beta if fit is not None else None
    out: dict[str, Any] = {
        "asset": asset,
        "n_days": len(s),  # observations: days with both the asset's and the proxy's return
        "first": str(idx[0].date()),
        "last": str(idx[-1].date()),
        "beta": beta,
        "correlation": fit.correlation if fit is not None else None,
        "r2": fit.r2 if fit is not None else None,
        # the same fit on log returns: less swayed by one extreme day (DOGE +392% on 2021-01-28)
        "log_returns": _fit(_defined(A.ols, np.log1p(s), np.log1p(f))),
        "hedge_effectiveness": None if beta is None else _defined(A.hedge_effectiveness, s, f, beta),
        "tracking_error": None if beta is None else _defined(A.tracking_error, s, f, beta),
        "unhedged_volatility": float(np.std(s, ddof=1) * math.sqrt(365)),
        "downside_beta": _beta(_defined(A.downside_beta, s, f)),
        "stress_beta": _beta(_defined(A.stress_beta, s, f, req.stress_k)),
    }
    undefined = []
    if float(np.var(f)) == 0.0:
        undefined.append(f"{req.proxy}'s returns have zero variance")
    if float(np.var(s)) == 0.0:
        undefined.append(f"{asset}'s returns have zero variance")
    if undefined:
        out["undefined"] = (
            " and ".join(undefined) + f" from {out['first']} to {out['last']}: betas, hedge ratios and hedge "
            "effectiveness are undefined (null)"
        )
    factors = [x for x in req.factors or () if x != asset and x in rets.columns]
    best: float | None = fit.r2 if fit is not None else None
    if factors:
        joined = rets[[asset, *factors]].dropna()
        mf = _defined(A.multi_factor, joined[asset].to_numpy(), joined[factors].to_numpy(), nonneg=req.nonneg)
        out["multi_factor"] = {
            "factors": factors,
            "weights": None if mf is None else dict(zip(factors, map(float, mf[0]), strict=True)),
            "r2": None if mf is None else mf[1],
            "nonneg": req.nonneg,
            "n": len(joined),
        }
        if mf is not None and best is not None:
            best = max(mf[1], best)
    out["unhedgeable_variance"] = None if best is None or undefined else 1.0 - best
    oos: dict[str, Any] = {}
    for h in req.horizons:
        sh, fh = _horizon(s, f, h)
        window = max(10, req.window_days // h)
        if len(sh) <= window + 3:
            continue
        per: dict[str, Any] = {}
        for est in A.ESTIMATORS:
            wf = _defined(A.walk_forward, sh, fh, est, window, lam=req.lam, periods_per_year=365.0 / h, k=req.stress_k)
            per[est] = {
                "oos_hedge_effectiveness": None if wf is None else wf.hedge_effectiveness,
                "tracking_error": None if wf is None else wf.tracking_error,
                "mean_ratio": None if wf is None else wf.mean_ratio,
                "n_oos": None if wf is None else wf.n_oos,
            }
        fit_h = _defined(A.ols, sh, fh)
        oos[f"{h}d"] = {
            "window_obs": window,
            "in_sample_hedge_effectiveness": None if fit_h is None else fit_h.r2,
            "beta": None if fit_h is None else fit_h.beta,
            "estimators": per,
        }
    out["horizons"] = oos
    first = oos.get("1d") or next(iter(oos.values()), None)
    out["oos_hedge_effectiveness"] = (
        {k: v["oos_hedge_effectiveness"] for k, v in first["estimators"].items()} if first else {}
    )
    out["regimes"] = _regimes(s, f, idx, closes[req.proxy], req)
    rolling = _defined(A.walk_forward, s, f, "rolling_ols", min(req.window_days, len(s) - 4))
    out["_rolling"] = (idx, rolling.ratios if rolling is not None else np.full(len(s), np.nan))
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
        fit = _defined(A.ols, s, joined[name].to_numpy())
        out[name if name != "spot" else "proxy_spot"] = {
            "min_variance_ratio": None if fit is None else fit.beta,
            "hedge_effectiveness": None if fit is None else fit.r2,
        }
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
    fit = _defined(A.ols, s, f)
    oos = {}
    for est in A.ESTIMATORS:
        wf = _defined(A.walk_forward, s, f, est, req.window_days, lam=req.lam, k=req.stress_k)
        oos[est] = None if wf is None else wf.hedge_effectiveness
    beta = None if fit is None else fit.beta
    return {
        "assets": assets,
        "weights": "equal",
        "n_days": len(s),
        "first": str(joined.index[0].date()),
        "beta": beta,
        "correlation": None if fit is None else fit.correlation,
        "r2": None if fit is None else fit.r2,
        # the same fit on log returns: less swayed by one extreme day (DOGE +392% on 2021-01-28)
        "log_returns": _fit(_defined(A.ols, np.log1p(s), np.log1p(f))),
        "hedge_effectiveness": None if beta is None else _defined(A.hedge_effectiveness, s, f, beta),
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


def basis_stats(store: MarketStore, since: str | None = None, until: str | None = None) -> list[dict[str, Any]]:
    """Perp–spot basis (bp) and the daily HE of spot hedged with each perpetual (USD accounting), over the
    8h bars of ``since..until`` (UTC days, both included; None: unbounded), as the funding statistics."""
    sql, params = "SELECT * FROM basis", []
    bounds = []
    if since:
        bounds.append("ts >= CAST(? AS TIMESTAMP)")
        params.append(f"{since} 00:00:00")
    if until:
        bounds.append("ts <= CAST(? AS TIMESTAMP)")
        params.append(f"{until} 23:59:59")
    if bounds:
        sql += " WHERE " + " AND ".join(bounds)
    frame = store.query(sql + " ORDER BY source, asset, ts", params)
    out = []
    for (source, asset), g in frame.groupby(["source", "asset"], sort=True):
        if len(g[g["ts"].dt.hour == 16]) < 3:
            continue  # fewer than two daily returns in the window: nothing to state
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
            fit = _defined(A.ols, s, f)
            row[f"{kind}_daily_hedge"] = {
                "min_variance_ratio": None if fit is None else fit.beta,
                "hedge_effectiveness": None if fit is None else fit.r2,
                "n_days": len(s),
            }
        out.append(row)
    return out


def analyze(store: MarketStore, req: AnalyzeRequest) -> dict[str, Any]:
    """The ``perphedge.analyze/1`` document (plus private ``_rolling`` series for plots)."""
    proxy = normalise_asset(req.proxy)
    assets = tuple(dict.fromkeys(normalise_asset(a) for a in req.assets))
    defaulted = req.factors is None
    factors = tuple(normalise_asset(x) for x in (req.factors if req.factors is not None else DEFAULT_FACTORS))
    twice = sorted({x for x in factors if factors.count(x) > 1})
    if twice:
        raise ConfigError(
            f"invalid `--factors`: {', '.join(twice)} is listed twice (a factor twice makes the fit singular)"
        )
    req = AnalyzeRequest(
        **{
            **{f: getattr(req, f) for f in req.__dataclass_fields__},
            "assets": assets,
            "proxy": proxy,
            "factors": factors,
        }
    )
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
    absent = [x for x in factors if f"{x}/USDT" not in present]
    if defaulted:  # the default factors: those the store has
        factors = tuple(x for x in factors if x not in absent)
        req = replace(req, factors=factors)
    elif absent:
        raise DataError(
            f"invalid `--factors`: no daily {req.source} history of factor {', '.join(absent)} in {where}; "
            f"it has {held} (import it, or leave it out of --factors)"
        )
    wanted = list(dict.fromkeys([*assets, proxy, *factors]))
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
        doc["basis"] = basis_stats(store, req.since, req.until)
    return doc


def run_analyze(req: AnalyzeRequest) -> dict[str, Any]:
    """Open the market store named by the request (read-only) and analyse: the ``perphedge.analyze/1`` document."""
    from perphedge.data.store import MarketStore

    with MarketStore(req.store_path, read_only=True) as store:
        return analyze(store, req)


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
        try:
            betas[a] = A.ols(s, f).beta
        except DataError as exc:
            raise DataError(
                f"the beta of {a} on {proxy} over the {window_days}-day window ending {rets.index[-1].date()} is "
                f"undefined: {exc} (give `betas:` in the file)"
            ) from None
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
