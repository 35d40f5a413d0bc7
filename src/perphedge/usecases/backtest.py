"""Backtests: a spot portfolio and its short-perpetual hedge, replayed day by day over stored history.

The spot portfolio is held as quantities (``value_usd`` holdings are converted at the start
date's close; the file's ``prices:`` are not used). Each hedge leg runs through the numba kernel
(:mod:`perphedge.core._kernels`) on its underlying's daily candles — perpetual prices are
taken as the spot candles of the same coin (the sample has no perpetual OHLC before 2023) — with
funding from the contract's stored history, or the stated constant where it is missing
(reported). The hedged book is spot + cash + each leg's account; the unhedged book is spot +
cash. Everything a step uses is known at that step's close.
"""

from __future__ import annotations

import hashlib
import html as _html
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perphedge.core import _kernels as K
from perphedge.core.hedge import CollateralSource, SizingMethod
from perphedge.core.instruments import Instrument
from perphedge.core.metrics import capture, equity_metrics
from perphedge.core.policies import PolicySpec, policy_decisions
from perphedge.core.units import is_stablecoin
from perphedge.errors import ConfigError, DataError, InfeasibleHedgeError
from perphedge.usecases.outputs import check_output_dir, write_run_folder

if TYPE_CHECKING:
    import pandas as pd

    from perphedge.config import PortfolioFile, RunFile
    from perphedge.core.portfolio import Portfolio
    from perphedge.data.store import MarketStore
    from perphedge.specs import InstrumentRegistry
    from perphedge.usecases.backtest_defi import DefiPrepared

__all__ = [
    "BACKTEST_SCHEMA",
    "BacktestOutcome",
    "BacktestRequest",
    "Prepared",
    "default_out_dir",
    "execute",
    "leg_params",
    "load_run",
    "prepare",
    "run",
    "write_png",
    "write_report",
]

BACKTEST_SCHEMA = "perphedge.backtest/1"


def _epoch_day(d: Any) -> int:
    import pandas as pd

    return int(pd.Timestamp(d).value // 86_400_000_000_000)


def load_run(path: str | Path) -> tuple[RunFile, PortfolioFile, str, str]:
    """Read a run file and its portfolio; returns (run, portfolio, source label, config hash)."""
    from perphedge.config import parse_portfolio, parse_run, read_yaml

    p = Path(path)
    doc, raw = read_yaml(p)
    run_cfg = parse_run(doc, str(p))
    pf_source = f"{p}: portfolio"
    if isinstance(run_cfg.portfolio, str):
        pf_path = (
            (p.parent / run_cfg.portfolio).resolve()
            if not Path(run_cfg.portfolio).is_absolute()
            else Path(run_cfg.portfolio)
        )
        pdoc, praw = read_yaml(pf_path)
        pfile = parse_portfolio(pdoc, str(pf_path))
        raw += b"\n--portfolio--\n" + praw
    else:
        pfile = parse_portfolio(run_cfg.portfolio, pf_source)
    return run_cfg, pfile, str(p), hashlib.sha256(raw).hexdigest()


def config_hash(run_cfg: RunFile, pfile: PortfolioFile) -> str:
    """Hash of a resolved configuration (for runs built in memory, e.g. sweeps)."""
    blob = json.dumps(
        {"run": run_cfg.model_dump(mode="json"), "portfolio": pfile.model_dump(mode="json")}, sort_keys=True
    ).encode()
    return hashlib.sha256(blob).hexdigest()


@dataclass(slots=True, kw_only=True)
class LegData:
    """One hedge leg with its aligned inputs."""

    instrument: Instrument
    weights: dict[str, float]  # asset -> share of that asset's exposure this leg offsets
    o: np.ndarray
    h: np.ndarray
    lo: np.ndarray
    c: np.ndarray
    funding: np.ndarray
    funding_assumed_days: int
    funding_series: str


@dataclass(slots=True, kw_only=True)
class Prepared:
    """Data a run needs, loaded once (a sweep reuses it across configurations)."""

    dates: pd.DatetimeIndex
    days: np.ndarray
    closes: dict[str, np.ndarray]
    quantities: dict[str, float]
    cash0: float
    legs: list[LegData]
    proxy: str
    btc_close: np.ndarray | None
    fear_greed: np.ndarray | None
    scope_assets: list[str]
    collateral: CollateralSource
    leverage: float
    method: SizingMethod
    betas: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    bar_hours: float = 24.0
    defi: DefiPrepared | None = None  # DeFi positions and their paths (None: the portfolio has none)

    @property
    def bars_per_day(self) -> float:
        """Bars per day (1 for daily steps, 3 for 8h)."""
        return 24.0 / self.bar_hours

    @property
    def periods_per_year(self) -> float:
        """Bars per year (365 days)."""
        return 365.0 * self.bars_per_day


def _hedge_block(pfile: PortfolioFile, run_cfg: RunFile) -> Any:
    from pydantic import ValidationError

    from perphedge.config import HedgeModel

    base = pfile.hedge.model_dump(exclude_unset=True)
    if "instrument" in run_cfg.hedge:
        base.pop("legs", None)
    if "legs" in run_cfg.hedge:
        base.pop("instrument", None)
    merged = {**base, **run_cfg.hedge}
    try:
        return HedgeModel.model_validate(merged)
    except ValidationError as exc:
        from perphedge.config import _loc, _message

        err = exc.errors()[0]
        raise ConfigError(f"field `hedge.{_loc(tuple(err.get('loc', ())))}`: {_message(err)}") from None


def prepare(run_cfg: RunFile, pfile: PortfolioFile, store: MarketStore, registry: InstrumentRegistry) -> Prepared:
    """Load and align everything the run needs from the store; validate the configuration against the data."""
    from perphedge.usecases.backtest_defi import position_assets, prepare_positions

    tf = run_cfg.step
    hb = _hedge_block(pfile, run_cfg)
    start, end = str(run_cfg.start), str(run_cfg.end)
    assets = sorted({h.asset.upper() for h in pfile.holdings if not is_stablecoin(h.asset)} | position_assets(pfile))
    if not assets:
        raise ConfigError("the portfolio holds only stablecoins: there is nothing to hedge")
    _check_listed(store, assets, tf, start)
    portfolio, first_prices = _start_portfolio(pfile, store, assets, tf, start)
    proxy, scope_assets, instruments, weights = _resolve_hedge(hb, portfolio, registry)
    wanted = sorted({*assets, *(i.base for i in instruments.values()), "BTC"})
    frames = _load_prices(store, wanted, assets, instruments, tf, start, end)
    close = frames["close"]
    dates = close.index
    bar_hours = 24.0 if tf == "1d" else 8.0
    collateral = CollateralSource(hb.collateral) if hb.collateral else None
    holdings_value = {h.asset: portfolio.value_of(h) for h in portfolio.holdings if not h.is_stable}
    if portfolio.positions:
        holdings_value = portfolio.exposure_by_asset()  # positions count by their delta
    legs: list[LegData] = []
    warnings: list[str] = []
    for inst_id, leg_weights in weights.items():
        inst = instruments[inst_id]
        _check_leg(inst, collateral, hb, leg_weights, holdings_value, portfolio, first_prices)
        fund, assumed, series = _funding(store, run_cfg, inst, dates, bar_hours, start)
        if assumed:
            warnings.append(
                f"{inst.id}: funding assumed at {run_cfg.funding.assumed_rate_8h:.4%} per 8h on {assumed} bars "
                f"of {len(dates)} (no stored history of {series} then)"
            )
        b = inst.base
        legs.append(
            LegData(
                instrument=inst,
                weights=leg_weights,
                o=frames["open"][b].to_numpy(),
                h=frames["high"][b].to_numpy(),
                lo=frames["low"][b].to_numpy(),
                c=close[b].to_numpy(),
                funding=fund,
                funding_assumed_days=assumed,
                funding_series=series,
            )
        )
    quantities, cash0 = _spot_book(portfolio)
    return Prepared(
        dates=dates,
        days=np.array([_epoch_day(d) for d in dates.tz_localize(None)], dtype=np.int64),
        closes={a: close[a].to_numpy() for a in wanted},
        quantities=quantities,
        cash0=cash0,
        legs=legs,
        proxy=proxy,
        btc_close=close["BTC"].to_numpy(),
        fear_greed=_fear_greed(store, dates),
        scope_assets=scope_assets,
        collateral=collateral or CollateralSource.BUY,
        leverage=float(hb.leverage),
        method=SizingMethod(hb.method),
        betas={k.upper(): float(v) for k, v in pfile.betas.items()},
        warnings=warnings,
        bar_hours=bar_hours,
        defi=prepare_positions(portfolio.positions, hb.scope, frames) if portfolio.positions else None,
    )


def _check_listed(store: MarketStore, assets: list[str], tf: str, start: str) -> None:
    """Every held coin has history in the store from the run's start."""
    spans = store.query(
        "SELECT split_part(symbol, '/', 1) AS a, min(ts) AS first, max(ts) AS last FROM candles "
        "WHERE source = 'binance' AND timeframe = ? GROUP BY 1",
        [tf],
    )
    span = {r.a: (r.first, r.last) for r in spans.itertuples(index=False)}
    late = [f"{a} (from {span[a][0].date()})" for a in assets if a in span and str(span[a][0].date()) > start]
    absent = [a for a in assets if a not in span]
    if absent:
        raise DataError(f"no {tf} history of {', '.join(absent)} in the store (import or fetch it)")
    if late:
        raise DataError(f"the store has no {start} close for {', '.join(late)}: start on or after their listing")


def _start_portfolio(
    pfile: PortfolioFile, store: MarketStore, assets: list[str], tf: str, start: str
) -> tuple[Portfolio, dict[str, float]]:
    """The portfolio as quantities at the start date's closes (``value_usd`` holdings converted), with those
    closes."""
    from perphedge.core.portfolio import Holding, Portfolio
    from perphedge.data.reader import ohlc

    probe = ohlc(store, sorted({*assets, "BTC"}), start, start, timeframe=tf)["close"]
    first_prices = {a: float(probe[a].iloc[0]) for a in probe.columns if probe[a].notna().any()}
    holdings = []
    for hm in pfile.holdings:
        code = hm.asset.upper()
        if hm.quantity is not None:
            qty = hm.quantity
        else:
            assert hm.value_usd is not None
            qty = hm.value_usd / (1.0 if is_stablecoin(code) else first_prices[code])
        holdings.append(Holding(asset=code, quantity=qty, group=hm.group))
    positions = _start_positions(pfile, first_prices, start) if pfile.positions else ()
    return Portfolio(name=pfile.name, holdings=tuple(holdings), prices=first_prices, positions=positions), first_prices


def _start_positions(pfile: PortfolioFile, first_prices: dict[str, float], start: str) -> tuple[Any, ...]:
    """The DeFi positions read at the start's closes (pool amounts are the position at that price)."""
    from perphedge.usecases.plan import build_positions

    try:
        return build_positions(pfile, first_prices, "portfolio")
    except ConfigError as exc:
        from perphedge.usecases.backtest_defi import position_assets

        shown = ", ".join(f"{a} {first_prices[a]:,.2f}" for a in sorted(position_assets(pfile)) if a in first_prices)
        raise ConfigError(
            f"{exc} [the backtest reads a position at the closes of its `start` {start}: {shown}; state its "
            "amounts at those prices, or give `liquidity`]"
        ) from None


def _resolve_hedge(
    hb: Any, portfolio: Portfolio, registry: InstrumentRegistry
) -> tuple[str, list[str], dict[str, Instrument], dict[str, dict[str, float]]]:
    """The hedge's legs: (proxy coin, hedged assets, instruments by id, instrument id → asset → weight)."""
    from perphedge.usecases.plan import _resolve_legs

    proxy_legs, direct, _label = _resolve_legs(hb.instrument, hb.legs, hb.proxy, portfolio, registry)
    if portfolio.positions:  # holdings' value and positions' delta in scope
        scope_assets = sorted(portfolio.scope_exposure(hb.scope))
    else:
        scope_assets = sorted({h.asset for h in portfolio.in_scope(hb.scope)})
    instruments: dict[str, Instrument] = {}
    weights: dict[str, dict[str, float]] = {}
    for a in scope_assets:
        own = direct.get(a)
        pairs = [(own, 1.0)] if own is not None else [(leg.instrument, leg.weight) for leg in proxy_legs]
        for inst, w in pairs:
            instruments[inst.id] = inst
            weights.setdefault(inst.id, {})[a] = weights.get(inst.id, {}).get(a, 0.0) + w
    return proxy_legs[0].instrument.base, scope_assets, instruments, weights


def _load_prices(
    store: MarketStore,
    wanted: list[str],
    assets: list[str],
    instruments: dict[str, Instrument],
    tf: str,
    start: str,
    end: str,
) -> dict[str, pd.DataFrame]:
    """OHLC of every coin the run touches; every held and hedged coin must be priced every bar."""
    from perphedge.data.reader import ohlc

    frames = ohlc(store, wanted, start, f"{end} 23:59:59", fields=("open", "high", "low", "close"), timeframe=tf)
    close = frames["close"]
    last = close.index[-1].date() if len(close.index) else None
    if last is not None and str(last) < end:
        raise DataError(
            f"the store's {tf} history of {', '.join(wanted)} ends {last}, before the run's `end` {end}: "
            f"end on or before {last}, or import/fetch the missing days"
        )
    for a in wanted:
        col = close[a]
        if (a in assets or any(i.base == a for i in instruments.values())) and col.isna().any():
            gap = col[col.isna()].index
            raise DataError(
                f"{a} has no daily close on {gap[0].date()} (of {start} → {end}): the backtest "
                "needs every held and hedged coin priced every day; change the period"
            )
    return dict(frames)


def _check_leg(
    inst: Instrument,
    collateral: CollateralSource | None,
    hb: Any,
    leg_weights: dict[str, float],
    holdings_value: dict[str, float],
    portfolio: Portfolio,
    first_prices: dict[str, float],
) -> None:
    """Refuse a leg that cannot be built: stable collateral on an inverse contract, a 1x inverse short on bought
    collateral, holdings collateral not held, leverage above the instrument's maximum."""
    coll = collateral or (CollateralSource.BUY if inst.is_inverse else CollateralSource.STABLE)
    if inst.is_inverse and coll is CollateralSource.STABLE:
        raise ConfigError(f"invalid `collateral`: stable needs a linear contract; {inst.id} is inverse")
    if inst.is_inverse and coll is CollateralSource.BUY and hb.leverage <= 1:
        raise InfeasibleHedgeError(
            f"a 1x inverse short on bought {inst.settle} is a synthetic dollar and offsets "
            "nothing else; use leverage > 1, collateral holdings, or a linear contract"
        )
    if inst.is_inverse and coll is CollateralSource.HOLDINGS:
        need_usd = sum(holdings_value.get(a, 0.0) * w for a, w in leg_weights.items()) / hb.leverage
        have = sum(h.quantity for h in portfolio.holdings if h.asset == inst.base)
        if have * first_prices.get(inst.base, 0.0) < need_usd * (1 - 1e-9):
            raise InfeasibleHedgeError(
                f"collateral `holdings` needs about {need_usd:,.0f} USD of {inst.base} as margin for {inst.id} but "
                f"the portfolio holds {have:g} {inst.base}; use collateral buy, more leverage, or a linear contract"
            )
    if hb.leverage > inst.max_leverage:
        raise ConfigError(
            f"invalid `leverage`: {hb.leverage:g}x is above the {inst.max_leverage:g}x maximum of {inst.id}"
        )


def _funding(
    store: MarketStore, run_cfg: RunFile, inst: Instrument, dates: pd.DatetimeIndex, bar_hours: float, start: str
) -> tuple[np.ndarray, int, str]:
    """Funding per bar of the leg's contract (history, else the assumed rate): (rates, bars assumed, series)."""
    import pandas as pd

    from perphedge.data.reader import funding_series

    series = run_cfg.funding.series or f"{inst.exchange}:{inst.ccxt_symbol}"
    src, _, sym = series.partition(":")
    fund = np.full(len(dates), np.nan)
    if run_cfg.funding.history:
        try:
            last_close = dates[-1] + pd.Timedelta(hours=bar_hours)  # the last bar's closing settlement
            raw = funding_series(store, src, sym, start, last_close)
            # a settlement at a bar's closing instant is paid by the position held through that bar
            bar = (raw.index - pd.Timedelta(milliseconds=1)).floor("D" if bar_hours == 24.0 else "8h")
            fund = raw["rate"].groupby(bar).sum().reindex(dates).to_numpy()
        except DataError:
            pass
    assumed = int(np.isnan(fund).sum())
    fund = np.where(np.isnan(fund), run_cfg.funding.assumed_rate_8h * bar_hours / 8.0, fund)
    return fund, assumed, series


def _fear_greed(store: MarketStore, dates: pd.DatetimeIndex) -> np.ndarray | None:
    """The Fear & Greed index per bar (NaN where the store has none), or None without any."""
    from perphedge.data.reader import sentiment

    try:
        return np.asarray(sentiment(store).reindex(dates.floor("D")).to_numpy(), dtype=np.float64)
    except DataError:
        return None


def _spot_book(portfolio: Portfolio) -> tuple[dict[str, float], float]:
    """Coin quantities held (stablecoins apart) and the stablecoin cash."""
    quantities: dict[str, float] = {}
    cash0 = 0.0
    for h in portfolio.holdings:
        if h.is_stable:
            cash0 += h.quantity
        else:
            quantities[h.asset] = quantities.get(h.asset, 0.0) + h.quantity
    return quantities, cash0


def _policy_spec(run_cfg: RunFile, bars_per_day: float = 1.0) -> PolicySpec:
    """The policy with its day-based windows converted to bars."""
    p = run_cfg.policy

    def bars(days: int) -> int:
        return max(1, round(days * bars_per_day))

    return PolicySpec(
        kind=p.kind,
        ratio=p.ratio,
        band=p.band,
        every_days=bars(p.every_days),
        schedule=tuple((_epoch_day(e.start), e.ratio) for e in (p.schedule or [])),
        table=tuple((e.max, e.ratio) for e in p.table) if p.table else PolicySpec(kind="static").table,
        vol_bands=tuple((b.max_vol, b.ratio) for b in p.bands) if p.bands else PolicySpec(kind="static").vol_bands,
        vol_days=bars(p.vol_days),
        lookback_days=bars(p.lookback_days),
        cost_threshold_8h=p.cost_threshold_8h,
        rich_threshold_8h=p.rich_threshold_8h,
        cut=p.cut,
        boost=p.boost,
        min_ratio=p.min_ratio,
        max_ratio=p.max_ratio,
        sma_days=bars(p.sma_days),
        ratio_on=p.ratio_on,
        ratio_off=p.ratio_off,
        events=tuple((_epoch_day(e.date), e.ratio, e.before_days, e.after_days) for e in (p.events or [])),
        beta_window=bars(p.window_days),
    )


def _fee_rate(run_cfg: RunFile, inst: Instrument) -> float:
    """Fee rate of every fill: taker (default) or maker (``costs.fills: maker``); run file first, else the
    instrument's."""
    c = run_cfg.costs
    if c.fills == "maker":
        return c.maker_fee if c.maker_fee is not None else inst.maker_fee
    return c.taker_fee if c.taker_fee is not None else inst.taker_fee


def _betas(prep: Prepared, run_cfg: RunFile) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """β of each hedged asset per day: 1 (notional), the file's (beta), or rolling OLS known at t (beta policy,
    min_variance); with, for the rolling estimate, the reason of each bar where β = 1 stood in for it."""
    from perphedge.core.analytics import _window_ratios

    n = len(prep.dates)
    out: dict[str, np.ndarray] = {}
    why: dict[str, list[str]] = {}
    rolling = run_cfg.policy.kind == "beta" or prep.method is SizingMethod.MIN_VARIANCE
    proxy = prep.closes[prep.proxy]
    for a in prep.scope_assets:
        if a == prep.proxy or (prep.method is SizingMethod.NOTIONAL and not rolling):
            out[a] = np.ones(n)
        elif rolling:
            c = prep.closes[a]
            s = c[1:] / c[:-1] - 1
            f = proxy[1:] / proxy[:-1] - 1
            window = min(round(run_cfg.policy.window_days * prep.bars_per_day), n - 2)
            known = _window_ratios(s, f, "rolling_ols", window, 0.94, 2.0)  # index i: from returns < i
            beta = np.ones(n)
            beta[2:] = np.where(np.isfinite(known[1:]), known[1:], 1.0)  # day t knows returns up to t
            out[a] = beta
            estimated = np.zeros(n, dtype=bool)
            estimated[2:] = np.isfinite(known[1:])
            why[a] = [
                "" if ok else f"no β estimate of {a} (window of {window} bars not yet full, or no variance): β = 1"
                for ok in estimated
            ]
        else:
            if a not in prep.betas:
                raise ConfigError(
                    f"no beta for {a}: method `beta` needs `betas:` in the portfolio, or use policy "
                    "kind beta (rolling estimate)"
                )
            out[a] = np.full(n, prep.betas[a])
    return out, why


def _fallback_entries(prep: Prepared, reasons: list[tuple[int, str, float]]) -> list[dict[str, Any]]:
    """``policy_fallbacks``: (bar, reason, ratio used) rows, runs of consecutive bars with the same reason and
    ratio compressed into one ``{from, to, days, reason, ratio_used}`` entry (one bar: ``{date, …}``)."""
    fmt = "%Y-%m-%d" if prep.bar_hours == 24.0 else "%Y-%m-%dT%H:%M"
    runs: list[list[Any]] = []  # [first bar, last bar, reason, ratio]
    open_runs: dict[tuple[str, float], list[Any]] = {}
    for i, reason, ratio in sorted(set(reasons), key=lambda r: (r[1], r[2], r[0])):
        key = (reason, round(ratio, 12))
        cur = open_runs.get(key)
        if cur is not None and cur[1] == i - 1:
            cur[1] = i
        else:
            cur = [i, i, reason, ratio]
            open_runs[key] = cur
            runs.append(cur)
    out: list[dict[str, Any]] = []
    for first, last, reason, ratio in sorted(runs, key=lambda r: (r[0], r[2])):
        d0, d1 = prep.dates[first], prep.dates[last]
        if first == last:
            out.append({"date": d0.strftime(fmt), "reason": reason, "ratio_used": float(ratio)})
        else:
            out.append(
                {
                    "from": d0.strftime(fmt),
                    "to": d1.strftime(fmt),
                    "days": int((d1.normalize() - d0.normalize()).days) + 1,
                    "reason": reason,
                    "ratio_used": float(ratio),
                }
            )
    return out


def _leg_params(
    prep: Prepared, run_cfg: RunFile, leg: LegData, coll: CollateralSource, value0: float, band: float
) -> np.ndarray:
    """The kernel's ``params`` vector of one leg (see :data:`perphedge.core._kernels.PARAMS`)."""
    inst = leg.instrument
    notional0 = (
        value0 * prep.leverage / (prep.leverage - 1) if (inst.is_inverse and coll is CollateralSource.BUY) else value0
    )
    tier_value = notional0 / leg.c[0] if inst.is_inverse else notional0
    sched = inst.liquidation_schedule  # the taker fee in the rate where the venue reserves it (OKX, BitMEX)
    return np.array(
        [
            K.INVERSE if inst.is_inverse else K.LINEAR,
            {CollateralSource.BUY: K.BUY, CollateralSource.HOLDINGS: K.HOLDINGS, CollateralSource.STABLE: K.STABLE}[
                coll
            ],
            prep.leverage,
            inst.contract_size,
            inst.lot_size,
            sched.rate(tier_value),
            sched.maintenance_amount(tier_value),
            K.ENTRY_FAMILY if inst.liquidation_method.mm_at_entry else K.AT_LP_FAMILY,
            _fee_rate(run_cfg, inst),
            run_cfg.costs.slippage_bps / 1e4,
            band,
            -1.0
            if run_cfg.margin.reopen_after_days is None
            else float(round(run_cfg.margin.reopen_after_days * prep.bars_per_day)),
            1.0 if run_cfg.margin.top_up else 0.0,
            run_cfg.margin.top_up_level,
        ],
        dtype=np.float64,
    )


def leg_params(
    prep: Prepared, run_cfg: RunFile, leg: LegData, collateral: CollateralSource, value0_usd: float, band: float
) -> np.ndarray:
    """The kernel's ``params`` vector of one leg at ``prep.leverage`` (public: ``optimize`` runs the kernel on
    prepared data itself). ``value0_usd`` is the first bar's target hedge (USD); ``band`` the policy's band."""
    return _leg_params(prep, run_cfg, leg, collateral, value0_usd, band)


@dataclass(slots=True, kw_only=True)
class _LegRun:
    """One leg's kernel output and what the run keeps of it."""

    summary: dict[str, Any]
    out: np.ndarray
    exposure: np.ndarray
    target: np.ndarray
    book_usd: np.ndarray  # the leg's contribution to the hedged book, USD per bar
    fallbacks: list[tuple[int, str, float]]
    warnings: list[str]


_COLS = {name: i for i, name in enumerate(K.OUT_COLUMNS)}


def _run_leg(
    prep: Prepared,
    run_cfg: RunFile,
    spec: PolicySpec,
    leg: LegData,
    betas: dict[str, np.ndarray],
    beta_why: dict[str, list[str]],
) -> _LegRun:
    """Policy targets and the kernel's path of one leg."""
    cols = _COLS
    inst = leg.instrument
    n = len(prep.dates)
    exposure = np.zeros(n)
    for a, w in leg.weights.items():
        if a in prep.quantities:
            exposure += w * betas[a] * prep.quantities[a] * prep.closes[a]
    if prep.defi is not None:  # the positions' delta at each close: the hedge follows it
        from perphedge.usecases.backtest_defi import scope_delta

        delta = scope_delta(prep.defi)
        for a, w in leg.weights.items():
            if a in delta:
                exposure += w * betas[a] * delta[a]
    decisions = policy_decisions(
        spec,
        days=prep.days,
        proxy_close=prep.closes[prep.proxy],
        fear_greed=prep.fear_greed,
        funding_daily=leg.funding,
        periods_per_year=prep.periods_per_year,
        bar_hours=prep.bar_hours,
    )
    target = decisions.target
    fallbacks = [(i, r, float(target[i])) for i, r in enumerate(decisions.fallback) if r]
    for a in leg.weights:
        fallbacks += [(i, r, float(target[i])) for i, r in enumerate(beta_why.get(a, ())) if r]
    coll = prep.collateral if inst.is_inverse else CollateralSource.STABLE
    params = _leg_params(prep, run_cfg, leg, coll, float(target[0] * exposure[0]), decisions.band)
    out = np.zeros((n, len(K.OUT_COLUMNS)))
    K.leg_path(leg.o, leg.h, leg.lo, leg.c, exposure, target, decisions.allowed, leg.funding, params, out)
    coin_out = np.cumsum(out[:, cols["spot_coin_flow"]])
    cash_out = np.cumsum(out[:, cols["cash_flow_usd"]])
    book_usd = out[:, cols["account_usd"]] - cash_out - coin_out * prep.closes[inst.base]
    warnings = []
    if coll is CollateralSource.HOLDINGS and inst.base in prep.quantities:
        short = prep.quantities[inst.base] - coin_out
        if (short < -1e-9).any():
            i = int(np.argmax(short < -1e-9))
            warnings.append(
                f"{inst.id}: collateral from holdings needed more {inst.base} than held on "
                f"{prep.dates[i].date()} (the excess counts as borrowed)"
            )
    liq_idx = np.nonzero(out[:, cols["liquidated"]] > 0)[0]
    summary = {
        "instrument": inst.id,
        "kind": inst.kind.value,
        "collateral_source": coll.value,
        "weights": leg.weights,
        "funding_series": leg.funding_series,
        "funding_assumed_days": leg.funding_assumed_days,
        "funding_received_usd": float(out[:, cols["funding_usd"]].sum()),
        "fees_usd": float(out[:, cols["fee_usd"]].sum()),
        "slippage_usd": float(out[:, cols["slippage_usd"]].sum()),
        "rebalances": int(out[:, cols["rebalanced"]].sum()),
        "top_ups_usd": float(out[:, cols["top_up_usd"]].sum()),
        "days_hedged": int((out[:, cols["notional_usd"]] > 0).sum()),
        "liquidations": [
            {
                "date": str(prep.dates[i].date()),
                "instrument": inst.id,
                "price": float(out[i, cols["liq_price"]]),
                "loss_usd": float(out[i, cols["liq_loss_usd"]]),
            }
            for i in liq_idx
        ],
    }
    return _LegRun(
        summary=summary,
        out=out,
        exposure=exposure,
        target=target,
        book_usd=book_usd,
        fallbacks=fallbacks,
        warnings=warnings,
    )


def _book(m: dict[str, Any], dates: pd.DatetimeIndex) -> dict[str, Any]:
    """A book's summary in the document's names."""
    return {
        "start_value_usd": m["start_value"],
        "end_value_usd": m["end_value"],
        "pnl_usd": m["pnl"],
        "total_return": m["total_return"],
        "annual_return": m["annual_return"],
        "volatility": m["volatility"],
        "max_drawdown": m["max_drawdown"],
        "max_drawdown_peak": str(dates[m["max_drawdown_peak"]].date()),
        "max_drawdown_trough": str(dates[m["max_drawdown_trough"]].date()),
        "sharpe": m["sharpe"],
        "sortino": m["sortino"],
        "cvar_95": m["cvar_95"],
    }


def _btc_terms(prep: Prepared, hedged: np.ndarray, unhedged: np.ndarray) -> dict[str, Any] | None:
    """Both books measured in BTC."""
    if prep.btc_close is None:
        return None
    ppy = prep.periods_per_year
    out: dict[str, Any] = {}
    for label, eq in (("hedged", hedged / prep.btc_close), ("unhedged", unhedged / prep.btc_close)):
        out[label] = {k: v for k, v in _book(equity_metrics(eq, ppy), prep.dates).items() if not k.endswith("_usd")} | {
            "start_value_btc": float(eq[0]),
            "end_value_btc": float(eq[-1]),
        }
    return out


def _policy_stated(run_cfg: RunFile) -> dict[str, Any]:
    """The policy as given, plus the default table or bands it used when the file gave none (stated, not
    silent)."""
    p = run_cfg.policy
    out = p.model_dump(mode="json", exclude_unset=True) | {"kind": p.kind}
    defaults = PolicySpec(kind="static")
    if p.kind == "fear_greed" and not p.table:
        out["table_used"] = [{"max": b, "ratio": r} for b, r in defaults.table]
    if p.kind == "volatility" and not p.bands:
        out["bands_used"] = [{"max_vol": None if math.isinf(b) else b, "ratio": r} for b, r in defaults.vol_bands]
    return out


def _hedge_effectiveness(hedged: np.ndarray, unhedged: np.ndarray) -> float | None:
    """1 − Var(hedged returns)/Var(unhedged returns); None (undefined) when the unhedged book does not vary."""
    rh, ru = hedged[1:] / hedged[:-1] - 1, unhedged[1:] / unhedged[:-1] - 1
    vu = float(np.var(ru))
    return 1.0 - float(np.var(rh)) / vu if vu > 0 else None


def run(prep: Prepared, run_cfg: RunFile, *, config_hash: str, source: str = "", full: bool = True) -> dict[str, Any]:
    """Run the backtest; returns the ``perphedge.backtest/1`` document (plus ``_series`` for the report).

    ``full=False`` leaves out the daily equity list and the report series (sweeps).
    """
    spec = _policy_spec(run_cfg, prep.bars_per_day)
    n = len(prep.dates)
    betas, beta_why = _betas(prep, run_cfg)
    spot = np.zeros(n)
    for a, q in prep.quantities.items():
        spot += q * prep.closes[a]
    unhedged = spot + prep.cash0
    fees: list[np.ndarray] = []
    if prep.defi is not None:  # the positions' value and the fees the pools earn (held as cash)
        from perphedge.usecases.backtest_defi import fee_apr_of, fee_paths

        fees = fee_paths(prep.defi, fee_apr_of(run_cfg, prep.defi), prep.bar_hours)
        unhedged = unhedged + prep.defi.value_usd + np.cumsum(sum(fees, np.zeros(n)))
    elif run_cfg.defi is not None:
        from perphedge.usecases.backtest_defi import fee_apr_of

        fee_apr_of(run_cfg, None)
    legs = [_run_leg(prep, run_cfg, spec, leg, betas, beta_why) for leg in prep.legs]
    hedged = unhedged.copy()
    for leg in legs:
        hedged += leg.book_usd
    if (hedged <= 0).any():
        i = int(np.argmax(hedged <= 0))
        raise InfeasibleHedgeError(
            f"the hedged book is wiped out on {prep.dates[i].date()}: the hedge lost more than "
            "the portfolio is worth (lower the leverage or ratio)"
        )
    doc = _document(prep, run_cfg, legs, hedged, unhedged, config_hash=config_hash, source=source)
    if prep.defi is not None:
        _attach_defi(doc, prep, run_cfg, legs, fees, hedged, unhedged)
    if full:
        _attach_series(doc, prep, legs, hedged, unhedged)
        if prep.defi is not None:
            _defi_equity(doc, prep, fees)
    return doc


def _attach_defi(
    doc: dict[str, Any],
    prep: Prepared,
    run_cfg: RunFile,
    legs: list[_LegRun],
    fees: list[np.ndarray],
    hedged: np.ndarray,
    unhedged: np.ndarray,
) -> None:
    """The ``defi`` section (positions alone vs positions + hedge, gamma's cost) and its warnings."""
    from perphedge.usecases.backtest_defi import defi_document

    assert prep.defi is not None
    d = defi_document(
        prep.defi,
        closes=prep.closes,
        dates=prep.dates,
        fee_apr=run_cfg.defi.fee_apr if run_cfg.defi is not None else 0.0,
        fee_given=run_cfg.defi is not None,
        bar_hours=prep.bar_hours,
        fees_by_position=fees,
        holdings_delta={a: q * prep.closes[a] for a, q in prep.quantities.items()},
        legs=[
            (data.instrument.base, r.out[:, _COLS["delta_usd"]], r.book_usd)
            for r, data in zip(legs, prep.legs, strict=True)
        ],
        leg_totals={k: float(doc[k]) for k in ("fees_usd", "slippage_usd", "funding_received_usd")},
        rebalances=int(doc["rebalances"]),
        hedged=hedged,
        unhedged=unhedged,
    )
    doc["defi"] = d
    if prep.defi.has_pools and run_cfg.defi is None:
        doc["warnings"].append(
            "the pools earn no fees in this run: set `defi: {fee_apr: ...}` in the run file to assume a fee APR"
        )
    for row in d["positions"]:
        liq = row.get("liquidation")
        if liq:
            doc["warnings"].append(
                f"positions[{row['index']}] ({row['label']}): liquidated on {liq['date']} (health factor "
                f"{liq['health_factor']:.3f} at the bar's worst prices), losing {liq['loss_usd']:,.0f} USD"
            )
    short = sorted({leg.summary["instrument"] for leg in legs if (leg.exposure < 0).any()})
    if short:
        doc["warnings"].append(
            f"the exposure hedged by {', '.join(short)} is net short on some bars (more of the asset owed than held): "
            "a short hedge offsets nothing there and stays flat"
        )


def _defi_equity(doc: dict[str, Any], prep: Prepared, fees: list[np.ndarray]) -> None:
    """Each equity row gets the positions' value, the fees earned so far and the lowest health factor."""
    assert prep.defi is not None
    value = prep.defi.value_usd
    earned = np.cumsum(sum(fees, np.zeros(len(prep.dates))))
    hfs = [p.health_factor for p in prep.defi.paths if p.health_factor is not None]
    hf = np.minimum.reduce(hfs) if hfs else None
    for i, row in enumerate(doc["equity"]):
        row["defi_value_usd"] = float(value[i])
        row["fees_earned_usd"] = float(earned[i])
        if hf is not None:
            row["health_factor"] = float(hf[i]) if math.isfinite(hf[i]) else None


def _document(
    prep: Prepared,
    run_cfg: RunFile,
    legs: list[_LegRun],
    hedged: np.ndarray,
    unhedged: np.ndarray,
    *,
    config_hash: str,
    source: str,
) -> dict[str, Any]:
    """The ``perphedge.backtest/1`` summary (without the daily equity)."""
    ppy = prep.periods_per_year
    total_delta = sum((leg.out[:, _COLS["delta_usd"]] for leg in legs), np.zeros(len(prep.dates)))
    down_cap, up_cap = capture(hedged, unhedged)
    summaries = [leg.summary for leg in legs]
    return {
        "schema": BACKTEST_SCHEMA,
        "name": run_cfg.name,
        "source": source,
        "config_hash": config_hash,
        "start": str(prep.dates[0].date()),
        "end": str(prep.dates[-1].date()),
        "days": len(prep.dates),
        "step": run_cfg.step,
        "policy": _policy_stated(run_cfg),
        "hedged": _book(equity_metrics(hedged, ppy), prep.dates),
        "unhedged": _book(equity_metrics(unhedged, ppy), prep.dates),
        "hedge_effectiveness": _hedge_effectiveness(hedged, unhedged),
        "downside_capture": down_cap,
        "upside_capture": up_cap,
        "funding_received_usd": sum(s["funding_received_usd"] for s in summaries),
        "fees_usd": sum(s["fees_usd"] for s in summaries),
        "slippage_usd": sum(s["slippage_usd"] for s in summaries),
        "top_ups_usd": sum(s["top_ups_usd"] for s in summaries),
        "rebalances": sum(s["rebalances"] for s in summaries),
        "liquidations": [x for s in summaries for x in s["liquidations"]],
        "days_hedged": int((total_delta < 0).sum()),
        "btc_terms": _btc_terms(prep, hedged, unhedged),
        "legs": summaries,
        "policy_fallbacks": _fallback_entries(prep, [f for leg in legs for f in leg.fallbacks]),
        "warnings": list(prep.warnings) + [w for leg in legs for w in leg.warnings],
    }


def _attach_series(
    doc: dict[str, Any], prep: Prepared, legs: list[_LegRun], hedged: np.ndarray, unhedged: np.ndarray
) -> None:
    """The daily equity list and the report's private series."""
    n = len(prep.dates)
    total_exposure = sum((leg.exposure for leg in legs), np.zeros(n))
    total_delta = sum((leg.out[:, _COLS["delta_usd"]] for leg in legs), np.zeros(n))
    achieved = np.where(total_exposure > 0, -total_delta / np.where(total_exposure > 0, total_exposure, 1.0), 0.0)
    doc["equity"] = [
        {"date": d, "hedged_usd": float(h), "unhedged_usd": float(u)}
        for d, h, u in zip(prep.dates.strftime("%Y-%m-%d"), hedged, unhedged, strict=True)
    ]
    doc["_series"] = {
        "dates": prep.dates,
        "hedged": hedged,
        "unhedged": unhedged,
        "btc": prep.btc_close,
        "achieved_ratio": achieved,
        "target_ratio": legs[-1].target if legs else np.zeros(n),
        "funding_cum": np.cumsum(sum(leg.out[:, _COLS["funding_usd"]] for leg in legs)),
        "rebalanced": sum(leg.out[:, _COLS["rebalanced"]] for leg in legs),
        "liquidated": sum(leg.out[:, _COLS["liquidated"]] for leg in legs),
    }


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """The document without private series, JSON-safe (NaN → null)."""
    from perphedge.jsonsafe import json_safe

    out = json_safe(doc)
    assert isinstance(out, dict)
    return out


def write_report(doc: dict[str, Any], path: Path) -> Path:
    """One self-contained HTML file (plotly inlined): equity in USD and BTC, drawdowns, hedge ratio, funding."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    s = doc["_series"]
    x = list(s["dates"].tz_localize(None))
    fig = make_subplots(
        rows=5,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.03,
        subplot_titles=(
            "Equity (USD)",
            "Equity (BTC)",
            "Drawdown",
            "Hedge ratio",
            "Cumulative funding (USD, + = received)",
        ),
    )
    fig.add_trace(go.Scatter(x=x, y=s["unhedged"], name="unhedged", line={"color": "#999"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=x, y=s["hedged"], name="hedged", line={"color": "#1f77b4"}), row=1, col=1)
    reb = np.nonzero(s["rebalanced"] > 0)[0]
    fig.add_trace(
        go.Scatter(
            x=[x[i] for i in reb],
            y=[s["hedged"][i] for i in reb],
            mode="markers",
            name="rebalance",
            marker={"size": 4, "color": "#2ca02c"},
        ),
        row=1,
        col=1,
    )
    liq = np.nonzero(s["liquidated"] > 0)[0]
    fig.add_trace(
        go.Scatter(
            x=[x[i] for i in liq],
            y=[s["hedged"][i] for i in liq],
            mode="markers",
            name="liquidation",
            marker={"size": 11, "color": "#d62728", "symbol": "x"},
        ),
        row=1,
        col=1,
    )
    if s["btc"] is not None:
        fig.add_trace(
            go.Scatter(
                x=x, y=s["unhedged"] / s["btc"], name="unhedged (BTC)", line={"color": "#999"}, showlegend=False
            ),
            row=2,
            col=1,
        )
        fig.add_trace(
            go.Scatter(x=x, y=s["hedged"] / s["btc"], name="hedged (BTC)", line={"color": "#1f77b4"}, showlegend=False),
            row=2,
            col=1,
        )
    for key, color in (("unhedged", "#999"), ("hedged", "#1f77b4")):
        eq = s[key]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=eq / np.maximum.accumulate(eq) - 1,
                name=f"drawdown {key}",
                line={"color": color},
                showlegend=False,
            ),
            row=3,
            col=1,
        )
    fig.add_trace(
        go.Scatter(x=x, y=s["target_ratio"], name="target ratio", line={"color": "#ff7f0e", "dash": "dot"}),
        row=4,
        col=1,
    )
    fig.add_trace(
        go.Scatter(x=x, y=s["achieved_ratio"], name="achieved ratio", line={"color": "#ff7f0e"}), row=4, col=1
    )
    fig.add_trace(go.Scatter(x=x, y=s["funding_cum"], name="funding", line={"color": "#9467bd"}), row=5, col=1)
    h, u = doc["hedged"], doc["unhedged"]
    title = (
        f"{doc.get('name') or doc['source']}: {doc['start']} → {doc['end']}, policy {doc['policy']['kind']} — "
        f"hedged {_fmt(h['total_return'], '+.1%')} (max DD {_fmt(h['max_drawdown'], '.1%')}) vs unhedged "
        f"{_fmt(u['total_return'], '+.1%')} (max DD {_fmt(u['max_drawdown'], '.1%')}); "
        f"HE {_fmt(doc['hedge_effectiveness'], '.2f')}; "
        f"funding {_fmt(doc['funding_received_usd'], '+,.0f')} USD; {len(doc['liquidations'])} liquidations"
    )
    fig.update_layout(height=1400, title={"text": title, "font": {"size": 13}}, hovermode="x unified")
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    head = f'<meta name="perphedge-config-hash" content="{_html.escape(str(doc.get("config_hash", "")))}">'
    html = html.replace("<head>", "<head>" + head, 1)
    html = html.replace("</body>", _notes_html(doc) + "</body>", 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


def _fmt(x: Any, spec: str) -> str:
    """A number in ``spec``, or ``n/a`` where it is undefined (None or NaN)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return format(x, spec)


def _fallback_text(f: dict[str, Any]) -> str:
    when = f["date"] if "date" in f else f"{f['from']} → {f['to']} ({f['days']} days)"
    return f"{when}: {f['reason']} (ratio {f['ratio_used']:g})"


def _notes_html(doc: dict[str, Any]) -> str:
    """Policy fallbacks and warnings under the charts."""
    parts = ['<section id="perphedge-notes" style="font-family:sans-serif;font-size:13px;margin:1em 4em">']
    fallbacks = doc.get("policy_fallbacks") or []
    parts.append(f"<h3>Policy fallbacks ({len(fallbacks)})</h3>")
    if fallbacks:
        parts.append("<ul>" + "".join(f"<li>{_html.escape(_fallback_text(f))}</li>" for f in fallbacks) + "</ul>")
    else:
        parts.append("<p>none: the policy's rule applied on every bar</p>")
    if doc.get("defi"):
        from perphedge.usecases.backtest_defi import notes_html

        parts.append(notes_html(doc["defi"]))
    warnings = doc.get("warnings") or []
    if warnings:
        parts.append(f"<h3>Warnings ({len(warnings)})</h3>")
        parts.append("<ul>" + "".join(f"<li>{_html.escape(w)}</li>" for w in warnings) + "</ul>")
    parts.append("</section>")
    return "".join(parts)


def write_png(doc: dict[str, Any], path: Path) -> Path:
    """A static PNG of the report's main panels (equity USD and BTC, drawdown, hedge ratio, funding)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = doc["_series"]
    x = s["dates"].tz_localize(None)
    fig, axes = plt.subplots(5, 1, figsize=(11, 13), sharex=True, gridspec_kw={"height_ratios": [3, 2, 2, 1.5, 1.5]})
    ax = axes[0]
    ax.plot(x, s["unhedged"], color="#999999", label="unhedged")
    ax.plot(x, s["hedged"], color="#1f77b4", label="hedged")
    liq = np.nonzero(s["liquidated"] > 0)[0]
    ax.scatter(x[liq], s["hedged"][liq], color="#d62728", marker="x", s=80, zorder=5, label="liquidation")
    ax.set_yscale("log")
    ax.set_ylabel("USD (log)")
    ax.legend(loc="upper left")
    h, u = doc["hedged"], doc["unhedged"]
    ax.set_title(
        f"{doc.get('name') or doc['source']} — hedged {_fmt(h['total_return'], '+.0%')} "
        f"(max DD {_fmt(h['max_drawdown'], '.0%')}), unhedged {_fmt(u['total_return'], '+.0%')} "
        f"(max DD {_fmt(u['max_drawdown'], '.0%')}), HE {_fmt(doc['hedge_effectiveness'], '.2f')}",
        fontsize=10,
    )
    if s["btc"] is not None:
        axes[1].plot(x, s["unhedged"] / s["btc"], color="#999999")
        axes[1].plot(x, s["hedged"] / s["btc"], color="#1f77b4")
        axes[1].set_ylabel("BTC")
    for key, color in (("unhedged", "#999999"), ("hedged", "#1f77b4")):
        eq = s[key]
        axes[2].plot(x, eq / np.maximum.accumulate(eq) - 1, color=color)
    axes[2].set_ylabel("drawdown")
    axes[3].plot(x, s["target_ratio"], color="#ff7f0e", linestyle=":", label="target")
    axes[3].plot(x, s["achieved_ratio"], color="#ff7f0e", label="achieved")
    axes[3].set_ylabel("hedge ratio")
    axes[3].legend(loc="upper left")
    axes[4].plot(x, s["funding_cum"], color="#9467bd")
    axes[4].set_ylabel("funding USD")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, metadata={"Description": f"perphedge config_hash {doc.get('config_hash', '')}"})
    plt.close(fig)
    return path


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestRequest:
    """One backtest: the run file, the market store (None: the default store), extra instrument specs, the run
    folder to write (None: ``backtest-results/<run file stem>``) and whether to draw the report."""

    run_file: str | Path
    store_path: str | Path | None = None
    specs: str | None = None
    out_dir: str | Path | None = None
    report: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestOutcome:
    """The ``perphedge.backtest/1`` document (JSON-safe) and the files written."""

    document: dict[str, Any]
    files: list[str]


def default_out_dir(run_file: str | Path) -> Path:
    """Where a run's files go when no folder is given."""
    return Path("backtest-results") / Path(run_file).stem


def execute(request: BacktestRequest) -> BacktestOutcome:
    """Load the run, open the store, run the backtest and write the run folder (atomically, all or nothing)."""
    from perphedge.data.store import MarketStore
    from perphedge.errors import PerphedgeError
    from perphedge.specs import default_registry

    run_cfg, pfile, source, digest = load_run(request.run_file)
    from perphedge.usecases.backtest_futures import execute_dated, is_dated_run

    try:
        dated = is_dated_run(run_cfg, pfile, default_registry(request.specs))
    except PerphedgeError as exc:
        raise type(exc)(f"{source}: {exc}") from None
    if dated:  # a hedge on dated futures with a roll policy: its own engine (usecases/backtest_futures.py)
        return execute_dated(request, run_cfg, pfile, source, digest)
    out_dir = check_output_dir(request.out_dir if request.out_dir is not None else default_out_dir(request.run_file))
    try:
        registry = default_registry(request.specs)
        with MarketStore(request.store_path, read_only=True) as store:
            prep = prepare(run_cfg, pfile, store, registry)
        doc = run(prep, run_cfg, config_hash=digest, source=source)
    except PerphedgeError as exc:
        msg = str(exc)
        raise type(exc)(msg if msg.startswith(source) else f"{source}: {msg}") from None
    result = public(doc)
    writers: dict[str, Callable[[Path], Any]] = {
        "result.json": lambda p: p.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    }
    if request.report:
        writers["report.html"] = lambda p: write_report(doc, p)
        writers["report.png"] = lambda p: write_png(doc, p)
    files = write_run_folder(out_dir, writers, config_hash=digest)
    return BacktestOutcome(document=result, files=[str(f) for f in files])
