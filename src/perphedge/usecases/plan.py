"""Use cases shared by every edge: ``plan`` and ``calc``.

Parse → call → render lives in the edges (``cli``); this module turns validated input into
core objects, calls the core, and returns result objects. Errors raised here name the file or
flag they come from.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perphedge.core.contracts import (
    LiquidationResult,
    Side,
    bankruptcy_price,
    check_opening_margin,
    fee,
    funding_received,
    liquidation_price,
    pnl,
)
from perphedge.core.defi import (
    LendingPosition,
    LpV2Position,
    LpV3Position,
    Position,
    StakedPosition,
    v3_liquidity_from_amounts,
)
from perphedge.core.hedge import (
    CollateralSource,
    HedgePlan,
    HedgeRequest,
    LegRequest,
    SizingMethod,
    plan_hedge,
)
from perphedge.core.instruments import (
    MAKER_FEE_RANGE,
    TAKER_FEE_RANGE,
    ContractKind,
    Instrument,
    LiquidationMethod,
    MarginSchedule,
)
from perphedge.core.parsing import parse_date_or_latest
from perphedge.core.portfolio import Holding, Portfolio
from perphedge.core.scenarios import (
    DriftLeg,
    ScenarioResult,
    check_assets,
    default_scenarios,
    drift,
    evaluate,
    parse_moves,
    parse_scenario,
    position_scenarios,
    range_warnings,
)
from perphedge.core.units import (
    MAX_PRICE_USD,
    MAX_VALUE_USD,
    MIN_PRICE_USD,
    Asset,
    Money,
    Price,
    is_stablecoin,
    normalise_asset,
)
from perphedge.errors import ConfigError, DataError, InfeasibleHedgeError, PerphedgeError

if TYPE_CHECKING:
    from perphedge.config import PortfolioFile
    from perphedge.specs import InstrumentRegistry

STALE_AS_OF_DAYS = 7
"""``--as-of DATE`` refuses a stored close more than this many days older than DATE (a delisted or unimported coin)."""

__all__ = [
    "CalcInput",
    "CalcResult",
    "CompareRow",
    "HedgeOverrides",
    "PlanOutcome",
    "build_portfolio",
    "build_positions",
    "calc",
    "plan_from_file",
    "plan_portfolio",
]


#: Contract sizes an exchange could list (coin per contract for linear, USD for inverse).
MIN_FACE_VALUE, MAX_FACE_VALUE = 1e-8, 1e8


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgeOverrides:
    """Command-line values that replace the file's ``hedge:`` block (None = keep the file's)."""

    ratio: float | None = None
    scope: str | None = None
    method: str | None = None
    instrument: str | None = None
    proxy: str | None = None
    leverage: float | None = None
    collateral: str | None = None
    funding_rate_8h: float | None = None
    window_days: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CompareRow:
    """One alternative of ``plan --compare``."""

    variant: str
    instrument: str
    plan: HedgePlan | None
    scenarios: tuple[ScenarioResult, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanOutcome:
    """A plan and everything shown with it."""

    source: str
    instrument_spec: str
    plan: HedgePlan
    scenarios: tuple[ScenarioResult, ...]
    compare: tuple[CompareRow, ...] = ()
    drift_moves: dict[str, float] = field(default_factory=dict)
    drift: tuple[DriftLeg, ...] = ()
    price_sources: dict[str, str] = field(default_factory=dict)
    beta_estimation: dict[str, Any] | None = None
    leverage_recommendation: dict[str, Any] | None = None
    #: (code, message) pairs the use case adds to the plan's own warnings (e.g. an option that had no effect)
    warnings: tuple[tuple[str, str], ...] = ()
    #: ``hedge.margin_mode: cross``: the legs as one cross account (usecases/plan_cross.py), else None
    cross_account: dict[str, Any] | None = None


def _prefixed(source: str, exc: PerphedgeError) -> PerphedgeError:
    msg = str(exc)
    if msg.startswith(source):
        return exc
    return type(exc)(f"{source}: {msg}")


def build_portfolio(pfile: PortfolioFile, source: str) -> Portfolio:
    """Core portfolio from a validated file: ``value_usd`` holdings become quantities."""
    prices = {normalise_asset(k): float(v) for k, v in pfile.prices.items()}
    holdings = []
    total = 0.0
    for i, h in enumerate(pfile.holdings):
        try:
            asset = normalise_asset(h.asset)
        except ConfigError as exc:
            raise ConfigError(f"{source}: field `holdings[{i}].asset`: {exc}") from None
        if h.quantity is not None:
            qty = h.quantity
        else:
            assert h.value_usd is not None
            price = prices.get(asset, 1.0 if is_stablecoin(asset) else None)
            if price is None:
                raise ConfigError(
                    f"{source}: field `holdings[{i}]`: no price for {asset}: add it under `prices:` "
                    f"(USD per {asset}) to value {h.value_usd:g} USD of it"
                )
            qty = h.value_usd / price
        value = qty * prices.get(asset, 1.0 if is_stablecoin(asset) else 0.0)
        if value > MAX_VALUE_USD:
            raise ConfigError(
                f"{source}: field `holdings[{i}]`: {asset} worth {value:.3g} USD is above the {MAX_VALUE_USD:g} USD "
                "any holding can be (check the quantity and the price)"
            )
        total += value
        holdings.append(Holding(asset=asset, quantity=qty, group=h.group))
    positions = build_positions(pfile, prices, source)
    for i, pos in enumerate(positions):
        # gross: every token held or owed at its price (a loan's collateral and debt each count)
        gross = sum(
            abs(float(q)) * prices.get(a, 1.0 if is_stablecoin(a) else 0.0)
            for a, q in pos.amounts(prices).items()
            if not isinstance(pos, StakedPosition)
        )
        value = max(gross, abs(float(pos.value_usd(prices))))
        if not math.isfinite(value) or value > MAX_VALUE_USD:
            raise ConfigError(
                f"{source}: field `positions[{i}]`: {pos.label} holds {value:.3g} USD, above the "
                f"{MAX_VALUE_USD:g} USD any position can be (check its amounts and the prices)"
            )
        total += value
    if total > MAX_VALUE_USD:
        raise ConfigError(f"{source}: the portfolio is worth {total:.3g} USD, above {MAX_VALUE_USD:g} USD")
    try:
        if positions:
            return Portfolio(name=pfile.name, holdings=tuple(holdings), prices=prices, positions=positions)
        return Portfolio(name=pfile.name, holdings=tuple(holdings), prices=prices)
    except PerphedgeError as exc:
        raise _prefixed(source, exc) from None


def build_positions(pfile: PortfolioFile, prices: Mapping[str, float], source: str) -> tuple[Position, ...]:
    """Core DeFi positions of a validated file at USD ``prices`` (pool amounts are read at these prices).

    For every edge that values positions (plan; the backtest and the book call it with their first or
    current prices); ConfigError names ``source`` and the field ``positions[i]...``.
    """
    return tuple(_build_position(p, i, prices, source) for i, p in enumerate(pfile.positions))


def _pool_price(base: str, quote: str, prices: Mapping[str, float], where: str) -> float:
    """Pool price (quote per base) from USD prices; ConfigError naming the position when one is missing."""
    out = []
    for asset in (base, quote):
        price = prices.get(asset, 1.0 if is_stablecoin(asset) else None)
        if price is None:
            raise ConfigError(
                f"{where}: no price for {asset}: add it under `prices:` (USD per {asset}), or pass --as-of"
            )
        out.append(price)
    return out[0] / out[1]


def _build_position(p: Any, i: int, prices: Mapping[str, float], source: str) -> Position:
    """A core DeFi position from a validated ``positions[i]`` entry (pool amounts need the prices)."""
    where = f"{source}: field `positions[{i}]`"
    field_name = ""
    try:
        common: dict[str, Any] = {"group": p.group, "name": p.name}
        if p.kind in ("lp_v2", "lp_v3"):
            base, quote = normalise_asset(p.pair[0]), normalise_asset(p.pair[1])
            price = _pool_price(base, quote, prices, where)
            amounts = {normalise_asset(k): v for k, v in (p.amounts or {}).items()}
            if p.kind == "lp_v2":
                if p.amounts is not None:
                    field_name = ".amounts"
                    return LpV2Position.from_amounts(
                        base=base, quote=quote, x=amounts[base], y=amounts[quote], price=price, **common
                    )
                field_name = ".reserves"
                reserves = {normalise_asset(k): v for k, v in p.reserves.items()}
                return LpV2Position.from_amounts(
                    base=base,
                    quote=quote,
                    x=p.share * reserves[base],
                    y=p.share * reserves[quote],
                    price=price,
                    **common,
                )
            p_a, p_b = p.range
            if p.liquidity is not None:
                return LpV3Position(base=base, quote=quote, p_a=p_a, p_b=p_b, liquidity=p.liquidity, **common)
            field_name = ".amounts"
            liquidity = v3_liquidity_from_amounts(amounts.get(base, 0.0), amounts.get(quote, 0.0), p_a, p_b, price)
            return LpV3Position(base=base, quote=quote, p_a=p_a, p_b=p_b, liquidity=liquidity, **common)
        if p.kind == "staked":
            return StakedPosition(
                asset=p.asset, underlying=p.underlying, quantity=p.quantity, rate=p.rate, depeg=p.depeg, **common
            )
        return LendingPosition(
            supplied=p.supplied,
            borrowed=p.borrowed,
            liquidation_threshold=p.liquidation_threshold,
            liquidation_bonus=p.liquidation_bonus,
            **common,
        )
    except ConfigError as exc:
        msg = str(exc)
        if msg.startswith(where):
            raise
        raise ConfigError(f"{source}: field `positions[{i}]{field_name}`: {msg}") from None


_OVERRIDE_CHOICES = {
    "collateral": ("--collateral", ("buy", "holdings", "stable")),
    "method": ("--method", ("notional", "beta", "min_variance")),
}


def _check_overrides(ov: HedgeOverrides) -> None:
    """Command-line overrides are checked naming their flag (not the portfolio file, which is not at fault)."""
    for name, flag in (("instrument", "--instrument"), ("proxy", "--proxy"), ("scope", "--scope")):
        value = getattr(ov, name)
        if value is not None and not value.strip():
            raise ConfigError(f"invalid `{flag}`: must not be empty, was {value!r}")
    for name, (flag, choices) in _OVERRIDE_CHOICES.items():
        value = getattr(ov, name)
        if value is not None and value not in choices:
            raise ConfigError(f"invalid `{flag}`: must be {', '.join(choices[:-1])} or {choices[-1]}, was {value!r}")
    if ov.ratio is not None and not 0.0 <= ov.ratio <= 2.0:
        raise ConfigError(f"invalid `--ratio`: must be in [0, 2] (a fraction of the exposure), was {ov.ratio:g}")
    if ov.leverage is not None and ov.leverage < 1.0:
        raise ConfigError(f"invalid `--leverage`: must be >= 1, was {ov.leverage:g}")
    if ov.funding_rate_8h is not None and abs(ov.funding_rate_8h) > 0.05:
        raise ConfigError(f"invalid `--funding-rate-8h`: must be within ±0.05 per 8h, was {ov.funding_rate_8h:g}")


def _resolve_legs(
    spec: str | None, legs: Sequence[Any] | None, proxy: str | None, portfolio: Portfolio, registry: InstrumentRegistry
) -> tuple[tuple[LegRequest, ...], dict[str, Instrument], str]:
    """Proxy legs, direct instruments and a display label from the hedge settings."""
    if proxy and not (spec and spec.lower().startswith("direct:")):
        # `proxy` names the instrument that carries assets without their own perpetual in direct mode;
        # anywhere else the hedge's own instrument is the proxy and another one would be ignored silently
        same = False
        if spec and not legs:
            with contextlib.suppress(ConfigError):
                same = registry.get(proxy).id == registry.get(spec).id
        if not same:
            shown = "`legs`" if legs else f"instrument {spec!r}" if spec else "no instrument"
            raise ConfigError(
                f"invalid `proxy` {proxy!r}: it applies only with `instrument: direct:<exchange>:<linear|inverse>` "
                f"(the instrument for assets without their own perpetual); with {shown} the hedge's instrument is "
                "the proxy: drop `proxy`/`--proxy`, or change the instrument"
            )
    if legs:
        reqs = tuple(LegRequest(instrument=registry.get(leg.instrument), weight=leg.weight) for leg in legs)
        return reqs, {}, " + ".join(f"{leg.weight:g}x{registry.get(leg.instrument).id}" for leg in legs)
    if not spec:
        raise ConfigError(
            "field `hedge.instrument`: is required (e.g. binance:BTCUSD_PERP, or "
            "direct:binance:linear); or give `hedge.legs`"
        )
    if spec.lower().startswith("direct:"):
        parts = spec.split(":")
        if len(parts) != 3 or parts[2].lower() not in ("linear", "inverse"):
            raise ConfigError(f"invalid instrument {spec!r}: direct mode is direct:<exchange>:<linear|inverse>")
        exchange, kind = parts[1].lower(), ContractKind(parts[2].lower())
        if exchange not in registry.exchanges():
            raise ConfigError(
                f"invalid instrument {spec!r}: unknown exchange {exchange!r}; known: " + ", ".join(registry.exchanges())
            )
        if proxy:
            proxy_inst = registry.get(proxy)
        else:
            found = registry.find(exchange, kind, "BTC")
            if found is None:
                raise ConfigError(
                    f"invalid instrument {spec!r}: {exchange} has no {kind.value} BTC perpetual "
                    "to carry assets without their own; set `hedge.proxy`"
                )
            proxy_inst = found
        direct: dict[str, Instrument] = {}
        for h in portfolio.holdings:
            if h.is_stable:
                continue
            own = registry.find(exchange, kind, h.asset)
            if own is not None:
                direct[h.asset] = own
        for asset in sorted(portfolio.exposed_assets() - set(direct)) if portfolio.positions else ():
            own = registry.find(exchange, kind, asset)
            if own is not None:
                direct[asset] = own
        return (LegRequest(instrument=proxy_inst),), direct, f"direct:{exchange}:{kind.value} (proxy {proxy_inst.id})"
    inst = registry.get(spec)
    return (LegRequest(instrument=inst),), {}, inst.id


def plan_portfolio(
    pfile: PortfolioFile,
    *,
    source: str,
    registry: InstrumentRegistry,
    overrides: HedgeOverrides = HedgeOverrides(),
    scenarios: Sequence[str] = (),
    compare: bool = False,
    drift_moves: str | None = None,
    as_of: str | None = None,
    store_path: str | None = None,
    auto_leverage: bool = False,
) -> PlanOutcome:
    """Size, price and stress the hedge of a portfolio file.

    With ``as_of`` (a date or ``latest``), prices the file does not give are the stored daily
    closes (Binance spot, ``<ASSET>/USDT``) of that UTC day or the last one before it.
    """
    _check_overrides(overrides)
    if as_of is not None:  # a UTC day YYYY-MM-DD or latest, for every edge (plan, stress, ...)
        day = parse_date_or_latest(as_of, "--as-of")
        if day is not None and day > datetime.now(UTC).date():
            raise ConfigError(
                f"invalid `--as-of`: {day.isoformat()} is in the future (use latest for the newest close)"
            )
        as_of = "latest" if day is None else day.isoformat()
    sources = {normalise_asset(k): "file" for k in pfile.prices}
    if as_of:
        try:
            pfile, stored = _prices_from_store(pfile, registry, overrides, as_of, store_path, source)
        except PerphedgeError as exc:
            raise _prefixed(source, exc) from None
        sources.update(stored)
    notes: list[tuple[str, str]] = []
    if as_of and not any(v.startswith("store") for v in sources.values()):
        notes.append(
            (
                "as_of_not_used_for_prices",
                f"--as-of {as_of}: the file gives every price, so no stored close was used (prices under "
                "`prices:` win; remove one to price it from the store)",
            )
        )
    portfolio = build_portfolio(pfile, source)
    hb = pfile.hedge
    try:
        instrument_spec = overrides.instrument or hb.instrument
        legs = None if overrides.instrument else hb.legs
        proxy_legs, direct, label = _resolve_legs(
            instrument_spec, legs, overrides.proxy or hb.proxy, portfolio, registry
        )
        req = _request(pfile, overrides, proxy_legs, direct)
        if as_of:
            req, interval_notes = _funding_intervals_in_force(req, as_of, store_path)
            notes += interval_notes
        req, estimation = _estimate_missing_betas(req, portfolio, overrides, as_of, store_path)
        recommendation = None
        if auto_leverage and portfolio.positions:
            raise ConfigError(
                "invalid `--leverage auto`: its Monte Carlo simulates holdings only and would leave out the "
                "DeFi `positions:`; give a leverage (e.g. --leverage 2)"
            )
        if auto_leverage:
            req, recommendation = _auto_leverage(portfolio, req, store_path)
        plan = plan_hedge(portfolio, req)
        cross_doc = _cross_account(plan) if hb.margin_mode == "cross" else None
        proxy = req.proxy_asset
        results = [evaluate(plan, s) for s in default_scenarios(proxy)]
        if portfolio.positions:
            results += [evaluate(plan, s) for s in position_scenarios(plan)]
        names = {r.name for r in results}
        for text in scenarios:
            custom = parse_scenario(text, proxy, "--scenario")
            check_assets(plan, custom.shocks, "--scenario")
            if custom.name in names:  # one row per name: a second one would be dropped from the table/JSON
                raise ConfigError(
                    f"invalid `--scenario` {text!r}: a scenario named {custom.name!r} is already shown; "
                    "give each `--scenario` its own NAME:"
                )
            names.add(custom.name)
            results.append(evaluate(plan, custom))
        rows = _compare(pfile, overrides, portfolio, registry, proxy_legs[0].instrument, req.betas) if compare else ()
        moves = parse_moves(drift_moves, "--drift") if drift_moves else {}
        check_assets(plan, moves, "--drift")
        drifted = drift(plan, moves) if moves else ()
        if portfolio.positions:
            notes += [("RangeWarning", line) for line in range_warnings(plan, results)]
            notes += _position_warnings(portfolio)
    except PerphedgeError as exc:
        raise _prefixed(source, exc) from None
    return PlanOutcome(
        source=source,
        instrument_spec=label,
        plan=plan,
        scenarios=tuple(results),
        compare=rows,
        drift_moves=moves,
        drift=drifted,
        price_sources={a: sources.get(a, "default (stablecoin)") for a in portfolio.prices},
        beta_estimation=estimation,
        leverage_recommendation=recommendation,
        warnings=tuple(notes),
        cross_account=cross_doc,
    )


def _cross_account(plan: HedgePlan) -> dict[str, Any]:
    from perphedge.usecases.plan_cross import plan_cross_document

    return plan_cross_document(plan)


def _position_warnings(portfolio: Portfolio) -> list[tuple[str, str]]:
    """What a plan of DeFi positions must say: ranges left, assumptions made, risks a perpetual does not cover."""
    out: list[tuple[str, str]] = []
    for i, pos in enumerate(portfolio.positions):
        if isinstance(pos, StakedPosition):
            if pos.asset in portfolio.prices:
                implied = pos.rate * portfolio.price(pos.underlying)
                out.append(
                    (
                        "AssumptionWarning",
                        f"positions[{i}]: `prices:` gives {pos.asset} at {portfolio.price(pos.asset):,.6g} USD but "
                        f"the position is valued at rate × {pos.underlying} = {implied:,.6g} USD; set `rate` "
                        "(underlying per token) to value it at the market",
                    )
                )
            if pos.depeg is None:
                out.append(
                    (
                        "DepegRiskWarning",
                        f"positions[{i}]: {pos.asset} is hedged as {pos.underlying_quantity:,.6g} {pos.underlying}; a "
                        f"depeg of {pos.asset} below {pos.underlying} is not hedged by a {pos.underlying} perpetual "
                        "(set `depeg: 0.05` to see it as a scenario)",
                    )
                )
        if isinstance(pos, LendingPosition):
            hf = float(pos.health_factor(portfolio.prices))
            if hf < 1.0:
                out.append(
                    (
                        "LiquidationRiskWarning",
                        f"positions[{i}]: health factor {hf:.3f} is below 1 at these prices: the position can "
                        "be liquidated now",
                    )
                )
        if isinstance(pos, LendingPosition) and pos.bonus_assumed:
            out.append(
                (
                    "AssumptionWarning",
                    f"positions[{i}]: no `liquidation_bonus`: a liquidation is assumed to cost "
                    f"{pos.bonus:.0%} of the debt repaid (Aave v3 ETH); give the market's own bonus",
                )
            )
    return out


def _auto_leverage(
    portfolio: Portfolio,
    req: HedgeRequest,
    store_path: str | None,
    max_liq_prob: float = 0.01,
    horizon: int = 90,
    paths: int = 20_000,
) -> tuple[HedgeRequest, dict[str, Any]]:
    """The highest leverage whose P(any leg liquidated within ``horizon`` days) <= ``max_liq_prob``."""
    from perphedge.data.store import MarketStore, default_store_path
    from perphedge.usecases.montecarlo import leverage_candidates, monte_carlo

    probe_lev = 2.0 if all(leg.instrument.max_leverage >= 2 for leg in req.proxy_legs) else 1.5
    probe = plan_hedge(portfolio, replace(req, leverage=probe_lev))
    candidates = leverage_candidates(probe)
    path = store_path or default_store_path()
    try:
        with MarketStore(path, read_only=True) as store:
            mc = monte_carlo(
                probe,
                store,
                model="bootstrap",
                paths=paths,
                horizon=horizon,
                seed=0,
                leverages=candidates,
                max_liq_prob=max_liq_prob,
            )
    except DataError as exc:
        raise ConfigError(f"--leverage auto simulates stored history, which failed: {exc}") from None
    lev = mc["recommended"]["without_top_up"]
    if lev is None:
        raise InfeasibleHedgeError(
            f"--leverage auto: no leverage in {candidates} keeps P(liquidation) <= {max_liq_prob:.1%} over {horizon} "
            "days; hedge less, or choose a leverage and a top-up plan (`perphedge stress`)"
        )
    probs = {k: v["any_leg"] for k, v in mc["by_leverage"].items() if "any_leg" in v}
    info = {
        "leverage": lev,
        "model": "bootstrap",
        "paths": paths,
        "horizon_days": horizon,
        "seed": 0,
        "max_liquidation_probability": max_liq_prob,
        "liquidation_probability": probs.get(str(lev)),
        "with_top_up": mc["recommended"]["with_top_up"],
        "probabilities": probs,
        "history": mc["history"],
    }
    return replace(req, leverage=lev), info


def _funding_intervals_in_force(
    req: HedgeRequest, as_of: str, store_path: str | None
) -> tuple[HedgeRequest, list[tuple[str, str]]]:
    """Each leg's funding interval as the market store has it in force on ``as_of`` (its newest settlement up to
    the end of that UTC day) where it differs from the spec's (Binance and Bybit moved contracts from 8h to 4h or
    1h): per-settlement figures and settlements per day follow it, and a note says so. Legs without stored
    funding keep the spec's interval."""
    from perphedge.data.store import MarketStore, default_store_path

    path = store_path or default_store_path()
    if not path or not Path(path).is_file():
        return req, []
    insts = {leg.instrument.id: leg.instrument for leg in req.proxy_legs}
    insts.update({inst.id: inst for inst in req.direct.values()})
    sql = "SELECT ts, interval_hours FROM funding WHERE source = ? AND symbol = ?"
    bound: list[Any] = []
    if as_of != "latest":
        sql += " AND ts < CAST(? AS TIMESTAMP) + INTERVAL 1 DAY"
        bound = [f"{as_of} 00:00:00"]
    found: dict[str, tuple[float, Any]] = {}
    try:
        with MarketStore(path, read_only=True) as store:
            for inst in insts.values():
                if not inst.ccxt_symbol:
                    continue
                rows = store.con.execute(
                    sql + " ORDER BY ts DESC LIMIT 1", [inst.exchange, inst.ccxt_symbol, *bound]
                ).fetchall()
                if rows and rows[0][1] and abs(float(rows[0][1]) - inst.funding_interval_hours) > 1e-9:
                    found[inst.id] = (float(rows[0][1]), rows[0][0])
    except DataError as exc:
        return req, [
            ("funding_interval_unchecked", f"--as-of {as_of}: funding intervals not read from the store: {exc}")
        ]
    if not found:
        return req, []

    def swap(inst: Instrument) -> Instrument:
        return replace(inst, funding_interval_hours=found[inst.id][0]) if inst.id in found else inst

    req = replace(
        req,
        proxy_legs=tuple(replace(leg, instrument=swap(leg.instrument)) for leg in req.proxy_legs),
        direct={asset: swap(inst) for asset, inst in req.direct.items()},
    )
    notes = [
        (
            "funding_interval_in_force",
            f"{ident}: funding settles every {hours:g}h on {as_of} (store: settlement {ts:%Y-%m-%d %H:%M} UTC), "
            f"not every {insts[ident].funding_interval_hours:g}h as its spec says; per-settlement figures use "
            f"{hours:g}h",
        )
        for ident, (hours, ts) in sorted(found.items())
    ]
    return req, notes


def _estimate_missing_betas(
    req: HedgeRequest, portfolio: Portfolio, ov: HedgeOverrides, as_of: str | None, store_path: str | None
) -> tuple[HedgeRequest, dict[str, Any] | None]:
    """``beta``: estimate the betas the file lacks; ``min_variance``: estimate every hedge ratio (OLS on daily
    simple returns against the proxy over the trailing window) from the market store."""
    if req.method is SizingMethod.NOTIONAL:
        if ov.window_days is not None:
            raise ConfigError(
                "invalid `--window`: it sets the estimation window of method beta or min_variance; method "
                "notional estimates nothing (drop --window, or set --method)"
            )
        return req, None
    proxy_bases = {leg.instrument.base for leg in req.proxy_legs}
    hedged = set(portfolio.scope_exposure(req.scope)) - set(req.direct) - proxy_bases
    if req.method is SizingMethod.BETA:
        hedged -= set(req.betas)
    if not hedged:
        return req, None
    from perphedge.data.store import MarketStore, default_store_path
    from perphedge.usecases.analyze import estimate_betas

    window = ov.window_days or 180
    path = store_path or default_store_path()
    try:
        with MarketStore(path, read_only=True) as store:
            est = estimate_betas(
                store,
                sorted(hedged),
                req.proxy_asset,
                window_days=window,
                end=None if as_of in (None, "latest") else as_of,
                method=req.method.value,
            )
    except DataError as exc:
        raise ConfigError(
            f"method `{req.method.value}` estimates hedge ratios of {', '.join(sorted(hedged))} from stored history, "
            f"which failed: {exc}"
        ) from None
    betas = dict(req.betas)
    betas.update(est.betas)
    info = {
        "method": req.method.value,
        "proxy": est.proxy,
        "window_days": est.window_days,
        "start": est.start,
        "end": est.end,
        "returns": "daily simple returns of Binance spot closes",
        "betas": est.betas,
        "n_days": est.n_days,
        "store": str(path),
    }
    return replace(req, betas=betas), info


def _prices_from_store(
    pfile: PortfolioFile,
    registry: InstrumentRegistry,
    ov: HedgeOverrides,
    as_of: str,
    store_path: str | None,
    source: str,
) -> tuple[PortfolioFile, dict[str, str]]:
    """Fill the prices the file lacks from the market store."""
    from perphedge.data.reader import prices_as_of
    from perphedge.data.store import MarketStore

    have = {normalise_asset(k) for k in pfile.prices}
    wanted = {normalise_asset(h.asset) for h in pfile.holdings} - have
    for p in pfile.positions:
        for names in (p.pair, [p.underlying] if p.underlying else None, p.supplied, p.borrowed):
            wanted |= {normalise_asset(a) for a in names or ()}
    spec = ov.instrument or pfile.hedge.instrument or ""
    ids = [leg.instrument for leg in pfile.hedge.legs or []]
    if spec and not spec.lower().startswith("direct:"):
        ids.append(spec)
    if ov.proxy or pfile.hedge.proxy:
        ids.append(ov.proxy or pfile.hedge.proxy or "")
    for ident in ids:
        with contextlib.suppress(ConfigError):  # an unknown id is reported when the plan resolves its legs
            wanted.add(registry.get(ident).base)
    if spec.lower().startswith("direct:"):
        wanted.add("BTC")
    wanted = {a for a in wanted - have if not is_stablecoin(a)}
    if not wanted:
        return pfile, {}
    when = None if as_of == "latest" else as_of
    try:
        with MarketStore(store_path, read_only=True) as store:
            found = prices_as_of(store, sorted(wanted), when)
    except PerphedgeError as exc:
        raise ConfigError(f"--as-of {as_of}: {exc}") from None
    missing = sorted(wanted - set(found))
    if missing:
        raise ConfigError(
            f"no stored price for {', '.join(missing)} on or before {as_of}: add them under `prices:` "
            "or import/fetch their history (`perphedge data`)"
        )
    if when is not None:
        stale = {
            a: ts for a, (_, ts) in found.items() if (date.fromisoformat(when) - ts.date()).days > STALE_AS_OF_DAYS
        }
        if stale:
            a, ts = sorted(stale.items())[0]
            raise ConfigError(
                f"invalid `--as-of`: the newest stored close of {a} on or before {when} is from {ts:%Y-%m-%d}, "
                f"{(date.fromisoformat(when) - ts.date()).days} days earlier (more than {STALE_AS_OF_DAYS}): "
                "choose a date the store covers, or give the price under `prices:`"
            )
    prices = dict(pfile.prices)
    prices.update({a: p for a, (p, _) in found.items()})
    stamped = {a: f"store: binance {a}/USDT 1d close {ts:%Y-%m-%d}" for a, (_, ts) in found.items()}
    return pfile.model_copy(update={"prices": prices}), stamped


def _request(
    pfile: PortfolioFile, ov: HedgeOverrides, proxy_legs: tuple[LegRequest, ...], direct: dict[str, Instrument]
) -> HedgeRequest:
    hb = pfile.hedge
    collateral = ov.collateral or hb.collateral
    if collateral is None:
        collateral = "buy" if proxy_legs[0].instrument.is_inverse else "stable"
    try:
        source = CollateralSource(collateral)
    except ValueError:
        raise ConfigError(f"invalid `collateral`: must be buy, holdings or stable, was {collateral!r}") from None
    method_text = ov.method or hb.method
    try:
        method = SizingMethod(method_text)
    except ValueError:
        raise ConfigError(f"invalid `method`: must be notional, beta or min_variance, was {method_text!r}") from None
    return HedgeRequest(
        ratio=hb.ratio if ov.ratio is None else ov.ratio,
        scope=ov.scope or hb.scope,
        method=method,
        proxy_legs=proxy_legs,
        direct=direct,
        leverage=hb.leverage if ov.leverage is None else ov.leverage,
        collateral=source,
        funding_rate_8h=hb.funding_rate_8h if ov.funding_rate_8h is None else ov.funding_rate_8h,
        betas={normalise_asset(k): float(v) for k, v in pfile.betas.items()},
    )


def _compare(
    pfile: PortfolioFile,
    ov: HedgeOverrides,
    portfolio: Portfolio,
    registry: InstrumentRegistry,
    proxy: Instrument,
    betas: Mapping[str, float] | None = None,
) -> tuple[CompareRow, ...]:
    """The same hedge as inverse vs linear and proxy vs direct on the proxy's exchange."""
    betas = dict(betas or {})
    rows: list[CompareRow] = []
    chosen = ov.collateral or pfile.hedge.collateral
    inverse_collateral = chosen if chosen in ("buy", "holdings") else "buy"
    for kind in (ContractKind.INVERSE, ContractKind.LINEAR):
        inst = registry.find(proxy.exchange, kind, proxy.base)
        for mode in ("proxy", "direct"):
            spec = f"direct:{proxy.exchange}:{kind.value}" if mode == "direct" else (inst.id if inst else "")
            variant = f"{mode} {kind.value}"
            if not spec:
                rows.append(
                    CompareRow(
                        variant=variant,
                        instrument="-",
                        plan=None,
                        error=f"{proxy.exchange} lists no {kind.value} {proxy.base} perpetual",
                    )
                )
                continue
            collateral = inverse_collateral if kind is ContractKind.INVERSE else "stable"
            o = HedgeOverrides(
                ratio=ov.ratio,
                scope=ov.scope,
                method=ov.method,
                instrument=spec,
                proxy=inst.id if inst else None,
                leverage=ov.leverage,
                collateral=collateral,
                funding_rate_8h=ov.funding_rate_8h,
            )
            try:
                legs, direct, label = _resolve_legs(spec, None, o.proxy, portfolio, registry)
                variant_req = _request(pfile, o, legs, direct)
                plan = plan_hedge(portfolio, replace(variant_req, betas={**variant_req.betas, **betas}))
                res = tuple(evaluate(plan, s) for s in default_scenarios(legs[0].instrument.base))
                rows.append(CompareRow(variant=f"{variant} ({collateral})", instrument=label, plan=plan, scenarios=res))
            except (ConfigError, InfeasibleHedgeError) as exc:
                rows.append(CompareRow(variant=f"{variant} ({collateral})", instrument=spec, plan=None, error=str(exc)))
    return tuple(rows)


def plan_from_file(path: str, *, registry: InstrumentRegistry, **kwargs: Any) -> PlanOutcome:
    """Load a portfolio file and plan its hedge."""
    from perphedge.config import load_portfolio_file

    return plan_portfolio(load_portfolio_file(path), source=str(path), registry=registry, **kwargs)


# --------------------------------------------------------------------------- calc


@dataclass(frozen=True, slots=True, kw_only=True)
class CalcInput:
    """One position for the futures calculator (contracts in the exchange's own unit)."""

    instrument: Instrument
    side: Side
    contracts: float
    entry: float
    exit: float | None = None
    leverage: float = 1.0
    margin_mode: str = "isolated"
    wallet_balance: float | None = None
    funding_rate: float = 0.0001
    mark: float | None = None
    fee_rate: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CalcResult:
    """The calculator's numbers. Every amount is :class:`Money` carrying its asset (margin, PnL, fees and
    funding in the settle asset; ``pnl_usd`` and ``funding_usd`` in USD for inverse contracts, the quote
    otherwise), so nothing downstream can mix coin and USD."""

    input: CalcInput
    size: float
    size_unit: str
    notional_usd: float
    position_value: Money
    margin: Money
    initial_margin: Money
    maintenance_margin: Money
    maintenance_margin_rate: float
    maintenance_amount: Money
    tier_index: int
    liquidation: LiquidationResult
    bankruptcy_price: float | None
    pnl: Money | None
    pnl_usd: Money | None
    roe: float | None
    funding: Money
    funding_usd: Money
    funding_per_day: Money
    fee_rate: float
    fee_open: Money
    fee_close: Money | None
    net_pnl: Money | None

    @property
    def settle(self) -> str:
        """Settle asset of every margin, PnL, fee and funding amount."""
        return self.input.instrument.settle


def calc_instrument(
    registry: InstrumentRegistry,
    ident: str,
    *,
    mmr: float | None = None,
    maintenance_amount: float | None = None,
    method: str | None = None,
    face_value: float | None = None,
) -> Instrument:
    """Resolve an instrument and apply the calculator's overrides."""
    inst = registry.get(ident)
    schedule = None
    if maintenance_amount is not None and mmr is None:
        raise ConfigError("invalid `--maintenance-amount`: give `--mmr` with it (the amount belongs to a rate)")
    if mmr is not None:
        if not (math.isfinite(mmr) and 0 < mmr < 1):
            raise ConfigError(f"invalid `--mmr`: must be in (0, 1), was {mmr!r}")
        ma = 0.0 if maintenance_amount is None else maintenance_amount
        if not math.isfinite(ma) or ma < 0:
            raise ConfigError(f"invalid `--maintenance-amount`: must be >= 0, was {maintenance_amount!r}")
        schedule = MarginSchedule.single(mmr, ma, max_leverage=inst.max_leverage)
    lm = None
    if method is not None:
        try:
            lm = LiquidationMethod(method.lower())
        except ValueError:
            names = ", ".join(m.value for m in LiquidationMethod)
            raise ConfigError(f"invalid `--method`: must be one of {names}, was {method!r}") from None
        lm.check_kind(inst.kind, "--method")
    if face_value is not None and (not math.isfinite(face_value) or face_value <= 0):
        raise ConfigError(f"invalid `--face-value`: must be > 0, was {face_value!r}")
    if face_value is not None and not MIN_FACE_VALUE <= face_value <= MAX_FACE_VALUE:
        # a contract of 1e-300 BTC prints every amount as 0: no exchange lists such a contract
        raise ConfigError(
            f"invalid `--face-value`: must be in [{MIN_FACE_VALUE:g}, {MAX_FACE_VALUE:g}] "
            f"({inst.contract_size_unit} per contract), was {face_value:g}"
        )
    return inst.with_overrides(margin=schedule, liquidation_method=lm, contract_size=face_value)


def _lot_multiple(inst: Instrument, contracts: float) -> None:
    """Refuse a size that is not a whole number of lots, naming the nearest valid sizes."""
    lots = contracts / inst.lot_size
    nearest = round(lots)
    if nearest >= 1 and abs(lots - nearest) <= 1e-9 * max(1.0, abs(lots)):
        return
    if nearest < 1 and contracts > 0:
        raise ConfigError(
            f"invalid `--contracts`: {contracts:g} is less than one lot ({inst.lot_size:g}) of {inst.id}: "
            f"the smallest position is {inst.lot_size:g}"
        )
    below, above = math.floor(lots) * inst.lot_size, math.ceil(lots) * inst.lot_size
    options = [f"{round(x, 12):.12g}" for x in (below, above) if x > 0]
    raise ConfigError(
        f"invalid `--contracts`: {contracts:g} is not a multiple of the lot {inst.lot_size:g} of {inst.id}: "
        f"nearest {' or '.join(options)}"
    )


def _check_calc_input(ci: CalcInput) -> None:
    """Refuse values no exchange would accept: non-positive, non-finite, absurd, or off the lot grid."""
    inst = ci.instrument
    for name, value in (("contracts", ci.contracts), ("entry", ci.entry), ("exit", ci.exit), ("mark", ci.mark)):
        if value is None:
            continue
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"invalid `--{name}`: must be > 0, was {value!r}")
        if name != "contracts" and not MIN_PRICE_USD <= value <= MAX_PRICE_USD:
            raise ConfigError(f"invalid `--{name}`: must be in [{MIN_PRICE_USD:g}, {MAX_PRICE_USD:g}], was {value!r}")
    if not math.isfinite(ci.leverage) or ci.leverage < 1:
        raise ConfigError(f"invalid `--leverage`: must be >= 1, was {ci.leverage!r}")
    if ci.leverage > inst.max_leverage:
        raise ConfigError(
            f"invalid `--leverage`: {ci.leverage:g}x is above the {inst.max_leverage:g}x maximum of {inst.id}"
        )
    if not math.isfinite(ci.funding_rate) or abs(ci.funding_rate) > 0.05:
        raise ConfigError(f"invalid `--funding-rate`: must be within ±0.05 per settlement, was {ci.funding_rate!r}")
    if ci.fee_rate is not None:
        lo, hi = MAKER_FEE_RANGE[0], TAKER_FEE_RANGE[1]
        if not (math.isfinite(ci.fee_rate) and lo <= ci.fee_rate <= hi):
            raise ConfigError(
                f"invalid `--fee-rate`: must be in [{lo:g}, {hi:g}] (a fraction of notional: 0.0005 = 0.05%), "
                f"was {ci.fee_rate!r}"
            )
    notional = inst.notional_usd(ci.contracts, ci.entry)
    if notional > MAX_VALUE_USD:
        raise ConfigError(
            f"invalid `--contracts`: {ci.contracts:g} contracts of {inst.id} at {ci.entry:g} are worth "
            f"{notional:.3g} USD, above the {MAX_VALUE_USD:g} USD any position can be"
        )
    _lot_multiple(inst, ci.contracts)
    if ci.margin_mode == "cross" and ci.wallet_balance is not None:
        if not math.isfinite(ci.wallet_balance) or ci.wallet_balance <= 0:
            raise ConfigError(f"invalid `--wallet-balance`: must be > 0, was {ci.wallet_balance!r}")
        if ci.wallet_balance > MAX_VALUE_USD:
            raise ConfigError(f"invalid `--wallet-balance`: must be <= {MAX_VALUE_USD:g}, was {ci.wallet_balance!r}")


def calc(ci: CalcInput) -> CalcResult:
    """Value, margin, liquidation, PnL, funding and fees of one position.

    Refused (ConfigError): sizes off the lot grid, fee rates outside the sane range, and positions
    that could not exist — whose margin does not cover their maintenance margin when opened, or
    that the given ``mark`` has already liquidated.
    """
    inst = ci.instrument
    _check_calc_input(ci)
    size = inst.size_of(ci.contracts)
    value = inst.position_value(ci.contracts, ci.entry)
    im = value / ci.leverage
    if ci.margin_mode == "isolated":
        if ci.wallet_balance is not None:
            raise ConfigError(
                "invalid `--wallet-balance`: it is for `--margin-mode cross`; isolated margin comes from `--leverage`"
            )
        margin = im
    elif ci.margin_mode == "cross":
        if ci.wallet_balance is None:
            raise ConfigError(f"invalid `--margin-mode cross`: give `--wallet-balance` (in {inst.settle})")
        margin = ci.wallet_balance
    else:
        raise ConfigError(f"invalid `--margin-mode`: must be isolated or cross, was {ci.margin_mode!r}")
    mm_entry = inst.margin.maintenance_margin(value)
    if mm_entry < 0:
        raise ConfigError(
            f"invalid `--maintenance-amount`: {inst.margin.maintenance_amount(value):g} {inst.settle} exceeds "
            f"value × MMR ({value * inst.margin.rate(value):g} {inst.settle}): the maintenance margin would be negative"
        )
    cross = ci.margin_mode == "cross"
    check_opening_margin(
        kind=inst.kind,
        size=size,
        entry=ci.entry,
        margin=margin,
        schedule=inst.margin,
        unit=inst.settle,
        margin_label="cross wallet balance" if cross else f"initial margin at {ci.leverage:g}x",
        leverage_hint=not cross,
    )
    tier_max = inst.margin.max_leverage(value)
    if not cross and ci.leverage > tier_max:
        raise ConfigError(
            f"invalid `--leverage`: {ci.leverage:g}x is above the {tier_max:g}x {inst.id} allows for a position worth "
            f"{value:,.8g} {inst.settle} (tier {inst.margin.tier_index(value) + 1})"
        )
    mark = ci.mark if ci.mark is not None else ci.entry
    mark_value = inst.position_value(ci.contracts, mark)
    liq = liquidation_price(
        kind=inst.kind,
        method=inst.liquidation_method,
        side=ci.side,
        size=size,
        entry=ci.entry,
        margin=margin,
        schedule=inst.liquidation_schedule,  # OKX reserves the fee to close (closing_fee_in_isolated)
    )
    if liq.price is not None and ci.mark is not None and -ci.side.sign * (ci.mark - liq.price) >= 0:
        raise ConfigError(
            f"invalid `--mark`: {ci.mark:g} is past the liquidation price {liq.price:,.8g} of this position "
            "(it would already be liquidated)"
        )
    bp = bankruptcy_price(inst.kind, ci.side, size, ci.entry, margin)
    if liq.price is not None and bp is not None and ci.side.sign * (bp - liq.price) > 1e-9 * abs(bp):
        # past bankruptcy: the maintenance margin at the liquidation price is negative (an override's
        # maintenance amount larger than value x MMR there)
        raise ConfigError(
            f"invalid `--maintenance-amount`: with it the liquidation price {liq.price:,.8g} lies past the bankruptcy "
            f"price {bp:,.8g}: the maintenance margin would be negative at the liquidation price; give the tier's "
            "MMR and maintenance amount together"
        )
    fee_rate = inst.taker_fee if ci.fee_rate is None else ci.fee_rate
    settle = Asset(code=inst.settle)
    usd = Asset(code="USD" if inst.is_inverse else inst.quote)

    def money(amount: float) -> Money:
        return Money(amount=amount, asset=settle)

    def in_usd(amount: Money, at_price: float) -> Money:
        """Inverse amounts are coin: converted at ``at_price``; linear amounts already are in the quote."""
        return Price(value=at_price, base=settle, quote=usd).convert(amount) if inst.is_inverse else amount

    fee_open = money(fee(inst.kind, size, ci.entry, fee_rate))
    pnl_settle = pnl_usd = fee_close = net = None
    roe = None
    if ci.exit is not None:
        pnl_settle = money(pnl(inst.kind, ci.side, size, ci.entry, ci.exit))
        pnl_usd = in_usd(pnl_settle, ci.exit)
        roe = pnl_settle.amount / im
        fee_close = money(fee(inst.kind, size, ci.exit, fee_rate))
        net = pnl_settle - fee_open - fee_close
    # a dated future pays no funding: its cost is the basis, settled at delivery
    funding = money(0.0 if inst.is_dated else funding_received(inst.kind, ci.side, size, mark, ci.funding_rate))
    return CalcResult(
        input=ci,
        size=size,
        size_unit=inst.contract_size_unit,
        notional_usd=inst.notional_usd(ci.contracts, ci.entry),
        position_value=money(value),
        margin=money(margin),
        initial_margin=money(im),
        maintenance_margin=money(inst.margin.maintenance_margin(mark_value)),
        maintenance_margin_rate=inst.margin.rate(mark_value),
        maintenance_amount=money(inst.margin.maintenance_amount(mark_value)),
        tier_index=inst.margin.tier_index(mark_value),
        liquidation=liq,
        bankruptcy_price=bp,
        pnl=pnl_settle,
        pnl_usd=pnl_usd,
        roe=roe,
        funding=funding,
        funding_usd=in_usd(funding, mark),
        funding_per_day=funding * (24.0 / inst.funding_interval_hours),
        fee_rate=fee_rate,
        fee_open=fee_open,
        fee_close=fee_close,
        net_pnl=net,
    )
