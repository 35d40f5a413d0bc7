"""Holdings and portfolios: valuation in USD and in coin terms, exposure by asset and group.

Stablecoins count as cash: they have value but no market exposure. DeFi positions
(:mod:`perphedge.core.defi`) count by their value in ``value_usd`` and by their *delta* in every
exposure (a pool holds half its value in each token, a lending position is collateral minus debt).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from perphedge.core.defi import Position
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
        Coins held (may be empty when ``positions`` is not).
    prices
        USD price per unit of each asset; stablecoins default to 1.0 when absent.
    positions
        DeFi positions (pools, staked tokens, lending), valued and hedged by their delta.
    """

    name: str
    holdings: tuple[Holding, ...]
    prices: Mapping[str, float] = field(default_factory=dict)
    positions: tuple[Position, ...] = ()

    def __post_init__(self) -> None:
        if not self.holdings and not self.positions:
            raise ConfigError(
                "invalid `holdings`: the portfolio holds nothing; add at least one holding (or a DeFi position)"
            )
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
        for i, pos in enumerate(self.positions):
            for asset in pos.assets:
                if asset not in prices and not is_stablecoin(asset):
                    raise ConfigError(
                        f"no price for {asset}: add it under `prices:` (USD per {asset}); `positions[{i}]` "
                        f"({pos.label}) needs it, or pass --as-of DATE|latest to use stored closes"
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
        """Total USD value, cash and DeFi positions (net of debt) included."""
        total = sum(self.value_of(h) for h in self.holdings)
        if self.positions:
            total += self.positions_value_usd
        return total

    @property
    def positions_value_usd(self) -> float:
        """USD value of the DeFi positions (lending net of debt)."""
        return sum(float(p.value_usd(self.prices)) for p in self.positions)

    def position_delta_usd(self, position: Position) -> dict[str, float]:
        """USD delta per non-stable asset of one DeFi position at the portfolio's prices."""
        return {a: float(v) for a, v in position.delta_usd(self.prices).items()}

    @property
    def exposure_usd(self) -> float:
        """USD value of the non-stable holdings plus the DeFi positions' deltas (market exposure)."""
        total = sum(self.value_of(h) for h in self.holdings if not h.is_stable)
        if self.positions:
            total += sum(sum(self.position_delta_usd(p).values()) for p in self.positions)
        return total

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
        """USD exposure per non-stable asset (holdings' value plus positions' delta)."""
        out: dict[str, float] = {}
        for h in self.holdings:
            if not h.is_stable:
                out[h.asset] = out.get(h.asset, 0.0) + self.value_of(h)
        for p in self.positions:
            for asset, usd in self.position_delta_usd(p).items():
                out[asset] = out.get(asset, 0.0) + usd
        return out

    def exposed_assets(self) -> set[str]:
        """Non-stable assets held or with a DeFi delta (the ones a scenario moves)."""
        out = {h.asset for h in self.holdings if not h.is_stable}
        for p in self.positions:
            out |= {a for a in p.assets if not is_stablecoin(a)}
        return out

    def groups(self) -> list[str]:
        """Group names used by the holdings and positions."""
        return sorted({h.group for h in self.holdings if h.group} | {p.group for p in self.positions if p.group})

    def exposure_by_group(self) -> dict[str, float]:
        """USD exposure per group (``ungrouped`` for holdings without one)."""
        out: dict[str, float] = {}
        for h in self.holdings:
            if not h.is_stable:
                key = h.group or "ungrouped"
                out[key] = out.get(key, 0.0) + self.value_of(h)
        for p in self.positions:
            key = p.group or "ungrouped"
            out[key] = out.get(key, 0.0) + sum(self.position_delta_usd(p).values())
        return out

    def scope_exposure(self, scope: str) -> dict[str, float]:
        """USD exposure per non-stable asset in ``scope``: holdings' value plus DeFi positions' delta.

        Raises like :meth:`in_scope` when the scope is unknown or holds nothing to hedge.
        """
        if not self.positions:
            out: dict[str, float] = {}
            for h in self.in_scope(scope):
                out[h.asset] = out.get(h.asset, 0.0) + self.value_of(h)
            return out
        if scope != "all" and scope not in self.groups():
            known = ", ".join(["all", *self.groups()])
            raise ConfigError(f"invalid `scope`: nothing is in group {scope!r}; use one of {known}")
        out = {}
        for h in self.holdings:
            if not h.is_stable and (scope in ("all", h.group)):
                out[h.asset] = out.get(h.asset, 0.0) + self.value_of(h)
        for p in self.positions:
            if scope in ("all", p.group):
                for asset, usd in self.position_delta_usd(p).items():
                    out[asset] = out.get(asset, 0.0) + usd
        if not out:
            raise InfeasibleHedgeError(f"scope {scope!r} holds only stablecoins: there is nothing to hedge")
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
            positions=tuple(p.scaled(factor) for p in self.positions),
        )

    def repriced(self, prices: Mapping[str, float]) -> Portfolio:
        """The same holdings valued at ``prices`` (missing assets keep their price)."""
        merged = dict(self.prices)
        merged.update({normalise_asset(k): v for k, v in prices.items()})
        return Portfolio(name=self.name, holdings=self.holdings, prices=merged, positions=self.positions)
