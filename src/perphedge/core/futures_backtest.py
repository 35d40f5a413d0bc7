"""Kernel of a short hedge held on dated futures with a roll policy, and the same hedge on the perpetual.

Pure: plain lists in, a result out. Daily bars; everything a step uses is known at the bar's close.

Mechanics (identical for both variants, so the comparison isolates funding vs basis):

* the hedge is a short of ``target_usd[t]`` (USD notional, known at the close of day ``t``), opened at
  the first bar's close and re-sized to the target only when the dated leg rolls (the perpetual variant
  re-sizes on the same days);
* dated leg: it opens on the nearest contract with more than ``roll_days`` days to delivery; on the
  first bar whose close is at or after ``expiry − roll_days`` it buys the near contract back at
  ``F_near·(1 + slippage)`` and sells the next listed one at ``F_far·(1 − slippage)``, each leg paying
  ``fee_rate`` of its value (see :func:`perphedge.core.futures.roll_trade`);
* perpetual leg: receives ``−s·value·rate`` at every funding settlement inside ``(previous close,
  this close]`` (value at the perpetual's close of that day), pays the same fees and slippage when
  it re-sizes;
* collateral is ``notional / leverage`` in the settle asset (coin for inverse, bought with cash at spot;
  quote for linear); when the leg re-sizes the account is brought back to exactly that collateral, its
  realised PnL, funding and fees settling to (or drawn from) cash at spot; a leg whose equity at the
  day's high falls to its maintenance margin is liquidated: it loses its collateral and stays closed
  (reported);
* amounts in coin are valued in USD at spot's close.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from perphedge.core import futures as F
from perphedge.core.contracts import Side, pnl
from perphedge.core.instruments import ContractKind
from perphedge.errors import ConfigError, DataError

__all__ = ["ContractSeries", "LegResult", "RollEvent", "simulate_dated", "simulate_perpetual"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractSeries:
    """One dated contract's daily closes and highs by bar index (``None`` where it has no bar)."""

    symbol: str
    expiry_ms: int
    close: Sequence[float | None]
    high: Sequence[float | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class RollEvent:
    """One roll (or the opening, ``from_contract`` empty) of the dated leg."""

    day: int
    from_contract: str
    to_contract: str
    near_price: float | None
    far_price: float
    spot: float
    near_basis: float | None
    far_basis: float
    far_days_to_expiry: float
    fees_usd: float
    slippage_usd: float
    notional_usd: float


@dataclass(slots=True, kw_only=True)
class LegResult:
    """Daily USD series of one hedge variant and its totals."""

    book_usd: list[float]  # hedge account (collateral + PnL) in USD, less the cash paid for collateral, each close
    funding_usd: list[float]  # cumulative funding received (perpetual; zeros for dated), USD
    fees_usd: float = 0.0
    slippage_usd: float = 0.0
    rolls: list[RollEvent] = field(default_factory=list)
    liquidated_day: int | None = None
    liquidation_loss_usd: float = 0.0


def _value(kind: ContractKind, size: float, price: float) -> float:
    return size / price if kind is ContractKind.INVERSE else size * price


def _size_for(kind: ContractKind, notional_usd: float, price: float) -> float:
    """Position size (``Q`` USD for inverse, ``q`` coin for linear) of ``notional_usd`` at ``price``."""
    return notional_usd if kind is ContractKind.INVERSE else notional_usd / price


def _check_common(n: int, spot: Sequence[float], target_usd: Sequence[float], leverage: float, fee: float) -> None:
    if n < 2:
        raise DataError("a dated-futures backtest needs at least two daily bars")
    if len(spot) != n or len(target_usd) != n:
        raise ConfigError("spot, target and day lists must have the same length")
    if not (math.isfinite(leverage) and leverage >= 1):
        raise ConfigError(f"invalid `leverage`: must be >= 1, was {leverage!r}")
    if not (math.isfinite(fee) and fee >= 0):
        raise ConfigError(f"invalid fee rate: must be >= 0, was {fee!r}")
    for i, (s, t) in enumerate(zip(spot, target_usd, strict=True)):
        if not (math.isfinite(s) and s > 0):
            raise DataError(f"spot close of bar {i} must be > 0, was {s!r}")
        if not (math.isfinite(t) and t >= 0):
            raise ConfigError(f"hedge target of bar {i} must be >= 0 USD, was {t!r}")


class _Account:
    """A short of ``size`` at ``entry`` with ``collateral`` (settle asset)."""

    def __init__(self, kind: ContractKind, mm: Callable[[float], float]) -> None:
        self.kind = kind
        self.mm = mm
        self.size = 0.0
        self.entry = 0.0
        self.collateral = 0.0
        self.realised = 0.0  # settle asset: price PnL realised + funding − fees (beyond collateral)

    def equity(self, price: float) -> float:
        if self.size == 0:
            return self.collateral + self.realised
        return self.collateral + self.realised + pnl(self.kind, Side.SHORT, self.size, self.entry, price)

    def breached(self, high: float) -> bool:
        if self.size == 0:
            return False
        return self.equity(high) <= self.mm(_value(self.kind, self.size, high))


def _usd(kind: ContractKind, amount: float, spot: float) -> float:
    return amount * spot if kind is ContractKind.INVERSE else amount


def simulate_dated(
    *,
    kind: ContractKind,
    day_ms: Sequence[int],
    spot: Sequence[float],
    contracts: Sequence[ContractSeries],
    target_usd: Sequence[float],
    roll_days: int,
    leverage: float,
    fee_rate: float,
    slippage_bps: float,
    maintenance_margin: Callable[[float], float],
) -> LegResult:
    """Short hedge on dated futures rolled ``roll_days`` before each delivery (see the module docstring)."""
    n = len(day_ms)
    _check_common(n, spot, target_usd, leverage, fee_rate)
    if isinstance(roll_days, bool) or not isinstance(roll_days, int) or roll_days < 1:
        raise ConfigError(f"invalid `roll.days_before_expiry`: must be a whole number >= 1, was {roll_days!r}")
    slip = slippage_bps / 10_000.0
    ordered = sorted(contracts, key=lambda c: c.expiry_ms)

    def close_ms(i: int) -> int:
        return day_ms[i] + F.DAY_MS

    def pick(i: int, after_ms: int) -> ContractSeries:
        """The nearest contract quoted at bar ``i`` delivering more than ``roll_days`` after its close."""
        limit = close_ms(i) + roll_days * F.DAY_MS
        for c in ordered:
            if c.expiry_ms > max(after_ms, limit) and c.close[i] is not None:
                return c
        day = _date(day_ms[i])
        raise DataError(
            f"no listed contract quoted on {day} delivers more than {roll_days} days later: nothing to "
            "open or roll into (shorten `roll.days_before_expiry` or the period)"
        )

    acct = _Account(kind, maintenance_margin)
    res = LegResult(book_usd=[0.0] * n, funding_usd=[0.0] * n)
    cash = 0.0  # USD paid for collateral (negative) or released back
    current: ContractSeries | None = None
    for i in range(n):
        s = spot[i]
        if res.liquidated_day is None and current is not None:
            high = current.high[i]
            price = current.close[i]
            if price is None or high is None:
                raise DataError(f"{current.symbol} has no bar on {_date(day_ms[i])} while the hedge holds it")
            if acct.breached(max(high, price)):
                res.liquidated_day = i
                res.liquidation_loss_usd = _usd(kind, acct.collateral + acct.realised, s)
                acct.size = 0.0
                acct.collateral = 0.0
                acct.realised = 0.0
        if res.liquidated_day is None:
            due = current is None or close_ms(i) >= F.roll_date_ms(current.expiry_ms, roll_days)
            if due and i < n - 1:
                nxt = pick(i, current.expiry_ms if current is not None else 0)
                far = nxt.close[i]
                assert far is not None
                notional = target_usd[i]
                near_price = None if current is None else current.close[i]
                fees = 0.0
                slip_cost = 0.0
                if current is not None and near_price is not None and acct.size > 0:
                    buy = near_price * (1 + slip)
                    acct.realised += pnl(kind, Side.SHORT, acct.size, acct.entry, buy)
                    fee = fee_rate * _value(kind, acct.size, buy)
                    slip_cost += pnl(kind, Side.SHORT, acct.size, acct.entry, near_price) - pnl(
                        kind, Side.SHORT, acct.size, acct.entry, buy
                    )
                    acct.realised -= fee
                    fees += fee
                sell = far * (1 - slip)
                size = _size_for(kind, notional, far)
                fee = fee_rate * _value(kind, size, sell)
                acct.realised -= fee
                fees += fee
                slip_cost += abs(pnl(kind, Side.SHORT, size, sell, far))
                # collateral: notional / leverage in the settle asset, topped up or released at the roll
                want = _value(kind, size, far) / leverage
                cash -= _usd(kind, want - (acct.collateral + acct.realised), s)  # realised PnL settles to cash
                acct.collateral = want
                acct.realised = 0.0
                acct.size = size
                acct.entry = sell
                res.fees_usd += _usd(kind, fees, s)
                res.slippage_usd += _usd(kind, slip_cost, s)
                res.rolls.append(
                    RollEvent(
                        day=i,
                        from_contract="" if current is None else current.symbol,
                        to_contract=nxt.symbol,
                        near_price=near_price,
                        far_price=far,
                        spot=s,
                        near_basis=None if near_price is None else F.basis(near_price, s),
                        far_basis=F.basis(far, s),
                        far_days_to_expiry=F.days_to_expiry(close_ms(i), nxt.expiry_ms),
                        fees_usd=_usd(kind, fees, s),
                        slippage_usd=_usd(kind, slip_cost, s),
                        notional_usd=notional,
                    )
                )
                current = nxt
        price_now = None if current is None else current.close[i]
        equity = acct.equity(price_now) if price_now is not None else acct.collateral + acct.realised
        res.book_usd[i] = _usd(kind, equity, s) + cash
    return res


def simulate_perpetual(
    *,
    kind: ContractKind,
    day_ms: Sequence[int],
    spot: Sequence[float],
    close: Sequence[float],
    high: Sequence[float],
    funding_ms: Sequence[int],
    funding_rate: Sequence[float],
    resize_days: Sequence[int],
    target_usd: Sequence[float],
    leverage: float,
    fee_rate: float,
    slippage_bps: float,
    maintenance_margin: Callable[[float], float],
) -> LegResult:
    """The same short on the perpetual: opened on bar 0, re-sized on ``resize_days``, funding at each settlement."""
    n = len(day_ms)
    _check_common(n, spot, target_usd, leverage, fee_rate)
    if len(close) != n or len(high) != n:
        raise ConfigError("perpetual closes and highs must cover every bar")
    slip = slippage_bps / 10_000.0
    resize = set(resize_days) | {0}
    acct = _Account(kind, maintenance_margin)
    res = LegResult(book_usd=[0.0] * n, funding_usd=[0.0] * n)
    funded = 0.0
    cash = 0.0
    for i in range(n):
        s, p = spot[i], close[i]
        if res.liquidated_day is None and acct.size > 0:
            lo = bisect.bisect_right(funding_ms, day_ms[i - 1] + F.DAY_MS) if i > 0 else 0
            hi = bisect.bisect_right(funding_ms, day_ms[i] + F.DAY_MS)
            for j in range(lo, hi):  # value at this close: the day's settlements, at the close's mark
                got = _value(kind, acct.size, p) * funding_rate[j]  # a short receives a positive rate
                acct.realised += got
                funded += _usd(kind, got, s)
            if acct.breached(max(high[i], p)):
                res.liquidated_day = i
                res.liquidation_loss_usd = _usd(kind, acct.collateral + acct.realised, s)
                acct.size = acct.collateral = acct.realised = 0.0
        if res.liquidated_day is None and i in resize and i < n - 1:
            fees = 0.0
            slip_cost = 0.0
            if acct.size > 0:
                buy = p * (1 + slip)
                acct.realised += pnl(kind, Side.SHORT, acct.size, acct.entry, buy)
                fee = fee_rate * _value(kind, acct.size, buy)
                slip_cost += pnl(kind, Side.SHORT, acct.size, acct.entry, p) - pnl(
                    kind, Side.SHORT, acct.size, acct.entry, buy
                )
                acct.realised -= fee
                fees += fee
            sell = p * (1 - slip)
            size = _size_for(kind, target_usd[i], p)
            fee = fee_rate * _value(kind, size, sell)
            acct.realised -= fee
            fees += fee
            slip_cost += abs(pnl(kind, Side.SHORT, size, sell, p))
            want = _value(kind, size, p) / leverage
            cash -= _usd(kind, want - (acct.collateral + acct.realised), s)  # realised PnL settles to cash
            acct.collateral = want
            acct.realised = 0.0
            acct.size = size
            acct.entry = sell
            res.fees_usd += _usd(kind, fees, s)
            res.slippage_usd += _usd(kind, slip_cost, s)
        res.book_usd[i] = _usd(kind, acct.equity(p), s) + cash
        res.funding_usd[i] = funded
    return res


def _date(ms: int) -> str:
    days = ms // F.DAY_MS
    import datetime as _dt  # stdlib date arithmetic, no clock

    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=days)).isoformat()
