"""Instruments: perpetual contracts and their margin schedules.

Only the instrument knows whether it is inverse or linear; everything else asks it.

* **Inverse** (coin-margined): one contract is ``contract_size`` USD; notional ``Q`` in USD,
  value ``Q/P`` coin, margin, PnL, fees and funding in the base coin.
* **Linear** (USDT/USDC-margined): one contract is ``contract_size`` base coin; quantity ``q``
  in coin, value ``q·P`` in the quote stablecoin, which is also the settle asset.

Margin tiers are expressed on the *position value*: in coin for inverse contracts (as Binance
COIN-M and Bybit inverse publish them) and in the quote asset for linear ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise

from perphedge.errors import ConfigError

__all__ = [
    "MAKER_FEE_RANGE",
    "TAKER_FEE_RANGE",
    "ContractKind",
    "Instrument",
    "LiquidationMethod",
    "MarginSchedule",
    "MarginTier",
    "TierStyle",
]


#: Sane fee rates (fraction of notional, inclusive bounds): a maker rebate is at most 0.1%, no exchange
#: charges more than 1%; a taker always pays. Spec files and ``calc --fee-rate`` outside them are refused.
MAKER_FEE_RANGE: tuple[float, float] = (-0.001, 0.01)
TAKER_FEE_RANGE: tuple[float, float] = (0.0, 0.01)


class ContractKind(StrEnum):
    """Inverse (coin-margined, USD face value) or linear (stablecoin-margined, coin size)."""

    INVERSE = "inverse"
    LINEAR = "linear"


class LiquidationMethod(StrEnum):
    """How an exchange computes the liquidation price of an isolated position.

    ``mm_on_entry_value``
        maintenance margin on the entry value (BitMEX, Bybit inverse 2024); for linear
        contracts the same family is ``bybit_linear``.
    ``mm_at_liquidation_price``
        maintenance margin on the value at the liquidation price, tier chosen there (Binance
        COIN-M, Bybit 2026, OKX); for linear contracts the same family is ``binance_usdm``.
    """

    MM_ON_ENTRY_VALUE = "mm_on_entry_value"
    MM_AT_LIQUIDATION_PRICE = "mm_at_liquidation_price"
    BINANCE_USDM = "binance_usdm"
    BYBIT_LINEAR = "bybit_linear"

    @property
    def mm_at_entry(self) -> bool:
        """True for the families that compute maintenance margin on the entry value."""
        return self in (LiquidationMethod.MM_ON_ENTRY_VALUE, LiquidationMethod.BYBIT_LINEAR)

    def check_kind(self, kind: ContractKind, name: str = "method") -> None:
        """Raise ConfigError (naming ``name``: the field or flag it came from) if this method does not
        apply to ``kind``."""
        if kind is ContractKind.INVERSE and self in (
            LiquidationMethod.BINANCE_USDM,
            LiquidationMethod.BYBIT_LINEAR,
        ):
            raise ConfigError(
                f"invalid `{name}`: {self.value} is for linear contracts; use "
                "mm_on_entry_value or mm_at_liquidation_price for inverse ones"
            )


class TierStyle(StrEnum):
    """How a tier table turns a position value into maintenance margin.

    ``marginal``: ``MM = value·MMR_tier − cum`` with the cumulative maintenance amount
    ``cum_n = floor_n·(MMR_n − MMR_{n−1}) + cum_{n−1}`` (Binance, Bybit, OKX); equals the marginal
    sum over tiers. ``stepped``: the rate of the tier applies to the whole position (BitMEX risk
    limits). ``size_linear``: ``MMR = base + slope·value`` (Deribit standard margin).
    """

    MARGINAL = "marginal"
    STEPPED = "stepped"
    SIZE_LINEAR = "size_linear"


@dataclass(frozen=True, slots=True, kw_only=True)
class MarginTier:
    """One risk tier: from ``floor`` (position value, inclusive) the rate ``mmr`` applies.

    ``maintenance_amount`` is the cumulative deduction (``cum``); it is derived from the chain
    for marginal tables built with :meth:`MarginSchedule.marginal`.
    """

    floor: float
    mmr: float
    max_leverage: float
    maintenance_amount: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.floor) and self.floor >= 0):
            raise ConfigError(f"invalid tier `floor`: must be >= 0, was {self.floor!r}")
        if not (math.isfinite(self.mmr) and 0 < self.mmr < 1):
            raise ConfigError(f"invalid tier `mmr`: must be in (0, 1), was {self.mmr!r}")
        if not (math.isfinite(self.max_leverage) and self.max_leverage >= 1):
            raise ConfigError(f"invalid tier `max_leverage`: must be >= 1, was {self.max_leverage!r}")
        if not math.isfinite(self.maintenance_amount):
            raise ConfigError(f"invalid tier `maintenance_amount`: must be finite, was {self.maintenance_amount!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class MarginSchedule:
    """Maintenance-margin schedule of an instrument (tiers on position value)."""

    style: TierStyle
    tiers: tuple[MarginTier, ...]
    slope: float = 0.0

    def __post_init__(self) -> None:
        if not self.tiers:
            raise ConfigError("invalid `tiers`: at least one tier is needed")
        if self.tiers[0].floor != 0:
            raise ConfigError(f"invalid `tiers`: the first floor must be 0, was {self.tiers[0].floor}")
        floors = [t.floor for t in self.tiers]
        if any(b <= a for a, b in pairwise(floors)):
            raise ConfigError(f"invalid `tiers`: floors must increase strictly, were {floors}")
        if self.style is TierStyle.SIZE_LINEAR and len(self.tiers) != 1:
            raise ConfigError("invalid `tiers`: a size_linear schedule has exactly one base tier")
        if not (math.isfinite(self.slope) and self.slope >= 0):
            raise ConfigError(f"invalid `slope`: must be >= 0, was {self.slope!r}")

    @classmethod
    def marginal(
        cls, rows: list[tuple[float, float, float]] | tuple[tuple[float, float, float], ...]
    ) -> MarginSchedule:
        """Build a marginal schedule from ``(floor, mmr, max_leverage)`` rows, deriving ``cum``."""
        tiers: list[MarginTier] = []
        cum = 0.0
        prev_mmr = 0.0
        for i, (floor, mmr, max_lev) in enumerate(rows):
            if i > 0:
                cum = floor * (mmr - prev_mmr) + cum
            tiers.append(
                MarginTier(floor=float(floor), mmr=float(mmr), max_leverage=float(max_lev), maintenance_amount=cum)
            )
            prev_mmr = mmr
        return cls(style=TierStyle.MARGINAL, tiers=tuple(tiers))

    @classmethod
    def single(cls, mmr: float, maintenance_amount: float = 0.0, max_leverage: float = 125.0) -> MarginSchedule:
        """One tier with a fixed rate and deduction (``--mmr``/``--maintenance-amount``)."""
        return cls(
            style=TierStyle.MARGINAL,
            tiers=(MarginTier(floor=0.0, mmr=mmr, max_leverage=max_leverage, maintenance_amount=maintenance_amount),),
        )

    def tier_index(self, value: float) -> int:
        """Index of the tier whose range holds ``value`` (floor inclusive)."""
        idx = 0
        for i, tier in enumerate(self.tiers):
            if value >= tier.floor:
                idx = i
            else:
                break
        return idx

    def cap(self, index: int) -> float:
        """Upper bound (exclusive) of tier ``index``; infinity for the last."""
        return self.tiers[index + 1].floor if index + 1 < len(self.tiers) else math.inf

    def rate(self, value: float) -> float:
        """Maintenance-margin rate that applies at position value ``value``."""
        if self.style is TierStyle.SIZE_LINEAR:
            return self.tiers[0].mmr + self.slope * value
        return self.tiers[self.tier_index(value)].mmr

    def maintenance_amount(self, value: float) -> float:
        """Deduction ``cum`` at position value ``value`` (zero unless marginal)."""
        if self.style is TierStyle.MARGINAL:
            return self.tiers[self.tier_index(value)].maintenance_amount
        return 0.0

    def maintenance_margin(self, value: float) -> float:
        """Maintenance margin (same unit as ``value``) of a position worth ``value``."""
        if value < 0:
            raise ConfigError(f"invalid position value: must be >= 0, was {value!r}")
        if self.style is TierStyle.SIZE_LINEAR:
            return value * (self.tiers[0].mmr + self.slope * value)
        tier = self.tiers[self.tier_index(value)]
        if self.style is TierStyle.STEPPED:
            return value * tier.mmr
        return value * tier.mmr - tier.maintenance_amount

    def max_leverage(self, value: float) -> float:
        """Highest leverage allowed for a position worth ``value``."""
        if self.style is TierStyle.SIZE_LINEAR:
            return self.tiers[0].max_leverage
        return self.tiers[self.tier_index(value)].max_leverage


@dataclass(frozen=True, slots=True, kw_only=True)
class Instrument:
    """A perpetual contract on one exchange.

    Parameters
    ----------
    exchange, symbol
        The exchange id (``binance``) and its native symbol (``BTCUSD_PERP``).
    kind
        Inverse or linear.
    base, quote, settle
        Base coin, quote asset and the asset margin and PnL are settled in.
    contract_size
        USD per contract (inverse) or base coin per contract (linear).
    lot_size
        Smallest tradable step, in contracts.
    tick_size
        Price step in quote units.
    max_leverage
        Highest leverage the exchange allows on this contract (first tier).
    margin
        Maintenance-margin schedule (tiers on position value: coin for inverse, quote for linear).
    liquidation_method
        The family of the exchange's published liquidation formula.
    funding_interval_hours
        Hours between funding settlements.
    maker_fee, taker_fee
        Fee rates (fraction of notional).
    ccxt_symbol
        The unified ccxt symbol (``BTC/USD:BTC``).
    closing_fee_in_margin
        True where the venue reserves the taker fee to close inside the maintenance requirement and
        the bankruptcy price (Bybit, OKX, BitMEX); the cross-margin maths then adds ``value·taker``.
    closing_fee_in_isolated
        True where the venue's *isolated* liquidation formula also reserves it (OKX: margin ratio
        ``(margin + PnL) / (value·(MMR + fee))``); :attr:`liquidation_schedule` then adds the taker fee
        to every tier's rate.
    expiry_ms
        Delivery time (epoch ms UTC) of a dated future; ``None`` for a perpetual. A dated future
        pays no funding and settles at the delivery price (see :mod:`perphedge.core.futures`).
    source, as_of
        Where the values come from and when they were read.
    """

    exchange: str
    symbol: str
    kind: ContractKind
    base: str
    quote: str
    settle: str
    contract_size: float
    lot_size: float
    tick_size: float
    max_leverage: float
    margin: MarginSchedule
    liquidation_method: LiquidationMethod
    funding_interval_hours: float = 8.0
    maker_fee: float = 0.0002
    taker_fee: float = 0.0005
    ccxt_symbol: str = ""
    closing_fee_in_margin: bool = False
    closing_fee_in_isolated: bool = False
    expiry_ms: int | None = None
    source: str = ""
    as_of: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("contract_size", "lot_size", "tick_size", "funding_interval_hours"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"invalid `{name}` of {self.id}: must be > 0, was {value!r}")
        if not (math.isfinite(self.max_leverage) and self.max_leverage >= 1):
            raise ConfigError(f"invalid `max_leverage` of {self.id}: must be >= 1, was {self.max_leverage!r}")
        for name in ("maker_fee", "taker_fee"):
            value = getattr(self, name)
            if not (math.isfinite(value) and -0.01 < value < 0.05):
                raise ConfigError(f"invalid `{name}` of {self.id}: must be in (-0.01, 0.05), was {value!r}")
        self.liquidation_method.check_kind(self.kind)
        if self.kind is ContractKind.INVERSE and self.settle != self.base:
            raise ConfigError(f"invalid `settle` of {self.id}: an inverse contract settles in {self.base}")
        if self.kind is ContractKind.LINEAR and self.settle != self.quote:
            raise ConfigError(f"invalid `settle` of {self.id}: a linear contract settles in {self.quote}")
        if self.expiry_ms is not None and (
            isinstance(self.expiry_ms, bool) or not isinstance(self.expiry_ms, int) or self.expiry_ms <= 0
        ):
            raise ConfigError(
                f"invalid `expiry_ms` of {self.id}: must be epoch milliseconds > 0, was {self.expiry_ms!r}"
            )

    @property
    def id(self) -> str:
        """``exchange:SYMBOL``."""
        return f"{self.exchange}:{self.symbol}"

    @property
    def liquidation_schedule(self) -> MarginSchedule:
        """The schedule the isolated liquidation price uses: :attr:`margin`, with the taker fee added to every
        tier's rate (same deductions) where the venue reserves the fee to close (``closing_fee_in_isolated``)."""
        if not self.closing_fee_in_isolated:
            return self.margin
        tiers = tuple(
            MarginTier(
                floor=t.floor,
                mmr=t.mmr + self.taker_fee,
                max_leverage=t.max_leverage,
                maintenance_amount=t.maintenance_amount,
            )
            for t in self.margin.tiers
        )
        return MarginSchedule(style=self.margin.style, tiers=tiers, slope=self.margin.slope)

    @property
    def is_dated(self) -> bool:
        """True for a dated (delivery) future: it has an expiry and pays no funding."""
        return self.expiry_ms is not None

    @property
    def is_inverse(self) -> bool:
        """True for coin-margined contracts."""
        return self.kind is ContractKind.INVERSE

    @property
    def contract_size_unit(self) -> str:
        """``USD`` for inverse contracts, the base coin for linear ones."""
        return "USD" if self.is_inverse else self.base

    def size_of(self, contracts: float) -> float:
        """Position size from a number of contracts: USD notional (inverse) or coin (linear)."""
        return contracts * self.contract_size

    def contracts_for_notional(self, notional_usd: float, price: float) -> float:
        """Exact (unrounded) contracts for a USD notional at ``price``."""
        if self.is_inverse:
            return notional_usd / self.contract_size
        return notional_usd / price / self.contract_size

    def notional_usd(self, contracts: float, price: float) -> float:
        """USD notional of ``contracts`` at ``price`` (price-independent for inverse)."""
        size = self.size_of(contracts)
        return size if self.is_inverse else size * price

    def position_value(self, contracts: float, price: float) -> float:
        """Position value in the tier unit: coin for inverse (``Q/P``), quote for linear (``q·P``)."""
        size = self.size_of(contracts)
        return size / price if self.is_inverse else size * price

    def round_contracts(self, contracts: float) -> float:
        """Round to the nearest whole lot (half up), avoiding float dust."""
        lots = math.floor(contracts / self.lot_size + 0.5 + 1e-9)
        return round(lots * self.lot_size, 12)

    def with_overrides(
        self,
        *,
        margin: MarginSchedule | None = None,
        liquidation_method: LiquidationMethod | None = None,
        contract_size: float | None = None,
    ) -> Instrument:
        """A copy with the calculator's overrides applied."""
        from dataclasses import replace

        return replace(
            self,
            margin=margin if margin is not None else self.margin,
            liquidation_method=liquidation_method if liquidation_method is not None else self.liquidation_method,
            contract_size=contract_size if contract_size is not None else self.contract_size,
        )
