"""Holdings and portfolios: valuation in USD and in coin terms, exposure by asset and group.

Stablecoins count as cash: they have value but no market exposure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from perphedge.core.units import is_stablecoin, normalise_asset
from perphedge.errors import ConfigError, InfeasibleHedgeError

__all__ = ["Holding", "Portfolio"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Holding:
    """A quantity of one asset, optionally in a named group (``core``, ``satellite``)."""

    asset: str
    quantity: float
    group: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "asset", normalise_asset(self.asset))
        q = self.quantity
        if isinstance(q, bool) or not isinstance(q, int | float) or not math.isfinite(q):
            raise ConfigError(f"invalid `quantity` of {self.asset}: must be a finite number, was {q!r}")
        if q <= 0:
            raise ConfigError(f"invalid `quantity` of {self.asset}: must be > 0, was {q!r}")
        object.__setattr__(self, "quantity", float(q))

    @property
    def is_stable(self) -> bool:
        """True for stablecoins (cash)."""
        return is_stablecoin(self.asset)


@dataclass(frozen=True, slots=True, kw_only=True)
class Portfolio:
    """Holdings and the USD prices they are valued at.

    Parameters
    ----------
    name
        Display name.
    holdings
        At least one holding.
    prices
        USD price per unit of each asset; stablecoins default to 1.0 when absent.
    """

    name: str
    holdings: tuple[Holding, ...]
    prices: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.holdings:
            raise ConfigError("invalid `holdings`: the portfolio holds nothing; add at least one holding")
        prices: dict[str, float] = {}
        for asset, value in self.prices.items():
            code = normalise_asset(asset)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"invalid price of {code}: must be a number > 0, was {value!r}")
            prices[code] = float(value)
        for h in self.holdings:
            if h.asset not in prices:
                if h.is_stable:
                    prices[h.asset] = 1.0
                else:
                    raise ConfigError(
                        f"no price for {h.asset}: add it under `prices:` (USD per {h.asset}), or pass "
                        "--as-of DATE|latest to use stored closes"
                    )
        object.__setattr__(self, "prices", prices)

    # ------------------------------------------------------------------ prices

    def price(self, asset: str) -> float:
        """USD price of ``asset``; ConfigError if the portfolio has none."""
        code = normalise_asset(asset)
        if code in self.prices:
            return self.prices[code]
        if is_stablecoin(code):
            return 1.0
        raise ConfigError(f"no price for {code}: add it under `prices:` (USD per {code})")

    def has_price(self, asset: str) -> bool:
        """True if ``asset`` can be valued."""
        return normalise_asset(asset) in self.prices or is_stablecoin(asset)

    # ------------------------------------------------------------------ valuation

    def value_of(self, holding: Holding) -> float:
        """USD value of one holding."""
        return holding.quantity * self.price(holding.asset)

    @property
    def value_usd(self) -> float:
        """Total USD value, cash included."""
        return sum(self.value_of(h) for h in self.holdings)

    @property
    def exposure_usd(self) -> float:
        """USD value of the non-stable holdings (market exposure)."""
        return sum(self.value_of(h) for h in self.holdings if not h.is_stable)

    @property
    def cash_usd(self) -> float:
        """USD value of stablecoins."""
        return sum(self.value_of(h) for h in self.holdings if h.is_stable)

    def value_in(self, asset: str) -> float | None:
        """Total value in units of ``asset`` (e.g. BTC terms), or None when it has no price."""
        if not self.has_price(asset):
            return None
        return self.value_usd / self.price(asset)

    def quantity_of(self, asset: str) -> float:
        """Total quantity held of ``asset`` across holdings."""
        code = normalise_asset(asset)
        return sum(h.quantity for h in self.holdings if h.asset == code)

    def exposure_by_asset(self) -> dict[str, float]:
        """USD exposure per non-stable asset."""
        out: dict[str, float] = {}
        for h in self.holdings:
            if not h.is_stable:
                out[h.asset] = out.get(h.asset, 0.0) + self.value_of(h)
        return out

    def groups(self) -> list[str]:
        """Group names used by the holdings."""
        return sorted({h.group for h in self.holdings if h.group})

    def exposure_by_group(self) -> dict[str, float]:
        """USD exposure per group (``ungrouped`` for holdings without one)."""
        out: dict[str, float] = {}
        for h in self.holdings:
            if not h.is_stable:
                key = h.group or "ungrouped"
                out[key] = out.get(key, 0.0) + self.value_of(h)
        return out

    def in_scope(self, scope: str) -> tuple[Holding, ...]:
        """Non-stable holdings in ``scope`` (``all`` or a group name)."""
        if scope == "all":
            chosen = tuple(h for h in self.holdings if not h.is_stable)
        else:
            if scope not in self.groups():
                known = ", ".join(["all", *self.groups()])
                raise ConfigError(f"invalid `scope`: no holding is in group {scope!r}; use one of {known}")
            chosen = tuple(h for h in self.holdings if h.group == scope and not h.is_stable)
        if not chosen:
            raise InfeasibleHedgeError(f"scope {scope!r} holds only stablecoins: there is nothing to hedge")
        return chosen

    def scaled(self, factor: float) -> Portfolio:
        """The same portfolio with every quantity multiplied by ``factor``."""
        return Portfolio(
            name=self.name,
            holdings=tuple(Holding(asset=h.asset, quantity=h.quantity * factor, group=h.group) for h in self.holdings),
            prices=self.prices,
        )

    def repriced(self, prices: Mapping[str, float]) -> Portfolio:
        """The same holdings valued at ``prices`` (missing assets keep their price)."""
        merged = dict(self.prices)
        merged.update({normalise_asset(k): v for k, v in prices.items()})
        return Portfolio(name=self.name, holdings=self.holdings, prices=merged)
