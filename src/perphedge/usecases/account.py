"""Cross-margined accounts (``perphedge calc --account FILE``): file → account → liquidation document."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perphedge.config import CrossAccountFile, load_account_file
from perphedge.core.contracts import Side
from perphedge.core.cross import (
    CrossAccount,
    CrossPosition,
    CrossResult,
    CrossVenue,
    LiquidationSurface,
    cross_liquidation,
    round_liquidation_price,
)
from perphedge.core.instruments import MarginSchedule
from perphedge.core.units import MAX_VALUE_USD
from perphedge.errors import ConfigError
from perphedge.specs import InstrumentRegistry

__all__ = ["account_document", "build_account", "load_account", "surface_document"]


def build_account(model: CrossAccountFile, registry: InstrumentRegistry, source: str, doc: Any = None) -> CrossAccount:
    """The :class:`CrossAccount` of a validated file; ConfigError names ``source``, the line and the field."""
    from perphedge.files import line_of

    venue = CrossVenue.parse(model.venue)
    positions: list[CrossPosition] = []

    def where(i: int, field: str) -> str:
        line = line_of(doc, ("positions", i, field)) if doc is not None else None
        return f"{source}: {f'line {line}: ' if line else ''}field `positions[{i}].{field}`"

    for i, p in enumerate(model.positions):
        try:
            inst = registry.get(p.instrument)
        except ConfigError as exc:
            raise ConfigError(f"{where(i, 'instrument')}: {exc}") from None
        lots = p.contracts / inst.lot_size
        nearest = round(lots)
        if nearest < 1 or abs(lots - nearest) > 1e-9 * max(1.0, lots):
            options = [f"{round(x * inst.lot_size, 12):.12g}" for x in (math.floor(lots), math.ceil(lots)) if x >= 1]
            raise ConfigError(
                f"{where(i, 'contracts')}: {p.contracts:g} is not a whole number of lots of {inst.id} (lot "
                f"{inst.lot_size:g} {'contracts' if inst.lot_size != 1 else 'contract'}): nearest "
                f"{' or '.join(options)}"
            )
        schedule = None
        if p.mmr is not None and p.maintenance_amount:
            floor_mm = inst.position_value(p.contracts, p.mark) * p.mmr
            if p.maintenance_amount > floor_mm:
                raise ConfigError(
                    f"{where(i, 'maintenance_amount')}: {p.maintenance_amount:g} is more than the position's value "
                    f"× mmr at its mark ({floor_mm:.8g} {inst.settle}): the maintenance margin would be negative "
                    "(the amount belongs to the tier that holds the position's value)"
                )
        if p.mmr is not None:
            try:
                schedule = MarginSchedule.single(p.mmr, p.maintenance_amount or 0.0, max_leverage=inst.max_leverage)
            except ConfigError as exc:
                raise ConfigError(f"{where(i, 'mmr')}: {exc}") from None
        for field, price in (("entry", p.entry), ("mark", p.mark)):
            notional = inst.notional_usd(p.contracts, price)
            if notional > MAX_VALUE_USD:
                raise ConfigError(
                    f"{where(i, 'contracts')}: the position is worth {notional:.3g} USD at its {field} "
                    f"({p.contracts:g} contracts of {inst.contract_size:g} {inst.contract_size_unit}), more than "
                    f"{MAX_VALUE_USD:g} USD: check the contracts and prices"
                )
        positions.append(
            CrossPosition(
                instrument=inst,
                side=Side(p.side),
                contracts=p.contracts,
                entry=p.entry,
                mark=p.mark,
                schedule=schedule,
            )
        )
    try:
        account = CrossAccount(venue=venue, wallet_balance=model.wallet_balance, positions=tuple(positions))
    except ConfigError as exc:
        text = str(exc)
        if text.startswith("invalid `positions["):
            field = text[len("invalid `") : text.index("`", len("invalid `"))]
            index = int(field[len("positions[") : field.index("]")])
            line = line_of(doc, ("positions", index, "instrument")) if doc is not None else None
            rest = text[text.index("`:", len("invalid `")) + 2 :].strip()
            raise ConfigError(f"{source}: {f'line {line}: ' if line else ''}field `{field}`: {rest}") from None
        raise ConfigError(f"{source}: {text}") from None
    _check_overrides(account, model, where)
    return account


def _check_overrides(account: CrossAccount, model: CrossAccountFile, where: Callable[[int, str], str]) -> None:
    """Refuse a tier override whose maintenance margin is negative at the position's liquidation price.

    ``maintenance_amount`` belongs to the tier that holds the position's value; below ``amount / mmr`` the
    venue applies a lower tier, so the override cannot describe the position there (its liquidation price
    would fall past the bankruptcy price).
    """
    result = cross_liquidation(account)
    for i, (pos, liq) in enumerate(zip(account.positions, result.positions, strict=True)):
        amount = model.positions[i].maintenance_amount
        if pos.schedule is None or not amount or liq.liquidation_price is None:
            continue
        basis = pos.value(pos.entry) if account.venue.mm_on_entry else pos.value(liq.liquidation_price)
        if pos.schedule.maintenance_margin(basis) < 0:
            inst = pos.instrument
            raise ConfigError(
                f"{where(i, 'maintenance_amount')}: {amount:g} is more than the position's value × mmr at its "
                f"liquidation price {liq.liquidation_price:.8g} ({basis:.8g} × {model.positions[i].mmr:g} "
                f"{inst.settle}): the maintenance margin would be negative there (the amount belongs to the "
                "tier that holds the position's value at the liquidation price; give that tier's mmr and amount)"
            )


def load_account(path: str | Path, registry: InstrumentRegistry) -> CrossAccount:
    """Read, validate and resolve a cross-account YAML file."""
    model, doc = load_account_file(path)
    return build_account(model, registry, str(path), doc)


def account_document(account: CrossAccount, result: CrossResult | None = None) -> dict[str, Any]:
    """The JSON document of ``calc --account``: account equity, total MM, margin ratio, each position's LP."""
    res = result if result is not None else cross_liquidation(account)
    rows: list[dict[str, Any]] = []
    for pos, liq in zip(account.positions, res.positions, strict=True):
        inst = pos.instrument
        lp = liq.liquidation_price
        rows.append(
            {
                "instrument": inst.id,
                "kind": inst.kind.value,
                "side": pos.side.value,
                "contracts": pos.contracts,
                "size": pos.size,
                "size_unit": "USD" if inst.is_inverse else inst.base,
                "entry": pos.entry,
                "mark": pos.mark,
                "liquidation_price": lp,
                "liquidation_status": liq.status,
                "liquidation_price_on_tick": (
                    round_liquidation_price(lp, pos.mark, inst.tick_size) if lp is not None else None
                ),
                "distance_to_liquidation": (lp / pos.mark - 1.0) if lp is not None else None,
                "bankruptcy_price": liq.bankruptcy_price,
                "mmr": liq.mmr,
                "maintenance_amount": liq.maintenance_amount,
                "closing_fee_rate": liq.fee_rate,
                "maintenance_margin": liq.maintenance_margin,
                "unrealized_pnl": liq.unrealized_pnl,
                "available_margin": liq.available_margin,
                "tier_override": pos.schedule is not None,
            }
        )
    st = res.state
    warnings: list[str] = []
    if st.liquidated:
        warnings.append(
            f"the account is already liquidated at the marks: equity {st.equity:.8g} {account.settle} <= total "
            f"maintenance margin {st.total_maintenance:.8g} {account.settle}; each liquidation price on the far "
            "side of its mark is where the account would stop being liquidated"
        )
    return {
        "venue": account.venue.value,
        "settle": account.settle,
        "wallet_balance": account.wallet_balance,
        "account_equity": st.equity,
        "total_maintenance_margin": st.total_maintenance,
        "margin_ratio": st.margin_ratio,
        "liquidated": st.liquidated,
        "positions": rows,
        "warnings": warnings,
        "notes": [
            "each liquidation price holds the other positions at their marks",
            "margin_ratio = total maintenance margin / account equity; the account is liquidated at >= 1",
            "amounts are in the settle asset; liquidation_price_on_tick is rounded towards the mark",
        ],
    }


def surface_document(surface: LiquidationSurface) -> dict[str, Any]:
    """JSON of a liquidation surface: the moves of both legs and, per cell, liquidated and margin ratio."""
    return {
        "leg_a": surface.leg_a,
        "leg_b": surface.leg_b,
        "moves_a": list(surface.moves_a),
        "moves_b": list(surface.moves_b),
        "liquidated": [list(r) for r in surface.liquidated],
        "margin_ratio": [list(r) for r in surface.margin_ratio],
    }
