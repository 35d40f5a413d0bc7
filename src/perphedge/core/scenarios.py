"""Scenarios: instantaneous price shocks applied to a hedge plan, and drift after a move.

Each non-stable asset moves by its own shock when the scenario names it, else by the
scenario's ``*`` shock, else by ``β × proxy_return`` (β from the plan, 1 when unknown). Hedge
PnL is exact, not linearised: the inverse legs' coin PnL ``Q·(1/P − 1/E)`` revalued at the new
price, bought collateral revalued, and a leg whose liquidation price is crossed loses its
whole margin (it closes at the bankruptcy price).

DeFi positions are revalued exactly at the moved prices (a pool's amounts follow its curve, a v3
position leaves its range, a lending position whose health factor falls below 1 is liquidated and
loses the bonus on its debt); a staked token moves with its underlying and, only when a scenario
names it, by its own depeg against it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from perphedge.core.contracts import pnl
from perphedge.core.defi import LendingPosition, LpV3Position, Position, StakedPosition
from perphedge.core.hedge import CollateralSource, HedgeLeg, HedgePlan, leg_delta_usd
from perphedge.core.parsing import MAX_MOVE, MIN_MOVE, parse_move
from perphedge.core.units import is_stablecoin, normalise_asset
from perphedge.errors import ConfigError

__all__ = [
    "DEFAULT_PROXY_RETURNS",
    "LIQUIDATION_HF_TOLERANCE",
    "DriftLeg",
    "LegOutcome",
    "PositionOutcome",
    "Scenario",
    "ScenarioResult",
    "check_assets",
    "default_scenarios",
    "drift",
    "evaluate",
    "parse_moves",
    "parse_scenario",
    "position_scenarios",
    "range_warnings",
]

DEFAULT_PROXY_RETURNS: tuple[float, ...] = (-0.30, -0.20, -0.10, 0.10, 0.20, 0.30)
_MIN_RETURN = -0.9999
#: A lending position counts as liquidated at a health factor <= 1 + this (a scenario set exactly at its
#: liquidation price lands on 1 up to rounding).
LIQUIDATION_HF_TOLERANCE = 1e-9


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
class PositionOutcome:
    """A DeFi position under a scenario (USD): its new value and PnL, and what broke.

    ``impermanent_loss_usd`` (pools): the pool's new value minus that of holding today's amounts (<= 0).
    ``range``: ``below``, ``in`` or ``above`` for a v3 position, else None. ``health_factor`` and
    ``liquidated`` for a lending position (``liquidation_loss_usd`` is included in ``pnl_usd``).
    """

    index: int
    label: str
    kind: str
    value_usd: float
    pnl_usd: float
    impermanent_loss_usd: float | None = None
    range: str | None = None
    health_factor: float | None = None
    liquidated: bool = False
    liquidation_loss_usd: float = 0.0
    depeg: float | None = None


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
    #: DeFi positions (their PnL is part of ``spot_pnl_usd``); empty for a portfolio without any
    positions: tuple[PositionOutcome, ...] = ()

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
    if plan.portfolio.positions:  # pools' and loans' assets move; a staked token moves by its own depeg
        held |= plan.portfolio.exposed_assets()
        held |= {p.asset for p in plan.portfolio.positions if isinstance(p, StakedPosition)}
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
    if plan.portfolio.positions:
        assets |= plan.portfolio.exposed_assets()
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
    positions: tuple[PositionOutcome, ...] = ()
    if pf.positions:
        new_prices = {a: p * (1.0 + rets.get(a, 0.0)) for a, p in pf.prices.items()}
        positions = tuple(
            _position_outcome(i, pos, pf.prices, new_prices, scenario) for i, pos in enumerate(pf.positions)
        )
        spot += sum(o.pnl_usd for o in positions)
    return ScenarioResult(
        name=scenario.name,
        proxy_return=proxy_ret,
        returns=rets,
        spot_pnl_usd=spot,
        hedge_pnl_usd=hedge,
        net_pnl_usd=spot + hedge,
        legs=tuple(outcomes),
        positions=positions,
    )


def _position_outcome(
    index: int, pos: Position, now: Mapping[str, float], new: Mapping[str, float], scenario: Scenario
) -> PositionOutcome:
    """Exact revaluation of one DeFi position from ``now`` to ``new`` prices."""
    value_now = float(pos.value_usd(now))
    if isinstance(pos, StakedPosition):
        depeg = -scenario.shocks[pos.asset] if pos.asset in scenario.shocks else 0.0
        value = float(pos.value_usd(new, depeg=depeg))
        return PositionOutcome(
            index=index,
            label=pos.label,
            kind=pos.kind.value,
            value_usd=value,
            pnl_usd=value - value_now,
            depeg=depeg or None,
        )
    if isinstance(pos, LendingPosition):
        value = float(pos.value_usd(new))
        hf = float(pos.health_factor(new))
        liquidated = hf <= 1.0 + LIQUIDATION_HF_TOLERANCE  # at or past the liquidation price
        loss = float(pos.liquidation_loss_usd(new)) if liquidated else 0.0
        return PositionOutcome(
            index=index,
            label=pos.label,
            kind=pos.kind.value,
            value_usd=value - loss,
            pnl_usd=value - loss - value_now,
            health_factor=None if math.isinf(hf) else hf,
            liquidated=liquidated,
            liquidation_loss_usd=loss,
        )
    value = float(pos.value_usd(new))
    held = sum(float(q) * new.get(a, 1.0) for a, q in pos.amounts(now).items())
    status = pos.range_status(new) if isinstance(pos, LpV3Position) else None
    return PositionOutcome(
        index=index,
        label=pos.label,
        kind=pos.kind.value,
        value_usd=value,
        pnl_usd=value - value_now,
        impermanent_loss_usd=value - held,
        range=status,
    )


def position_scenarios(plan: HedgePlan) -> tuple[Scenario, ...]:
    """Scenarios that show what the DeFi positions add: each v3 position at its range bounds, each lending
    position at the price of each of its coins that liquidates it, each staked token at its stated depeg.

    A move is given to one asset (the rest follow β × proxy when it is the proxy, else stay still);
    moves outside (−100%, +1000%] are left out.
    """
    pf = plan.portfolio
    proxy = plan.request.proxy_asset
    out: list[Scenario] = []
    seen: set[str] = set()

    def add(name: str, asset: str, r: float) -> None:
        if name in seen or not (math.isfinite(r) and MIN_MOVE < r <= MAX_MOVE):
            return
        seen.add(name)
        out.append(Scenario(name=name, proxy_return=r if asset == proxy else None, shocks={asset: r}))

    for i, pos in enumerate(pf.positions):
        if isinstance(pos, LpV3Position) and not (is_stablecoin(pos.base) and is_stablecoin(pos.quote)):
            # the pool price P = p_base/p_quote reaches a bound when the base alone moves by bound/P − 1
            # (or, for a stablecoin base, when the quote alone moves by P/bound − 1)
            p = float(pos.pool_price(pf.prices))
            for bound, where in ((pos.p_a, "low"), (pos.p_b, "high")):
                asset, r = (pos.quote, p / bound - 1.0) if is_stablecoin(pos.base) else (pos.base, bound / p - 1.0)
                add(f"{asset} {r:+.1%} (#{i} at range {where} {bound:g})", asset, r)
        elif isinstance(pos, LendingPosition):
            for asset in pos.assets:
                if is_stablecoin(asset):
                    continue
                liq = pos.liquidation_price(asset, pf.prices)
                if liq is not None:
                    r = liq / pf.price(asset) - 1.0
                    add(f"{asset} {r:+.1%} (#{i} liquidated at {liq:,.2f})", asset, r)
        elif isinstance(pos, StakedPosition) and pos.depeg is not None:
            name = f"{pos.asset} depeg {-pos.depeg:+.0%} vs {pos.underlying}"
            if name not in seen:
                seen.add(name)
                out.append(Scenario(name=name, proxy_return=0.0, shocks={pos.asset: -pos.depeg}))
    return tuple(out)


def range_warnings(plan: HedgePlan, results: tuple[ScenarioResult, ...] | list[ScenarioResult]) -> list[str]:
    """One line per v3 position out of range now, or taken out of its range by a scenario move."""
    pf = plan.portfolio
    lines: list[str] = []
    for i, pos in enumerate(pf.positions):
        if not isinstance(pos, LpV3Position):
            continue
        now = pos.range_status(pf.prices)
        side = {"below": f"all {pos.base}", "above": f"all {pos.quote}"}
        if now != "in":
            lines.append(
                f"positions[{i}] ({pos.label}) is out of range now ({now}: {side[now]}, earning no fees); "
                f"its delta stays {side[now]} until the price returns to [{pos.p_a:g}, {pos.p_b:g}]"
            )
            continue
        own = f"(#{i} at range "  # the scenarios set at this position's own bounds say so by name
        moved = [
            (s.name, o.range)
            for s in results
            for o in s.positions
            if o.index == i and o.range not in (None, "in") and own not in s.name
        ]
        if moved:
            names = ", ".join(f"'{n}' ({r})" for n, r in moved)
            lines.append(
                f"positions[{i}] ({pos.label}) leaves its range in {names}: its delta jumps to "
                f"{pos.max_base:,.6g} {pos.base} below the range and to 0 {pos.base} above it (all "
                f"{pos.max_quote:,.2f} {pos.quote}); a static hedge sized now is then wrong"
            )
    return lines


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

    The target is the plan's ratio of the covered assets' new β-weighted value (of their new delta for
    DeFi positions); a positive
    ``contracts_to_trade`` means short more.
    """
    scenario = Scenario(name="drift", shocks={k: v for k, v in moves.items() if k != "*"}, default=moves.get("*"))
    _, rets = _returns(plan, scenario)
    now_exposure: dict[str, float] = {}
    new_exposure: dict[str, float] = {}
    if plan.portfolio.positions:  # a position's delta is not linear in the price: recompute it after the move
        pf = plan.portfolio
        now_exposure = pf.scope_exposure(plan.request.scope)
        moved = pf.repriced({a: p * (1.0 + rets[a]) for a, p in pf.prices.items() if a in rets})
        new_exposure = moved.scope_exposure(plan.request.scope)
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
        if now_exposure:
            for asset, usd in leg.covers.items():
                old = now_exposure.get(asset, 0.0)
                target += usd * new_exposure.get(asset, 0.0) / old if old else 0.0
        else:
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
