"""Limits checked on a whole rebalance plan before anything is sent (design ``docs/design/book.md`` §5.3).

Pure: no I/O. :func:`check_limits` returns every breach of the plan, in a fixed order (per order, in plan
order: instrument, order size, leverage, liquidation distance; then the day's turnover). The caller refuses
the whole plan on the first one and shows its ``message``.

Rules:

* ``instruments``: an order on an instrument outside the allowed set is refused (ids compared without regard
  to case, ``binance:BTCUSDT`` = ``BINANCE:btcusdt``). An empty set allows everything here: the caller
  restricts the book to its own legs.
* ``max_order_usd``: each order's notional (USD at the decision's price) must not exceed it.
* ``max_turnover_usd_per_day``: the journaled turnover of the last 24 h plus the sum of this plan's notionals
  must not exceed it.
* ``max_leverage`` and ``min_liquidation_distance`` are checked **after** the trade. A cut that reduces risk
  (a buy of the short with ``leverage_after <= leverage_before`` and ``liq_distance_after >= liq_distance_before``)
  is never refused by these two: a cut that leaves a leg still above the limit is the way back under it, and
  refusing it would block de-risking. A sell adds to the short and is always checked (a leg already above the
  limit may not grow at the same leverage). Order size and turnover still apply to every order.

The liquidation distance is ``liquidation_price / mark − 1`` for a short (``inf`` = cannot be liquidated, e.g.
a flat leg). NaN anywhere is a ValueError: an unknown risk number is never read as "within limits".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["LIMITS", "LimitBreach", "LimitSpec", "PlannedOrder", "check_limits"]

#: The limit names, as the book file spells them (``limits:``).
LIMITS = ("instruments", "max_order_usd", "max_leverage", "min_liquidation_distance", "max_turnover_usd_per_day")


def _finite(name: str, value: object, *, lo: float | None = None, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"`{name}` must be a number, was {value!r}")
    x = float(value)
    if math.isnan(x) or (math.isinf(x) and not allow_inf):
        raise ValueError(f"`{name}` must be a {'number' if allow_inf else 'finite number'}, was {value!r}")
    if lo is not None and x < lo:
        raise ValueError(f"`{name}` must be >= {lo:g}, was {value!r}")
    return x


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedOrder:
    """One order of a plan, with the risk of its leg before and after it.

    ``contracts`` in the instrument's contracts (> 0), ``notional_usd`` the order's notional in USD at the
    decision's price (>= 0), ``leverage_*`` the leg's notional / leg equity (>= 0; ``inf`` allowed),
    ``liq_distance_*`` = liquidation price / mark − 1 (``inf`` = cannot be liquidated).
    """

    leg: int
    account: str
    instrument: str
    side: str
    contracts: float
    notional_usd: float
    reduce_only: bool
    leverage_before: float
    leverage_after: float
    liq_distance_before: float
    liq_distance_after: float

    def __post_init__(self) -> None:
        if self.side not in ("sell", "buy"):
            raise ValueError(f"`side` must be sell or buy, was {self.side!r}")
        _finite("contracts", self.contracts, lo=0.0)
        _finite("notional_usd", self.notional_usd, lo=0.0)
        _finite("leverage_before", self.leverage_before, lo=0.0, allow_inf=True)
        _finite("leverage_after", self.leverage_after, lo=0.0, allow_inf=True)
        _finite("liq_distance_before", self.liq_distance_before, allow_inf=True)
        _finite("liq_distance_after", self.liq_distance_after, allow_inf=True)

    @property
    def reduces_risk(self) -> bool:
        """A cut of the short (a buy) after which leverage does not rise and the liquidation distance does not
        shrink. A sell adds to the short: it is always checked, even when the leg's leverage stays the same."""
        return (
            self.side == "buy"
            and self.leverage_after <= self.leverage_before
            and self.liq_distance_after >= self.liq_distance_before
        )

    def describe(self) -> str:
        """``order binance:BTCUSDT sell 0.51 (30,600 USD)``."""
        return f"order {self.instrument} {self.side} {self.contracts:g} ({_usd(self.notional_usd)} USD)"


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitSpec:
    """The book file's ``limits:`` (None = no limit; ``instruments`` empty = the caller's legs only)."""

    max_order_usd: float | None = None
    max_turnover_usd_per_day: float | None = None
    max_leverage: float | None = None
    min_liquidation_distance: float | None = None
    instruments: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("max_order_usd", "max_turnover_usd_per_day", "max_leverage", "min_liquidation_distance"):
            value = getattr(self, name)
            if value is not None and _finite(name, value) <= 0:
                raise ValueError(f"`{name}` must be > 0, was {value!r}")
        if not isinstance(self.instruments, frozenset) or not all(isinstance(i, str) and i for i in self.instruments):
            raise ValueError(f"`instruments` must be a frozenset of instrument ids, was {self.instruments!r}")

    @classmethod
    def from_model(cls, m: Any) -> LimitSpec:
        """From ``config.LimitsModel`` (read by attribute: core does not import config)."""
        return cls(
            max_order_usd=m.max_order_usd,
            max_turnover_usd_per_day=m.max_turnover_usd_per_day,
            max_leverage=m.max_leverage,
            min_liquidation_distance=m.min_liquidation_distance,
            instruments=frozenset(str(i).strip() for i in (m.instruments or ())),
        )

    def allows(self, instrument: str) -> bool:
        """Whether ``instrument`` may be traded (always, when the set is empty)."""
        if not self.instruments:
            return True
        return instrument.strip().lower() in {i.lower() for i in self.instruments}


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitBreach:
    """One limit the plan breaks: ``value`` against ``bound`` (units of the limit), ``subject`` the order or
    ``plan``, ``message`` the one line to show (``limit `max_order_usd`: order … exceeds 25,000``)."""

    limit: str
    subject: str
    value: float
    bound: float
    message: str


def _usd(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"


def _pct(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.1%}"


def check_limits(orders: Sequence[PlannedOrder], spec: LimitSpec, *, turnover_24h_usd: float) -> list[LimitBreach]:
    """Every breach of ``spec`` by the plan ``orders`` (empty = within limits); see the module docstring."""
    turnover = _finite("turnover_24h_usd", turnover_24h_usd, lo=0.0)
    out: list[LimitBreach] = []
    for o in orders:
        if not isinstance(o, PlannedOrder):
            raise ValueError(f"orders must be PlannedOrder, was {type(o).__name__}")
        what = o.describe()
        if not spec.allows(o.instrument):
            allowed = ", ".join(sorted(spec.instruments))
            out.append(
                LimitBreach(
                    limit="instruments",
                    subject=what,
                    value=math.nan,
                    bound=math.nan,
                    message=f"limit `instruments`: {what}: {o.instrument} is not an allowed instrument ({allowed})",
                )
            )
        if spec.max_order_usd is not None and o.notional_usd > spec.max_order_usd:
            out.append(
                LimitBreach(
                    limit="max_order_usd",
                    subject=what,
                    value=o.notional_usd,
                    bound=spec.max_order_usd,
                    message=f"limit `max_order_usd`: {what} exceeds {_usd(spec.max_order_usd)}",
                )
            )
        if o.reduces_risk:
            continue
        if spec.max_leverage is not None and o.leverage_after > spec.max_leverage:
            out.append(
                LimitBreach(
                    limit="max_leverage",
                    subject=what,
                    value=o.leverage_after,
                    bound=spec.max_leverage,
                    message=(
                        f"limit `max_leverage`: {what} leaves the leg at {o.leverage_after:.2f}x leverage, "
                        f"above {spec.max_leverage:g}x"
                    ),
                )
            )
        if spec.min_liquidation_distance is not None and o.liq_distance_after < spec.min_liquidation_distance:
            out.append(
                LimitBreach(
                    limit="min_liquidation_distance",
                    subject=what,
                    value=o.liq_distance_after,
                    bound=spec.min_liquidation_distance,
                    message=(
                        f"limit `min_liquidation_distance`: {what} leaves the liquidation price "
                        f"{_pct(o.liq_distance_after)} above the mark, below {_pct(spec.min_liquidation_distance)}"
                    ),
                )
            )
    if spec.max_turnover_usd_per_day is not None:
        planned = math.fsum(o.notional_usd for o in orders)
        total = turnover + planned
        if total > spec.max_turnover_usd_per_day:
            out.append(
                LimitBreach(
                    limit="max_turnover_usd_per_day",
                    subject="plan",
                    value=total,
                    bound=spec.max_turnover_usd_per_day,
                    message=(
                        f"limit `max_turnover_usd_per_day`: {_usd(turnover)} USD traded in the last 24 h plus "
                        f"{_usd(planned)} USD planned is {_usd(total)} USD, above {_usd(spec.max_turnover_usd_per_day)}"
                    ),
                )
            )
    return out
