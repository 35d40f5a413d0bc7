"""The fake exchange's private state: one venue account (balances, perpetual positions, orders, fills, funding).

Venue-neutral and in memory, behind one lock. The venue dialects (``fake_binance``, ``fake_bybit``,
``fake_hyperliquid``, ...) translate each venue's private REST API onto it and its answers back into the
venue's JSON shapes; the HTTP layer (:class:`perphedge.exchange.fake.FakeExchange`) injects the faults.

Units: ``qty`` in the venue's contracts of the symbol (``Contract.contract_size`` coins each for linear,
USD each for inverse); prices USD per coin; balances and PnL in the settle asset; times epoch ms (UTC).
Positions are signed (negative = short). Entry prices average like the venues do: arithmetic in price for
linear contracts, harmonic (by contract value) for inverse ones. Orders fill at the mark the fake
answers for "now" (``FakeExchange.marks`` / the last closed candle), taker fee ``fee_rate`` on the notional.

Fault knobs (each used once): ``partial_next`` (fill only that fraction of the next order; a market order's
rest expires, a limit order's rest stays open), ``reject_next`` (refuse the next order with a neutral reason:
``min_notional``, ``insufficient_margin``, ``reduce_only``, ``rate_limited``, ``invalid``), and
``set_position`` for a position changed by hand on the venue's website.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

__all__ = [
    "Contract",
    "FundingEntry",
    "LedgerFill",
    "LedgerOrder",
    "LedgerPosition",
    "LedgerReject",
    "PrivateLedger",
    "RejectKind",
    "bundled_contracts",
    "decimal_text",
]

RejectKind = Literal["min_notional", "insufficient_margin", "reduce_only", "rate_limited", "invalid", "duplicate"]
OrderState = Literal["open", "partially_filled", "filled", "cancelled", "rejected", "expired"]


class LedgerReject(Exception):
    """The venue refused an order; ``kind`` is neutral, the dialect maps it to the venue's code."""

    def __init__(self, kind: RejectKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class Contract:
    """A perpetual as the venue lists it: ``symbol`` is the venue's native id (``BTCUSDT``, ``BTCUSD_PERP``)."""

    symbol: str
    kind: Literal["linear", "inverse"]
    base: str
    settle: str
    contract_size: float  # coins (linear) or USD (inverse) per contract
    lot: float  # qty step, in contracts
    tick: float  # price step, USD per coin
    min_notional_usd: float = 5.0
    funding_key: tuple[str, str] | None = None  # (exchange, native) of the sample funding file, for accrual


@dataclass(slots=True)
class LedgerFill:
    trade_id: str
    venue_id: str
    client_id: str
    symbol: str
    side: Literal["buy", "sell"]
    qty: float
    price: float
    fee: float  # settle asset, > 0 paid
    fee_asset: str
    realized_pnl: float  # settle asset
    ts_ms: int
    maker: bool = False


@dataclass(slots=True)
class LedgerOrder:
    venue_id: str
    client_id: str
    symbol: str
    side: Literal["buy", "sell"]
    type: Literal["market", "limit"]
    qty: float
    price: float | None
    reduce_only: bool
    status: OrderState
    created_ms: int
    updated_ms: int
    filled: float = 0.0
    avg_price: float = 0.0
    fills: list[LedgerFill] = field(default_factory=list)
    reject_reason: str = ""

    @property
    def is_open(self) -> bool:
        return self.status in ("open", "partially_filled")


@dataclass(slots=True)
class LedgerPosition:
    symbol: str
    qty: float = 0.0  # signed contracts, < 0 short
    entry_price: float = 0.0
    leverage: float = 20.0
    margin_mode: Literal["isolated", "cross"] = "cross"
    isolated_margin: float = 0.0  # settle asset (isolated mode)
    updated_ms: int = 0
    liq_override: float | None = None  # the venue's own liquidation price, when a test sets one


@dataclass(frozen=True, slots=True)
class FundingEntry:
    symbol: str
    asset: str
    amount: float  # settle asset, > 0 received
    rate: float
    ts_ms: int
    entry_id: str


class PrivateLedger:
    """One account on one venue. Every public method takes the lock; ``now_ms`` and ``mark`` come from the fake."""

    def __init__(
        self,
        contracts: dict[str, Contract],
        balances: dict[str, float],
        *,
        mark: Callable[[str, int], float | None],
        now: Callable[[], int],
        fee_rate: float = 0.0005,
        maintenance_rate: float = 0.004,
        funding_rates: Callable[[Contract, int, int], list[tuple[int, float]]] | None = None,
    ) -> None:
        self.contracts = dict(contracts)
        self.wallet: dict[str, float] = {k.upper(): float(v) for k, v in balances.items()}
        self.mark = mark  # (base asset, ms) -> USD per coin
        self.now = now
        self.fee_rate = fee_rate
        self.maintenance_rate = maintenance_rate
        self.funding_rates = funding_rates
        self.positions: dict[str, LedgerPosition] = {}
        self.orders: list[LedgerOrder] = []
        self.fills: list[LedgerFill] = []
        self.funding: list[FundingEntry] = []
        self.partial_next: float | None = None
        self.reject_next: RejectKind | None = None
        self.accrued_to: int | None = None  # funding paid for settlements <= this instant
        #: the venue's own liquidation formula (contract, position, margin) -> price; None: the simple one below
        self.liq_formula: Callable[[Contract, LedgerPosition, float], float] | None = None
        self.lock = threading.RLock()
        self._ids = itertools.count(100_000_001)

    # ------------------------------------------------------------------ helpers

    def contract(self, symbol: str) -> Contract:
        try:
            return self.contracts[symbol]
        except KeyError:
            raise LedgerReject("invalid", f"unknown symbol {symbol!r}") from None

    def price(self, symbol: str, ms: int | None = None) -> float:
        c = self.contract(symbol)
        p = self.mark(c.base, self.now() if ms is None else ms)
        if p is None or not math.isfinite(p) or p <= 0:
            raise LedgerReject("invalid", f"no price for {symbol}")
        return float(p)

    def position(self, symbol: str) -> LedgerPosition:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = LedgerPosition(symbol=symbol)
        return pos

    def coins(self, c: Contract, qty: float, price: float) -> float:
        """Coins of the base for ``qty`` contracts at ``price``."""
        return qty * c.contract_size if c.kind == "linear" else qty * c.contract_size / price

    def notional_usd(self, c: Contract, qty: float, price: float) -> float:
        return abs(qty) * c.contract_size * (price if c.kind == "linear" else 1.0)

    def value_settle(self, c: Contract, qty: float, price: float) -> float:
        """|position| value in the settle asset at ``price``."""
        return abs(qty) * c.contract_size * (price if c.kind == "linear" else 1.0 / price)

    def upnl(self, symbol: str, price: float | None = None) -> float:
        """Unrealised PnL of the position in its settle asset at ``price`` (the mark when None)."""
        pos = self.positions.get(symbol)
        if pos is None or pos.qty == 0:
            return 0.0
        c = self.contract(symbol)
        p = self.price(symbol) if price is None else price
        if c.kind == "linear":
            return pos.qty * c.contract_size * (p - pos.entry_price)
        return pos.qty * c.contract_size * (1.0 / pos.entry_price - 1.0 / p)

    def initial_margin(self, symbol: str, price: float | None = None) -> float:
        pos = self.positions.get(symbol)
        if pos is None or pos.qty == 0:
            return 0.0
        c = self.contract(symbol)
        if pos.margin_mode == "isolated":
            return pos.isolated_margin
        p = self.price(symbol) if price is None else price
        return self.value_settle(c, pos.qty, p) / pos.leverage

    def used(self, asset: str) -> float:
        """Margin held by positions and open orders in ``asset``."""
        total = 0.0
        for sym, pos in self.positions.items():
            c = self.contracts[sym]
            if c.settle == asset and pos.qty != 0:
                total += self.initial_margin(sym)
        for o in self.orders:
            c = self.contracts[o.symbol]
            if o.is_open and c.settle == asset and not o.reduce_only:
                p = o.price or self.price(o.symbol)
                total += self.value_settle(c, o.qty - o.filled, p) / self.position(o.symbol).leverage
        return total

    def equity(self, asset: str) -> float:
        return self.wallet.get(asset, 0.0) + sum(
            self.upnl(s) for s, p in self.positions.items() if self.contracts[s].settle == asset and p.qty != 0
        )

    def available(self, asset: str) -> float:
        return self.equity(asset) - self.used(asset)

    def liquidation_price(self, symbol: str) -> float:
        """The venue's own (simplified, isolated-style) liquidation price of a position: equity share falls to
        the maintenance rate of the position value. ``liq_override`` wins when a test set one; nan when flat."""
        pos = self.positions.get(symbol)
        if pos is None or pos.qty == 0:
            return math.nan
        if pos.liq_override is not None:
            return pos.liq_override
        c = self.contract(symbol)
        margin = pos.isolated_margin if pos.margin_mode == "isolated" else self.wallet.get(c.settle, 0.0)
        if self.liq_formula is not None:
            return self.liq_formula(c, pos, margin)
        q = pos.qty * c.contract_size  # signed coins (linear) or USD (inverse)
        mmr = self.maintenance_rate
        if c.kind == "linear":
            # margin + q (P - E) = mmr |q| P
            denom = q - mmr * abs(q)
            if denom == 0:
                return math.nan
            return (q * pos.entry_price - margin) / denom
        # inverse: margin + q (1/E - 1/P) = mmr |q| / P   ->  1/P = (margin + q/E) / (q + mmr |q|)
        inv = (margin + q / pos.entry_price) / (q + mmr * abs(q))
        return 1.0 / inv if inv > 0 else math.inf

    # ------------------------------------------------------------------ funding

    def accrue(self) -> None:
        """Pay funding for every settlement in ``(accrued_to, now]`` on the positions held (short earns rate > 0)."""
        with self.lock:
            now = self.now()
            if self.accrued_to is None:
                self.accrued_to = now
                return
            if now <= self.accrued_to or self.funding_rates is None:
                self.accrued_to = max(self.accrued_to, now)
                return
            for sym, pos in self.positions.items():
                if pos.qty == 0:
                    continue
                c = self.contracts[sym]
                for ms, rate in self.funding_rates(c, self.accrued_to, now):
                    self.settle_funding(sym, rate, ms)
            self.accrued_to = now

    def settle_funding(self, symbol: str, rate: float, ts_ms: int) -> FundingEntry | None:
        """One settlement: a position of signed ``qty`` receives ``-rate · qty · value`` (longs pay when > 0)."""
        with self.lock:
            pos = self.positions.get(symbol)
            if pos is None or pos.qty == 0:
                return None
            c = self.contract(symbol)
            p = self.price(symbol, ts_ms)
            value = self.value_settle(c, pos.qty, p)
            amount = -rate * value * (1.0 if pos.qty > 0 else -1.0)
            self.wallet[c.settle] = self.wallet.get(c.settle, 0.0) + amount
            if pos.margin_mode == "isolated":
                pos.isolated_margin += amount
            entry = FundingEntry(symbol, c.settle, amount, rate, ts_ms, str(next(self._ids)))
            self.funding.append(entry)
            return entry

    # ------------------------------------------------------------------ orders

    def find(self, symbol: str | None = None, *, client_id: str = "", venue_id: str = "") -> LedgerOrder | None:
        with self.lock:
            for o in reversed(self.orders):
                if symbol is not None and o.symbol != symbol:
                    continue
                if (client_id and o.client_id == client_id) or (venue_id and o.venue_id == venue_id):
                    return o
            return None

    def open_orders(self, symbol: str | None = None) -> list[LedgerOrder]:
        with self.lock:
            return [o for o in self.orders if o.is_open and (symbol is None or o.symbol == symbol)]

    def place(
        self,
        symbol: str,
        side: Literal["buy", "sell"],
        type_: Literal["market", "limit"],
        qty: float,
        *,
        price: float | None = None,
        reduce_only: bool = False,
        client_id: str = "",
    ) -> LedgerOrder:
        """Accept (and fill what can fill of) an order, or raise :class:`LedgerReject`."""
        with self.lock:
            self.accrue()
            c = self.contract(symbol)
            now = self.now()
            if client_id and any(o.client_id == client_id for o in self.orders if o.is_open):
                raise LedgerReject("duplicate", f"client order id {client_id} is already used by an open order")
            if not (math.isfinite(qty) and qty > 0):
                raise LedgerReject("invalid", f"quantity must be > 0, was {qty}")
            steps = qty / c.lot
            if abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
                raise LedgerReject("invalid", f"quantity {qty} is not a multiple of the lot {c.lot}")
            if type_ == "limit":
                if price is None or not (math.isfinite(price) and price > 0):
                    raise LedgerReject("invalid", "a limit order needs a price > 0")
                ticks = price / c.tick
                if abs(ticks - round(ticks)) > 1e-9 * max(1.0, ticks):
                    raise LedgerReject("invalid", f"price {price} is not a multiple of the tick {c.tick}")
            reject, self.reject_next = self.reject_next, None
            if reject is not None:
                raise LedgerReject(reject, f"injected rejection: {reject}")
            mark = self.price(symbol)
            if self.notional_usd(c, qty, price or mark) < c.min_notional_usd and not reduce_only:
                raise LedgerReject("min_notional", f"order notional must be >= {c.min_notional_usd} USD")
            pos = self.position(symbol)
            signed = qty if side == "buy" else -qty
            if reduce_only and (pos.qty == 0 or (pos.qty > 0) == (signed > 0) or abs(signed) > abs(pos.qty) + 1e-12):
                raise LedgerReject("reduce_only", "reduce-only order would increase or flip the position")
            increases = pos.qty == 0 or (pos.qty > 0) == (signed > 0)
            if increases:
                need = self.value_settle(c, qty, price or mark) / pos.leverage + self.fee_rate * self.value_settle(
                    c, qty, price or mark
                )
                if need > self.available(c.settle) + 1e-12:
                    raise LedgerReject("insufficient_margin", f"margin is insufficient: needs {need:.8g} {c.settle}")
            order = LedgerOrder(
                venue_id=str(next(self._ids)),
                client_id=client_id,
                symbol=symbol,
                side=side,
                type=type_,
                qty=qty,
                price=price,
                reduce_only=reduce_only,
                status="open",
                created_ms=now,
                updated_ms=now,
            )
            self.orders.append(order)
            fillable = (
                type_ == "market"
                or (side == "buy" and price is not None and price >= mark)
                or (side == "sell" and price is not None and price <= mark)
            )
            if fillable:
                frac, self.partial_next = self.partial_next, None
                fill_qty = qty if frac is None else max(c.lot, round(qty * frac / c.lot) * c.lot)
                fill_qty = min(fill_qty, qty)
                self._fill(order, fill_qty, mark, now)
                if order.filled < qty - 1e-12:
                    order.status = "expired" if type_ == "market" else "partially_filled"
            return order

    def _fill(self, order: LedgerOrder, qty: float, price: float, now: int) -> None:
        c = self.contracts[order.symbol]
        pos = self.position(order.symbol)
        signed = qty if order.side == "buy" else -qty
        fee = self.fee_rate * self.value_settle(c, qty, price)
        realized = 0.0
        if pos.qty != 0 and (pos.qty > 0) != (signed > 0):
            closing = min(abs(signed), abs(pos.qty))
            closed_signed = closing if pos.qty > 0 else -closing
            if c.kind == "linear":
                realized = closed_signed * c.contract_size * (price - pos.entry_price)
            else:
                realized = closed_signed * c.contract_size * (1.0 / pos.entry_price - 1.0 / price)
            rest = signed + closed_signed  # what is left after closing (opens the other way when it flips)
            new_qty = pos.qty + signed
            if pos.margin_mode == "isolated" and pos.qty != 0:
                pos.isolated_margin *= max(0.0, 1.0 - closing / abs(pos.qty))
            if abs(new_qty) < 1e-12:
                pos.qty, pos.entry_price = 0.0, 0.0
            elif abs(rest) > 1e-12:
                pos.qty, pos.entry_price = new_qty, price
            else:
                pos.qty = new_qty
        else:
            new_qty = pos.qty + signed
            if c.kind == "linear":
                entry = (abs(pos.qty) * pos.entry_price + abs(signed) * price) / abs(new_qty)
            else:  # harmonic: contracts over the sum of contract values in coin
                coin = (abs(pos.qty) / pos.entry_price if pos.qty else 0.0) + abs(signed) / price
                entry = abs(new_qty) / coin
            pos.qty, pos.entry_price = new_qty, entry
            if pos.margin_mode == "isolated":
                pos.isolated_margin += self.value_settle(c, qty, price) / pos.leverage
        pos.updated_ms = now
        self.wallet[c.settle] = self.wallet.get(c.settle, 0.0) + realized - fee
        fill = LedgerFill(
            trade_id=str(next(self._ids)),
            venue_id=order.venue_id,
            client_id=order.client_id,
            symbol=order.symbol,
            side=order.side,
            qty=qty,
            price=price,
            fee=fee,
            fee_asset=c.settle,
            realized_pnl=realized,
            ts_ms=now,
        )
        order.avg_price = (order.avg_price * order.filled + price * qty) / (order.filled + qty)
        order.filled += qty
        order.fills.append(fill)
        order.updated_ms = now
        order.status = "filled" if order.filled >= order.qty - 1e-12 else "partially_filled"
        self.fills.append(fill)

    def cancel(self, symbol: str | None = None, *, client_id: str = "", venue_id: str = "") -> LedgerOrder:
        """Cancel an open order; raises ``LedgerReject('invalid')`` when it is unknown or no longer open."""
        with self.lock:
            order = self.find(symbol, client_id=client_id, venue_id=venue_id)
            if order is None:
                raise LedgerReject("invalid", "unknown order")
            if not order.is_open:
                raise LedgerReject("invalid", f"order is {order.status}, not open")
            order.status = "cancelled"
            order.updated_ms = self.now()
            return order

    # ------------------------------------------------------------------ by hand (tests)

    def set_position(self, symbol: str, qty: float, entry_price: float | None = None) -> None:
        """Change a position as a user would on the venue's website (no order of ours, no fill row)."""
        with self.lock:
            pos = self.position(symbol)
            pos.qty = float(qty)
            pos.entry_price = float(entry_price if entry_price is not None else self.price(symbol))
            pos.updated_ms = self.now()
            if qty == 0:
                pos.entry_price = 0.0

    def fills_since(self, symbol: str | None, since_ms: int = 0) -> list[LedgerFill]:
        with self.lock:
            return [f for f in self.fills if (symbol is None or f.symbol == symbol) and f.ts_ms >= since_ms]

    def funding_since(self, symbol: str | None, since_ms: int = 0) -> list[FundingEntry]:
        with self.lock:
            self.accrue()
            return [f for f in self.funding if (symbol is None or f.symbol == symbol) and f.ts_ms >= since_ms]


def bundled_contracts(exchange: str) -> dict[str, Contract]:
    """The perpetuals of ``exchange`` in the bundled specs, as a fake venue's ledger lists them."""
    from perphedge.specs import bundled_instruments

    return {
        inst.symbol: Contract(
            symbol=inst.symbol,
            kind="inverse" if inst.is_inverse else "linear",
            base=inst.base,
            settle=inst.settle,
            contract_size=inst.contract_size,
            lot=inst.lot_size,
            tick=inst.tick_size,
            min_notional_usd=5.0,
            funding_key=(exchange, inst.symbol),
        )
        for inst in bundled_instruments()
        if inst.exchange == exchange
    }


def decimal_text(x: float) -> str:
    """A decimal string as venues write numbers (no exponent, no float noise; "" for a non-finite value)."""
    if not math.isfinite(x):
        return ""
    text = format(Decimal(repr(float(x))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
