"""DeFi positions: liquidity pools (Uniswap v2 and v3), liquid-staking tokens, lending.

A position's hedge is sized on its *delta*, not its value. Every position here answers, at any USD
prices (floats, or numpy arrays of prices for a whole history at once):

* ``amounts``: signed coin amounts it holds (lending: supplied minus borrowed);
* ``value_usd``: what it is worth in USD;
* ``delta_usd``: per non-stable asset, the USD change of its value for a +100% linearised move of that
  asset's USD price alone (``∂V/∂p_i · p_i``);

Pool maths (a pair ``base/quote``, the pool price ``P = p_base / p_quote`` in quote per base):

* **v2** (constant product, Uniswap v2 whitepaper): ``x·y = L²``, so ``x = L/√P`` and ``y = L·√P``;
  value ``2·L·√P`` (quote), half in each token.
* **v3** (concentrated liquidity on ``[p_a, p_b]``, Uniswap v3 whitepaper eq. 6.29–6.30): with
  ``P' = clip(P, p_a, p_b)``, ``x = L·(1/√P' − 1/√p_b)`` and ``y = L·(√P' − √p_a)``: all base below
  the range, all quote above it.

For both, the delta in each token is the amount of it the pool holds now (the pool's amounts move
along its curve with ``P·dx/dP + dy/dP = 0``, so ``dV/dp_base = x``). LPs are short gamma:
``dx/dP = −L/(2·P^{3/2})`` inside the range (0 outside), so a static hedge drifts. Impermanent loss is
the pool's value minus the value of holding today's amounts; for v2 after a price ratio ``r`` it is
``2√r/(1+r) − 1`` of the held value (≤ 0).

Lending (Aave-style): health factor ``HF = Σ collateral_usd · LT / Σ debt_usd``; the position can be
liquidated when ``HF < 1``. A liquidation (assumed full, conservative) costs the bonus on the debt repaid.

Staked tokens (stETH, rETH, JitoSOL): ``quantity × rate`` of the underlying, so their delta is the
underlying's; a depeg (the token's own move against its underlying) is a risk a perpetual on the
underlying does not hedge.

Pure: no I/O; prices are passed in; errors are :class:`~perphedge.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

from perphedge.core.units import is_stablecoin, normalise_asset
from perphedge.errors import ConfigError

__all__ = [
    "AMOUNTS_PRICE_TOLERANCE",
    "DEFAULT_LIQUIDATION_BONUS",
    "FloatArray",
    "LendingPosition",
    "LpV2Position",
    "LpV3Position",
    "Position",
    "PositionKind",
    "StakedPosition",
    "health_factor",
    "hedged_move_pnl_usd",
    "impermanent_loss_v2",
    "v2_amounts",
    "v2_liquidity",
    "v3_amounts",
    "v3_gamma",
    "v3_implied_price",
    "v3_liquidity_from_amounts",
    "v3_value",
]

FloatArray: TypeAlias = npt.NDArray[np.float64]
PriceLike: TypeAlias = float | FloatArray

#: Largest relative gap between the pool price implied by stated amounts and the market price.
AMOUNTS_PRICE_TOLERANCE = 0.02
#: Liquidation bonus assumed when a lending position does not state one (Aave v3 ETH: 5%).
DEFAULT_LIQUIDATION_BONUS = 0.05


class PositionKind(StrEnum):
    """The position kinds of a portfolio file's ``positions:``."""

    LP_V2 = "lp_v2"
    LP_V3 = "lp_v3"
    STAKED = "staked"
    LENDING = "lending"


def _arr(x: PriceLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"invalid `{name}`: must be a finite number > 0, was {value!r}")
    return float(value)


# ------------------------------------------------------------------------------------------ pool maths


def v2_liquidity(x: float, y: float) -> float:
    """Liquidity ``L = √(x·y)`` of a constant-product position holding ``x`` base and ``y`` quote."""
    return math.sqrt(x * y)


def v2_amounts(liquidity: float, price: PriceLike) -> tuple[FloatArray, FloatArray]:
    """Amounts ``(x, y) = (L/√P, L·√P)`` of a v2 position at pool price ``P`` (quote per base)."""
    sp = np.sqrt(_arr(price))
    return liquidity / sp, liquidity * sp


def v3_amounts(liquidity: float, p_a: float, p_b: float, price: PriceLike) -> tuple[FloatArray, FloatArray]:
    """Amounts ``(x, y)`` of a v3 position on ``[p_a, p_b]`` at pool price ``P`` (quote per base).

    In range ``x = L(1/√P − 1/√p_b)``, ``y = L(√P − √p_a)``; below ``p_a`` all base
    ``x = L(1/√p_a − 1/√p_b)``; above ``p_b`` all quote ``y = L(√p_b − √p_a)``.
    """
    sp = np.sqrt(np.clip(_arr(price), p_a, p_b))
    return liquidity * (1.0 / sp - 1.0 / math.sqrt(p_b)), liquidity * (sp - math.sqrt(p_a))


def v3_value(liquidity: float, p_a: float, p_b: float, price: PriceLike) -> FloatArray:
    """Value ``x·P + y`` of a v3 position, in quote units, at pool price ``P``."""
    x, y = v3_amounts(liquidity, p_a, p_b, price)
    return x * _arr(price) + y


def v3_gamma(liquidity: float, p_a: float, p_b: float, price: PriceLike) -> FloatArray:
    """``dx/dP`` (base per unit of quote price): ``−L/(2·P^{3/2})`` inside the range, 0 outside."""
    p = _arr(price)
    inside = (p > p_a) & (p < p_b)
    return np.where(inside, -liquidity / (2.0 * p**1.5), 0.0)


def v3_implied_price(x: float, y: float, p_a: float, p_b: float) -> float:
    """The pool price at which a v3 position on ``[p_a, p_b]`` holds ``x`` base and ``y`` quote (both > 0).

    Solves ``y/x = (√P − √p_a)/(1/√P − 1/√p_b)`` for ``√P``: with ``k = y/x`` this is the quadratic
    ``s² + (k/√p_b − √p_a)·s − k = 0`` in ``s = √P``, whose positive root is in ``(√p_a, √p_b)``.
    """
    k = y / x
    b = k / math.sqrt(p_b) - math.sqrt(p_a)
    s = (-b + math.sqrt(b * b + 4.0 * k)) / 2.0
    return s * s


def v3_liquidity_from_amounts(x: float, y: float, p_a: float, p_b: float, price: float) -> float:
    """Liquidity of a v3 position holding ``x`` base and ``y`` quote at pool price ``price``.

    Out of range one token is zero (``x = 0`` above the range, ``y = 0`` below) and ``L`` follows from
    the other; in range the two amounts fix the pool price ``P*`` they were read at
    (:func:`v3_implied_price`) and ``L = (x·P* + y)/(2√P* − P*/√p_b − √p_a)`` exactly, then the
    position is valued at ``price``. Refused (ConfigError, without the field name: the caller adds it):
    amounts that do not fit the range at this price — both tokens out of range, one token in range, or a
    pool price implied by the two amounts more than :data:`AMOUNTS_PRICE_TOLERANCE` away.
    """
    sa, sb = math.sqrt(p_a), math.sqrt(p_b)
    if x < 0 or y < 0 or (x == 0 and y == 0):
        raise ConfigError(f"amounts must be >= 0 and not both 0, were {x:g} and {y:g}")
    if price <= p_a:
        if y > 0:
            raise ConfigError(
                f"at price {price:g} the position is below its range [{p_a:g}, {p_b:g}] and holds only the "
                f"first token: it cannot hold {y:g} of the second (check the range, the amounts and the price)"
            )
        return x / (1.0 / sa - 1.0 / sb)
    if price >= p_b:
        if x > 0:
            raise ConfigError(
                f"at price {price:g} the position is above its range [{p_a:g}, {p_b:g}] and holds only the "
                f"second token: it cannot hold {x:g} of the first (check the range, the amounts and the price)"
            )
        return y / (sb - sa)
    if x == 0 or y == 0:
        side = "second" if x == 0 else "first"
        raise ConfigError(
            f"at price {price:g} the position is inside its range [{p_a:g}, {p_b:g}] and holds both tokens, "
            f"but only the {side} one is given (an in-range position holds both; check the amounts and the price)"
        )
    implied = v3_implied_price(x, y, p_a, p_b)
    gap = implied / price - 1.0
    if abs(gap) > AMOUNTS_PRICE_TOLERANCE:
        raise ConfigError(
            f"the amounts imply a pool price of {implied:.6g} on the range [{p_a:g}, {p_b:g}], "
            f"{gap:+.1%} from the price {price:g} (more than ±{AMOUNTS_PRICE_TOLERANCE:.0%}): restate the amounts "
            "at today's price, or give `liquidity`"
        )
    # L is what the chain holds: exact from the two amounts at the pool price they imply (both forms of
    # eq. 6.29/6.30 agree there); the position is then valued at the market ``price``
    si = math.sqrt(implied)
    return (x * implied + y) / (2.0 * si - implied / sb - sa)


def impermanent_loss_v2(price_ratio: PriceLike) -> FloatArray:
    """Impermanent loss of a v2 position as a fraction of holding: ``2√r/(1+r) − 1`` (≤ 0) for ``r = P1/P0``."""
    r = _arr(price_ratio)
    return 2.0 * np.sqrt(r) / (1.0 + r) - 1.0


def health_factor(collateral_usd: float, debt_usd: float, liquidation_threshold: float) -> float | None:
    """Aave health factor ``collateral·LT / debt``; None without debt (it cannot be liquidated)."""
    if debt_usd <= 0:
        return None
    return collateral_usd * liquidation_threshold / debt_usd


# ------------------------------------------------------------------------------------------ prices


def _price(prices: Mapping[str, PriceLike], asset: str) -> FloatArray:
    if asset in prices:
        return _arr(prices[asset])
    if is_stablecoin(asset):
        return _arr(1.0)
    raise ConfigError(f"no price for {asset}: add it under `prices:` (USD per {asset})")


class Position(Protocol):
    """What every DeFi position answers (USD prices as floats or numpy arrays)."""

    @property
    def kind(self) -> PositionKind: ...
    @property
    def label(self) -> str: ...
    @property
    def group(self) -> str | None: ...
    @property
    def assets(self) -> tuple[str, ...]: ...
    def amounts(self, prices: Mapping[str, PriceLike]) -> dict[str, FloatArray]: ...
    def value_usd(self, prices: Mapping[str, PriceLike]) -> FloatArray: ...
    def delta_usd(self, prices: Mapping[str, PriceLike]) -> dict[str, FloatArray]: ...
    def scaled(self, factor: float) -> Position: ...


def _delta_from_amounts(amounts: Mapping[str, FloatArray], prices: Mapping[str, PriceLike]) -> dict[str, FloatArray]:
    """USD delta of each non-stable asset held in ``amounts`` (coin × USD price)."""
    return {a: q * _price(prices, a) for a, q in amounts.items() if not is_stablecoin(a)}


def _pair(base: str, quote: str) -> tuple[str, str]:
    b, q = normalise_asset(base), normalise_asset(quote)
    if b == q:
        raise ConfigError(f"invalid `pair`: must name two different assets, was [{b}, {q}]")
    return b, q


# ------------------------------------------------------------------------------------------ LP v2


@dataclass(frozen=True, slots=True, kw_only=True)
class LpV2Position:
    """A constant-product (Uniswap v2) pool share: ``liquidity`` ``L = √(x·y)`` in token units."""

    base: str
    quote: str
    liquidity: float
    group: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        b, q = _pair(self.base, self.quote)
        object.__setattr__(self, "base", b)
        object.__setattr__(self, "quote", q)
        object.__setattr__(self, "liquidity", _positive("liquidity", self.liquidity))

    @property
    def kind(self) -> PositionKind:
        return PositionKind.LP_V2

    @property
    def label(self) -> str:
        return self.name or f"{self.base}/{self.quote} v2 LP"

    @property
    def assets(self) -> tuple[str, ...]:
        return (self.base, self.quote)

    def pool_price(self, prices: Mapping[str, PriceLike]) -> FloatArray:
        """Pool price ``P = p_base / p_quote`` (quote per base)."""
        return _price(prices, self.base) / _price(prices, self.quote)

    def amounts(self, prices: Mapping[str, PriceLike]) -> dict[str, FloatArray]:
        x, y = v2_amounts(self.liquidity, self.pool_price(prices))
        return {self.base: x, self.quote: y}

    def value_usd(self, prices: Mapping[str, PriceLike]) -> FloatArray:
        return 2.0 * self.liquidity * np.sqrt(_price(prices, self.base) * _price(prices, self.quote))

    def delta_usd(self, prices: Mapping[str, PriceLike]) -> dict[str, FloatArray]:
        return _delta_from_amounts(self.amounts(prices), prices)

    def gamma(self, prices: Mapping[str, PriceLike]) -> FloatArray:
        """``dx/dP`` = ``−L/(2·P^{3/2})`` (base per unit of pool price)."""
        p = self.pool_price(prices)
        return -self.liquidity / (2.0 * p**1.5)

    def scaled(self, factor: float) -> LpV2Position:
        return LpV2Position(
            base=self.base, quote=self.quote, liquidity=self.liquidity * factor, group=self.group, name=self.name
        )

    @classmethod
    def from_amounts(cls, *, base: str, quote: str, x: float, y: float, price: float, **kw: str | None) -> LpV2Position:
        """From the amounts a pool UI shows; refused when they imply a price off ``price`` (quote per base)."""
        _positive(f"amounts.{base}", x)
        _positive(f"amounts.{quote}", y)
        implied = y / x
        gap = implied / price - 1.0
        if abs(gap) > AMOUNTS_PRICE_TOLERANCE:
            raise ConfigError(
                f"the amounts imply a pool price of {implied:.6g} {quote} per {base}, {gap:+.1%} from the price "
                f"{price:g} (more than ±{AMOUNTS_PRICE_TOLERANCE:.0%}; a v2 pool holds equal values of both "
                "tokens): restate the amounts at today's price"
            )
        return cls(base=base, quote=quote, liquidity=v2_liquidity(x, y), **kw)


# ------------------------------------------------------------------------------------------ LP v3


@dataclass(frozen=True, slots=True, kw_only=True)
class LpV3Position:
    """A concentrated-liquidity (Uniswap v3) position on ``[p_a, p_b]`` (quote per base)."""

    base: str
    quote: str
    p_a: float
    p_b: float
    liquidity: float
    group: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        b, q = _pair(self.base, self.quote)
        object.__setattr__(self, "base", b)
        object.__setattr__(self, "quote", q)
        pa, pb = _positive("range[0]", self.p_a), _positive("range[1]", self.p_b)
        if pb <= pa:
            raise ConfigError(f"invalid `range`: the lower bound must be below the upper, was [{pa:g}, {pb:g}]")
        object.__setattr__(self, "p_a", pa)
        object.__setattr__(self, "p_b", pb)
        object.__setattr__(self, "liquidity", _positive("liquidity", self.liquidity))

    @property
    def kind(self) -> PositionKind:
        return PositionKind.LP_V3

    @property
    def label(self) -> str:
        return self.name or f"{self.base}/{self.quote} v3 LP [{self.p_a:g}, {self.p_b:g}]"

    @property
    def assets(self) -> tuple[str, ...]:
        return (self.base, self.quote)

    def pool_price(self, prices: Mapping[str, PriceLike]) -> FloatArray:
        """Pool price ``P = p_base / p_quote`` (quote per base)."""
        return _price(prices, self.base) / _price(prices, self.quote)

    def amounts(self, prices: Mapping[str, PriceLike]) -> dict[str, FloatArray]:
        x, y = v3_amounts(self.liquidity, self.p_a, self.p_b, self.pool_price(prices))
        return {self.base: x, self.quote: y}

    def value_usd(self, prices: Mapping[str, PriceLike]) -> FloatArray:
        return v3_value(self.liquidity, self.p_a, self.p_b, self.pool_price(prices)) * _price(prices, self.quote)

    def delta_usd(self, prices: Mapping[str, PriceLike]) -> dict[str, FloatArray]:
        return _delta_from_amounts(self.amounts(prices), prices)

    def gamma(self, prices: Mapping[str, PriceLike]) -> FloatArray:
        """``dx/dP`` (base per unit of pool price); 0 out of range."""
        return v3_gamma(self.liquidity, self.p_a, self.p_b, self.pool_price(prices))

    def range_status(self, prices: Mapping[str, PriceLike]) -> str:
        """``below`` (all base), ``in`` or ``above`` (all quote) at scalar prices."""
        p = float(self.pool_price(prices))
        return "below" if p <= self.p_a else "above" if p >= self.p_b else "in"

    @property
    def max_base(self) -> float:
        """Base held at or below the range: the largest delta (coin) the position can have."""
        return self.liquidity * (1.0 / math.sqrt(self.p_a) - 1.0 / math.sqrt(self.p_b))

    @property
    def max_quote(self) -> float:
        """Quote held at or above the range."""
        return self.liquidity * (math.sqrt(self.p_b) - math.sqrt(self.p_a))

    def scaled(self, factor: float) -> LpV3Position:
        return LpV3Position(
            base=self.base,
            quote=self.quote,
            p_a=self.p_a,
            p_b=self.p_b,
            liquidity=self.liquidity * factor,
            group=self.group,
            name=self.name,
        )


# ------------------------------------------------------------------------------------------ staked


@dataclass(frozen=True, slots=True, kw_only=True)
class StakedPosition:
    """``quantity`` of a liquid-staking token worth ``rate`` of ``underlying`` each (stETH, rETH, JitoSOL).

    ``depeg`` is an optional shock (a fraction, 0.05 = the token trades 5% below its underlying) shown as
    its own scenario; the token's own price is never read: it is ``rate × underlying``.
    """

    asset: str
    underlying: str
    quantity: float
    rate: float = 1.0
    depeg: float | None = None
    group: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        a, u = normalise_asset(self.asset), normalise_asset(self.underlying)
        if a == u:
            raise ConfigError(f"invalid `underlying`: must differ from the staked `asset` {a}, was {u}")
        if is_stablecoin(u):
            raise ConfigError(f"invalid `underlying`: {u} is a stablecoin (cash); a staked token tracks a coin")
        object.__setattr__(self, "asset", a)
        object.__setattr__(self, "underlying", u)
        object.__setattr__(self, "quantity", _positive("quantity", self.quantity))
        object.__setattr__(self, "rate", _positive("rate", self.rate))
        if self.depeg is not None:
            d = self.depeg
            if isinstance(d, bool) or not isinstance(d, int | float) or not math.isfinite(d) or not 0 < d < 1:
                raise ConfigError(f"invalid `depeg`: must be a fraction in (0, 1) (0.05 = 5% below), was {d!r}")
            object.__setattr__(self, "depeg", float(d))

    @property
    def kind(self) -> PositionKind:
        return PositionKind.STAKED

    @property
    def label(self) -> str:
        return self.name or f"{self.quantity:g} {self.asset} staked ({self.underlying})"

    @property
    def assets(self) -> tuple[str, ...]:
        return (self.underlying,)

    @property
    def underlying_quantity(self) -> float:
        """Units of the underlying the tokens are worth (``quantity × rate``)."""
        return self.quantity * self.rate

    def amounts(self, prices: Mapping[str, PriceLike]) -> dict[str, FloatArray]:
        return {self.asset: _arr(self.quantity)}

    def value_usd(self, prices: Mapping[str, PriceLike], depeg: PriceLike = 0.0) -> FloatArray:
        """Value at ``prices`` with the token ``depeg`` (fraction) below its underlying."""
        return self.underlying_quantity * _price(prices, self.underlying) * (1.0 - _arr(depeg))

    def delta_usd(self, prices: Mapping[str, PriceLike]) -> dict[str, FloatArray]:
        return {self.underlying: self.underlying_quantity * _price(prices, self.underlying)}

    def scaled(self, factor: float) -> StakedPosition:
        return StakedPosition(
            asset=self.asset,
            underlying=self.underlying,
            quantity=self.quantity * factor,
            rate=self.rate,
            depeg=self.depeg,
            group=self.group,
            name=self.name,
        )


# ------------------------------------------------------------------------------------------ lending


@dataclass(frozen=True, slots=True, kw_only=True)
class LendingPosition:
    """Collateral ``supplied`` and debt ``borrowed`` (asset → units) on an Aave-style market.

    ``liquidation_threshold`` (LT) is the share of the collateral's value that counts against the debt;
    ``liquidation_bonus`` the liquidator's discount on the collateral seized (None: assume
    :data:`DEFAULT_LIQUIDATION_BONUS`, stated by ``bonus_assumed``).
    """

    supplied: Mapping[str, float]
    borrowed: Mapping[str, float] = field(default_factory=dict)
    liquidation_threshold: float = 0.8
    liquidation_bonus: float | None = None
    group: str | None = None
    name: str | None = None
    bonus_assumed: bool = False

    def __post_init__(self) -> None:
        def clean(label: str, m: Mapping[str, float]) -> dict[str, float]:
            out: dict[str, float] = {}
            for k, v in m.items():
                a = normalise_asset(k)
                if a in out:
                    raise ConfigError(f"invalid `{label}`: {a} is given twice")
                out[a] = _positive(f"{label}.{a}", v)
            return out

        sup, bor = clean("supplied", self.supplied), clean("borrowed", self.borrowed)
        if not sup:
            raise ConfigError("invalid `supplied`: a lending position needs collateral")
        both = sorted(set(sup) & set(bor))
        if both:
            raise ConfigError(
                f"invalid `borrowed`: {both[0]} is both supplied and borrowed: give the net amount on one side"
            )
        lt = self.liquidation_threshold
        if isinstance(lt, bool) or not isinstance(lt, int | float) or not math.isfinite(lt) or not 0 < lt < 1:
            raise ConfigError(f"invalid `liquidation_threshold`: must be in (0, 1), was {lt!r}")
        bonus = self.liquidation_bonus
        assumed = bonus is None
        if bonus is None:
            bonus = DEFAULT_LIQUIDATION_BONUS
        if isinstance(bonus, bool) or not isinstance(bonus, int | float) or not math.isfinite(bonus):
            raise ConfigError(f"invalid `liquidation_bonus`: must be a number, was {bonus!r}")
        if not 0 <= bonus < 0.5:
            raise ConfigError(f"invalid `liquidation_bonus`: must be in [0, 0.5) (0.05 = 5%), was {bonus!r}")
        object.__setattr__(self, "supplied", sup)
        object.__setattr__(self, "borrowed", bor)
        object.__setattr__(self, "liquidation_threshold", float(lt))
        object.__setattr__(self, "liquidation_bonus", float(bonus))
        object.__setattr__(self, "bonus_assumed", assumed or self.bonus_assumed)

    @property
    def kind(self) -> PositionKind:
        return PositionKind.LENDING

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        sup = "+".join(self.supplied)
        return f"lending {sup}" + (f" / {'+'.join(self.borrowed)} debt" if self.borrowed else "")

    @property
    def assets(self) -> tuple[str, ...]:
        return (*self.supplied, *self.borrowed)

    @property
    def bonus(self) -> float:
        """Liquidation bonus (a fraction), stated or assumed."""
        return DEFAULT_LIQUIDATION_BONUS if self.liquidation_bonus is None else self.liquidation_bonus

    def collateral_usd(self, prices: Mapping[str, PriceLike]) -> FloatArray:
        out = _arr(0.0)
        for a, q in self.supplied.items():
            out = out + q * _price(prices, a)
        return out

    def debt_usd(self, prices: Mapping[str, PriceLike]) -> FloatArray:
        out = _arr(0.0)
        for a, q in self.borrowed.items():
            out = out + q * _price(prices, a)
        return out

    def amounts(self, prices: Mapping[str, PriceLike]) -> dict[str, FloatArray]:
        out = {a: _arr(q) for a, q in self.supplied.items()}
        out.update({a: _arr(-q) for a, q in self.borrowed.items()})
        return out

    def value_usd(self, prices: Mapping[str, PriceLike]) -> FloatArray:
        return self.collateral_usd(prices) - self.debt_usd(prices)

    def delta_usd(self, prices: Mapping[str, PriceLike]) -> dict[str, FloatArray]:
        return _delta_from_amounts(self.amounts(prices), prices)

    def health_factor(self, prices: Mapping[str, PriceLike]) -> FloatArray:
        """``Σ collateral·LT / Σ debt`` (inf without debt)."""
        debt = self.debt_usd(prices)
        coll = self.collateral_usd(prices) * self.liquidation_threshold
        with np.errstate(divide="ignore"):
            return np.where(debt > 0, coll / np.where(debt > 0, debt, 1.0), np.inf)

    def liquidation_price(self, asset: str, prices: Mapping[str, float]) -> float | None:
        """USD price of ``asset`` (every other price held) at which the health factor reaches 1.

        With ``s`` supplied and ``b`` borrowed units of the asset and the rest of the collateral
        ``C`` and debt ``D`` (USD): ``(C + s·p)·LT = D + b·p`` gives ``p = (D − C·LT)/(s·LT − b)``.
        None when no positive price of this asset alone liquidates the position.
        """
        code = normalise_asset(asset)
        s = self.supplied.get(code, 0.0)
        b = self.borrowed.get(code, 0.0)
        if s == 0 and b == 0:
            return None
        c_other = sum(q * float(_price(prices, a)) for a, q in self.supplied.items() if a != code)
        d_other = sum(q * float(_price(prices, a)) for a, q in self.borrowed.items() if a != code)
        denom = s * self.liquidation_threshold - b
        if denom == 0:
            return None
        p = (d_other - c_other * self.liquidation_threshold) / denom
        return p if p > 0 and math.isfinite(p) else None

    def liquidation_loss_usd(self, prices: Mapping[str, PriceLike]) -> FloatArray:
        """Loss if liquidated now: the bonus on the debt repaid (assumed all of it, as far as collateral covers)."""
        repaid = np.minimum(self.debt_usd(prices), self.collateral_usd(prices) / (1.0 + self.bonus))
        return self.bonus * repaid

    def scaled(self, factor: float) -> LendingPosition:
        return LendingPosition(
            supplied={a: q * factor for a, q in self.supplied.items()},
            borrowed={a: q * factor for a, q in self.borrowed.items()},
            liquidation_threshold=self.liquidation_threshold,
            liquidation_bonus=self.liquidation_bonus,
            group=self.group,
            name=self.name,
            bonus_assumed=self.bonus_assumed,
        )


def hedged_move_pnl_usd(position: Position, prices: Mapping[str, float], asset: str, move: float) -> float:
    """PnL (USD) of ``position`` delta-hedged at ``prices`` when ``asset`` alone moves by ``move`` (0.01 = +1%).

    ``V(p·(1+m)) − V(p) − delta_usd·m``: zero for a linear position (coins, staked tokens, lending away
    from its liquidation), negative for a pool (short gamma: ``≈ ½·Γ·(P·m)²`` with ``Γ = dx/dP < 0``),
    which is why a static hedge of an LP drifts and rebalancing it costs.
    """
    code = normalise_asset(asset)
    moved = dict(prices)
    moved[code] = float(_price(prices, code)) * (1.0 + move)
    delta = float(position.delta_usd(prices).get(code, 0.0))
    return float(position.value_usd(moved)) - float(position.value_usd(prices)) - delta * move
