"""``perphedge optimize``: choose the whole hedge by what it would have done out of sample.

Data is read from the store once per hedge instrument set (:func:`perphedge.usecases.backtest.prepare`); every
design then runs through the backtest's numba leg kernel (:func:`perphedge.core._kernels.leg_path`) over the
whole period, once. Every step of the kernel uses only what is known at that bar's close, so a window of the
run is what the design would have done in that window. Walk-forward: on each training window the feasible
design with the lowest objective is chosen (risk of the book's daily returns, λ × P(liquidation) from a
bootstrap Monte Carlo of the *training* window's daily returns and intraday highs, minus the carry), and it is
scored on the following test window. The recommendation is the choice on the latest training window.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perphedge.core import _kernels as K
from perphedge.core.hedge import CollateralSource
from perphedge.core.optimize import (
    COLLATERALS,
    DEFAULT_LEVERAGES,
    DEFAULT_RATIOS,
    HEDGES,
    KINDS,
    METHODS,
    POLICIES,
    RISKS,
    Design,
    HedgeChoice,
    choose,
    enumerate_designs,
    objective,
    pareto_front,
    rolling_ols_beta,
    stability,
    walk_forward_windows,
    window_carry,
    window_risk,
)
from perphedge.core.policies import PolicySpec, policy_decisions
from perphedge.core.units import is_stablecoin
from perphedge.errors import ConfigError, DataError, PerphedgeError

if TYPE_CHECKING:
    from perphedge.config import PortfolioFile, RunFile
    from perphedge.data.store import MarketStore
    from perphedge.specs import InstrumentRegistry
    from perphedge.usecases.backtest import Prepared

__all__ = [
    "OPTIMIZE_SCHEMA",
    "Market",
    "OptimizeRequest",
    "evaluate",
    "hedge_choices",
    "optimize",
    "plan_document",
    "prepare_market",
    "run_optimize",
    "write_plots",
]

OPTIMIZE_SCHEMA = "perphedge.optimize/1"
LISTING_SKIP_DAYS = 7
MAX_DESIGNS = 20_000
_O = {name: i for i, name in enumerate(K.OUT_COLUMNS)}


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimizeRequest:
    """What to search and how to score it (defaults are the documented ones)."""

    file: str
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    leverages: tuple[float, ...] = DEFAULT_LEVERAGES
    hedges: tuple[str, ...] = HEDGES
    kinds: tuple[str, ...] = KINDS
    venues: tuple[str, ...] | None = None  # None: the venue of the portfolio's hedge instrument
    methods: tuple[str, ...] = METHODS
    collaterals: tuple[str, ...] = COLLATERALS
    policies: tuple[str, ...] = POLICIES
    risk: str = "variance"
    lam: float = 1.0
    horizon: int = 30
    max_liq_prob: float = 0.01
    paths: int = 2000
    seed: int = 0
    train: int = 365
    test: int = 90
    start: str | None = None
    end: str | None = None
    band: float = 0.10
    every_days: int = 30
    beta_window: int = 90
    ewma_lambda: float = 0.94
    btc_eth_weight: float = 0.5
    store_path: str | None = None
    specs: str | None = None
    cluster: str | None = None  # Dask: local or tcp://host:port (None: this process, or a pool for workers > 1)
    workers: int | None = None

    def __post_init__(self) -> None:
        def num(name: str, v: Any, lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> None:
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
            if not ok:
                lb, rb = ("(" if lo_open else "["), (")" if hi_open else "]")
                raise ConfigError(f"invalid `--{name}`: must be in {lb}{lo:g}, {hi:g}{rb}, was {v!r}")

        if self.risk not in RISKS:
            raise ConfigError(f"invalid `--risk`: must be one of {', '.join(RISKS)}, was {self.risk!r}")
        num("lambda", self.lam, 0, 1e6)
        num("max-liq-prob", self.max_liq_prob, 0, 1, lo_open=True, hi_open=True)
        num("band", self.band, 0, 1, hi_open=True)
        num("ewma-lambda", self.ewma_lambda, 0, 1, lo_open=True, hi_open=True)
        num("btc-eth-weight", self.btc_eth_weight, 0, 1, lo_open=True, hi_open=True)
        for name, v, lo, hi in (
            ("horizon", self.horizon, 1, 365),
            ("paths", self.paths, 100, 200_000),
            ("seed", self.seed, 0, 2**63 - 1),
            ("train", self.train, 60, 3650),
            ("test", self.test, 30, 3650),
            ("every-days", self.every_days, 1, 3650),
            ("beta-window", self.beta_window, 10, 3650),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"invalid `--{name}`: must be a whole number in [{lo}, {hi:,}], was {v!r}")
        for name, seq, allowed in (
            ("hedges", self.hedges, HEDGES),
            ("kinds", self.kinds, KINDS),
            ("methods", self.methods, METHODS),
            ("collateral", self.collaterals, COLLATERALS),
            ("policies", self.policies, POLICIES),
        ):
            if not seq or any(x not in allowed for x in seq):
                raise ConfigError(f"invalid `--{name}`: must list some of {', '.join(allowed)}, was {list(seq)!r}")
        if not self.ratios or any(not (math.isfinite(r) and 0 < r <= 2) for r in self.ratios):
            raise ConfigError(f"invalid `--ratios`: every value must be in (0, 2], was {list(self.ratios)!r}")
        if not self.leverages or any(not (math.isfinite(x) and 1 <= x <= 125) for x in self.leverages):
            raise ConfigError(f"invalid `--leverages`: every value must be in [1, 125], was {list(self.leverages)!r}")


@dataclass(slots=True, kw_only=True)
class Market:
    """Everything the search needs, loaded once: the spot book, and each hedge choice's prepared legs."""

    dates: Any  # pandas DatetimeIndex
    closes: dict[str, np.ndarray]
    highs: dict[str, np.ndarray]
    quantities: dict[str, float]
    cash0: float
    scope_assets: list[str]
    betas_file: dict[str, float]
    preps: dict[str, Prepared]  # hedge choice label → prepared legs
    choices: list[HedgeChoice]
    run_cfg: RunFile
    warnings: list[str] = field(default_factory=list)
    not_available: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Bars (days)."""
        return len(self.dates)

    @property
    def unhedged(self) -> np.ndarray:
        """USD value of the spot book per bar."""
        out = np.full(self.n, self.cash0)
        for a, q in self.quantities.items():
            out = out + q * self.closes[a]
        return out


def hedge_choices(
    registry: InstrumentRegistry,
    *,
    hedges: tuple[str, ...],
    kinds: tuple[str, ...],
    venues: tuple[str, ...],
    held: list[str],
    btc_eth_weight: float = 0.5,
) -> tuple[list[HedgeChoice], list[str]]:
    """The hedge instruments to try on each venue and kind, and those the specs do not list (why)."""
    from perphedge.core.instruments import ContractKind

    out: list[HedgeChoice] = []
    missing: list[str] = []
    for venue in venues:
        for kind in kinds:
            ck = ContractKind(kind)
            btc, eth = registry.find(venue, ck, "BTC"), registry.find(venue, ck, "ETH")
            for name in hedges:
                if name == "btc" and btc is not None:
                    out.append(
                        HedgeChoice(
                            name="btc",
                            kind=kind,
                            venue=venue,
                            legs=((btc.id, 1.0),),
                            max_leverage=btc.max_leverage,
                            bases=("BTC",),
                        )
                    )
                elif name == "eth" and eth is not None:
                    out.append(
                        HedgeChoice(
                            name="eth",
                            kind=kind,
                            venue=venue,
                            legs=((eth.id, 1.0),),
                            max_leverage=eth.max_leverage,
                            bases=("ETH",),
                        )
                    )
                elif name == "btc_eth" and btc is not None and eth is not None:
                    w = round(btc_eth_weight, 6)
                    out.append(
                        HedgeChoice(
                            name="btc_eth",
                            kind=kind,
                            venue=venue,
                            legs=((btc.id, w), (eth.id, round(1.0 - w, 6))),
                            max_leverage=min(btc.max_leverage, eth.max_leverage),
                            bases=("BTC", "ETH"),
                        )
                    )
                elif name == "own" and btc is not None:
                    direct = {a: registry.find(venue, ck, a) for a in held}
                    own = {a: i for a, i in direct.items() if i is not None}
                    if not own:
                        missing.append(f"own {kind} {venue}: no held coin has its own {kind} perpetual there")
                        continue
                    rest = [a for a in held if a not in own]
                    insts = [*own.values(), *([btc] if rest else [])]
                    out.append(
                        HedgeChoice(
                            name="own",
                            kind=kind,
                            venue=venue,
                            legs=((btc.id, 1.0),),
                            direct=tuple(sorted((a, i.id) for a, i in own.items())),
                            max_leverage=min(i.max_leverage for i in insts),
                            bases=tuple(sorted({i.base for i in insts})),
                        )
                    )
                else:
                    missing.append(f"{name} {kind} {venue}: not in the instrument specs")
    return out, missing


def _hedge_block(choice: HedgeChoice) -> dict[str, Any]:
    if choice.name == "own":
        block: dict[str, Any] = {"instrument": f"direct:{choice.venue}:{choice.kind}"}
    elif len(choice.legs) == 1:
        block = {"instrument": choice.legs[0][0]}
    else:
        block = {"legs": [{"instrument": i, "weight": w} for i, w in choice.legs]}
    if choice.kind == "linear":
        block |= {"collateral": "stable", "leverage": 2}
    else:
        block |= {"collateral": "buy", "leverage": 2}
    return block


def _period(store: MarketStore, assets: list[str], start: str | None, end: str | None) -> tuple[str, str]:
    """The run's period: by default from a week after the last listing of the coins used to their last joint close."""
    import pandas as pd

    from perphedge.data.reader import ohlc

    close = ohlc(store, assets, fields=("close",))["close"]
    missing = [a for a in assets if a not in close.columns or close[a].notna().sum() == 0]
    if missing:
        raise DataError(f"no daily history of {', '.join(missing)} in the store (import or fetch it)")
    first = max(close[a].first_valid_index() for a in assets) + pd.Timedelta(days=LISTING_SKIP_DAYS)
    last = min(close[a].last_valid_index() for a in assets)
    s = str(first.date()) if start is None else start
    e = str(last.date()) if end is None else end
    if start is not None and start < str(first.date()):
        raise DataError(
            f"invalid `--start` {start}: the store's joint history of {', '.join(assets)} starts {first.date()} "
            f"(a week after the last listing); start on or after it"
        )
    if end is not None and end > str(last.date()):
        raise DataError(f"invalid `--end` {end}: the store's joint history of {', '.join(assets)} ends {last.date()}")
    if e <= s:
        raise ConfigError(f"invalid period: `--end` {e} must be after `--start` {s}")
    return s, e


def prepare_market(
    pfile: PortfolioFile, pdoc: dict[str, Any], store: MarketStore, registry: InstrumentRegistry, req: OptimizeRequest
) -> Market:
    """Read the store once per hedge choice (the backtest's own :func:`prepare`) and align everything."""
    from perphedge.config import parse_run
    from perphedge.usecases.backtest import prepare

    if pfile.positions:
        raise ConfigError(f"{req.file}: optimize searches hedges of holdings; DeFi `positions:` are not supported")
    held = sorted({h.asset.upper() for h in pfile.holdings if not is_stablecoin(h.asset)})
    if not held:
        raise ConfigError(f"{req.file}: the portfolio holds only stablecoins: there is nothing to hedge")
    venues = req.venues
    if venues is None:
        spec = pfile.hedge.instrument or (pfile.hedge.legs[0].instrument if pfile.hedge.legs else None)
        venue = (
            spec.split(":")[1] if spec and spec.lower().startswith("direct:") else (spec or "binance:").split(":")[0]
        )
        venues = (venue.lower(),)
    for v in venues:
        if v not in registry.exchanges():
            where = "invalid `--venues`" if req.venues is not None else f"{req.file}: field `hedge.instrument`"
            raise ConfigError(
                f"{where}: unknown venue {v!r}; the specs list {', '.join(registry.exchanges())} (or give --venues)"
            )
    choices, missing = hedge_choices(
        registry, hedges=req.hedges, kinds=req.kinds, venues=venues, held=held, btc_eth_weight=req.btc_eth_weight
    )
    if not choices:
        raise ConfigError("no hedge instrument to try: " + "; ".join(missing))
    bases = sorted({b for c in choices for b in c.bases})
    start, end = _period(store, sorted({*held, *bases, "BTC"}), req.start, req.end)
    preps: dict[str, Prepared] = {}
    run_cfg: RunFile | None = None
    warnings: list[str] = []
    kept: list[HedgeChoice] = []
    for c in choices:
        doc = {
            "portfolio": pdoc,
            "start": start,
            "end": end,
            "hedge": _hedge_block(c),
            "margin": {"reopen_after_days": 1},
        }
        rc = parse_run(doc, f"{req.file} (optimize)")
        try:
            prep = prepare(rc, pfile, store, registry)
        except PerphedgeError as exc:
            missing.append(f"{c.label}: {exc}")
            continue
        preps[c.label] = prep
        kept.append(c)
        run_cfg = run_cfg or rc
        warnings += [w for w in prep.warnings if w not in warnings]
    if not kept or run_cfg is None:
        raise DataError("no hedge instrument could be prepared: " + "; ".join(missing))
    first = preps[kept[0].label]
    closes = dict(first.closes)
    highs: dict[str, np.ndarray] = {}
    for p in preps.values():
        closes |= p.closes
        for leg in p.legs:
            highs[leg.instrument.base] = leg.h
    if len(first.dates) < req.train + req.test:
        raise DataError(
            f"the period {start} → {end} has {len(first.dates)} days, fewer than --train {req.train}d + --test "
            f"{req.test}d: shorten the windows or extend the period"
        )
    market = Market(
        dates=first.dates,
        closes=closes,
        highs=highs,
        quantities=first.quantities,
        cash0=first.cash0,
        scope_assets=first.scope_assets,
        betas_file={k.upper(): float(v) for k, v in pfile.betas.items()},
        preps=preps,
        choices=kept,
        run_cfg=run_cfg,
        warnings=warnings,
        not_available=missing,
    )
    _check_hedgeable(market, req)
    return market


def _check_hedgeable(market: Market, req: OptimizeRequest) -> None:
    """Refuse a book smaller than half a lot of every hedge instrument on every day (each design would round its
    hedge to nothing, and the "recommendation" would be a hedge that cannot be placed)."""
    exposure = np.zeros(market.n)
    for a, q in market.quantities.items():
        if a in market.closes:
            exposure = exposure + abs(q) * market.closes[a]
    smallest: tuple[float, str] | None = None
    for prep in market.preps.values():
        for leg in prep.legs:
            inst = leg.instrument
            lot_usd = np.array([inst.notional_usd(inst.lot_size, float(c)) for c in leg.c])
            with np.errstate(invalid="ignore", divide="ignore"):
                if np.nanmax(exposure / lot_usd) >= 0.5:
                    return
            low = float(np.nanmin(lot_usd))
            if smallest is None or low < smallest[0]:
                smallest = (low, f"{inst.id} ({inst.lot_size:g} contract{'s' if inst.lot_size != 1 else ''})")
    if smallest is not None:
        raise ConfigError(
            f"{req.file}: the holdings are worth at most {float(np.nanmax(exposure)):.4g} USD, less than half a lot of "
            f"every hedge instrument tried (the smallest lot: {smallest[1]}, {smallest[0]:.4g} USD): no hedge can "
            "be placed; hedge a larger book"
        )


# ------------------------------------------------------------------------------------------- design paths


@dataclass(slots=True, kw_only=True)
class _Path:
    """One design's run over the whole period."""

    book: np.ndarray  # hedged book, USD per bar
    spot: np.ndarray  # the portfolio without the hedge, USD per bar
    returns: np.ndarray  # daily hedged PnL over the previous bar's portfolio value (element 0: NaN)
    carry: np.ndarray  # funding received − fees − slippage, USD per bar
    legs_lp: list[tuple[str, np.ndarray]]  # (base coin, liquidation price / close per bar; inf: none)
    liquidated: np.ndarray  # bool per bar: a leg was liquidated
    margin_short: np.ndarray  # bool per bar: holdings collateral needed more coin than held
    error: str | None = None
    wiped_at: int | None = None  # first bar the hedged book is <= 0
    final_betas: dict[str, float] = field(default_factory=dict)
    funding_8h: float = 0.0001


class _Caches:
    def __init__(self) -> None:
        self.betas: dict[tuple[str, str, str], np.ndarray] = {}
        self.decisions: dict[tuple[str, float, str], Any] = {}


def _simple_returns(c: np.ndarray) -> np.ndarray:
    r = np.full(len(c), np.nan)
    r[1:] = c[1:] / c[:-1] - 1.0
    return r


def _beta_path(market: Market, req: OptimizeRequest, method: str, asset: str, base: str, caches: _Caches) -> np.ndarray:
    """β of ``asset`` on ``base`` known at each bar's close (1 where no estimate yet, stated in the assumptions)."""
    key = (method, asset, base)
    if key in caches.betas:
        return caches.betas[key]
    n = market.n
    if asset == base or method == "notional":
        out = np.ones(n)
    elif method == "beta":
        out = np.full(n, market.betas_file.get(asset, 1.0))
    elif method == "min_variance":
        est = rolling_ols_beta(
            _simple_returns(market.closes[asset]), _simple_returns(market.closes[base]), req.beta_window
        )
        out = np.where(np.isfinite(est), est, 1.0)
    else:
        from perphedge.core.analytics import ewma_ratios

        s, f = _simple_returns(market.closes[asset])[1:], _simple_returns(market.closes[base])[1:]
        est = np.full(n, np.nan)
        est[1:] = ewma_ratios(s, f, lam=req.ewma_lambda, warmup=20)  # element t: returns up to bar t
        out = np.where(np.isfinite(est), est, 1.0)
    out = np.clip(out, 0.0, 10.0)  # a short hedge never goes long; β above 10 is an estimation accident
    caches.betas[key] = out
    return out


def _policy(design_policy: str, ratio: float, req: OptimizeRequest) -> PolicySpec:
    if design_policy == "calendar":
        return PolicySpec(kind="calendar", ratio=ratio, every_days=req.every_days)
    return PolicySpec(kind="drift_band", ratio=ratio, band=req.band)


def _run_design(market: Market, design: Design, req: OptimizeRequest, caches: _Caches) -> _Path:
    """The design through the backtest's leg kernel over the whole period."""
    from perphedge.usecases.backtest import leg_params

    prep = market.preps[design.hedge.label]
    n = market.n
    unhedged = market.unhedged
    book = unhedged.copy()
    carry = np.zeros(n)
    liquidated = np.zeros(n, dtype=bool)
    short = np.zeros(n, dtype=bool)
    legs_lp: list[tuple[str, np.ndarray]] = []
    coll = CollateralSource(design.collateral)
    p = replace(prep, leverage=design.leverage, collateral=coll)
    final_betas: dict[str, float] = {}
    for leg in prep.legs:
        inst = leg.instrument
        base = inst.base
        exposure = np.zeros(n)
        for a, w in leg.weights.items():
            if a in market.quantities:
                beta = _beta_path(market, req, design.method, a, base, caches)
                exposure += w * beta * market.quantities[a] * market.closes[a]
                final_betas[a] = float(beta[-1])
        dkey = (design.policy, design.ratio, inst.id)
        if dkey not in caches.decisions:
            caches.decisions[dkey] = policy_decisions(
                _policy(design.policy, design.ratio, req),
                days=prep.days,
                proxy_close=prep.closes[prep.proxy],
                fear_greed=None,
                funding_daily=leg.funding,
                periods_per_year=prep.periods_per_year,
                bar_hours=prep.bar_hours,
            )
        dec = caches.decisions[dkey]
        leg_coll = coll if inst.is_inverse else CollateralSource.STABLE
        params = leg_params(p, market.run_cfg, leg, leg_coll, float(dec.target[0] * exposure[0]), dec.band)
        out = np.zeros((n, len(K.OUT_COLUMNS)))
        K.leg_path(leg.o, leg.h, leg.lo, leg.c, exposure, dec.target, dec.allowed, leg.funding, params, out)
        coin_out = np.cumsum(out[:, _O["spot_coin_flow"]])
        book += out[:, _O["account_usd"]] - np.cumsum(out[:, _O["cash_flow_usd"]]) - coin_out * market.closes[base]
        carry += out[:, _O["funding_usd"]] - out[:, _O["fee_usd"]] - out[:, _O["slippage_usd"]]
        liquidated |= out[:, _O["liquidated"]] > 0
        lp = out[:, _O["liq_price"]] / leg.c
        lp = np.where(np.isfinite(lp) & (lp > 0), lp, np.inf)
        legs_lp.append((base, lp))
        if leg_coll is CollateralSource.HOLDINGS:
            short |= market.quantities.get(base, 0.0) - coin_out < -1e-9
    error, wiped = None, None
    if (book <= 0).any() or not np.isfinite(book).all():
        wiped = int(np.argmax(~(book > 0)))
        error = f"the hedged book is wiped out on {market.dates[wiped].date()}"
    with np.errstate(invalid="ignore", divide="ignore"):
        rets = np.full(n, np.nan)
        rets[1:] = (book[1:] - book[:-1]) / unhedged[:-1]
    f8 = float(np.mean(prep.legs[0].funding)) * 8.0 / prep.bar_hours if prep.legs else 0.0001
    return _Path(
        book=book,
        spot=unhedged,
        returns=rets,
        carry=carry,
        legs_lp=legs_lp,
        liquidated=liquidated,
        margin_short=short,
        error=error,
        wiped_at=wiped,
        final_betas=final_betas,
        funding_8h=f8,
    )


def _synthetic_dollar(market: Market, choice: HedgeChoice) -> _Path:
    """The guides' 1x inverse short on bought coins (notional = the exposure): hedge PnL and coin value cancel, so
    the book is the unhedged one plus funding on the notional, minus the entry fee."""
    prep = market.preps[choice.label]
    leg = prep.legs[0]
    unhedged = market.unhedged
    q = sum(market.quantities[a] * market.closes[a][0] for a in market.scope_assets if a in market.quantities)
    carry = q * leg.funding
    carry[0] = -q * leg.instrument.taker_fee
    book = unhedged + np.cumsum(carry)
    rets = np.full(market.n, np.nan)
    rets[1:] = (book[1:] - book[:-1]) / unhedged[:-1]
    return _Path(
        book=book,
        spot=unhedged,
        returns=rets,
        carry=carry,
        legs_lp=[],
        liquidated=np.zeros(market.n, dtype=bool),
        margin_short=np.zeros(market.n, dtype=bool),
    )


def _unhedged_path(market: Market) -> _Path:
    book = unhedged = market.unhedged
    rets = np.full(market.n, np.nan)
    rets[1:] = (book[1:] - book[:-1]) / unhedged[:-1]
    return _Path(
        book=book,
        spot=unhedged,
        returns=rets,
        carry=np.zeros(market.n),
        legs_lp=[],
        liquidated=np.zeros(market.n, dtype=bool),
        margin_short=np.zeros(market.n, dtype=bool),
    )


# ------------------------------------------------------------------------------------------ Monte Carlo


def _max_highs(market: Market, bases: list[str], lo: int, hi: int, req: OptimizeRequest, salt: int) -> np.ndarray:
    """Bootstrap of bars ``[lo, hi)``: the largest intraday high over the start, paths × bases (price ratios)."""
    from perphedge.core.stress import simulate

    rets = np.column_stack([np.log(market.closes[b][lo:hi] / market.closes[b][lo - 1 : hi - 1]) for b in bases])
    highs = np.column_stack(
        [np.clip(np.log(market.highs[b][lo:hi] / market.closes[b][lo - 1 : hi - 1]), 0.0, None) for b in bases]
    )
    if not (np.isfinite(rets).all() and np.isfinite(highs).all()):
        raise DataError(
            f"missing prices of {', '.join(bases)} between {market.dates[lo].date()} and {market.dates[hi - 1].date()}"
        )
    sim = simulate(
        model="bootstrap",
        paths=req.paths,
        horizon=req.horizon,
        watch=list(range(len(bases))),
        seed=(req.seed * 1_000_003 + salt) % (2**63 - 1),
        returns=rets,
        highs=highs,
    )
    return np.asarray(sim["max_high"])


def _p_liq(path: _Path, bar: int, max_high: np.ndarray, col: dict[str, int], since: int) -> float:
    """P(any leg liquidated within the horizon) for the position held at the close of ``bar``; a leg flat at that
    close (just liquidated, waiting to reopen) counts with its last liquidation distance since bar ``since``."""
    hit = np.zeros(max_high.shape[0], dtype=bool)
    for base, lp in path.legs_lp:
        seen = lp[since : bar + 1]
        finite = seen[np.isfinite(seen)]
        if len(finite):
            hit |= max_high[:, col[base]] >= finite[-1]
    return float(hit.mean())


def _score(
    path: _Path, lo: int, hi: int, max_high: np.ndarray, col: dict[str, int], req: OptimizeRequest, at: int
) -> dict[str, Any]:
    """Risk, carry and objective of a path over bars ``[lo, hi)``, P(liq) of the position held at the close of
    bar ``at`` under ``max_high``; ``feasible`` and why not."""
    risk = window_risk(path.returns[lo:hi], req.risk, req.horizon)
    carry = window_carry(path.carry[lo:hi], path.spot[lo:hi], req.horizon)
    p = _p_liq(path, at, max_high, col, min(lo, at))
    violations = []
    if path.wiped_at is not None and path.wiped_at < max(hi, at + 1):
        violations.append(path.error or "the hedged book is wiped out")
    liquidated = int(path.liquidated[lo:hi].sum())
    if liquidated and at >= hi - 1:  # a training window: a liquidation seen in it breaks the constraint
        violations.append(f"liquidated {liquidated} time(s) in the window")
    if p > req.max_liq_prob:
        violations.append(f"P(liquidation) {p:.2%} > {req.max_liq_prob:.2%}")
    if path.margin_short[lo:hi].any() or path.margin_short[at]:
        violations.append("collateral from holdings needs more coin than held")
    return {
        "risk": risk,
        "carry": carry,
        "p_liq": p,
        "objective": objective(risk, p, carry, req.lam),
        "feasible": not violations and math.isfinite(risk),
        "violations": violations,
        "liquidations": liquidated,
    }


# ------------------------------------------------------------------------------------------ the search


_RISK_TEXT = {
    "variance": "variance of the daily hedged PnL over the portfolio's value the day before, x horizon days "
    "(fraction^2)",
    "cvar95": "CVaR 95%: mean of the worst 5% of daily hedged PnL over the portfolio's value the day before, "
    "negated, x sqrt(horizon) (fraction)",
}


def _why_rejected(scores: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """When no design is feasible on the latest window: each kind of violation, how many designs it rejects, and
    one example (most frequent first), so the user knows which constraint to relax."""
    import re

    kinds: dict[str, dict[str, Any]] = {}
    for sc in scores:
        if not math.isfinite(sc["risk"]) and not sc["violations"]:
            sc = {**sc, "violations": ["no risk can be measured (missing prices in the window)"]}
        for v in dict.fromkeys(sc["violations"]):
            key = re.sub(r"[-+]?\d[\d,.]*%?", "#", v)
            k = kinds.setdefault(key, {"violation": v, "designs": 0})
            k["designs"] += 1
    return sorted(kinds.values(), key=lambda k: -k["designs"])


def _nanmean(xs: list[float]) -> float | None:
    a = np.array(xs, dtype=float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else None


def _design_doc(d: Design) -> dict[str, Any]:
    return {
        "key": d.key,
        "hedge": d.hedge.name,
        "kind": d.hedge.kind,
        "venue": d.hedge.venue,
        "instruments": [i for i, _ in d.hedge.legs] if d.hedge.name != "own" else [i for _, i in d.hedge.direct],
        "weights": [w for _, w in d.hedge.legs] if d.hedge.name != "own" else None,
        "direct": dict(d.hedge.direct) or None,
        "method": d.method,
        "ratio": d.ratio,
        "leverage": d.leverage,
        "collateral": d.collateral,
        "policy": d.policy,
    }


def _metrics(x: dict[str, Any]) -> dict[str, Any]:
    return {k: x.get(k) for k in ("risk", "carry", "p_liq", "objective", "feasible", "violations", "liquidations")}


def evaluate(market: Market, req: OptimizeRequest) -> tuple[list[Design], list[_Path], list[tuple[Design | None, str]]]:
    """Every design of the search space run over the whole period (one kernel run per design and leg)."""
    held = sorted(market.quantities)
    designs, dropped = enumerate_designs(
        market.choices,
        ratios=req.ratios,
        leverages=req.leverages,
        methods=req.methods,
        collaterals=req.collaterals,
        policies=req.policies,
        held=held,
        has_betas=all(a in market.betas_file for a in market.scope_assets),
    )
    if not designs:
        raise ConfigError(
            "no design can be built from these choices: "
            + ("; ".join(r for _, r in dropped[:3]) or "check --collateral against --kinds (linear takes stable)")
        )
    if len(designs) > MAX_DESIGNS:
        raise ConfigError(f"the search has {len(designs):,} designs, more than {MAX_DESIGNS:,}: narrow the grids")
    return designs, _run_designs(market, designs, req), dropped


def _run_batch(shared: tuple[Market, OptimizeRequest, list[Design]], batch: list[int]) -> list[tuple[int, _Path]]:
    """One engine task: the designs numbered in ``batch`` (module level: pickled to pool and Dask workers)."""
    market, req, designs = shared
    caches = _Caches()
    return [(i, _run_design(market, designs[i], req, caches)) for i in batch]


def _run_designs(market: Market, designs: list[Design], req: OptimizeRequest) -> list[_Path]:
    """Every design's kernel run, here or on the engine of ``--cluster``/``--workers`` (the same numbers either way:
    each run depends only on the prepared market and its design)."""
    if req.cluster is None and (req.workers or 1) <= 1:
        caches = _Caches()
        return [_run_design(market, d, req, caches) for d in designs]
    from perphedge.usecases.engine import make_engine

    with make_engine(req.cluster, req.workers, default_workers=1, start="spawn") as engine:
        size = max(1, math.ceil(len(designs) / (4 * max(1, engine.workers))))
        batches = [list(range(a, min(a + size, len(designs)))) for a in range(0, len(designs), size)]
        out: list[_Path | None] = [None] * len(designs)
        for _, rows in engine.map_batches(_run_batch, batches, (market, req, designs)):
            for i, path in rows:
                out[i] = path
    missing = [i for i, p in enumerate(out) if p is None]
    if missing:
        raise DataError(
            f"the engine returned no result for {len(missing)} design(s) (first: {designs[missing[0]].key})"
        )
    return [p for p in out if p is not None]


def optimize(market: Market, req: OptimizeRequest, *, source: str = "") -> dict[str, Any]:
    """The ``perphedge.optimize/1`` document (plus private ``_front`` rows for plots)."""
    t0 = time.perf_counter()
    designs, paths, dropped = evaluate(market, req)
    t_eval = time.perf_counter() - t0
    caches = _Caches()
    baselines: list[tuple[str, Design | None, _Path]] = [("unhedged", None, _unhedged_path(market))]
    base_choice = next((c for c in market.choices if c.name == "btc" and c.kind == "inverse"), None)
    if base_choice is not None:
        baselines.append(
            ("guide: 100% notional BTC inverse 1x (bought coins)", None, _synthetic_dollar(market, base_choice))
        )
        for label, ratio, lev in (
            ("guide: 100% notional BTC inverse 3x", 1.0, 3.0),
            ("guide: 50% notional BTC inverse 2x", 0.5, 2.0),
        ):
            d = Design(hedge=base_choice, ratio=ratio, leverage=lev, method="notional", collateral="buy", policy="band")
            baselines.append((label, d, _run_design(market, d, req, caches)))
    bases = sorted({b for c in market.choices for b in c.bases})
    col = {b: i for i, b in enumerate(bases)}
    windows = walk_forward_windows(market.n, req.train, req.test)
    steps: list[dict[str, Any]] = []
    chosen_keys: list[str | None] = []
    sums: dict[str, dict[str, list[float]]] = {}

    def add(name: str, ins: dict[str, Any], oos: dict[str, Any]) -> None:
        acc = sums.setdefault(
            name, {"in_sample": [], "out_of_sample": [], "liquidations": [], "risk": [], "carry": [], "p_liq": []}
        )
        acc["in_sample"].append(ins["objective"])
        acc["out_of_sample"].append(oos["objective"])
        for k in ("risk", "carry", "p_liq"):
            acc[k].append(float(oos[k]) if oos.get(k) is not None else math.nan)
        acc["liquidations"].append(float(oos.get("liquidations", 0)))

    for k, w in enumerate(windows):
        mh_train = _max_highs(market, bases, w.train_start, w.train_end, req, 2 * k)
        mh_test = _max_highs(market, bases, w.train_end, w.test_end, req, 2 * k + 1)
        at = w.train_end - 1
        train_scores = [_score(p, w.train_start, w.train_end, mh_train, col, req, at) for p in paths]
        obj = np.array([s["objective"] for s in train_scores])
        feas = np.array([s["feasible"] for s in train_scores])
        i = choose(obj, feas)
        row: dict[str, Any] = {
            "train_start": str(market.dates[w.train_start].date()),
            "train_end": str(market.dates[w.train_end - 1].date()),
            "test_start": str(market.dates[w.train_end].date()),
            "test_end": str(market.dates[w.test_end - 1].date()),
            "feasible_designs": int(feas.sum()),
        }
        if i is None:
            row["chosen"] = None
            chosen_keys.append(None)
        else:
            test = _score(paths[i], w.train_end, w.test_end, mh_test, col, req, at)
            row |= {"chosen": designs[i].key, "in_sample": _metrics(train_scores[i]), "out_of_sample": _metrics(test)}
            chosen_keys.append(designs[i].key)
            add("walk-forward choice", train_scores[i], test)
        row["baselines"] = {}
        for name, _, bp in baselines:
            ins = _score(bp, w.train_start, w.train_end, mh_train, col, req, at)
            oos = _score(bp, w.train_end, w.test_end, mh_test, col, req, at)
            row["baselines"][name] = {"in_sample": _metrics(ins), "out_of_sample": _metrics(oos)}
            add(name, ins, oos)
        steps.append(row)

    # the recommendation: the choice on the latest training window
    lo, hi = market.n - req.train, market.n
    mh = _max_highs(market, bases, lo, hi, req, 10_000_019)
    final = [_score(p, lo, hi, mh, col, req, hi - 1) for p in paths]
    obj = np.array([s["objective"] for s in final])
    feas = np.array([s["feasible"] for s in final])
    best = choose(obj, feas)
    recommended = None
    if best is not None:
        d, p = designs[best], paths[best]
        r = p.returns[lo:hi]
        u = _unhedged_path(market).returns[lo:hi]
        he = 1.0 - float(np.nanvar(r)) / float(np.nanvar(u)) if np.nanvar(u) > 0 else None
        recommended = _design_doc(d) | {
            "in_sample": _metrics(final[best]),
            "hedge_effectiveness": he,
            "betas_at_end": p.final_betas,
            "funding_rate_8h_mean": p.funding_8h,
        }
    baselines_latest = [
        {"name": name} | _metrics(_score(bp, lo, hi, mh, col, req, hi - 1)) for name, _, bp in baselines
    ]
    rejected = _why_rejected(final) if best is None else []
    idx = [j for j in range(len(designs)) if feas[j]]
    pts = np.array([[final[j]["risk"], -final[j]["carry"], final[j]["p_liq"]] for j in idx]).reshape(-1, 3)
    front = [idx[j] for j in pareto_front(pts)]
    front.sort(key=lambda j: final[j]["objective"])
    pareto = [_design_doc(designs[j]) | _metrics(final[j]) | {"recommended": j == best} for j in front]
    summary = []
    for name, acc in sums.items():
        ins_a = np.array(acc["in_sample"], dtype=float)
        oos_a = np.array(acc["out_of_sample"], dtype=float)
        summary.append(
            {
                "name": name,
                "windows": len(ins_a),
                "in_sample_mean": float(np.nanmean(ins_a)) if np.isfinite(ins_a).any() else None,
                "out_of_sample_mean": float(np.nanmean(oos_a)) if np.isfinite(oos_a).any() else None,
                "test_liquidations": int(sum(acc["liquidations"])),
                "out_of_sample_risk_mean": _nanmean(acc["risk"]),
                "out_of_sample_carry_mean": _nanmean(acc["carry"]),
                "out_of_sample_p_liq_mean": _nanmean(acc["p_liq"]),
            }
        )
    summary.sort(key=lambda x: (x["out_of_sample_mean"] is None, x["out_of_sample_mean"] or 0.0))
    dropped_doc = [{"design": d.key if d else None, "reason": why} for d, why in dropped]
    elapsed = time.perf_counter() - t0
    return {
        "schema": OPTIMIZE_SCHEMA,
        "source": source,
        "period": {
            "start": str(market.dates[0].date()),
            "end": str(market.dates[-1].date()),
            "days": market.n,
        },
        "portfolio": {
            "value_usd": float(market.unhedged[-1]),
            "assets": sorted(market.quantities),
            "scope_assets": market.scope_assets,
        },
        "objective": {
            "formula": "risk + lambda * P(liquidation within horizon) - carry",
            "risk": req.risk,
            "risk_definition": _RISK_TEXT[req.risk],
            "carry_definition": "(funding received - fees - slippage) per day x horizon / mean portfolio value",
            "p_liq_definition": (
                f"bootstrap Monte Carlo ({req.paths:,} paths, blocks of 10 days) of the window's daily returns and "
                "intraday highs: P(any leg's liquidation price is reached within the horizon)"
            ),
            "lambda": req.lam,
            "horizon_days": req.horizon,
            "max_liq_prob": req.max_liq_prob,
            "constraints": [
                f"P(liquidation within {req.horizon} days) <= {req.max_liq_prob:g}, and no liquidation in the "
                "training window",
                "leverage <= the instrument's maximum",
                "margin available: collateral from holdings never needs more coin than held; the book never wiped out",
            ],
            "defaults": {"lambda": 1.0, "horizon_days": 30, "max_liq_prob": 0.01, "risk": "variance"},
        },
        "monte_carlo": {"model": "bootstrap", "paths": req.paths, "seed": req.seed},
        "space": {
            "hedges": [c.label for c in market.choices],
            "ratios": list(req.ratios),
            "leverages": list(req.leverages),
            "methods": list(req.methods),
            "collateral": list(req.collaterals),
            "policies": list(req.policies),
            "band": req.band,
            "calendar_every_days": req.every_days,
            "beta_window_days": req.beta_window,
            "ewma_lambda": req.ewma_lambda,
            "designs": len(designs),
            "dropped": dropped_doc,
            "not_available": market.not_available,
        },
        "walk_forward": {
            "train_days": req.train,
            "test_days": req.test,
            "windows": steps,
            "summary": summary,
            "stability": stability(chosen_keys),
        },
        "recommended": recommended,
        "rejected": rejected,
        "baselines": baselines_latest,
        "pareto": pareto,
        "assumptions": [
            "each design is run once over the whole period through the backtest kernel; every step uses only what "
            "is known at that close, so a window of the run is what the design would have done then",
            "after a liquidation the leg reopens the next day (margin.reopen_after_days: 1)",
            "perpetual prices are the spot candles of the same coin; funding from the store, else assumed (warnings)",
            "margin for bought or stable collateral comes from cash outside the portfolio",
            "min_variance and ewma betas: 1 until the estimate exists",
            "the 1x baseline is the guides' inverse short of the exposure on bought coins: a synthetic dollar",
        ],
        "warnings": market.warnings,
        "timing": {"evaluate_seconds": round(t_eval, 3), "total_seconds": round(elapsed, 3)},
    }


# ------------------------------------------------------------------------------------------- outputs


def plan_document(doc: dict[str, Any], pfile: PortfolioFile, market: Market) -> dict[str, Any]:
    """The recommended design as a portfolio file ``perphedge plan`` reads (prices: the last closes)."""
    rec = doc.get("recommended")
    if rec is None:
        raise ConfigError(
            "no design meets the constraints: nothing to write (raise --max-liq-prob or change the grids)"
        )
    out = pfile.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    out.pop("hedge", None)
    out["prices"] = {
        a: float(market.closes[a][-1]) for a in sorted({*market.quantities, "BTC", "ETH"} & set(market.closes))
    }
    hedge: dict[str, Any] = {"ratio": rec["ratio"]}
    if rec["method"] == "notional":
        hedge["method"] = "notional"
    else:  # beta, min_variance and EWMA: the estimate at the end of the history, as fixed betas
        hedge["method"] = "beta"
        out["betas"] = {a: round(float(b), 4) for a, b in rec["betas_at_end"].items()}
    if rec["hedge"] == "own":
        hedge["instrument"] = f"direct:{rec['venue']}:{rec['kind']}"
    elif len(rec["instruments"]) == 1:
        hedge["instrument"] = rec["instruments"][0]
    else:
        hedge["legs"] = [
            {"instrument": i, "weight": w} for i, w in zip(rec["instruments"], rec["weights"], strict=True)
        ]
    hedge["leverage"] = rec["leverage"]
    hedge["collateral"] = rec["collateral"]
    f8 = float(rec.get("funding_rate_8h_mean") or 0.0001)
    hedge["funding_rate_8h"] = round(min(max(f8, -0.05), 0.05), 6)
    out["hedge"] = hedge
    return out


def plan_yaml(doc: dict[str, Any], plan: dict[str, Any]) -> str:
    """The portfolio file's text, with a header saying where it came from and the policy to run it with."""
    import yaml

    rec = doc["recommended"]
    policy = (
        f"rebalance when the hedge drifts more than {doc['space']['band']:.0%} from target"
        if rec["policy"] == "band"
        else f"rebalance every {doc['space']['calendar_every_days']} days"
    )
    head = [
        "# written by `perphedge optimize` " + (f"from {doc['source']}" if doc["source"] else ""),
        f"# design: {rec['key']}",
        f"# policy: {policy}",
        f"# objective ({doc['objective']['formula']}, risk {doc['objective']['risk']}, lambda "
        f"{doc['objective']['lambda']:g}, horizon {doc['objective']['horizon_days']}d): "
        f"{rec['in_sample']['objective']:.6g} on {doc['period']['end']}'s training window",
    ]
    if rec["method"] in ("min_variance", "ewma"):
        head.append(f"# betas: the {rec['method']} estimate at {doc['period']['end']}, written as fixed betas")
    return "\n".join(head) + "\n" + yaml.safe_dump(plan, sort_keys=False, allow_unicode=True)


def write_plots(doc: dict[str, Any], out_dir: Path) -> list[str]:
    """The Pareto front (risk vs carry, colour = P(liq)) as PNG and self-contained HTML (plotly inlined)."""
    import io

    import matplotlib

    from perphedge.usecases.outputs import write_file_atomic

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = doc["pareto"]
    risk = [r["risk"] for r in rows]
    carry = [r["carry"] * 100 for r in rows]
    pl = [r["p_liq"] * 100 for r in rows]
    label = doc["objective"]["risk"]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    sc = ax.scatter(risk, carry, c=pl, cmap="viridis", s=40, edgecolors="k", linewidths=0.3)
    fig.colorbar(sc, ax=ax, label="P(liquidation) over the horizon, %")
    for r in rows:
        if r.get("recommended"):
            ax.scatter([r["risk"]], [r["carry"] * 100], marker="*", s=300, color="red", label="recommended")
            ax.annotate(r["key"], (r["risk"], r["carry"] * 100), fontsize=7, xytext=(5, 5), textcoords="offset points")
    for b in doc.get("baselines", []):
        if b.get("risk") is not None and b.get("carry") is not None:
            ax.scatter([b["risk"]], [b["carry"] * 100], marker="x", s=60, color="grey")
            ax.annotate(b["name"], (b["risk"], b["carry"] * 100), fontsize=7, color="dimgrey")
    ax.set_xlabel(f"risk ({label}) over {doc['objective']['horizon_days']} days")
    ax.set_ylabel(f"carry over {doc['objective']['horizon_days']} days, % of the book")
    ax.set_title(f"Pareto front of hedge designs (training window ending {doc['period']['end']})")
    if any(r.get("recommended") for r in rows):
        ax.legend(fontsize=8)
    fig.tight_layout()
    png = out_dir / "optimize_pareto.png"
    buf = io.BytesIO()  # rendered in memory and renamed into place: a kill midway leaves no half-written plot
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_file_atomic(png, buf.getvalue(), "--plot")
    text = [f"{r['key']}<br>objective {r['objective']:.5g}" for r in rows]
    f = go.Figure(
        go.Scatter3d(
            x=risk,
            y=carry,
            z=pl,
            mode="markers",
            text=text,
            hoverinfo="text",
            marker={"size": [9 if r.get("recommended") else 4 for r in rows], "color": pl, "colorscale": "Viridis"},
        )
    )
    f.update_layout(
        title="Pareto front: risk vs carry vs P(liquidation)",
        scene={"xaxis_title": f"risk ({label})", "yaxis_title": "carry, % of book", "zaxis_title": "P(liq), %"},
    )
    html = out_dir / "optimize_pareto.html"
    write_file_atomic(html, f.to_html(include_plotlyjs=True, full_html=True), "--plot")
    return [str(png), str(html)]


def run_optimize(req: OptimizeRequest, *, write: str | None = None) -> dict[str, Any]:
    """Read the portfolio and the store, search, and (``write``) write the recommended portfolio file."""
    from perphedge.config import parse_portfolio, read_yaml
    from perphedge.data.store import MarketStore, default_store_path
    from perphedge.specs import default_registry
    from perphedge.usecases.outputs import check_output_file, write_file_atomic

    if write is not None:
        target = Path(write)
        if target.exists() and not target.is_file() and not target.is_dir():
            raise ConfigError(f"invalid `--write`: {target} is not a regular file; give a file name")
        check_output_file(write, "--write")
    pdoc, _ = read_yaml(req.file, "a portfolio file")
    pfile = parse_portfolio(pdoc, req.file)
    registry = default_registry(req.specs)
    path = Path(req.store_path) if req.store_path else default_store_path()
    if not path.is_file():
        raise DataError(f"no market store at {path}: import the sample (`perphedge data import`) or give --store")
    with MarketStore(path, read_only=True) as store:
        market = prepare_market(pfile, pdoc if isinstance(pdoc, dict) else {}, store, registry, req)
    doc = optimize(market, req, source=req.file)
    if write is not None:
        text = plan_yaml(doc, plan_document(doc, pfile, market))
        write_file_atomic(write, text, "--write")
        doc["written"] = str(write)
    return doc


def to_json(doc: dict[str, Any]) -> str:
    """The document as JSON (NaN → null), without the run's wall-clock ``timing`` (deterministic output)."""
    from perphedge.jsonsafe import json_safe

    # the wall-clock `timing` stays out: the same inputs and seed give byte-identical JSON
    return json.dumps(json_safe({k: v for k, v in doc.items() if k != "timing"}), indent=2, allow_nan=False) + "\n"
