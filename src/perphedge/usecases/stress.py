"""``perphedge stress``: crash and rally replays, a shock grid, Monte Carlo, and a leverage recommendation.

The hedge is the plan of the portfolio file (its legs, collateral and leverage). Replays run it,
unrebalanced, through named windows of the stored history with daily highs (the backtest
kernel). The shock grid applies instantaneous moves at several leverages. Monte Carlo simulates
joint daily paths (bootstrap of history, GBM, Student-t) with intraday highs and counts, per leg
and leverage, the paths whose high reaches the liquidation price — with no top-up, and with the
margin topped up at every close so that only a one-day jump beyond the distance liquidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from perphedge.core.hedge import HedgePlan
from perphedge.core.scenarios import Scenario, evaluate
from perphedge.core.stress import MODELS
from perphedge.errors import ConfigError, DataError, InfeasibleHedgeError, PerphedgeError
from perphedge.usecases.montecarlo import _with_leverage, leverage_candidates, monte_carlo

if TYPE_CHECKING:
    from perphedge.config import PortfolioFile
    from perphedge.data.store import MarketStore
    from perphedge.specs import InstrumentRegistry
    from perphedge.usecases.engine import Engine

__all__ = ["NAMED_WINDOWS", "STRESS_SCHEMA", "StressRequest", "replays", "run_stress", "shock_grid", "stress"]

MAX_PATHS = 100_000_000  # memory is bounded by one chunk per worker (see usecases/montecarlo.py)
MAX_HORIZON_DAYS = 3650

STRESS_SCHEMA = "perphedge.stress/1"
NAMED_WINDOWS: tuple[tuple[str, str, str], ...] = (
    ("2020-03 COVID crash", "2020-03-05", "2020-03-20"),
    ("2021-05 crash", "2021-05-10", "2021-05-25"),
    ("2022-05 LUNA", "2022-05-05", "2022-05-20"),
    ("2022-11 FTX", "2022-11-05", "2022-11-15"),
    ("2024-08 carry unwind", "2024-07-29", "2024-08-10"),
    ("2025-10 liquidation cascade", "2025-10-06", "2025-10-20"),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class StressRequest:
    """What to stress: a portfolio file's hedge plan, the Monte Carlo set-up, and where the market store is.

    ``sigma``, ``drift`` (annual, fractions) and ``correlation`` (between every pair of assets) are for the
    parametric models only; ``max_memory`` is in bytes (``None``: half the machine's RAM). ``cluster``
    (``local`` or ``tcp://host:port``) and ``workers`` choose where the Monte Carlo chunks run (see
    :func:`perphedge.usecases.engine.make_engine`; ``None``/``None``: this process).
    """

    file: str
    model: str = "bootstrap"
    paths: int = 20_000
    horizon_days: int = 90
    seed: int = 0
    leverages: tuple[float, ...] | None = None
    sigma: float | None = None
    drift: float | None = None
    correlation: float | None = None
    max_liq_prob: float = 0.01
    max_memory: int | None = None
    as_of: str | None = None
    store_path: str | None = None
    specs: str | None = None
    cluster: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        from perphedge.usecases.engine import check_cluster

        check_cluster(self.cluster, self.workers)

        def finite(name: str, x: float | None) -> None:
            if x is not None and (isinstance(x, bool) or not math.isfinite(x)):
                raise ConfigError(f"invalid `{name}`: must be a finite number, was {x}")

        if self.model not in MODELS:
            raise ConfigError(f"invalid `--model`: must be one of {', '.join(MODELS)}, was {self.model!r}")
        if not 100 <= self.paths <= MAX_PATHS:
            raise ConfigError(f"invalid `--paths`: must be 100 … {MAX_PATHS:,}, was {self.paths}")
        if not 1 <= self.horizon_days <= MAX_HORIZON_DAYS:
            raise ConfigError(f"invalid `--horizon`: must be 1 … {MAX_HORIZON_DAYS} days, was {self.horizon_days}")
        if self.seed < 0:
            raise ConfigError(f"invalid `--seed`: must be >= 0, was {self.seed}")
        for name, x in (("--sigma", self.sigma), ("--drift", self.drift), ("--correlation", self.correlation)):
            finite(name, x)
            if x is not None and self.model == "bootstrap":
                raise ConfigError(
                    f"invalid `{name}`: the bootstrap model resamples history and ignores it; "
                    "use --model gbm or student_t"
                )
        if self.sigma is not None and not 0 < self.sigma <= 10:
            raise ConfigError(f"invalid `--sigma`: an annual volatility as a fraction in (0, 10], was {self.sigma}")
        if self.drift is not None and not -5 <= self.drift <= 5:
            raise ConfigError(
                f"invalid `--drift`: an annual drift as a fraction in [-5, 5] (0.2 = 20%/yr), was {self.drift}"
            )
        if self.correlation is not None and not -1 <= self.correlation <= 1:
            raise ConfigError(f"invalid `--correlation`: must be in [-1, 1], was {self.correlation}")
        finite("--max-liq-prob", self.max_liq_prob)
        if not 0 < self.max_liq_prob < 1:
            raise ConfigError(f"invalid `--max-liq-prob`: must be in (0, 1), was {self.max_liq_prob}")
        if self.leverages is not None:
            if not self.leverages:
                raise ConfigError("invalid `--leverage`: name at least one leverage, e.g. 1,2,3,5")
            for x in self.leverages:
                finite("--leverage", x)
            if any(x < 1 for x in self.leverages):
                raise ConfigError(f"invalid `--leverage`: every leverage must be >= 1, were {list(self.leverages)}")
        if self.max_memory is not None and self.max_memory <= 0:
            raise ConfigError(f"invalid `--max-memory`: must be > 0 bytes, was {self.max_memory}")


def run_stress(req: StressRequest) -> dict[str, Any]:
    """Load the portfolio file, plan its hedge, open the market store (if any) and stress: the stress document."""
    import contextlib
    from pathlib import Path

    from perphedge.config import load_portfolio_file
    from perphedge.data.store import MarketStore, default_store_path
    from perphedge.specs import default_registry
    from perphedge.usecases.plan import plan_portfolio

    registry = default_registry(req.specs)
    pfile = load_portfolio_file(req.file)
    if pfile.positions:
        raise ConfigError(
            f"{req.file}: the portfolio has DeFi `positions:`, which `stress` does not simulate yet (its replays and "
            "Monte Carlo move holdings only): plan them with `perphedge plan`, or remove them"
        )
    outcome = plan_portfolio(pfile, source=req.file, registry=registry, as_of=req.as_of, store_path=req.store_path)
    path = Path(req.store_path) if req.store_path else default_store_path()
    if req.store_path and not path.is_file():
        raise DataError(f"invalid `--store`: no market store file at {path}")
    from perphedge.usecases.engine import make_engine

    engine = make_engine(req.cluster, req.workers, default_workers=1 if req.cluster is None else None, start="spawn")
    try:
        # no store: the parametric models still run (replays and the bootstrap need history)
        with MarketStore(path, read_only=True) if path.exists() else contextlib.nullcontext() as st:
            doc = stress(
                pfile,
                outcome.plan,
                outcome.instrument_spec,
                store=st,
                registry=registry,
                model=req.model,
                paths=req.paths,
                horizon=req.horizon_days,
                seed=req.seed,
                leverages=list(req.leverages) if req.leverages is not None else None,
                sigma=req.sigma,
                drift=req.drift,
                correlation=req.correlation,
                max_liq_prob=req.max_liq_prob,
                max_memory=req.max_memory,
                engine=engine,
            )
    except PerphedgeError as exc:
        msg = str(exc)
        raise type(exc)(msg if msg.startswith(req.file) else f"{req.file}: {msg}") from None
    finally:
        engine.close()
    doc["source"] = req.file
    doc["engine"] = engine.describe()
    return doc


# ------------------------------------------------------------------------------------------------ replays


def _rally_windows(store: MarketStore, assets: list[str], days: int = 30, top: int = 3) -> list[tuple[str, str, str]]:
    """The strongest BTC rallies (what liquidates a short hedge) while every held asset was trading."""
    from perphedge.data.reader import ohlc

    frame = ohlc(store, sorted({"BTC", *assets}))["close"].dropna()
    close = frame["BTC"]
    ratio = (close.shift(-days) / close).dropna()
    picked: list[tuple[str, str, str]] = []
    used: list[Any] = []
    for ts, r in ratio.sort_values(ascending=False).items():
        if any(abs((ts - u).days) < days for u in used):
            continue
        used.append(ts)
        end = ts + np.timedelta64(days, "D")
        picked.append((f"BTC rally {ts.date()} (+{r - 1:.0%} in {days}d)", str(ts.date()), str(end.date())))
        if len(picked) >= top:
            break
    return picked


def replays(
    pfile: PortfolioFile, plan: HedgePlan, store: MarketStore, registry: InstrumentRegistry, instrument_spec: str
) -> list[dict[str, Any]]:
    """The plan's hedge, unrebalanced, through each named and rally window (daily highs)."""
    from perphedge.config import parse_run
    from perphedge.usecases.backtest import prepare, run

    req = plan.request
    hedge: dict[str, Any] = {
        "leverage": req.leverage,
        "collateral": req.collateral.value,
        "scope": req.scope,
        "method": req.method.value,
    }
    if instrument_spec.startswith("direct:"):
        hedge["instrument"] = instrument_spec.split(" ", maxsplit=1)[0]
        hedge["proxy"] = req.proxy_legs[0].instrument.id
    elif len(req.proxy_legs) > 1:
        hedge["legs"] = [{"instrument": leg.instrument.id, "weight": leg.weight} for leg in req.proxy_legs]
    else:
        hedge["instrument"] = req.proxy_legs[0].instrument.id
    portfolio = pfile.model_dump(mode="json", exclude_none=True)
    portfolio["betas"] = {**portfolio.get("betas", {}), **{k: v for k, v in req.betas.items()}}
    out = []
    held = sorted({h.asset for h in plan.portfolio.holdings if not h.is_stable})
    for name, start, end in [*NAMED_WINDOWS, *_rally_windows(store, held)]:
        doc = {
            "portfolio": portfolio,
            "start": start,
            "end": end,
            "hedge": hedge,
            "policy": {"kind": "static", "ratio": req.ratio, "band": 0.99},
        }
        row: dict[str, Any] = {"name": name, "start": start, "end": end}
        try:
            run_cfg = parse_run(doc, name)
            from perphedge.config import parse_portfolio

            prep = prepare(run_cfg, parse_portfolio(portfolio, name), store, registry)
            res = run(prep, run_cfg, config_hash="replay")
        except PerphedgeError as exc:
            out.append(row | {"skipped": str(exc)})
            continue
        s = res["_series"]
        h, u = s["hedged"], s["unhedged"]
        liq = res["liquidations"]
        row.update(
            {
                "spot_pnl_usd": float(u[-1] - u[0]),
                "hedge_pnl_usd": float((h[-1] - h[0]) - (u[-1] - u[0])),
                "net_pnl_usd": float(h[-1] - h[0]),
                "start_value_usd": float(u[0]),
                "max_drawdown": res["hedged"]["max_drawdown"],
                "unhedged_max_drawdown": res["unhedged"]["max_drawdown"],
                "liquidated": bool(liq),
                "liquidation_day": liq[0]["date"] if liq else None,
                "proxy_return": float(prep.closes[prep.proxy][-1] / prep.closes[prep.proxy][0] - 1),
                "portfolio_return": float(u[-1] / u[0] - 1),
                "path": [
                    {"date": str(d.date()), "net_pnl_usd": float(x - h[0])} for d, x in zip(s["dates"], h, strict=True)
                ],
            }
        )
        out.append(row)
    return out


# ------------------------------------------------------------------------------------------------ shock grid


def shock_grid(
    plan: HedgePlan, leverages: list[float], stressed_funding_8h: float = -0.001, funding_days: int = 30
) -> list[dict[str, Any]]:
    """Proxy moves (alts β × proxy), decoupling (alts down, proxy flat) and funding regimes, per leverage."""
    proxy = plan.request.proxy_asset
    shocks = [Scenario(name=f"{proxy} {r:+.0%}", proxy_return=r) for r in (-0.5, -0.3, -0.2, -0.1, 0.1, 0.2, 0.3, 0.5)]
    shocks += [
        Scenario(name=f"{proxy} flat, others {r:+.0%}", proxy_return=0.0, shocks={proxy: 0.0}, default=r)
        for r in (-0.3, -0.2, -0.1)
    ]
    shocks += [
        Scenario(name=f"{proxy} {r:+.0%}, others flat", proxy_return=r, shocks={proxy: r}, default=0.0)
        for r in (0.2, 0.5)
    ]
    rows = []
    value = plan.portfolio.value_usd
    for lev in leverages:
        try:
            p = _with_leverage(plan, lev)
        except PerphedgeError as exc:
            rows.append({"leverage": lev, "error": str(exc)})
            continue
        notional = sum(leg.notional_usd for leg in p.legs)
        for regime, rate in (("normal", plan.request.funding_rate_8h), ("stressed", stressed_funding_8h)):
            carry = notional * rate * 3 * funding_days  # + = received by the shorts
            for sc in shocks:
                res = evaluate(p, sc)
                net = res.net_pnl_usd + (0.0 if res.liquidated else carry)
                rows.append(
                    {
                        "leverage": lev,
                        "funding_regime": regime,
                        "funding_rate_8h": rate,
                        "funding_days": funding_days,
                        "scenario": sc.name,
                        "proxy_return": res.proxy_return,
                        "spot_pnl_usd": res.spot_pnl_usd,
                        "hedge_pnl_usd": res.hedge_pnl_usd,
                        "funding_usd": 0.0 if res.liquidated else carry,
                        "net_pnl_usd": net,
                        "net_pnl_pct": net / value if value else None,
                        "liquidated": res.liquidated,
                    }
                )
    return rows


# ------------------------------------------------------------------------------------------------ Monte Carlo


def stress(
    pfile: PortfolioFile,
    plan: HedgePlan,
    instrument_spec: str,
    *,
    store: MarketStore | None,
    registry: InstrumentRegistry,
    model: str = "bootstrap",
    paths: int = 20_000,
    horizon: int = 90,
    seed: int = 0,
    leverages: list[float] | None = None,
    sigma: float | None = None,
    drift: float | None = None,
    correlation: float | None = None,
    max_liq_prob: float = 0.01,
    max_memory: int | None = None,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """The ``perphedge.stress/1`` document (the Monte Carlo chunks run on ``engine``; None: this process)."""
    if not plan.legs:
        raise InfeasibleHedgeError("the plan has no hedge leg to stress (ratio 0?)")
    levs = leverage_candidates(plan, leverages)
    dropped = _dropped_leverages(plan, leverages or [], levs)
    if not levs:
        raise ConfigError(
            "invalid `--leverage`: no leverage left to test: "
            + "; ".join(f"{d['leverage']:g}x {d['reason']}" for d in dropped)
        )
    doc: dict[str, Any] = {
        "schema": STRESS_SCHEMA,
        "leverage": plan.request.leverage,
        "leverages": levs,
        "leverages_dropped": dropped,
        "portfolio_value_usd": plan.portfolio.value_usd,
    }
    doc["replays"] = replays(pfile, plan, store, registry, instrument_spec) if store is not None else []
    doc["shock_grid"] = shock_grid(plan, levs)
    doc["monte_carlo"] = monte_carlo(
        plan,
        store,
        model=model,
        paths=paths,
        horizon=horizon,
        seed=seed,
        leverages=levs,
        sigma=sigma,
        drift=drift,
        correlation=correlation,
        max_liq_prob=max_liq_prob,
        max_memory=max_memory,
        engine=engine,
    )
    per_model = {}
    for m in MODELS:
        if m == model:
            per_model[m] = doc["monte_carlo"]["recommended"]
            continue
        if m == "bootstrap" and store is None:
            continue
        parametric = m != "bootstrap"  # the bootstrap resamples history: no volatility, drift or correlation
        res = monte_carlo(
            plan,
            store,
            model=m,
            paths=paths,
            horizon=horizon,
            seed=seed,
            leverages=levs,
            sigma=sigma if parametric else None,
            drift=drift if parametric else None,
            correlation=correlation if parametric else None,
            max_liq_prob=max_liq_prob,
            max_memory=max_memory,
            engine=engine,
        )
        per_model[m] = res["recommended"]
    doc["recommended_leverage"] = doc["monte_carlo"]["recommended"]["without_top_up"]
    doc["recommended_leverage_with_top_up"] = doc["monte_carlo"]["recommended"]["with_top_up"]
    doc["recommended_by_model"] = per_model
    return doc


def _dropped_leverages(plan: HedgePlan, requested: list[float], kept: list[float]) -> list[dict[str, Any]]:
    """The requested leverages :func:`leverage_candidates` left out, each with the reason."""
    from perphedge.core.hedge import CollateralSource

    max_lev = min(leg.instrument.max_leverage for leg in plan.legs)
    limiting = min(plan.legs, key=lambda leg: leg.instrument.max_leverage).instrument.id
    out = []
    for x in dict.fromkeys(requested):
        if x in kept:
            continue
        if x > max_lev:
            reason = f"is above the maximum {max_lev:g}x of {limiting}"
        else:
            inverse = next(
                (
                    leg.instrument.id
                    for leg in plan.legs
                    if leg.instrument.is_inverse and leg.collateral_source is CollateralSource.BUY
                ),
                "inverse leg",
            )
            reason = f"is not above 1x: {inverse} at 1x on bought collateral is a synthetic dollar, not a hedge"
        out.append({"leverage": x, "reason": reason})
    return out
