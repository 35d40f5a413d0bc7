"""Dated (delivery) futures: expiry, basis, carry to expiry, roll and settlement arithmetic.

Pure functions, no I/O. Times are epoch milliseconds UTC; prices are USD per coin; a year is
365 days (``basis_annualized = basis · 365 / days_to_expiry``, simple, not compounded).

Conventions
-----------
* **Basis** of a future at price ``F`` against spot ``S``: ``b = F/S − 1`` (positive = contango).
* **Days to expiry** are counted from the *close* of a bar (``bar_open + timeframe``) to delivery.
* **Carry of a short hedger** who sells the future at ``F0`` against spot ``S0`` and holds to
  delivery is the basis locked at entry: the future converges to spot at delivery, so the hedge earns
  ``b0`` of the spot notional (exactly for a linear contract; for an inverse one in coin, see
  :func:`inverse_hedge_usd_pnl`). Annualised over the days held, it is compared with the funding a
  short perpetual would have received over the same days.
* **Inverse** contracts have a USD face value ``Q`` (PnL ``s·Q·(1/E − 1/P)`` coin); **linear** ones a
  coin quantity ``q`` (PnL ``s·q·(P − E)`` quote).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from perphedge.core.contracts import Side, pnl
from perphedge.core.instruments import ContractKind
from perphedge.errors import ConfigError

__all__ = [
    "DAYS_PER_YEAR",
    "DAY_MS",
    "RollTrade",
    "annualize",
    "annualized_basis",
    "basis",
    "check_horizon",
    "check_roll_days",
    "days_to_expiry",
    "inverse_hedge_usd_pnl",
    "linear_hedge_pnl",
    "next_expiry",
    "percentile",
    "roll_date_ms",
    "roll_trade",
    "settlement_pnl",
]

DAY_MS = 86_400_000
DAYS_PER_YEAR = 365.0


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"invalid `{name}`: must be a finite number, was {value!r}")
    return float(value)


def _positive(name: str, value: float) -> float:
    number = _finite(name, value)
    if number <= 0:
        raise ConfigError(f"invalid `{name}`: must be > 0, was {value!r}")
    return number


def _non_negative(name: str, value: float) -> float:
    number = _finite(name, value)
    if number < 0:
        raise ConfigError(f"invalid `{name}`: must be >= 0, was {value!r}")
    return number


def _ms(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"invalid `{name}`: must be epoch milliseconds (an integer), was {value!r}")
    return value


def basis(future_price: float, spot_price: float) -> float:
    """Basis ``F/S − 1`` of a future at ``future_price`` against ``spot_price`` (both USD per coin)."""
    return _positive("future_price", future_price) / _positive("spot_price", spot_price) - 1.0


def days_to_expiry(at_ms: int, expiry_ms: int) -> float:
    """Days (fractional) from ``at_ms`` (e.g. a bar's close) to delivery at ``expiry_ms``.

    Raises ConfigError when the contract has already delivered (``at_ms >= expiry_ms``).
    """
    at = _ms("at_ms", at_ms)
    expiry = _ms("expiry_ms", expiry_ms)
    if at >= expiry:
        raise ConfigError(
            f"contract expired: delivery was {(at - expiry) / DAY_MS:.4g} days before the time asked "
            f"(expiry {expiry} ms, at {at} ms)"
        )
    return (expiry - at) / DAY_MS


def annualize(fraction: float, days: float) -> float:
    """A return ``fraction`` earned over ``days`` as a simple yearly rate: ``fraction · 365 / days``."""
    return _finite("fraction", fraction) * DAYS_PER_YEAR / _positive("days", days)


def annualized_basis(future_price: float, spot_price: float, days: float) -> float:
    """``basis · 365 / days``: the basis as a simple yearly rate over the days left to delivery."""
    return annualize(basis(future_price, spot_price), days)


def settlement_pnl(
    kind: ContractKind | str, side: Side | str, size: float, entry: float, settlement_price: float
) -> float:
    """PnL in the settle asset of a position held to delivery at ``settlement_price``.

    ``size`` is the USD face value ``Q`` (inverse: PnL ``s·Q·(1/E − 1/P)`` coin) or the coin quantity
    ``q`` (linear: ``s·q·(P − E)`` quote).
    """
    return pnl(kind, side, _non_negative("size", size), entry, settlement_price)


def linear_hedge_pnl(
    quantity: float,
    spot_entry: float,
    future_entry: float,
    settlement_price: float,
    *,
    entry_fee_rate: float = 0.0,
    delivery_fee_rate: float = 0.0,
) -> float:
    """Quote PnL of ``quantity`` coin held spot and a linear future of the same quantity sold at
    ``future_entry``, held to delivery at ``settlement_price``, after the future's fees.

    Equals ``basis · quantity · spot_entry`` less ``entry_fee_rate · q · F0`` and
    ``delivery_fee_rate · q · P_settle``, whatever the settlement price.
    """
    q = _non_negative("quantity", quantity)
    spot_pnl = q * (_positive("settlement_price", settlement_price) - _positive("spot_entry", spot_entry))
    future_pnl = settlement_pnl(ContractKind.LINEAR, Side.SHORT, q, future_entry, settlement_price)
    fees = q * future_entry * _non_negative("entry_fee_rate", entry_fee_rate)
    fees += q * settlement_price * _non_negative("delivery_fee_rate", delivery_fee_rate)
    return spot_pnl + future_pnl - fees


def inverse_hedge_usd_pnl(
    notional_usd: float, spot_entry: float, future_entry: float, settlement_price: float
) -> float:
    """USD PnL of ``Q/S0`` coin held spot and an inverse future of ``Q`` USD sold at ``F0``, held to
    delivery at ``S_T``, all valued in USD at ``S_T`` (no fees).

    ``Q·S_T·(1/S0 − 1/F0)``: unlike the linear case the locked basis is earned *in coin*
    (``Q·(1/S0 − 1/F0)``), so its USD value depends on the final price.
    """
    q = _non_negative("notional_usd", notional_usd)
    s0 = _positive("spot_entry", spot_entry)
    st = _positive("settlement_price", settlement_price)
    coins = q / s0
    future_coin = settlement_pnl(ContractKind.INVERSE, Side.SHORT, q, future_entry, st)
    return (coins + future_coin) * st - q


def next_expiry(expiries_ms: Sequence[int], after_ms: int) -> int:
    """The first listed expiry strictly after ``after_ms``; ConfigError when none is listed."""
    after = _ms("after_ms", after_ms)
    later = sorted(e for e in expiries_ms if _ms("expiry_ms", e) > after)
    if not later:
        raise ConfigError(f"no listed contract expires after {after} ms: cannot roll into a next contract")
    return later[0]


def roll_date_ms(expiry_ms: int, roll_days_before_expiry: int) -> int:
    """The day the position is rolled: ``roll_days_before_expiry`` whole days before delivery."""
    return _ms("expiry_ms", expiry_ms) - roll_days_before_expiry * DAY_MS


def check_roll_days(
    roll_days_before_expiry: object, contract_life_days: float, where: str = "roll_days_before_expiry"
) -> int:
    """Validate a roll distance: a whole number of days, >= 1, and shorter than the contract's life."""
    if isinstance(roll_days_before_expiry, bool) or not isinstance(roll_days_before_expiry, int):
        raise ConfigError(f"invalid `{where}`: must be a whole number of days, was {roll_days_before_expiry!r}")
    life = _positive("contract_life_days", contract_life_days)
    if roll_days_before_expiry < 1:
        raise ConfigError(f"invalid `{where}`: must be >= 1 (roll before delivery), was {roll_days_before_expiry}")
    if roll_days_before_expiry >= life:
        raise ConfigError(
            f"invalid `{where}`: must be shorter than the contract's life ({life:g} days), "
            f"was {roll_days_before_expiry}: the position would roll before it was opened"
        )
    return roll_days_before_expiry


def check_horizon(start_ms: int, horizon_days: float, expiry_ms: int, *, roll: bool) -> float:
    """Days the hedge is held on this contract: ``horizon_days``, refused past expiry unless it rolls.

    Returns the days covered by the locked basis (``min(horizon, days to expiry)``).
    """
    horizon = _positive("horizon_days", horizon_days)
    left = days_to_expiry(start_ms, expiry_ms)
    if horizon > left + 1e-9 and not roll:
        raise ConfigError(
            f"invalid `--horizon`: {horizon:g} days runs past the contract's delivery in {left:.4g} days; "
            "shorten it, pick a later expiry, or plan a roll"
        )
    return min(horizon, left)


@dataclass(frozen=True, slots=True, kw_only=True)
class RollTrade:
    """The two trades of a roll of a short from the near contract into the next one.

    All amounts are in the settle asset (coin for inverse, quote for linear).

    Attributes
    ----------
    buy_near_price, sell_far_price
        Fill prices after slippage: the near short is bought back above ``near_price``, the far one
        sold below ``far_price``.
    fees
        Both legs' fees (``rate · value`` each, value at the fill price).
    slippage_cost
        What slippage cost against trading at the quoted prices (both legs).
    near_pnl
        Realised PnL of the near short from ``near_entry`` to ``buy_near_price``.
    calendar_spread
        ``far_price / near_price − 1``: the extra basis sold by rolling.
    """

    buy_near_price: float
    sell_far_price: float
    fees: float
    slippage_cost: float
    near_pnl: float
    calendar_spread: float


def roll_trade(
    kind: ContractKind | str,
    size: float,
    near_entry: float,
    near_price: float,
    far_price: float,
    *,
    fee_rate: float,
    slippage_bps: float = 0.0,
) -> RollTrade:
    """Roll a short of ``size`` (USD face ``Q`` inverse, coin ``q`` linear) from the near contract
    (entered at ``near_entry``, quoted ``near_price`` on the roll day) into the next (``far_price``).

    Both legs pay ``fee_rate`` on their value at the fill price and lose ``slippage_bps`` of the price.
    """
    k = ContractKind(kind)
    q = _positive("size", size)
    near = _positive("near_price", near_price)
    far = _positive("far_price", far_price)
    rate = _non_negative("fee_rate", fee_rate)
    slip = _non_negative("slippage_bps", slippage_bps) / 10_000.0
    if slip >= 1:
        raise ConfigError(f"invalid `slippage_bps`: must be < 10000, was {slippage_bps!r}")
    buy = near * (1.0 + slip)
    sell = far * (1.0 - slip)
    if k is ContractKind.INVERSE:
        fees = rate * q / buy + rate * q / sell
    else:
        fees = rate * q * buy + rate * q * sell
    ideal = settlement_pnl(k, Side.SHORT, q, near_entry, near)
    near_pnl = settlement_pnl(k, Side.SHORT, q, near_entry, buy)
    # the far leg's slippage is a loss against selling at the quote, valued at the same close as the near leg's
    far_slip = (q / sell - q / far) if k is ContractKind.INVERSE else q * (far - sell)
    slippage_cost = (ideal - near_pnl) + far_slip
    return RollTrade(
        buy_near_price=buy,
        sell_far_price=sell,
        fees=fees,
        slippage_cost=slippage_cost,
        near_pnl=near_pnl,
        calendar_spread=far / near - 1.0,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile ``q`` in [0, 100] of ``values`` (numpy's default method)."""
    if not values:
        raise ConfigError("invalid `values`: at least one value is needed for a percentile")
    if not 0 <= q <= 100:
        raise ConfigError(f"invalid percentile: must be in [0, 100], was {q!r}")
    xs = sorted(_finite("value", v) for v in values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
