"""Contract maths for inverse and linear perpetuals, as the exchanges publish it.

Notation (see ``reference/contract_math.md``): ``Q`` notional in USD (inverse), ``q`` size in
base coin (linear), ``E`` entry price, ``P`` mark or exit price, ``L`` leverage, ``WB`` the margin
given to the position (isolated margin, or the wallet balance in cross mode) in the settle
asset, ``s`` = +1 long / −1 short.

* Inverse value ``Q/P`` coin; PnL ``s·Q·(1/E − 1/P)`` coin; IM ``Q/(E·L)`` coin; fees
  ``rate·Q/P`` coin; funding ``−s·(Q/mark)·rate`` coin (positive = received).
* Linear value ``q·P``; PnL ``s·q·(P − E)``; IM ``q·E/L``; fees ``rate·q·P``; funding
  ``−s·q·mark·rate`` (positive = received).

A positive funding rate means longs pay shorts: a short *receives* it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from perphedge.core.instruments import ContractKind, LiquidationMethod, MarginSchedule, TierStyle
from perphedge.core.units import check_finite, check_positive
from perphedge.errors import ConfigError

__all__ = [
    "LiquidationResult",
    "Side",
    "bankruptcy_price",
    "check_opening_margin",
    "equity",
    "fee",
    "funding_received",
    "initial_margin",
    "inverse_avg_entry",
    "inverse_pnl_coin",
    "inverse_value_coin",
    "linear_avg_entry",
    "linear_pnl_quote",
    "liquidation_price",
    "maintenance_amount_chain",
    "pnl",
    "position_value",
]


#: Relative tolerance under which a margin exactly covering the position counts as covering it
#: (a 1x inverse short has ``WB − Q/E`` = 0 up to float rounding).
_EPS = 1e-9


class Side(StrEnum):
    """Position side; ``sign`` is +1 for long, −1 for short."""

    LONG = "long"
    SHORT = "short"

    @property
    def sign(self) -> int:
        """+1 for long, −1 for short."""
        return 1 if self is Side.LONG else -1

    @classmethod
    def parse(cls, value: str | Side) -> Side:
        """Parse ``long``/``short`` (any case); ConfigError otherwise."""
        if isinstance(value, Side):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ConfigError(f"invalid `side`: must be long or short, was {value!r}") from None


def _kind(kind: ContractKind | str) -> ContractKind:
    if isinstance(kind, ContractKind):
        return kind
    try:
        return ContractKind(str(kind).lower())
    except ValueError:
        raise ConfigError(f"invalid `kind`: must be inverse or linear, was {kind!r}") from None


def _method(method: LiquidationMethod | str) -> LiquidationMethod:
    if isinstance(method, LiquidationMethod):
        return method
    try:
        return LiquidationMethod(str(method).lower())
    except ValueError:
        names = ", ".join(m.value for m in LiquidationMethod)
        raise ConfigError(f"invalid `method`: must be one of {names}, was {method!r}") from None


# --------------------------------------------------------------------------- value and PnL


def inverse_value_coin(notional_usd: float, price: float) -> float:
    """Value in coin of an inverse position of ``notional_usd`` at ``price``: ``Q/P``."""
    return check_finite("notional_usd", notional_usd) / check_positive("price", price)


def inverse_pnl_coin(side: Side | str, notional_usd: float, entry: float, exit: float) -> float:
    """Inverse PnL in coin: ``s·Q·(1/E − 1/P)``."""
    s = Side.parse(side).sign
    q = check_finite("notional_usd", notional_usd)
    return s * q * (1.0 / check_positive("entry", entry) - 1.0 / check_positive("exit", exit))


def linear_pnl_quote(side: Side | str, quantity: float, entry: float, exit: float) -> float:
    """Linear PnL in the quote asset: ``s·q·(P − E)``."""
    s = Side.parse(side).sign
    return s * check_finite("quantity", quantity) * (check_positive("exit", exit) - check_positive("entry", entry))


def position_value(kind: ContractKind | str, size: float, price: float) -> float:
    """Position value in the settle/tier unit: ``Q/P`` coin (inverse) or ``q·P`` (linear)."""
    k = _kind(kind)
    if k is ContractKind.INVERSE:
        return inverse_value_coin(size, price)
    return check_finite("quantity", size) * check_positive("price", price)


def pnl(kind: ContractKind | str, side: Side | str, size: float, entry: float, exit: float) -> float:
    """PnL in the settle asset for either kind (``size`` = Q USD or q coin)."""
    if _kind(kind) is ContractKind.INVERSE:
        return inverse_pnl_coin(side, size, entry, exit)
    return linear_pnl_quote(side, size, entry, exit)


def inverse_avg_entry(fills: Sequence[tuple[float, float]]) -> float:
    """Average entry of inverse fills ``(contracts, price)``: harmonic, ``Σc / Σ(c/p)``."""
    if not fills:
        raise ConfigError("invalid `fills`: at least one fill is needed")
    total = sum(check_positive("contracts", c) for c, _ in fills)
    inv = sum(c / check_positive("price", p) for c, p in fills)
    return total / inv


def linear_avg_entry(fills: Sequence[tuple[float, float]]) -> float:
    """Average entry of linear fills ``(quantity, price)``: quantity-weighted arithmetic mean."""
    if not fills:
        raise ConfigError("invalid `fills`: at least one fill is needed")
    total = sum(check_positive("quantity", q) for q, _ in fills)
    return sum(q * check_positive("price", p) for q, p in fills) / total


# --------------------------------------------------------------------------- margin


def initial_margin(kind: ContractKind | str, size: float, entry: float, leverage: float) -> float:
    """Initial margin in the settle asset: ``Q/(E·L)`` coin or ``q·E/L`` quote."""
    lev = check_finite("leverage", leverage)
    if lev < 1:
        raise ConfigError(f"invalid `leverage`: must be >= 1, was {leverage!r}")
    return position_value(kind, size, entry) / lev


def maintenance_amount_chain(tiers: Sequence[tuple[float, float]], tier_index: int) -> float:
    """Cumulative maintenance amount of tier ``tier_index`` of ``(floor, mmr)`` rows.

    ``cum_n = floor_n·(MMR_n − MMR_{n−1}) + cum_{n−1}``, ``cum_0 = 0``.
    """
    if not 0 <= tier_index < len(tiers):
        raise ConfigError(f"invalid `tier_index`: must be in [0, {len(tiers) - 1}], was {tier_index}")
    cum = 0.0
    for i in range(1, tier_index + 1):
        cum = tiers[i][0] * (tiers[i][1] - tiers[i - 1][1]) + cum
    return cum


def check_opening_margin(
    *,
    kind: ContractKind | str,
    size: float,
    entry: float,
    margin: float,
    schedule: MarginSchedule,
    unit: str,
    margin_label: str = "initial margin",
    leverage_hint: bool = True,
) -> None:
    """Refuse a position liquidated the moment it opens: ``margin`` must exceed its maintenance margin.

    The maintenance margin is taken on the entry value with the tier of that value. Raises
    :class:`ConfigError` naming both amounts (in ``unit``), the tier, its rate and the highest
    leverage at which the position would stand.
    """
    value = position_value(kind, size, entry)
    mm = schedule.maintenance_margin(value)
    if margin > mm * (1.0 + _EPS) and margin > 0:
        return
    idx = schedule.tier_index(value)
    highest = (
        f"; lower the leverage (below {value / mm:.4g}x; this tier allows at most {schedule.max_leverage(value):g}x) "
        "or the size"
        if mm > 0 and leverage_hint
        else ""
    )
    raise ConfigError(
        f"position liquidated on opening: its {margin_label} {margin:,.8g} {unit} does not cover its maintenance "
        f"margin {mm:,.8g} {unit} (tier {idx + 1}, MMR {schedule.rate(value):.4%}, on a position worth "
        f"{value:,.8g} {unit}){highest}"
    )


# --------------------------------------------------------------------------- equity, BP, LP


def equity(kind: ContractKind | str, side: Side | str, size: float, entry: float, margin: float, price: float) -> float:
    """Position equity in the settle asset at ``price``: ``margin + PnL``."""
    return margin + pnl(kind, side, size, entry, price)


def bankruptcy_price(
    kind: ContractKind | str, side: Side | str, size: float, entry: float, margin: float
) -> float | None:
    """Price at which the position's equity is zero; ``None`` when it cannot be reached.

    Inverse: ``P = s·Q / (s·Q/E + WB)``; with ``WB = Q/(E·L)`` this is ``E/(1 ± 1/L)``.
    Linear: ``P = E − s·WB/q``. A short inverse with ``WB >= Q/E`` (1x or less) and a long linear
    with ``WB >= q·E`` never go bankrupt.
    """
    k = _kind(kind)
    s = Side.parse(side).sign
    size = check_positive("size", size)
    entry = check_positive("entry", entry)
    margin = check_finite("margin", margin)
    if k is ContractKind.INVERSE:
        denom = size / entry + s * margin  # long: Q/E + WB; short: Q/E − WB
        if denom <= _EPS * size / entry:
            return None
        return size / denom
    price = entry - s * margin / size
    return price if price > _EPS * entry else None


@dataclass(frozen=True, slots=True, kw_only=True)
class LiquidationResult:
    """Liquidation price and the maintenance terms that produced it."""

    price: float | None
    mmr: float
    maintenance_amount: float
    tier_index: int
    maintenance_margin: float
    value_basis: str  # "entry" or "liquidation_price"


def _lp_formula(
    k: ContractKind,
    s: int,
    size: float,
    entry: float,
    margin: float,
    mmr: float,
    cum: float,
    at_entry: bool,
    mm_entry: float,
) -> float | None:
    """Closed form of the LP for one tier (``mm_entry`` used when ``at_entry``)."""
    if k is ContractKind.INVERSE:
        if at_entry:
            # margin + s·Q(1/E − 1/P) = MM  →  P = Q / (Q/E + s·(margin − MM))
            denom = size / entry + s * (margin - mm_entry)
            if denom <= _EPS * size / entry:
                return None
            price = size / denom
        else:
            # margin + s·Q(1/E − 1/P) = (Q/P)·MMR − cum  →  P = (Q·MMR + s·Q)/(margin + cum + s·Q/E)
            denom = margin + cum + s * size / entry
            if abs(denom) <= _EPS * size / entry:
                return None
            price = (size * mmr + s * size) / denom
    elif at_entry:
        price = entry - s * (margin - mm_entry) / size
    else:
        # margin + s·q(P − E) = q·P·MMR − cum  →  P = (margin + cum − s·q·E)/(q·MMR − s·q)
        denom = size * mmr - s * size
        num = margin + cum - s * size * entry
        if s > 0 and num >= -_EPS * size * entry:
            return None
        price = num / denom
    if not math.isfinite(price) or price <= _EPS * entry:
        return None
    return price


def liquidation_price(
    *,
    kind: ContractKind | str,
    method: LiquidationMethod | str,
    side: Side | str,
    size: float,
    entry: float,
    margin: float,
    schedule: MarginSchedule,
) -> LiquidationResult:
    """Liquidation price of one position by the exchange's method and margin tier.

    Parameters
    ----------
    kind
        ``inverse`` (``size`` = notional Q in USD, ``margin`` in coin) or ``linear``
        (``size`` = q in base coin, ``margin`` in the quote asset).
    method
        ``mm_on_entry_value`` / ``bybit_linear`` (maintenance margin on the entry value) or
        ``mm_at_liquidation_price`` / ``binance_usdm`` (on the value at the liquidation price,
        with the tier chosen there).
    side
        ``long`` or ``short``.
    size, entry
        Position size and average entry price.
    margin
        Margin backing the position in the settle asset: the isolated margin, or the wallet
        balance in cross mode (single position).
    schedule
        Maintenance-margin tiers on position value (coin for inverse, quote for linear).

    Returns
    -------
    LiquidationResult
        ``price`` is ``None`` when the position cannot be liquidated (an inverse short with
        margin >= its value, a linear long fully collateralised).
    """
    k = _kind(kind)
    m = _method(method)
    m.check_kind(k)
    s = Side.parse(side).sign
    size = check_positive("size", size)
    entry = check_positive("entry", entry)
    margin = check_finite("margin", margin)
    if margin < 0:
        raise ConfigError(f"invalid `margin`: must be >= 0, was {margin!r}")

    if m.mm_at_entry:
        value = position_value(k, size, entry)
        mm = schedule.maintenance_margin(value)
        idx = schedule.tier_index(value)
        price = _lp_formula(k, s, size, entry, margin, 0.0, 0.0, True, mm)
        return LiquidationResult(
            price=price,
            mmr=schedule.rate(value),
            maintenance_amount=schedule.maintenance_amount(value),
            tier_index=idx,
            maintenance_margin=mm,
            value_basis="entry",
        )

    def at_lp(price: float | None) -> LiquidationResult:
        if price is None:
            return LiquidationResult(
                price=None,
                mmr=schedule.tiers[0].mmr,
                maintenance_amount=0.0,
                tier_index=0,
                maintenance_margin=0.0,
                value_basis="liquidation_price",
            )
        value = position_value(k, size, price)
        return LiquidationResult(
            price=price,
            mmr=schedule.rate(value),
            maintenance_amount=schedule.maintenance_amount(value),
            tier_index=schedule.tier_index(value),
            maintenance_margin=schedule.maintenance_margin(value),
            value_basis="liquidation_price",
        )

    if schedule.style is TierStyle.MARGINAL:
        # closed form per tier; keep the one whose range holds the value at its own LP (the
        # marginal MM is continuous and monotone, so exactly one tier is consistent)
        for idx, tier in enumerate(schedule.tiers):
            price = _lp_formula(k, s, size, entry, margin, tier.mmr, tier.maintenance_amount, False, 0.0)
            if price is None:
                continue
            value = position_value(k, size, price)
            if tier.floor <= value < schedule.cap(idx) or math.isclose(value, tier.floor, rel_tol=1e-12):
                return at_lp(price)
        if _lp_formula(k, s, size, entry, margin, schedule.tiers[0].mmr, 0.0, False, 0.0) is None:
            return at_lp(None)
    # Stepped or size-linear schedules (or no consistent tier): solve equity(P) = MM(value(P)).
    return at_lp(_solve_lp(k, s, size, entry, margin, schedule))


def _solve_lp(
    k: ContractKind, s: int, size: float, entry: float, margin: float, schedule: MarginSchedule
) -> float | None:
    """Bisection for ``equity(P) − MM(P) = 0`` on the adverse side of entry."""

    def gap(p: float) -> float:
        eq = margin + (s * size * (1 / entry - 1 / p) if k is ContractKind.INVERSE else s * size * (p - entry))
        return eq - schedule.maintenance_margin(position_value(k, size, p))

    if gap(entry) <= 0:
        return entry
    if s > 0:  # long: adverse is down, towards 0
        lo, hi = entry * 1e-12, entry
        if gap(lo) > 0:
            return None
    else:  # short: adverse is up
        lo, hi = entry, entry * 2.0
        while gap(hi) > 0:
            hi *= 2.0
            if hi > entry * 1e12:
                return None
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        g = gap(mid)
        if (g > 0) == (s > 0):
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-12 * hi:
            break
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------- funding and fees


def funding_received(kind: ContractKind | str, side: Side | str, size: float, mark: float, rate: float) -> float:
    """Funding of one settlement in the settle asset; positive = received.

    A positive rate means longs pay shorts. Inverse: ``−s·(Q/mark)·rate`` coin; linear:
    ``−s·q·mark·rate`` quote.
    """
    s = Side.parse(side).sign
    value = position_value(kind, size, mark)
    return -s * value * check_finite("funding_rate", rate)


def fee(kind: ContractKind | str, size: float, price: float, rate: float) -> float:
    """Trading fee in the settle asset: ``rate·Q/P`` coin (inverse) or ``rate·q·P`` (linear)."""
    return position_value(kind, abs(check_finite("size", size)), price) * check_finite("fee_rate", rate)
