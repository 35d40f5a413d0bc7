"""Units: assets, amounts of an asset, prices between two assets.

USD, coins and contracts never mix silently: :class:`Money` refuses arithmetic across assets
and :class:`Price` converts only the asset it is quoted in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from perphedge.errors import ConfigError, UnitMismatchError

__all__ = [
    "MAX_PRICE_USD",
    "MAX_VALUE_USD",
    "MIN_PRICE_USD",
    "STABLECOINS",
    "USD",
    "Asset",
    "Money",
    "Price",
    "check_finite",
    "check_positive",
    "is_stablecoin",
    "normalise_asset",
]

#: Assets counted as cash (price 1 USD unless the portfolio says otherwise; no market exposure).
STABLECOINS: frozenset[str] = frozenset(
    {"USD", "USDT", "USDC", "DAI", "BUSD", "TUSD", "FDUSD", "PYUSD", "USDP", "USDE", "USDS", "GUSD"}
)


#: Largest USD value of one position, holding or portfolio (a thousand trillion dollars): beyond it an
#: amount is a typo, and products of such amounts would overflow.
MAX_VALUE_USD: float = 1e15
#: Largest USD price of one unit of an asset.
MAX_PRICE_USD: float = 1e9
#: Smallest USD price of one unit of an asset (the cheapest traded tokens are around 1e-9).
MIN_PRICE_USD: float = 1e-12


#: Longest asset code accepted (real ones: BTC, 1000SHIB, 1000000MOG).
MAX_ASSET_CODE = 40


def normalise_asset(code: str) -> str:
    """Return the canonical spelling of an asset code (upper case, stripped).

    Raises
    ------
    ConfigError
        If the code is empty or contains whitespace or ``:``.
    """
    if not isinstance(code, str):
        raise ConfigError(f"invalid asset: must be a text code such as BTC, was {code!r}")
    text = code.strip().upper()
    if not text or any(ch.isspace() for ch in text) or ":" in text:
        raise ConfigError(f"invalid asset: must be a code such as BTC or SOL, was {code!r}")
    if not text.isprintable():  # control or invisible characters (zero-width space, BEL) look like another code
        raise ConfigError(f"invalid asset: contains a control or invisible character, was {code!a}")
    if len(text) > MAX_ASSET_CODE:
        raise ConfigError(f"invalid asset: longer than {MAX_ASSET_CODE} characters, was {text[:20]!r}...")
    return text


def is_stablecoin(asset: str) -> bool:
    """True for assets treated as cash (USDT, USDC, ...)."""
    return asset.upper() in STABLECOINS


def check_finite(name: str, value: float) -> float:
    """Return ``value`` as float if it is a finite number, else raise :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"invalid `{name}`: must be a number, was {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ConfigError(f"invalid `{name}`: must be finite, was {value!r}")
    return out


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as float if it is finite and > 0, else raise :class:`ConfigError`."""
    out = check_finite(name, value)
    if out <= 0:
        raise ConfigError(f"invalid `{name}`: must be > 0, was {value!r}")
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Asset:
    """An asset code (``BTC``, ``USDT``, ``USD``)."""

    code: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", normalise_asset(self.code))

    @property
    def is_stable(self) -> bool:
        """True for stablecoins and USD."""
        return is_stablecoin(self.code)

    def __str__(self) -> str:
        return self.code


USD = Asset(code="USD")


@dataclass(frozen=True, slots=True, kw_only=True)
class Money:
    """An amount of one asset. Arithmetic across different assets raises UnitMismatchError."""

    amount: float
    asset: Asset

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount", check_finite("amount", self.amount))

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise UnitMismatchError(f"cannot combine Money({self.asset}) with {type(other).__name__}")
        if other.asset != self.asset:
            raise UnitMismatchError(
                f"cannot combine amounts in {self.asset} and {other.asset}: convert one with a Price first"
            )

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(amount=self.amount + other.amount, asset=self.asset)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(amount=self.amount - other.amount, asset=self.asset)

    def __neg__(self) -> Money:
        return Money(amount=-self.amount, asset=self.asset)

    def __mul__(self, factor: float) -> Money:
        if isinstance(factor, Money):
            raise UnitMismatchError("cannot multiply two amounts of money")
        return Money(amount=self.amount * float(factor), asset=self.asset)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __str__(self) -> str:
        return f"{self.amount:,.8g} {self.asset}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """Price of one unit of ``base`` in ``quote`` (``Price(value=60000, base=BTC, quote=USD)``)."""

    value: float
    base: Asset
    quote: Asset

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", check_positive("price", self.value))

    def convert(self, money: Money) -> Money:
        """Convert an amount of ``base`` into ``quote`` or of ``quote`` into ``base``."""
        if money.asset == self.base:
            return Money(amount=money.amount * self.value, asset=self.quote)
        if money.asset == self.quote:
            return Money(amount=money.amount / self.value, asset=self.base)
        raise UnitMismatchError(f"price {self.base}/{self.quote} cannot convert an amount in {money.asset}")
