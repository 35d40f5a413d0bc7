"""Hedge sizing: how much to short, on which contracts, with which collateral.

The sizing targets the *net* USD delta of the whole position, collateral included:

* **linear** leg (stablecoin collateral): delta ``−q·P``; ``N = D``.
* **inverse** leg, collateral from **holdings** (coins already in the portfolio and already
  counted in its exposure): delta ``−N``; ``N = D``.
* **inverse** leg, collateral **bought** for the hedge: the bought coins ``C = N/(L·P)`` are a
  long, delta ``−N + C·P = −N·(1 − 1/L)``; so ``N = D·L/(L − 1)``. At 1x this is a synthetic
  dollar and hedges nothing else: refused.

``D`` is the USD delta the leg must offset: ``ratio × Σ value × β`` of the assets it covers
(β = 1 for the notional method and for an asset on its own perpetual). A DeFi position counts by its
delta per asset, not its value (:mod:`perphedge.core.defi`): a pool's current token amounts, a staked
token's underlying, a lending position's collateral minus its debt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from perphedge.core.contracts import (
    LiquidationResult,
    Side,
    bankruptcy_price,
    check_opening_margin,
    funding_received,
    liquidation_price,
)
from perphedge.core.instruments import Instrument
from perphedge.core.portfolio import Portfolio
from perphedge.errors import ConfigError, InfeasibleHedgeError

__all__ = [
    "CollateralSource",
    "HedgeLeg",
    "HedgePlan",
    "HedgeRequest",
    "LegRequest",
    "PlanWarning",
    "SizingMethod",
    "leg_delta_usd",
    "plan_hedge",
]


class SizingMethod(StrEnum):
    """How the exposure to offset is measured."""

    NOTIONAL = "notional"
    BETA = "beta"
    MIN_VARIANCE = "min_variance"


class CollateralSource(StrEnum):
    """Where a leg's margin comes from."""

    BUY = "buy"  # bought with cash for the hedge: its delta is hedged too
    HOLDINGS = "holdings"  # taken from coins the portfolio already holds
    STABLE = "stable"  # stablecoins (linear contracts)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanWarning:
    """A warning attached to a plan: ``code`` is the warning class name."""

    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LegRequest:
    """A proxy leg and its share of the proxy hedge."""

    instrument: Instrument
    weight: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgeRequest:
    """What the user asks for.

    Parameters
    ----------
    ratio
        Fraction of the in-scope exposure to offset, in [0, 2].
    scope
        ``all`` or a group name.
    method
        ``notional`` or ``beta`` (``min_variance`` needs the analytics feature).
    proxy_legs
        Legs that carry every asset without a direct contract; weights sum to 1.
    direct
        Asset → its own perpetual (``direct:<exchange>:<kind>`` mode); empty otherwise.
    leverage
        Leverage of every leg, >= 1 and <= the instrument's maximum.
    collateral
        ``buy``, ``holdings`` or ``stable``.
    funding_rate_8h
        Assumed funding rate per 8 hours (positive: longs pay shorts, the hedge earns).
    betas
        β of each asset against the proxy (used by the ``beta`` method and scenarios).
    """

    ratio: float
    scope: str = "all"
    method: SizingMethod = SizingMethod.NOTIONAL
    proxy_legs: tuple[LegRequest, ...] = ()
    direct: Mapping[str, Instrument] = field(default_factory=dict)
    leverage: float = 2.0
    collateral: CollateralSource = CollateralSource.BUY
    funding_rate_8h: float = 0.0001
    betas: Mapping[str, float] = field(default_factory=dict)
    liquidation_warning_distance: float = 0.30
    prudent_leverage: float = 3.0

    def __post_init__(self) -> None:
        r = self.ratio
        if isinstance(r, bool) or not isinstance(r, int | float) or not math.isfinite(r) or not 0 <= r <= 2:
            raise ConfigError(f"invalid `ratio`: must be in [0, 2], was {r!r}")
        lev = self.leverage
        if isinstance(lev, bool) or not isinstance(lev, int | float) or not math.isfinite(lev) or lev < 1:
            raise ConfigError(f"invalid `leverage`: must be >= 1, was {lev!r}")
        if not self.proxy_legs:
            raise ConfigError("invalid `hedge`: give an `instrument` or `legs`")
        weights = [leg.weight for leg in self.proxy_legs]
        if any(not math.isfinite(w) or w <= 0 for w in weights):
            raise ConfigError(f"invalid `legs`: every weight must be > 0, were {weights}")
        if abs(sum(weights) - 1.0) > 1e-9:
            raise ConfigError(f"invalid `legs`: weights must sum to 1, sum to {sum(weights):g}")
        fr = self.funding_rate_8h
        if not math.isfinite(fr) or abs(fr) > 0.05:
            raise ConfigError(f"invalid `funding_rate_8h`: must be within ±0.05 per 8h, was {fr!r}")
        for asset, beta in self.betas.items():
            if not math.isfinite(beta):
                raise ConfigError(f"invalid beta of {asset}: must be finite, was {beta!r}")

    @property
    def proxy_asset(self) -> str:
        """Base coin of the first proxy leg (the ``proxy`` of scenarios and betas)."""
        return self.proxy_legs[0].instrument.base


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgeLeg:
    """One short position of the plan, with its collateral, margin, risk and carry.

    Units: ``notional_usd`` USD; ``size`` USD notional (inverse) or base coin (linear);
    ``collateral_amount``, ``initial_margin``, ``maintenance_margin`` and
    ``funding_per_settlement`` in ``collateral_asset`` (the settle asset).
    """

    instrument: Instrument
    side: Side
    covers: Mapping[str, float]  # asset -> USD delta it is meant to offset
    target_delta_usd: float
    contracts_exact: float
    contracts: float
    size: float
    notional_usd: float
    entry_price: float
    leverage: float
    collateral_source: CollateralSource
    collateral_asset: str
    collateral_amount: float
    collateral_usd: float
    initial_margin: float
    maintenance_margin: float
    liquidation: LiquidationResult
    bankruptcy_price: float | None
    delta_usd: float
    funding_rate_8h: float
    funding_rate_per_settlement: float
    funding_per_settlement: float
    funding_usd_per_day: float
    naive_notional_usd: float
    naive_delta_usd: float

    @property
    def liquidation_price(self) -> float | None:
        """Liquidation price (mark), or None when the leg cannot be liquidated."""
        return self.liquidation.price

    @property
    def liquidation_distance(self) -> float | None:
        """Move of the underlying that triggers liquidation (``LP/E − 1``), or None."""
        lp = self.liquidation.price
        return None if lp is None else lp / self.entry_price - 1.0

    @property
    def residual_usd(self) -> float:
        """Target minus achieved offset (USD delta) after lot rounding."""
        return self.target_delta_usd + self.delta_usd

    @property
    def settlements_per_day(self) -> float:
        """Funding settlements per day."""
        return 24.0 / self.instrument.funding_interval_hours

    @property
    def funding_coin_per_day(self) -> float:
        """Funding per day in the settle asset (positive = received)."""
        return self.funding_per_settlement * self.settlements_per_day


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgePlan:
    """The sized hedge of a portfolio."""

    portfolio: Portfolio
    request: HedgeRequest
    legs: tuple[HedgeLeg, ...]
    betas_used: Mapping[str, float]
    scope_exposure_usd: float
    target_usd: float
    net_delta_usd: float
    net_delta_by_asset: Mapping[str, float]
    warnings: tuple[PlanWarning, ...]
    notes: tuple[str, ...] = ()

    @property
    def hedge_delta_usd(self) -> float:
        """USD delta of all legs (and bought collateral); negative for a short hedge."""
        return sum(leg.delta_usd for leg in self.legs)

    @property
    def achieved_ratio(self) -> float:
        """Offset achieved over the in-scope (β-weighted) exposure."""
        base = sum(self.betas_used.get(a, 1.0) * v for a, v in self._scope_values().items())
        return -self.hedge_delta_usd / base if base else 0.0

    def _scope_values(self) -> dict[str, float]:
        return self.portfolio.scope_exposure(self.request.scope)

    @property
    def funding_usd_per_day(self) -> float:
        """Funding of all legs per day in USD (positive = received)."""
        return sum(leg.funding_usd_per_day for leg in self.legs)

    @property
    def residual_usd(self) -> float:
        """Target minus achieved offset across legs (lot rounding)."""
        return sum(leg.residual_usd for leg in self.legs)


def leg_delta_usd(
    instrument: Instrument,
    size: float,
    price: float,
    collateral_coin: float,
    source: CollateralSource,
    *,
    at_price: float | None = None,
) -> float:
    """Linearised USD delta of a short leg (and its bought collateral) for a +100% move.

    Inverse short: the USD value of its PnL is ``Q·(1 − x/E)``, so its delta at ``x`` is
    ``−Q·x/E``; bought collateral adds ``C·x``. Linear short: ``−q·x``.
    """
    x = price if at_price is None else at_price
    if instrument.is_inverse:
        delta = -size * x / price
        if source is CollateralSource.BUY:
            delta += collateral_coin * x
        return delta
    return -size * x


def _model_betas(portfolio: Portfolio, req: HedgeRequest) -> dict[str, float]:
    """β of every non-stable asset under the sizing method."""
    proxy_bases = {leg.instrument.base for leg in req.proxy_legs}
    betas: dict[str, float] = {}
    for h in portfolio.holdings:
        if h.is_stable or h.asset in betas:
            continue
        if req.method is SizingMethod.NOTIONAL or h.asset in req.direct or h.asset in proxy_bases:
            betas[h.asset] = 1.0
        else:
            betas[h.asset] = float(req.betas[h.asset]) if h.asset in req.betas else math.nan
    for asset in sorted(portfolio.exposed_assets() - set(betas)) if portfolio.positions else ():
        if req.method is SizingMethod.NOTIONAL or asset in req.direct or asset in proxy_bases:
            betas[asset] = 1.0
        else:
            betas[asset] = float(req.betas[asset]) if asset in req.betas else math.nan
    return betas


def plan_hedge(portfolio: Portfolio, req: HedgeRequest) -> HedgePlan:
    """Size the hedge of ``portfolio`` as ``req`` asks.

    Raises
    ------
    ConfigError
        Bad leverage, missing β or price, a collateral source the contract cannot use.
    InfeasibleHedgeError
        Nothing in scope, a hedge that rounds to zero contracts, collateral the portfolio does
        not hold, a 1x inverse short on bought collateral.
    """
    warnings: list[PlanWarning] = []
    betas = _model_betas(portfolio, req)
    scope_values = portfolio.scope_exposure(req.scope)
    for asset in scope_values:
        if math.isnan(betas[asset]):
            raise ConfigError(
                f"no beta for {asset}: method `{req.method.value}` needs a hedge ratio against "
                f"{req.proxy_asset} for every hedged asset: give `betas: {{{asset}: ...}}`, or let the plan "
                "estimate them from stored history (`perphedge data import`), or use method notional"
            )
    # assets outside the scope without a β move with the proxy (β = 1) in the net delta
    for asset, beta in list(betas.items()):
        if math.isnan(beta):
            betas[asset] = 1.0

    # ---- allocate the target offset to instruments
    alloc: dict[str, dict[str, float]] = {}
    instruments: dict[str, Instrument] = {}
    for asset, value in scope_values.items():
        target = req.ratio * value * betas[asset]
        own = req.direct.get(asset)
        if own is not None:
            instruments[own.id] = own
            alloc.setdefault(own.id, {})[asset] = alloc.get(own.id, {}).get(asset, 0.0) + target
        else:
            for leg in req.proxy_legs:
                inst = leg.instrument
                instruments[inst.id] = inst
                alloc.setdefault(inst.id, {})
                alloc[inst.id][asset] = alloc[inst.id].get(asset, 0.0) + target * leg.weight
    if req.direct:
        direct_assets = sorted(a for a in scope_values if a in req.direct)
        proxied = sorted(a for a in scope_values if a not in req.direct)
        if proxied:
            warnings.append(
                PlanWarning(
                    code="AssumptionWarning",
                    message=f"no own perpetual listed for {', '.join(proxied)} in this mode: hedged on "
                    + ", ".join(leg.instrument.id for leg in req.proxy_legs)
                    + (f" (direct: {', '.join(direct_assets)})" if direct_assets else ""),
                )
            )

    legs: list[HedgeLeg] = []
    holdings_collateral_use: dict[str, float] = {}
    for inst_id, covers in alloc.items():
        inst = instruments[inst_id]
        target = sum(covers.values())
        if target <= 0:
            if target < 0:
                why = "a negative beta in total"
                if portfolio.positions and any(v < 0 for v in (scope_values.get(a, 0.0) for a in covers)):
                    why = "a negative delta in total (debt or a short position outweighs the rest)"
                warnings.append(
                    PlanWarning(
                        code="AssumptionWarning",
                        message=f"{inst_id}: the assets it covers have {why}; "
                        "a short would add risk, so no leg is opened",
                    )
                )
            continue
        legs.append(_size_leg(portfolio, req, inst, covers, target, warnings))
        if req.collateral is CollateralSource.HOLDINGS:
            asset = legs[-1].collateral_asset
            holdings_collateral_use[asset] = holdings_collateral_use.get(asset, 0.0) + legs[-1].collateral_amount
    if req.ratio > 0 and not legs:
        raise InfeasibleHedgeError("the hedge has no exposure to offset in scope")
    for asset, need in holdings_collateral_use.items():
        have = portfolio.quantity_of(asset)
        if need > have * (1 + 1e-12):
            raise InfeasibleHedgeError(
                f"collateral `holdings` needs {need:.8g} {asset} as margin but the portfolio holds "
                f"{have:.8g} {asset}; use collateral buy, more leverage, or a smaller ratio"
            )

    # ---- net delta of the whole book (holdings + legs + bought collateral)
    by_asset: dict[str, float] = {}
    for h in portfolio.holdings:
        if not h.is_stable:
            by_asset[h.asset] = by_asset.get(h.asset, 0.0) + portfolio.value_of(h) * betas[h.asset]
    for position in portfolio.positions:
        for asset, usd in portfolio.position_delta_usd(position).items():
            by_asset[asset] = by_asset.get(asset, 0.0) + usd * betas[asset]
    for sized in legs:
        key = sized.instrument.base
        by_asset[key] = by_asset.get(key, 0.0) + sized.delta_usd
    net = sum(by_asset.values())
    scope_exposure = sum(scope_values.values())
    target_usd = req.ratio * sum(v * betas[a] for a, v in scope_values.items())

    _leverage_warnings(req, legs, warnings)
    notes = tuple(
        _collateral_note(leg)
        for leg in legs
        if leg.instrument.is_inverse and leg.collateral_source is CollateralSource.BUY
    )
    return HedgePlan(
        portfolio=portfolio,
        request=req,
        legs=tuple(legs),
        betas_used=betas,
        scope_exposure_usd=scope_exposure,
        target_usd=target_usd,
        net_delta_usd=net,
        net_delta_by_asset=by_asset,
        warnings=tuple(warnings),
        notes=notes,
    )


def _collateral_note(leg: HedgeLeg) -> str:
    return (
        f"{leg.instrument.id}: the {leg.collateral_amount:.8f} {leg.collateral_asset} bought as margin is "
        f"itself a long of {leg.collateral_usd:,.2f} USD, so the short is {leg.notional_usd:,.0f} USD; "
        f"the naive {leg.naive_notional_usd:,.0f} USD short would leave "
        f"{leg.target_delta_usd + leg.naive_delta_usd:+,.0f} USD of unhedged delta"
    )


def _size_leg(
    portfolio: Portfolio,
    req: HedgeRequest,
    inst: Instrument,
    covers: dict[str, float],
    target: float,
    warnings: list[PlanWarning],
) -> HedgeLeg:
    lev = float(req.leverage)
    if lev > inst.max_leverage:
        raise ConfigError(f"invalid `leverage`: {lev:g}x is above the {inst.max_leverage:g}x maximum of {inst.id}")
    if not portfolio.has_price(inst.base):
        raise ConfigError(f"no price for {inst.base}: add it under `prices:`; hedge leg {inst.id} needs it")
    price = portfolio.price(inst.base)
    source = req.collateral
    if inst.is_inverse and source is CollateralSource.STABLE:
        raise ConfigError(
            f"invalid `collateral`: stable needs a linear contract; {inst.id} is inverse and "
            f"margined in {inst.settle} (use buy or holdings, or a USDT contract)"
        )
    if inst.is_inverse and source is CollateralSource.BUY:
        if lev <= 1.0 + 1e-12:
            raise InfeasibleHedgeError(
                f"a 1x inverse short on bought {inst.settle} collateral is a synthetic dollar and "
                f"offsets nothing else; use leverage > 1, collateral holdings, or a linear contract"
            )
        notional = target * lev / (lev - 1.0)
        naive_notional = target
    else:
        notional = target
        naive_notional = target

    exact = inst.contracts_for_notional(notional, price)
    contracts = inst.round_contracts(exact)
    if contracts <= 0:
        unit = f"{inst.contract_size:g} {inst.contract_size_unit}"
        raise InfeasibleHedgeError(
            f"the {inst.id} leg of {notional:,.2f} USD rounds to 0 contracts (1 contract = {unit}, "
            f"lot {inst.lot_size:g}); raise the ratio or use a contract with a smaller size"
        )
    size = inst.size_of(contracts)
    notional_usd = inst.notional_usd(contracts, price)
    value = inst.position_value(contracts, price)
    tier_max = inst.margin.max_leverage(value)
    if lev > tier_max:
        unit = inst.settle if inst.is_inverse else inst.quote
        raise ConfigError(
            f"invalid `leverage`: {lev:g}x is above the {tier_max:g}x {inst.id} allows for a position "
            f"worth {value:,.6g} {unit} (its margin tier)"
        )
    im = value / lev
    mm = inst.margin.maintenance_margin(value)
    check_opening_margin(
        kind=inst.kind,
        size=size,
        entry=price,
        margin=im,
        schedule=inst.margin,
        unit=inst.settle,
        margin_label=f"{inst.id} leg's initial margin at {lev:g}x",
    )
    liq = liquidation_price(
        kind=inst.kind,
        method=inst.liquidation_method,
        side=Side.SHORT,
        size=size,
        entry=price,
        margin=im,
        schedule=inst.liquidation_schedule,  # OKX reserves the fee to close (closing_fee_in_isolated)
    )
    bp = bankruptcy_price(inst.kind, Side.SHORT, size, price, im)
    settle_price = price if inst.is_inverse else portfolio.price(inst.settle)
    delta = leg_delta_usd(inst, size, price, im if inst.is_inverse else 0.0, source)
    naive_delta = 0.0
    if inst.is_inverse and source is CollateralSource.BUY:
        naive_delta = -naive_notional + naive_notional / lev
    else:
        naive_delta = -naive_notional
    rate_8h = 0.0 if inst.is_dated else req.funding_rate_8h  # a dated future pays no funding: its carry is the basis
    rate_settle = rate_8h * inst.funding_interval_hours / 8.0
    funding = funding_received(inst.kind, Side.SHORT, size, price, rate_settle)
    per_day = funding * settle_price * 24.0 / inst.funding_interval_hours

    residual = target + delta
    if abs(residual) > 0.02 * target:
        warnings.append(
            PlanWarning(
                code="RoundingWarning",
                message=f"{inst.id}: rounding to {contracts:g} contracts leaves {residual:,.2f} USD of the "
                f"{target:,.2f} USD target unhedged ({residual / target:+.1%})",
            )
        )
    return HedgeLeg(
        instrument=inst,
        side=Side.SHORT,
        covers=dict(covers),
        target_delta_usd=target,
        contracts_exact=exact,
        contracts=contracts,
        size=size,
        notional_usd=notional_usd,
        entry_price=price,
        leverage=lev,
        collateral_source=source,
        collateral_asset=inst.settle,
        collateral_amount=im,
        collateral_usd=im * settle_price,
        initial_margin=im,
        maintenance_margin=mm,
        liquidation=liq,
        bankruptcy_price=bp,
        delta_usd=delta,
        funding_rate_8h=rate_8h,
        funding_rate_per_settlement=rate_settle,
        funding_per_settlement=funding,
        funding_usd_per_day=per_day,
        naive_notional_usd=naive_notional,
        naive_delta_usd=naive_delta,
    )


def _leverage_warnings(req: HedgeRequest, legs: list[HedgeLeg], warnings: list[PlanWarning]) -> None:
    if req.leverage > req.prudent_leverage:
        warnings.append(
            PlanWarning(
                code="LeverageWarning",
                message=f"leverage {req.leverage:g}x is above {req.prudent_leverage:g}x: a rally can liquidate "
                "the hedge while the spot it protects has gained; keep a hedge at 1-3x or plan margin top-ups",
            )
        )
    for leg in legs:
        dist = leg.liquidation_distance
        if dist is not None and dist < req.liquidation_warning_distance:
            warnings.append(
                PlanWarning(
                    code="LiquidationRiskWarning",
                    message=f"{leg.instrument.id}: liquidation at {leg.liquidation_price:,.2f} is only "
                    f"{dist:+.1%} from entry {leg.entry_price:,.2f}",
                )
            )
