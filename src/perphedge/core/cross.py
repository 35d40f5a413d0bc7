"""Cross-margined accounts: several positions on one wallet, each liquidated given the others.

One account holds positions that share a wallet balance ``WB`` in one settle asset. At prices ``P``
its equity is ``WB + Σ UPNL_i(P_i)`` and it is liquidated when the equity falls to the total
maintenance requirement ``Σ MM_i(P_i)`` (plus, on venues that reserve it, the taker fee to close).
The liquidation price of position ``j`` is the price ``P_j`` at which that happens with every
other position at its mark: the isolated formula of ``j`` with the margin

    ``A_j = WB + Σ_{i≠j} UPNL_i(mark_i) − Σ_{i≠j} MM_i(mark_i)``

(Binance's ``WB − TMM1 + UPNL1``, reference ``contract_math.md`` §3 and BN-UM/BN-CM). Venues:

``binance_usdm``
    Binance USDⓈ-M cross (linear, USDT): ``MM = q·P·MMR − cum`` with the tier at the price.
``binance_coinm``
    Binance COIN-M cross, one wallet per settle coin (inverse): ``MM = (Q/P)·MMR − cum``.
``bybit_unified``
    Bybit unified account, cross (linear, USD-valued): ``MM = value·MMR − deduction`` plus the fee
    to close ``value·taker`` when the series reserves it; liquidated when the account MM rate
    ``total MM / margin balance`` reaches 100 % (Bybit "Trading Terms and Formulas in Unified Trading
    Account", updated 2026-03-13; "Maintenance Margin Calculation (USDC Perpetual & Futures)" adds the
    estimated fee to close to the maintenance margin). The fee is valued at the mark, not at the
    bankruptcy price: a simplification of at most ``taker·(1/L)`` of the value.
``bybit_classic``
    Bybit classic inverse cross (BY-INV-LIQ, §2.6): maintenance margin on the *entry* value and the
    fee to close valued at the bankruptcy price, ``Q·taker/BP``.
``okx``
    OKX cross (single-currency margin): the margin ratio is ``equity / (MM + fee)`` with the fee
    ``value·taker``; liquidation at 100 %, so the rate is ``MMR + taker`` on the value at the price.
``hyperliquid``
    Hyperliquid cross (USDC): ``MM = value·MMR − deduction`` where MMR is half the initial margin at
    the tier's max leverage (the instrument's tiers carry it).

A venue reserves the closing fee only for instruments whose ``closing_fee_in_margin`` flag is set
(the flag and its source live in the bundled specs).

Where the formula is closed-form it is solved exactly, tier by tier (the tier is the one that holds
the position value at the liquidation price, as Binance's FAQ prescribes); otherwise a bisection on
the account's equity gap is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from perphedge.core.contracts import Side
from perphedge.core.instruments import ContractKind, Instrument, MarginSchedule, TierStyle
from perphedge.errors import ConfigError

__all__ = [
    "AccountState",
    "CrossAccount",
    "CrossPosition",
    "CrossResult",
    "CrossVenue",
    "LiquidationSurface",
    "PositionLiquidation",
    "account_state",
    "cross_liquidation",
    "liquidation_surface",
    "round_liquidation_price",
]

#: Relative tolerance under which two sides of the liquidation equation count as equal.
_EPS = 1e-12


class CrossVenue(StrEnum):
    """The cross-margin rules of one venue and account type (see the module docstring)."""

    BINANCE_USDM = "binance_usdm"
    BINANCE_COINM = "binance_coinm"
    BYBIT_UNIFIED = "bybit_unified"
    BYBIT_CLASSIC = "bybit_classic"
    OKX = "okx"
    HYPERLIQUID = "hyperliquid"

    @property
    def exchange(self) -> str:
        """The exchange id whose instruments this venue takes."""
        return self.value.split("_", 1)[0]

    @property
    def kinds(self) -> tuple[ContractKind, ...]:
        """The contract kinds a cross account of this venue holds."""
        if self in (CrossVenue.BINANCE_COINM, CrossVenue.BYBIT_CLASSIC):
            return (ContractKind.INVERSE,)
        if self is CrossVenue.OKX:
            return (ContractKind.INVERSE, ContractKind.LINEAR)
        return (ContractKind.LINEAR,)

    @property
    def mm_on_entry(self) -> bool:
        """True where the maintenance margin is taken on the entry value (Bybit classic inverse)."""
        return self is CrossVenue.BYBIT_CLASSIC

    @classmethod
    def parse(cls, value: str | CrossVenue, where: str = "venue") -> CrossVenue:
        """Parse a venue name; ConfigError naming ``where`` and the choices otherwise."""
        if isinstance(value, CrossVenue):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            names = ", ".join(v.value for v in cls)
            raise ConfigError(f"invalid `{where}`: must be one of {names}, was {value!r}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class CrossPosition:
    """One position of a cross account.

    ``contracts`` are in the instrument's unit; ``schedule`` overrides the instrument's tiers
    (a single ``mmr``/``maintenance_amount`` given by the user).
    """

    instrument: Instrument
    side: Side
    contracts: float
    entry: float
    mark: float
    schedule: MarginSchedule | None = None

    def __post_init__(self) -> None:
        for name in ("contracts", "entry", "mark"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"invalid `{name}` of {self.instrument.id}: must be > 0, was {value!r}")

    @property
    def margin(self) -> MarginSchedule:
        """The maintenance schedule in force (the override or the instrument's)."""
        return self.schedule if self.schedule is not None else self.instrument.margin

    @property
    def size(self) -> float:
        """Notional Q in USD (inverse) or quantity q in coin (linear)."""
        return self.instrument.size_of(self.contracts)

    @property
    def inverse(self) -> bool:
        """True for a coin-margined contract."""
        return self.instrument.is_inverse

    def value(self, price: float) -> float:
        """Position value at ``price`` in the settle asset: ``Q/P`` or ``q·P``."""
        return self.size / price if self.inverse else self.size * price

    def upnl(self, price: float) -> float:
        """Unrealised PnL at ``price`` in the settle asset."""
        s = self.side.sign
        if self.inverse:
            return s * self.size * (1.0 / self.entry - 1.0 / price)
        return s * self.size * (price - self.entry)


@dataclass(frozen=True, slots=True, kw_only=True)
class CrossAccount:
    """A cross-margined account: a venue, a wallet balance in the settle asset, the positions."""

    venue: CrossVenue
    wallet_balance: float
    positions: tuple[CrossPosition, ...]

    def __post_init__(self) -> None:
        if not self.positions:
            raise ConfigError("invalid `positions`: a cross account needs at least one position")
        if not (math.isfinite(self.wallet_balance) and self.wallet_balance >= 0):
            raise ConfigError(f"invalid `wallet_balance`: must be >= 0, was {self.wallet_balance!r}")
        seen: dict[str, Side] = {}
        settle = self.positions[0].instrument.settle
        for i, pos in enumerate(self.positions):
            inst = pos.instrument
            if inst.exchange != self.venue.exchange:
                raise ConfigError(
                    f"invalid `positions[{i}].instrument`: {inst.id} is not a {self.venue.exchange} instrument "
                    f"(the account's venue is {self.venue.value})"
                )
            if inst.kind not in self.venue.kinds:
                kinds = " or ".join(k.value for k in self.venue.kinds)
                raise ConfigError(
                    f"invalid `positions[{i}].instrument`: {inst.id} is {inst.kind.value}; a {self.venue.value} "
                    f"cross account holds {kinds} contracts"
                )
            if inst.settle != settle:
                raise ConfigError(
                    f"invalid `positions[{i}].instrument`: {inst.id} settles in {inst.settle}, "
                    f"{self.positions[0].instrument.id} in {settle}: one cross account has one settle asset "
                    "(give each settle coin its own account file)"
                )
            if inst.id in seen:
                if seen[inst.id] is not pos.side:
                    raise ConfigError(
                        f"invalid `positions[{i}].instrument`: {inst.id} is given twice, long and short (hedge "
                        "mode); perphedge models one-way mode, one net position per instrument: give the net "
                        "position"
                    )
                raise ConfigError(
                    f"invalid `positions[{i}].instrument`: {inst.id} is given twice (one-way mode holds one "
                    "net position per instrument: merge them)"
                )
            seen[inst.id] = pos.side

    @property
    def settle(self) -> str:
        """The settle asset of the wallet and every position."""
        return self.positions[0].instrument.settle


# --------------------------------------------------------------------------- maintenance terms


def _fee_rate(venue: CrossVenue, pos: CrossPosition) -> float:
    """Taker fee rate reserved to close ``pos`` (0 unless the series reserves it)."""
    return pos.instrument.taker_fee if pos.instrument.closing_fee_in_margin else 0.0


def _mm_at(venue: CrossVenue, pos: CrossPosition, price: float) -> float:
    """Maintenance requirement of ``pos`` with its mark at ``price`` (fee to close included where reserved).

    Bybit classic takes it on the entry value (price-independent) and adds the fee at ``price``.
    A maintenance margin is never negative: a tier override whose amount exceeds ``value × mmr`` at
    ``price`` counts as 0 there (the account layer refuses such an override at a liquidation price).
    """
    fee = _fee_rate(venue, pos)
    if venue.mm_on_entry:
        return max(pos.margin.maintenance_margin(pos.value(pos.entry)), 0.0) + fee * pos.value(price)
    value = pos.value(price)
    return max(pos.margin.maintenance_margin(value), 0.0) + fee * value


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountState:
    """The account at a set of prices: equity, total maintenance requirement, their ratio."""

    equity: float
    total_maintenance: float
    margin_ratio: float | None  # total_maintenance / equity; None when the equity is <= 0
    liquidated: bool


def account_state(account: CrossAccount, prices: Sequence[float] | None = None) -> AccountState:
    """Equity ``WB + Σ UPNL``, total MM and ``margin_ratio = MM / equity`` at ``prices`` (default: marks).

    The account is liquidated when its equity is at or below its total maintenance requirement
    (margin ratio >= 100 %).
    """
    if prices is None:
        prices = [p.mark for p in account.positions]
    if len(prices) != len(account.positions):
        raise ConfigError(f"invalid prices: {len(prices)} given for {len(account.positions)} positions")
    equity = account.wallet_balance
    total = 0.0
    for pos, price in zip(account.positions, prices, strict=True):
        if not (math.isfinite(price) and price > 0):
            raise ConfigError(f"invalid price of {pos.instrument.id}: must be > 0, was {price!r}")
        equity += pos.upnl(price)
        total += _mm_at(account.venue, pos, price)
    ratio = total / equity if equity > 0 else None
    return AccountState(
        equity=equity, total_maintenance=total, margin_ratio=ratio, liquidated=equity <= total * (1 + _EPS)
    )


# --------------------------------------------------------------------------- one position given the others


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionLiquidation:
    """One position's liquidation and bankruptcy price given the others at their marks."""

    instrument: str
    side: Side
    liquidation_price: float | None
    #: ``at_price`` (liquidated when the mark reaches ``liquidation_price``), ``never`` (no price of this
    #: position liquidates the account) or ``always`` (liquidated at every price of this position: the
    #: others' losses exceed what it could ever bring back)
    status: str
    bankruptcy_price: float | None
    mmr: float
    maintenance_amount: float
    fee_rate: float
    maintenance_margin: float  # at the mark
    unrealized_pnl: float  # at the mark
    available_margin: float  # A_j: WB + others' UPNL − others' maintenance


@dataclass(frozen=True, slots=True, kw_only=True)
class CrossResult:
    """Every position's liquidation price and the account's state at the marks."""

    venue: CrossVenue
    settle: str
    state: AccountState
    positions: tuple[PositionLiquidation, ...]


def _valid(price: float) -> float | None:
    return price if math.isfinite(price) and price > 0 else None


def _closed_form(pos: CrossPosition, margin: float, rate: float, cum: float) -> float | None:
    """Solve ``margin + UPNL(P) = value(P)·rate − cum`` for ``P`` (rate includes any fee)."""
    s = pos.side.sign
    size = pos.size
    if pos.inverse:
        # margin + cum + s·Q/E = (Q/P)·(rate + s)
        denom = margin + cum + s * size / pos.entry
        if abs(denom) <= _EPS * size / pos.entry:
            return None
        return _valid(size * (rate + s) / denom)
    # margin + s·q(P − E) = q·P·rate − cum  →  P = (margin + cum − s·q·E)/(q·rate − s·q)
    denom = size * rate - s * size
    if abs(denom) <= _EPS * size:
        return None
    return _valid((margin + cum - s * size * pos.entry) / denom)


def _gap(venue: CrossVenue, pos: CrossPosition, margin: float, price: float) -> float:
    return margin + pos.upnl(price) - _mm_at(venue, pos, price)


def _bisect(venue: CrossVenue, pos: CrossPosition, margin: float) -> float | None:
    """Root of the equity gap on the adverse side of the mark (long: below, short: above)."""
    s = pos.side.sign
    start = pos.mark

    def gap(p: float) -> float:
        return _gap(venue, pos, margin, p)

    if s > 0:
        if gap(start) <= 0:  # already liquidated: search upwards for the boundary
            lo, hi = start, start * 2.0
            while gap(hi) <= 0:
                hi *= 2.0
                if hi > start * 1e12:
                    return None
        else:
            lo, hi = start * 1e-12, start
            if gap(lo) > 0:
                return None
    elif gap(start) <= 0:
        lo, hi = start * 1e-12, start
        if gap(lo) <= 0:
            return None
    else:
        lo, hi = start, start * 2.0
        while gap(hi) > 0:
            hi *= 2.0
            if hi > start * 1e12:
                return None
    for _ in range(300):
        mid = 0.5 * (lo + hi)
        if (gap(mid) > 0) == (s > 0):
            hi = mid
        else:
            lo = mid
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)


def _bankruptcy(venue: CrossVenue, pos: CrossPosition, margin: float) -> float | None:
    """Price at which ``margin + UPNL(P) − fee·value(P) = 0`` (Bybit's fee-aware bankruptcy price)."""
    s = pos.side.sign
    f = _fee_rate(venue, pos)
    size = pos.size
    if pos.inverse:
        # margin + s·Q/E − (s + f)·Q/P = 0
        denom = margin + s * size / pos.entry
        if abs(denom) <= _EPS * size / pos.entry:
            return None
        return _valid(size * (s + f) / denom)
    # margin + s·q(P − E) − f·q·P = 0  →  P = (s·q·E − margin)/(q·(s − f))
    return _valid((s * size * pos.entry - margin) / (size * (s - f)))


def _solve(venue: CrossVenue, pos: CrossPosition, margin: float, others_fee_free: float) -> float | None:
    """Liquidation price of ``pos`` backed by ``margin`` (the others' terms already in it)."""
    fee = _fee_rate(venue, pos)
    schedule = pos.margin
    if venue.mm_on_entry:
        # Bybit classic: constant MM on the entry value, fee to close at the bankruptcy price
        mm = schedule.maintenance_margin(pos.value(pos.entry))
        bp = _bankruptcy(venue, pos, others_fee_free)
        closing = fee * pos.value(bp) if bp is not None else 0.0
        s = pos.side.sign
        size = pos.size
        if pos.inverse:
            denom = s * size / pos.entry + margin - mm - closing
            if abs(denom) <= _EPS * size / pos.entry:
                return None
            return _valid(s * size / denom)
        return _valid(pos.entry - s * (margin - mm - closing) / size)
    if schedule.style is TierStyle.MARGINAL:
        for idx, tier in enumerate(schedule.tiers):
            price = _closed_form(pos, margin, tier.mmr + fee, tier.maintenance_amount)
            if price is None:
                continue
            value = pos.value(price)
            if value * tier.mmr < tier.maintenance_amount:  # negative MM there (an override): counts as 0
                continue
            if tier.floor <= value < schedule.cap(idx) or math.isclose(value, tier.floor, rel_tol=1e-12):
                return price
    return _bisect(venue, pos, margin)


def cross_liquidation(account: CrossAccount) -> CrossResult:
    """Each position's liquidation price given the others at their marks, and the account's state.

    ``liquidation_price`` is ``None`` when no price of that position liquidates the account
    (``status`` ``never``: a linear long or an inverse short fully covered by the wallet and the
    other positions) or when every price does (``status`` ``always``).
    """
    venue = account.venue
    marks_upnl = [p.upnl(p.mark) for p in account.positions]
    marks_mm = [_mm_at(venue, p, p.mark) for p in account.positions]
    marks_fee = [_fee_rate(venue, p) * p.value(p.mark) for p in account.positions]
    rows: list[PositionLiquidation] = []
    for j, pos in enumerate(account.positions):
        others_upnl = sum(u for i, u in enumerate(marks_upnl) if i != j)
        others_mm = sum(m for i, m in enumerate(marks_mm) if i != j)
        others_fee = sum(f for i, f in enumerate(marks_fee) if i != j)
        margin = account.wallet_balance + others_upnl - others_mm
        bp_margin = account.wallet_balance + others_upnl - others_fee
        price = _solve(venue, pos, margin, bp_margin)
        if price is not None:
            status = "at_price"
        else:  # the equity gap is monotone in the price: no root means one sign everywhere
            status = "never" if _gap(venue, pos, margin, pos.mark) > 0 else "always"
        at = price if price is not None else pos.mark
        basis = pos.value(pos.entry) if venue.mm_on_entry else pos.value(at)
        rows.append(
            PositionLiquidation(
                instrument=pos.instrument.id,
                side=pos.side,
                liquidation_price=price,
                status=status,
                bankruptcy_price=_bankruptcy(venue, pos, bp_margin),
                mmr=pos.margin.rate(basis),
                maintenance_amount=pos.margin.maintenance_amount(basis),
                fee_rate=_fee_rate(venue, pos),
                maintenance_margin=marks_mm[j],
                unrealized_pnl=marks_upnl[j],
                available_margin=margin,
            )
        )
    return CrossResult(venue=venue, settle=account.settle, state=account_state(account), positions=tuple(rows))


def round_liquidation_price(price: float, mark: float, tick: float) -> float:
    """A liquidation price on the venue's tick, rounded towards ``mark`` (the safe side), never below one tick.

    A long's price (below its mark) is rounded up and a short's (above) down: Bybit prints its cross
    example's 5,739.08 as 5,739.50 on the 0.5 tick (the reference notes this as an inference).
    """
    if not (math.isfinite(tick) and tick > 0):
        raise ConfigError(f"invalid tick: must be > 0, was {tick!r}")
    steps = price / tick
    n = math.ceil(steps - 1e-9) if price <= mark else math.floor(steps + 1e-9)
    digits = max(0, -math.floor(math.log10(tick)) + 2)
    return round(max(n, 1) * tick, digits)


# --------------------------------------------------------------------------- joint moves of two legs


@dataclass(frozen=True, slots=True, kw_only=True)
class LiquidationSurface:
    """Whether the account is liquidated for joint moves of two legs' prices (others at their marks).

    ``liquidated[i][k]`` and ``margin_ratio[i][k]`` are for ``moves_a[i]`` on leg ``a`` and
    ``moves_b[k]`` on leg ``b`` (relative moves: -0.2 = 20 % down).
    """

    leg_a: str
    leg_b: str
    moves_a: tuple[float, ...]
    moves_b: tuple[float, ...]
    liquidated: tuple[tuple[bool, ...], ...]
    margin_ratio: tuple[tuple[float | None, ...], ...]


def liquidation_surface(
    account: CrossAccount, leg_a: int, leg_b: int, moves_a: Sequence[float], moves_b: Sequence[float]
) -> LiquidationSurface:
    """The account's state on a grid of joint relative moves of positions ``leg_a`` and ``leg_b``."""
    n = len(account.positions)
    for name, leg in (("leg_a", leg_a), ("leg_b", leg_b)):
        if not 0 <= leg < n:
            raise ConfigError(f"invalid `{name}`: must be a position index in [0, {n - 1}], was {leg}")
    if leg_a == leg_b:
        raise ConfigError("invalid legs: the surface needs two different positions")
    for name, moves in (("moves_a", moves_a), ("moves_b", moves_b)):
        if not moves:
            raise ConfigError(f"invalid `{name}`: at least one move is needed")
        for m in moves:
            if not (math.isfinite(m) and m > -1):
                raise ConfigError(f"invalid `{name}`: every move must be > -100 %, was {m!r}")
    marks = [p.mark for p in account.positions]
    liq: list[tuple[bool, ...]] = []
    ratios: list[tuple[float | None, ...]] = []
    for da in moves_a:
        row_l: list[bool] = []
        row_r: list[float | None] = []
        for db in moves_b:
            prices = list(marks)
            prices[leg_a] = marks[leg_a] * (1.0 + da)
            prices[leg_b] = marks[leg_b] * (1.0 + db)
            st = account_state(account, prices)
            row_l.append(st.liquidated)
            row_r.append(st.margin_ratio)
        liq.append(tuple(row_l))
        ratios.append(tuple(row_r))
    return LiquidationSurface(
        leg_a=account.positions[leg_a].instrument.id,
        leg_b=account.positions[leg_b].instrument.id,
        moves_a=tuple(float(m) for m in moves_a),
        moves_b=tuple(float(m) for m in moves_b),
        liquidated=tuple(liq),
        margin_ratio=tuple(ratios),
    )
