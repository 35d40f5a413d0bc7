"""Scenarios: instantaneous price shocks applied to a hedge plan, and drift after a move.

Each non-stable asset moves by its own shock when the scenario names it, else by the
scenario's ``*`` shock, else by ``β × proxy_return`` (β from the plan, 1 when unknown). Hedge
PnL is exact, not linearised: the inverse legs' coin PnL ``Q·(1/P − 1/E)`` revalued at the new
price, bought collateral revalued, and a leg whose liquidation price is crossed loses its
whole margin (it closes at the bankruptcy price).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from perphedge.core.contracts import pnl
from perphedge.core.hedge import CollateralSource, HedgeLeg, HedgePlan, leg_delta_usd
from perphedge.core.parsing import MAX_MOVE, MIN_MOVE, parse_move
from perphedge.core.units import is_stablecoin, normalise_asset
from perphedge.errors import ConfigError

__all__ = [
    "DEFAULT_PROXY_RETURNS",
    "DriftLeg",
    "LegOutcome",
    "Scenario",
    "ScenarioResult",
    "check_assets",
    "default_scenarios",
    "drift",
    "evaluate",
    "parse_moves",
    "parse_scenario",
]

DEFAULT_PROXY_RETURNS: tuple[float, ...] = (-0.30, -0.20, -0.10, 0.10, 0.20, 0.30)
_MIN_RETURN = -0.9999


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A named shock: a proxy return, per-asset returns, and a default (``*``) return."""

    name: str
    proxy_return: float | None = None
    shocks: Mapping[str, float] = field(default_factory=dict)
    default: float | None = None

    def __post_init__(self) -> None:
        for label, value in [("proxy_return", self.proxy_return), ("*", self.default), *self.shocks.items()]:
            if value is not None and (not math.isfinite(value) or not MIN_MOVE < value <= MAX_MOVE):
                raise ConfigError(
                    f"invalid scenario {self.name!r}: return of {label} must be above -100% and at most +1000%, "
                    f"was {value!r}"
                )


@dataclass(frozen=True, slots=True, kw_only=True)
class LegOutcome:
    """A leg under a scenario: new price, PnL in the settle asset and in USD, liquidation."""

    instrument: str
    price: float
    pnl_settle: float
    settle_asset: str
    pnl_usd: float
    liquidated: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioResult:
    """Spot, hedge and net PnL (USD) of a plan under one scenario."""

    name: str
    proxy_return: float
    returns: Mapping[str, float]
    spot_pnl_usd: float
    hedge_pnl_usd: float
    net_pnl_usd: float
    legs: tuple[LegOutcome, ...]

    @property
    def offset_fraction(self) -> float | None:
        """Share of the spot PnL the hedge offsets (``−hedge/spot``); None when spot is flat."""
        if abs(self.spot_pnl_usd) < 1e-9:
            return None
        return -self.hedge_pnl_usd / self.spot_pnl_usd

    @property
    def liquidated(self) -> bool:
        """True when any leg is liquidated in this scenario."""
        return any(leg.liquidated for leg in self.legs)


def default_scenarios(proxy: str) -> tuple[Scenario, ...]:
    """Proxy −30 … +30 %, every other asset moving β × the proxy."""
    return tuple(Scenario(name=f"{proxy} {r:+.0%}", proxy_return=r) for r in DEFAULT_PROXY_RETURNS)


def parse_moves(text: str, where: str = "--drift") -> dict[str, float]:
    """Parse ``BTC=-15%,ETH=-0.2,*=-20%`` into ``{asset: return}`` (``*`` kept as is).

    Each return follows :func:`perphedge.core.parsing.parse_move` (a signed percentage or a
    fraction with a decimal point, in (−100%, +1000%]); an asset named twice is refused.
    """
    place = where if where.startswith("`") else f"`{where}`"
    out: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        asset, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"invalid {place}: {part.strip()!r} must be ASSET=RETURN, e.g. BTC=-15%")
        try:
            key = "*" if asset.strip() == "*" else normalise_asset(asset)
        except ConfigError as exc:
            raise ConfigError(f"invalid {place}: {part.strip()!r}: {exc}") from None
        if key in out:
            raise ConfigError(f"invalid {place}: {key} is given twice in {text.strip()!r}")
        out[key] = parse_move(value, f"{place} {key}")
    if not out:
        raise ConfigError(f"invalid {place}: {text!r} names no move; e.g. BTC=-15%,*=-20%")
    return out


def parse_scenario(text: str, proxy: str, where: str = "--scenario") -> Scenario:
    """Parse ``NAME:BTC=-15%,*=-20%`` (the name is optional)."""
    name, sep, body = text.partition(":")
    if not sep:
        name, body = text, text
    moves = parse_moves(body, where)
    default = moves.pop("*", None)
    return Scenario(name=name.strip() or body.strip(), proxy_return=moves.get(proxy), shocks=moves, default=default)


def check_assets(plan: HedgePlan, moves: Mapping[str, float], where: str) -> None:
    """Refuse a move of an asset that neither the portfolio holds nor a leg trades.

    Such a move would be ignored silently (a typo, or a coin sold since); a stablecoin is cash
    and does not move.
    """
    held = {h.asset for h in plan.portfolio.holdings if not h.is_stable}
    known = held | {leg.instrument.base for leg in plan.legs} | {plan.request.proxy_asset}
    for asset in moves:
        if asset == "*" or asset in known:
            continue
        if is_stablecoin(asset):
            raise ConfigError(f"invalid `{where}`: {asset} is a stablecoin, counted as cash at 1 USD; it has no move")
        raise ConfigError(
            f"invalid `{where}`: the portfolio does not hold {asset} and no leg trades it; "
            f"moves apply to {', '.join(sorted(known))} (or * for every other asset)"
        )


def _returns(plan: HedgePlan, scenario: Scenario) -> tuple[float, dict[str, float]]:
    proxy = plan.request.proxy_asset
    proxy_ret = scenario.shocks.get(proxy, scenario.proxy_return)
    if proxy_ret is None:
        proxy_ret = scenario.default if scenario.default is not None else 0.0
    assets = {h.asset for h in plan.portfolio.holdings if not h.is_stable}
    assets |= {leg.instrument.base for leg in plan.legs}
    out: dict[str, float] = {}
    for asset in sorted(assets):
        if asset in scenario.shocks:
            r = scenario.shocks[asset]
        elif asset == proxy:
            r = proxy_ret
        elif scenario.default is not None:
            r = scenario.default
        else:
            beta = plan.request.betas.get(asset, plan.betas_used.get(asset, 1.0))
            r = beta * proxy_ret
        out[asset] = max(r, _MIN_RETURN)
    return proxy_ret, out


def _leg_outcome(leg: HedgeLeg, new_price: float, settle_price_new: float) -> LegOutcome:
    inst = leg.instrument
    lp = leg.liquidation_price
    liquidated = lp is not None and new_price >= lp
    if liquidated:
        pnl_settle = -leg.initial_margin
    else:
        pnl_settle = pnl(inst.kind, leg.side, leg.size, leg.entry_price, new_price)
    if inst.is_inverse:
        if leg.collateral_source is CollateralSource.BUY:
            usd = (leg.collateral_amount + pnl_settle) * new_price - leg.collateral_amount * leg.entry_price
        else:
            usd = pnl_settle * new_price
    else:
        usd = pnl_settle * settle_price_new
    return LegOutcome(
        instrument=inst.id,
        price=new_price,
        pnl_settle=pnl_settle,
        settle_asset=inst.settle,
        pnl_usd=usd,
        liquidated=liquidated,
    )


def evaluate(plan: HedgePlan, scenario: Scenario) -> ScenarioResult:
    """Spot, hedge and net PnL of ``plan`` under ``scenario`` (USD)."""
    proxy_ret, rets = _returns(plan, scenario)
    pf = plan.portfolio
    spot = sum(pf.value_of(h) * rets[h.asset] for h in pf.holdings if not h.is_stable)
    outcomes = []
    for leg in plan.legs:
        base = leg.instrument.base
        new_price = leg.entry_price * (1.0 + rets[base])
        settle = leg.instrument.settle
        settle_new = pf.price(settle) * (1.0 + rets.get(settle, 0.0))
        outcomes.append(_leg_outcome(leg, new_price, settle_new))
    hedge = sum(o.pnl_usd for o in outcomes)
    return ScenarioResult(
        name=scenario.name,
        proxy_return=proxy_ret,
        returns=rets,
        spot_pnl_usd=spot,
        hedge_pnl_usd=hedge,
        net_pnl_usd=spot + hedge,
        legs=tuple(outcomes),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DriftLeg:
    """A leg held through a move: its hedge now against the target now, and the trade that restores it."""

    instrument: str
    price: float
    delta_usd: float
    target_delta_usd: float
    hedge_ratio_now: float
    contracts_to_trade: float
    unrealised_pnl_settle: float
    equity_settle: float
    liquidation_distance_now: float | None
    liquidated: bool


def drift(plan: HedgePlan, moves: Mapping[str, float]) -> tuple[DriftLeg, ...]:
    """Hold the plan's legs through ``moves`` (``{asset: return}``) and size the rebalance.

    The target is the plan's ratio of the covered assets' new β-weighted value; a positive
    ``contracts_to_trade`` means short more.
    """
    scenario = Scenario(name="drift", shocks={k: v for k, v in moves.items() if k != "*"}, default=moves.get("*"))
    _, rets = _returns(plan, scenario)
    out = []
    for leg in plan.legs:
        inst = leg.instrument
        x = leg.entry_price * (1.0 + rets[inst.base])
        held = leg_delta_usd(
            inst,
            leg.size,
            leg.entry_price,
            leg.collateral_amount if inst.is_inverse else 0.0,
            leg.collateral_source,
            at_price=x,
        )
        target = 0.0
        for asset, usd in leg.covers.items():
            target += usd * (1.0 + rets.get(asset, 0.0))
        lp = leg.liquidation_price
        liquidated = lp is not None and x >= lp
        upnl = -leg.initial_margin if liquidated else pnl(inst.kind, leg.side, leg.size, leg.entry_price, x)
        gap_usd = target + held  # > 0: under-hedged
        if inst.is_inverse:
            extra_notional = gap_usd
            if leg.collateral_source is CollateralSource.BUY:
                extra_notional = gap_usd * leg.leverage / (leg.leverage - 1.0)
            trade = extra_notional / inst.contract_size
        else:
            trade = gap_usd / x / inst.contract_size
        out.append(
            DriftLeg(
                instrument=inst.id,
                price=x,
                delta_usd=held,
                target_delta_usd=target,
                hedge_ratio_now=plan.request.ratio * (-held / target) if target else 0.0,
                contracts_to_trade=inst.round_contracts(trade) if trade >= 0 else -inst.round_contracts(-trade),
                unrealised_pnl_settle=upnl,
                equity_settle=leg.initial_margin + upnl,
                liquidation_distance_now=None if lp is None else lp / x - 1.0,
                liquidated=liquidated,
            )
        )
    return tuple(out)
