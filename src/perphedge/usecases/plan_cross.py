"""``plan`` with ``hedge.margin_mode: cross``: the hedge legs in one cross-margined account.

The legs are sized as in isolated mode (each leg's initial margin at the plan's leverage); in cross
mode the same total margin sits in one wallet that backs every leg. The document shows each leg's
liquidation price given the others next to its isolated one, the account's equity, maintenance
margin and margin ratio, and the liquidation surface of the first two legs: which joint moves of
their prices liquidate the account, next to which liquidate at least one isolated leg.
"""

from __future__ import annotations

from typing import Any

from perphedge.core.contracts import Side
from perphedge.core.cross import (
    CrossAccount,
    CrossPosition,
    CrossVenue,
    cross_liquidation,
    liquidation_surface,
)
from perphedge.core.hedge import HedgePlan
from perphedge.core.instruments import ContractKind, Instrument
from perphedge.errors import ConfigError
from perphedge.usecases.account import account_document, surface_document

__all__ = ["SURFACE_MOVES", "cross_account_of_plan", "cross_venue_of", "plan_cross_document"]

#: Relative moves of each leg on the plan's liquidation surface: -50 % … +100 % in steps of 10 %.
SURFACE_MOVES: tuple[float, ...] = tuple(round(-0.5 + 0.1 * i, 2) for i in range(16))

_VENUES: dict[tuple[str, ContractKind], CrossVenue] = {
    ("binance", ContractKind.LINEAR): CrossVenue.BINANCE_USDM,
    ("binance", ContractKind.INVERSE): CrossVenue.BINANCE_COINM,
    ("bybit", ContractKind.LINEAR): CrossVenue.BYBIT_UNIFIED,
    ("bybit", ContractKind.INVERSE): CrossVenue.BYBIT_CLASSIC,
    ("okx", ContractKind.LINEAR): CrossVenue.OKX,
    ("okx", ContractKind.INVERSE): CrossVenue.OKX,
    ("hyperliquid", ContractKind.LINEAR): CrossVenue.HYPERLIQUID,
}


def cross_venue_of(inst: Instrument) -> CrossVenue:
    """The cross-margin rules an instrument's account follows; ConfigError where perphedge has none."""
    venue = _VENUES.get((inst.exchange, inst.kind))
    if venue is None:
        known = ", ".join(sorted({f"{e} {k.value}" for e, k in _VENUES}))
        raise ConfigError(
            f"invalid `hedge.margin_mode`: cross margin is not modelled for {inst.id} ({inst.kind.value}); "
            f"it is for {known}: use margin_mode: isolated"
        )
    return venue


def cross_account_of_plan(plan: HedgePlan) -> CrossAccount:
    """The plan's legs as one cross account: wallet = Σ the legs' initial margin (settle asset), marks = entries."""
    if not plan.legs:
        raise ConfigError("invalid `hedge.margin_mode: cross`: the plan has no hedge leg")
    first = plan.legs[0].instrument
    venue = cross_venue_of(first)
    for leg in plan.legs[1:]:
        inst = leg.instrument
        if cross_venue_of(inst) is not venue or inst.settle != first.settle:
            raise ConfigError(
                f"invalid `hedge.margin_mode: cross`: the legs {first.id} ({first.settle}) and {inst.id} "
                f"({inst.settle}) cannot share one cross account (one venue and one settle asset per account): "
                "use margin_mode: isolated or legs of one settle asset"
            )
    positions = tuple(
        CrossPosition(
            instrument=leg.instrument,
            side=leg.side,
            contracts=leg.contracts,
            entry=leg.entry_price,
            mark=leg.entry_price,
        )
        for leg in plan.legs
    )
    wallet = sum(leg.initial_margin for leg in plan.legs)
    return CrossAccount(venue=venue, wallet_balance=wallet, positions=positions)


def plan_cross_document(plan: HedgePlan) -> dict[str, Any]:
    """The ``cross_account`` block of the plan document (see the module docstring)."""
    account = cross_account_of_plan(plan)
    result = cross_liquidation(account)
    doc = account_document(account, result)
    legs = []
    for leg, liq in zip(plan.legs, result.positions, strict=True):
        iso = leg.liquidation.price
        legs.append(
            {
                "instrument": leg.instrument.id,
                "side": leg.side.value,
                "contracts": leg.contracts,
                "entry_price": leg.entry_price,
                "initial_margin": leg.initial_margin,
                "isolated_liquidation_price": iso,
                "cross_liquidation_price": liq.liquidation_price,
                "cross_liquidation_status": liq.status,
                "cross_minus_isolated": (
                    liq.liquidation_price - iso if liq.liquidation_price is not None and iso is not None else None
                ),
            }
        )
    doc["legs"] = legs
    if len(account.positions) >= 2:
        surf = liquidation_surface(account, 0, 1, SURFACE_MOVES, SURFACE_MOVES)
        sdoc = surface_document(surf)
        isolated: list[list[bool]] = []
        for da in SURFACE_MOVES:
            row = []
            for db in SURFACE_MOVES:
                hit = False
                for leg, move in ((plan.legs[0], da), (plan.legs[1], db)):
                    lp = leg.liquidation.price
                    price = leg.entry_price * (1.0 + move)
                    if lp is not None:
                        hit = hit or (price >= lp if leg.side is Side.SHORT else price <= lp)
                row.append(hit)
            isolated.append(row)
        sdoc["isolated_any_leg_liquidated"] = isolated
        doc["surface"] = sdoc
    else:
        doc["surface"] = None
    doc["notes"] = [
        *doc["notes"],
        "cross wallet = the sum of the legs' initial margin at the plan's leverage; marks = entry prices",
        "the spot holdings are outside the exchange account: the surface is the hedge account's alone",
    ]
    return doc
