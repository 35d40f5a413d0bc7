"""The book's value types and the two ports it talks through: :class:`Account` and :class:`Feed`.

Pure: no I/O. A *book* holds spot holdings (wallets, DeFi) and short perpetual positions on one or more
accounts. The use case (``usecases/book.py``) reads a :class:`FeedSnapshot` from a :class:`Feed`,
asks each :class:`Account` to :meth:`Account.sync` to it (funding settlements, liquidations), decides
with :mod:`perphedge.core.legstep` and sends :class:`OrderRequest` / :class:`TransferRequest` through the
account. The paper account (``exchange/paper.py``) and, later, live ccxt accounts implement
:class:`Account`; the store, live-ticker and portfolio feeds implement :class:`Feed`.

Units (every amount says its unit in its name or docstring):

* prices: USD per coin of the instrument's base;
* ``contracts``: the instrument's contracts (``Instrument.contract_size`` each), a short is positive;
* ``*_settle``: the instrument's settle asset (coin for inverse, quote for linear);
* ``*_usd``: USD at the snapshot's price;
* times: epoch milliseconds, UTC.

Funding sign: ``rate > 0`` means longs pay shorts, so a short hedge *receives* ``rate · value``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "Account",
    "AccountEvent",
    "Balance",
    "Feed",
    "FeedSnapshot",
    "Fill",
    "FundingPayment",
    "FundingSettlement",
    "Liquidation",
    "OrderRequest",
    "OrderResult",
    "OrderStatus",
    "Position",
    "Side",
    "TransferRequest",
    "TransferResult",
]

Side = Literal["sell", "buy"]
OrderStatus = Literal["filled", "partially_filled", "open", "cancelled", "rejected", "expired", "not_found"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Balance:
    """One asset of one account: ``wallet = free + used`` (units of ``asset``)."""

    account: str
    asset: str
    wallet: float
    free: float
    used: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Position:
    """A short perpetual position as the venue (or the paper account) holds it.

    ``contracts`` >= 0 (a short; 0 = flat), ``entry_price`` USD per coin (``entry_basis`` says how the venue
    averages it), ``margin_settle`` the isolated margin in the settle asset, ``liquidation_price`` the
    venue's trigger (``inf`` = cannot be liquidated, ``nan`` = unknown), ``mmr`` / ``cum_settle`` the
    maintenance tier in force. ``state`` is the paper account's :mod:`~perphedge.core.legstep` state vector
    (8 floats) when there is one, so the book's decisions run on exactly the numbers the account keeps.
    """

    account: str
    instrument: str
    contracts: float
    entry_price: float
    margin_settle: float
    settle_asset: str
    liquidation_price: float
    mmr: float
    cum_settle: float
    entry_basis: Literal["settled", "harmonic", "arithmetic"] = "settled"
    updated_ms: int = 0
    state: tuple[float, ...] | None = None
    # live accounts (what the venue reports; nan / "" when the venue does not say)
    mark_price: float = float("nan")  # USD per coin
    leverage: float = float("nan")
    margin_mode: Literal["isolated", "cross", ""] = ""
    unrealized_settle: float = float("nan")


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRequest:
    """An order the book wants sent: to ``side`` ``contracts`` (lot multiple), at market or as a limit order.

    ``client_id`` is derived from (book, decision, leg, attempt), so a resent or resumed order carries the
    same id and is never doubled. ``ref_price`` is the price the decision used (USD per coin).
    ``order_type == "limit"`` rests at ``limit_price`` (USD per coin, a tick multiple).
    """

    client_id: str
    account: str
    instrument: str
    side: Side
    contracts: float
    reduce_only: bool
    ref_price: float
    decision: int
    leg: int
    attempt: int = 0
    order_type: Literal["market", "limit"] = "market"
    limit_price: float = float("nan")


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill:
    """One execution: ``contracts`` at ``price`` (USD per coin; display price incl. slippage), its fee."""

    fill_id: str
    client_id: str
    account: str
    instrument: str
    side: Side
    contracts: float
    price: float
    fee_settle: float
    slippage_settle: float
    fee_usd: float
    slippage_usd: float
    settle_asset: str
    ts_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderResult:
    """What the venue says about one order (found by its client id)."""

    client_id: str
    account: str
    instrument: str
    status: OrderStatus
    venue_id: str = ""
    filled_contracts: float = 0.0
    avg_price: float = float("nan")
    fills: tuple[Fill, ...] = ()
    reason: str = ""

    @property
    def terminal(self) -> bool:
        """No further fills can come."""
        return self.status not in ("open", "partially_filled")


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferRequest:
    """Move ``amount_settle`` (> 0 into the position's isolated margin, < 0 out) between wallet and margin.

    ``transfer_id`` makes it idempotent: a second request with the same id changes nothing. ``reset``:
    set the margin to ``value / leverage`` at the snapshot's price (the backtest's margin reset after a
    fill, :func:`perphedge.core.legstep.reset_margin`); ``amount_settle`` is then what the book expects
    and the account books the exact move it made.
    """

    transfer_id: str
    account: str
    instrument: str
    amount_settle: float
    reason: Literal["rebalance", "top_up"]
    decision: int
    leg: int
    reset: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferResult:
    """A transfer as booked: ``amount_settle`` moved into the margin (settle units), and where it came from:
    ``cash_usd`` out of the wallet's quote/stablecoin (a fee-free conversion at the snapshot price for bought
    coin collateral), ``coins`` out of the wallet's coin of the base (collateral from holdings; the wallet
    may go below zero: coins drawn from the off-exchange holdings)."""

    transfer_id: str
    account: str
    instrument: str
    amount_settle: float
    asset: str
    applied: bool  # False: already booked earlier under the same id, or refused (then ``reason`` says why)
    cash_usd: float = 0.0
    coins: float = 0.0
    duplicate: bool = False  # True: this id was booked before; nothing changed now
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingPayment:
    """One funding settlement on one position: ``amount_settle`` > 0 received (the short earned it)."""

    account: str
    instrument: str
    settlement_ms: int
    rate: float
    amount_settle: float
    asset: str
    amount_usd: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Liquidation:
    """A position closed by the venue's liquidation at ``price`` (USD per coin); the margin is lost."""

    account: str
    instrument: str
    ts_ms: int
    price: float
    contracts: float
    loss_settle: float
    loss_usd: float
    asset: str


AccountEvent = FundingPayment | Liquidation


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingSettlement:
    """A funding settlement of ``instrument`` at ``settlement_ms`` with ``rate`` for its interval."""

    instrument: str
    settlement_ms: int
    rate: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedSnapshot:
    """Prices at ``now_ms``.

    ``prices``: USD per coin by asset code (upper case; stablecoins may be absent = 1 USD). ``highs``:
    the highest price of the asset since the previous snapshot (for liquidation checks; = price when the
    feed has no intrabar data). ``funding``: per instrument id, the settlements in ``(since_ms, now_ms]``.
    ``funding_rate_8h``: the rate in force now per instrument (expected carry). ``last_price_ms``: the
    oldest of the price timestamps used; ``stale`` is decided by the feed against the book's
    ``alerts.feed_stale_after``.
    """

    now_ms: int
    source: str
    prices: Mapping[str, float]
    highs: Mapping[str, float]
    funding: Mapping[str, tuple[FundingSettlement, ...]] = field(default_factory=dict)
    funding_rate_8h: Mapping[str, float] = field(default_factory=dict)
    last_price_ms: int = 0
    stale: bool = False
    bar: int | None = None  # replay: the bar index of the history; None for live feeds

    def price(self, asset: str) -> float:
        """USD per coin of ``asset`` (KeyError when the feed has none)."""
        return self.prices[asset.upper()]


@runtime_checkable
class Feed(Protocol):
    """Where prices and funding come from (store, live public tickers, the portfolio file)."""

    kind: str

    def snapshot(self, now_ms: int, since_ms: int) -> FeedSnapshot:
        """Prices at ``now_ms``; funding settlements and highs over ``(since_ms, now_ms]``."""
        ...


@runtime_checkable
class Account(Protocol):
    """An exchange account holding the book's short legs (paper now; live ccxt accounts later).

    Every method is safe to call again after a crash: ``place_order`` with a client id the account
    already knows returns the existing order instead of trading twice, ``transfer`` with a known id
    changes nothing, and ``sync`` reports each funding settlement and liquidation once per
    ``(instrument, settlement_ms)`` however often it is called (the journal's unique keys enforce it too).
    """

    name: str
    venue: str
    kind: str  # "paper" | "exchange"

    def balances(self) -> list[Balance]:
        """Wallet balances by asset."""
        ...

    def positions(self) -> list[Position]:
        """Open (and flat but known) positions."""
        ...

    def sync(self, snap: FeedSnapshot) -> list[AccountEvent]:
        """Bring the account to ``snap.now_ms``: funding settlements and liquidations since the last sync."""
        ...

    def place_order(self, req: OrderRequest, snap: FeedSnapshot) -> OrderResult:
        """Send ``req`` (market). Raises :class:`~perphedge.errors.ExchangeError` when the outcome is unknown."""
        ...

    def fetch_order(self, instrument: str, client_id: str) -> OrderResult | None:
        """The order with ``client_id`` (None when the venue has never seen it)."""
        ...

    def transfer(self, req: TransferRequest, snap: FeedSnapshot) -> TransferResult:
        """Move margin between the wallet and the position (idempotent by ``transfer_id``)."""
        ...

    def open_orders(self) -> list[OrderResult]:
        """Orders resting at the venue on the book's instruments (ours and any other)."""
        ...

    def cancel_order(self, instrument: str, client_id: str) -> OrderResult | None:
        """Cancel the open order ``client_id``; its final state (None when the venue has never seen it)."""
        ...
