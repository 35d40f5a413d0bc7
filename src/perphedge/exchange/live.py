"""Live exchange accounts through ccxt: one generic :class:`CcxtAccount` and a :class:`VenueDialect` per venue.

:class:`CcxtAccount` implements :class:`perphedge.core.book.Account` for a real (or fake) venue account. Everything
that differs between venues lives in a dialect (``exchange/live_<venue>.py``): the ccxt id and client options, the
order parameters carrying our client id and reduce-only flag, lookup and cancel by client id, fills, funding, how
venue errors split into definitive rejections and unknown outcomes, the margin mode / leverage / liquidation price
of a position, and the venue's request weights. :func:`open_live_account` picks the dialect by venue name.

Safety rules kept here, for every venue:

* ``read_only`` accounts refuse :meth:`CcxtAccount.place_order` and :meth:`CcxtAccount.cancel_order` with a
  :class:`~perphedge.errors.ConfigError` before anything is sent.
* ``create_order`` is sent **once**: a timeout, a dropped connection, a 5xx, a 429 or a maintenance answer raises
  :class:`~perphedge.errors.ExchangeError` (the outcome is unknown) and the caller looks the client id up
  (:meth:`CcxtAccount.fetch_order`) before anything is resent. Reads are retried (``Retry-After`` honoured).
* A definitive venue rejection is an ``OrderResult(status="rejected", reason="<kind>: <venue code and message>")``
  with a neutral kind (``min_notional``, ``insufficient_margin``, ``reduce_only``, ``rate_limited``, ``invalid``,
  ``duplicate``).
* Secrets go into the ccxt client only. Every message this module raises is scrubbed of signatures, API-key
  headers and the credential values, and is raised ``from None`` (no ccxt text in the chain); ``repr`` shows none.
* Every HTTP request ccxt makes passes a per-venue weight budget (:class:`WeightBudget`): the account waits
  rather than exceed the venue's published weight per window.

Units: ``Position.contracts`` in our instrument's contracts (short positive; a long shows negative); balances and
margins in the asset they are held in; prices USD per coin; times epoch ms (UTC).

Writing a dialect: a module ``perphedge.exchange.live_<venue>`` (see :data:`VENUES`) defines subclasses of
:class:`VenueDialect` and ``DIALECTS: dict[str, type[VenueDialect]]`` mapping its venue names to them (built with no
arguments). Override only what differs from the ccxt-unified defaults: ``client_config`` / ``prepare_client`` /
``apply_sandbox`` (client set-up), ``check_account`` (refuse an account the adapter cannot trade safely),
``weight`` / ``venue_used_weight`` (the budget), ``classify`` (errors → :class:`Classified`), ``fetch_balances``,
``fetch_positions`` / ``parse_position`` (→ :class:`VenuePosition`), ``fetch_open_orders``,
``fetch_order_by_client_id`` / ``cancel_by_client_id`` (None when the venue does not know the id),
``fetch_order_trades``, ``fetch_funding`` (→ :class:`VenueFunding`), ``fetch_liquidations``, ``order_params`` /
``create_order``, ``entry_basis``, ``check_market``. Dialect methods raise ccxt's exceptions as they come; the
account classifies, retries (reads only) and scrubs them.
"""

from __future__ import annotations

import functools
import importlib
import logging
import math
import os
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

from perphedge.core.book import (
    AccountEvent,
    Balance,
    FeedSnapshot,
    Fill,
    FundingPayment,
    Liquidation,
    OrderRequest,
    OrderResult,
    OrderStatus,
    Position,
    TransferRequest,
    TransferResult,
)
from perphedge.errors import ConfigError, ExchangeError, PerphedgeError

if TYPE_CHECKING:
    from perphedge.core.instruments import Instrument

__all__ = [
    "VENUES",
    "CcxtAccount",
    "Classified",
    "RejectKind",
    "VenueDialect",
    "VenueFunding",
    "VenuePosition",
    "WeightBudget",
    "dialect_for",
    "open_live_account",
    "round_to_lot",
    "round_to_tick",
    "scrub",
]

#: venue name -> module under ``perphedge.exchange`` that defines its dialect (``DIALECTS[venue]``)
VENUES: dict[str, str] = {
    "binance_usdm": "live_binance",
    "binance_coinm": "live_binance",
    "bybit": "live_bybit",
    "okx": "live_okx",
    "hyperliquid": "live_hyperliquid",
}

RejectKind = Literal["min_notional", "insufficient_margin", "reduce_only", "rate_limited", "invalid", "duplicate"]
Outcome = Literal["reject", "unknown", "not_found", "auth", "retry"]


# ---------------------------------------------------------------------------------------------- redaction

_SIGNATURE = re.compile(r"(?i)(signature|sign|sig)([\"']?\s*[=:]\s*[\"']?)[^&\s\"',}]+")
_KEY_HEADERS = re.compile(
    r"(?i)(x-mbx-apikey|x-bapi-api-key|x-bapi-sign|ok-access-key|ok-access-sign|ok-access-passphrase|apikey|api_key|"
    r"privatekey|private_key|secret|passphrase)([\"']?\s*[=:]\s*[\"']?)[^&\s\"',}]+"
)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without request signatures, API-key headers and the literal ``secrets`` (each replaced by
    ``<redacted>``); safe to raise, log or journal."""
    out = str(text)
    for value in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        out = out.replace(value, "<redacted>")
    out = _SIGNATURE.sub(r"\1\2<redacted>", out)
    return _KEY_HEADERS.sub(r"\1\2<redacted>", out)


class _Secrets:
    """The credential values, kept only to scrub them out of messages; never shown."""

    __slots__ = ("_values",)

    def __init__(self, values: Iterable[str]) -> None:
        self._values = tuple(v for v in values if v)

    def scrub(self, text: str) -> str:
        return scrub(text, self._values)

    def __repr__(self) -> str:
        return "<secrets redacted>"

    __str__ = __repr__


class _WireLog:
    """The ccxt client's logger: ccxt logs every request with its headers (the API key) at DEBUG; this one
    scrubs each message before it reaches ``perphedge.exchange.wire``."""

    def __init__(self, secrets: _Secrets) -> None:
        self._log = logging.getLogger("perphedge.exchange.wire")
        self._secrets = secrets

    def _emit(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        if not self._log.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = " ".join(str(a) for a in (msg, *args))
        self._log.log(level, "%s", self._secrets.scrub(text))

    def debug(self, msg: object, *args: object, **kwargs: object) -> None:
        self._emit(logging.DEBUG, msg, *args)

    def info(self, msg: object, *args: object, **kwargs: object) -> None:
        self._emit(logging.INFO, msg, *args)

    def warning(self, msg: object, *args: object, **kwargs: object) -> None:
        self._emit(logging.WARNING, msg, *args)

    warn = warning

    def error(self, msg: object, *args: object, **kwargs: object) -> None:
        self._emit(logging.ERROR, msg, *args)

    def exception(self, msg: object, *args: object, **kwargs: object) -> None:
        self._emit(logging.ERROR, msg, *args)

    def critical(self, msg: object, *args: object, **kwargs: object) -> None:
        self._emit(logging.CRITICAL, msg, *args)

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (logging's name)
        return self._log.isEnabledFor(level)

    def __repr__(self) -> str:
        return "<perphedge.exchange.wire (scrubbed)>"


def _one_line(text: str, n: int = 300) -> str:
    return " ".join(str(text).split())[:n]


# ---------------------------------------------------------------------------------------------- weight budget


class WeightBudget:
    """A sliding-window request-weight budget: at most ``limit`` weight in any ``window_ms``.

    :meth:`acquire` blocks (``sleep``) until the request fits and books it; :meth:`done` moves the booking to the
    moment the answer came back, so the window is counted from the latest instant the venue can have seen the
    request (a request's arrival lies between the two: latency jitter never makes two windows overlap at the
    venue). A request heavier than the whole budget waits for an empty window. :meth:`observe_venue` folds in the
    venue's own count (e.g. Binance ``X-MBX-USED-WEIGHT-1M``) when it is higher than ours (another process on the
    same IP or key).
    """

    def __init__(
        self,
        limit: float,
        window_ms: int = 60_000,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not (math.isfinite(limit) and limit > 0):
            raise ConfigError(f"invalid weight budget: `limit` must be a number > 0, was {limit!r}")
        if not (isinstance(window_ms, int) and window_ms > 0):
            raise ConfigError(f"invalid weight budget: `window_ms` must be a whole number > 0, was {window_ms!r}")
        self.limit = float(limit)
        self.window_ms = window_ms
        self._clock = clock
        self._sleep = sleep
        self._spent: deque[list[float]] = deque()  # [clock seconds, weight], oldest first
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def _trim(self, now: float) -> None:
        horizon = now - self.window_ms / 1000.0
        while self._spent and self._spent[0][0] <= horizon:
            self._spent.popleft()

    def used(self) -> float:
        """Weight spent in the window ending now."""
        with self._lock:
            self._trim(self._clock())
            return sum(e[1] for e in self._spent)

    def acquire(self, weight: float) -> list[float]:
        """Wait until ``weight`` fits in the window, then book it; returns the booking (for :meth:`done`)."""
        weight = max(0.0, float(weight))
        while True:
            with self._lock:
                now = self._clock()
                self._trim(now)
                used = sum(e[1] for e in self._spent)
                if used + weight <= self.limit or not self._spent:
                    entry = [now, weight]
                    self._spent.append(entry)
                    return entry
                # wait until enough of the oldest entries leave the window
                need = used + weight - self.limit
                freed = 0.0
                wait_until = now
                for ts, w in self._spent:
                    freed += w
                    wait_until = ts + self.window_ms / 1000.0
                    if freed >= need:
                        break
                wait = max(0.001, wait_until - now + 0.001)
            self.waited_s += wait
            self._sleep(wait)

    def done(self, entry: list[float]) -> None:
        """The request of ``entry`` was answered (or failed): count its window from now."""
        with self._lock:
            entry[0] = max(entry[0], self._clock())
            if len(self._spent) > 1 and self._spent[-1] is not entry:
                self._spent = deque(sorted(self._spent, key=lambda e: e[0]))

    def observe_venue(self, used_by_venue: float) -> None:
        """The venue says ``used_by_venue`` weight is spent in its window: book the excess over ours now."""
        with self._lock:
            now = self._clock()
            self._trim(now)
            ours = sum(e[1] for e in self._spent)
            if used_by_venue > ours:
                self._spent.append([now, used_by_venue - ours])


# ---------------------------------------------------------------------------------------------- dialect


@dataclass(frozen=True, slots=True)
class Classified:
    """What a venue error means. ``outcome``: ``reject`` (definitive; ``kind`` says which), ``unknown`` (the
    request may have been applied), ``not_found`` (the venue does not know the order), ``auth`` (bad key,
    signature or permissions), ``retry`` (a read may simply be sent again: rate limit, 5xx, network)."""

    outcome: Outcome
    kind: RejectKind | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class VenuePosition:
    """One position as the venue reports it. ``contracts`` signed (< 0 short) in the venue's contracts of
    ``symbol`` (ccxt unified symbol); ``nan`` / ``""`` where the venue does not say."""

    symbol: str
    contracts: float
    entry_price: float
    mark_price: float = math.nan
    leverage: float = math.nan
    margin_mode: Literal["isolated", "cross", ""] = ""
    isolated_margin: float = math.nan  # settle asset; the position's margin in isolated mode
    initial_margin: float = math.nan  # settle asset
    liquidation_price: float = math.nan  # USD per coin; inf = cannot be liquidated
    unrealized: float = math.nan  # settle asset
    mmr: float = math.nan
    updated_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class VenueFunding:
    """One funding ledger entry: ``amount`` (> 0 received) in ``asset`` for ``symbol`` at ``ts_ms``."""

    symbol: str
    ts_ms: int
    amount: float
    asset: str
    rate: float = math.nan
    entry_id: str = ""


class VenueDialect:
    """Per-venue differences behind :class:`CcxtAccount`. Subclass per venue; the defaults use ccxt's unified
    methods and exception classes, so a dialect overrides only what its venue does differently.

    Class attributes:

    ``venue``            our venue name (a key of :data:`VENUES`)
    ``ccxt_id``          the ccxt exchange class (``binanceusdm``)
    ``exchange``         the ``Instrument.exchange`` this venue's instruments carry (``binance``)
    ``kinds``            the contract kinds it lists (``("linear",)``, ``("inverse",)``, or both)
    ``credentials``      the credential keys it needs (subset of ``key``, ``secret``, ``password``)
    ``weight_limit``     the venue's published request weight per ``weight_window_ms`` (0 = no budget)
    ``default_weight``   the weight of a request :meth:`weight` does not know
    ``client_id_pattern`` regex our client ids must match for this venue
    """

    venue: str = ""
    ccxt_id: str = ""
    exchange: str = ""
    kinds: tuple[str, ...] = ("linear", "inverse")
    credentials: tuple[str, ...] = ("key", "secret")
    weight_limit: float = 0.0
    weight_window_ms: int = 60_000
    default_weight: float = 1.0
    client_id_pattern: str = r"^[A-Za-z0-9]{1,32}$"

    # -- client ---------------------------------------------------------------------------------------------

    def client_config(self, credentials: Mapping[str, str], options: Mapping[str, Any]) -> dict[str, Any]:
        """The ccxt constructor config: credentials and ccxt options (``options["ccxt"]`` merged in)."""
        config: dict[str, Any] = {
            "apiKey": credentials.get("key", ""),
            "secret": credentials.get("secret", ""),
            "enableRateLimit": True,
            "options": {"fetchCurrencies": False, "defaultType": "swap", **dict(options.get("ccxt") or {})},
        }
        if credentials.get("password"):
            config["password"] = credentials["password"]
        return config

    def prepare_client(self, client: Any) -> None:
        """Adjust a freshly built client (before any request)."""
        client.has["fetchCurrencies"] = False

    def apply_sandbox(self, client: Any) -> None:
        """Point the client at the venue's testnet/demo; ConfigError when ccxt has none for this venue."""
        if not client.urls.get("test"):
            raise ConfigError(f"invalid `sandbox` for venue {self.venue}: ccxt has no testnet for {self.ccxt_id}")
        client.set_sandbox_mode(True)

    def check_account(self, client: Any, read_only: bool) -> None:
        """Refuse (ConfigError) an account set up in a way the adapter cannot trade safely (called at open,
        after the markets are loaded); default: nothing to check."""

    def load_markets(self, client: Any) -> dict[str, Any]:
        """Markets by unified symbol."""
        return cast(dict[str, Any], client.load_markets())

    # -- weights ------------------------------------------------------------------------------------------

    def weight(self, method: str, path: str, query: Mapping[str, str]) -> float:
        """The weight the venue counts for one request (``path`` without host)."""
        return self.default_weight

    def venue_used_weight(self, headers: Mapping[str, str]) -> float | None:
        """The weight the venue says is used in its current window (from response headers), or None."""
        return None

    # -- errors -------------------------------------------------------------------------------------------

    def classify(self, exc: BaseException) -> Classified:
        """Map a ccxt exception to an outcome (defaults: ccxt's exception classes)."""
        import ccxt

        text = _one_line(str(exc))
        if isinstance(exc, ccxt.OrderNotFound):
            return Classified("not_found", None, text)
        if isinstance(exc, ccxt.DuplicateOrderId):
            return Classified("reject", "duplicate", text)
        if isinstance(exc, ccxt.InsufficientFunds):
            return Classified("reject", "insufficient_margin", text)
        if isinstance(exc, ccxt.AuthenticationError | ccxt.PermissionDenied | ccxt.AccountSuspended):
            return Classified("auth", None, text)
        if isinstance(exc, ccxt.InvalidOrder):
            return Classified("reject", "invalid", text)
        if isinstance(exc, ccxt.OperationFailed):  # network, timeout, 429, 5xx, maintenance
            return Classified("retry", None, text)
        if isinstance(exc, ccxt.BadRequest):
            return Classified("reject", "invalid", text)
        return Classified("unknown", None, text)

    # -- reads ----------------------------------------------------------------------------------------------

    def fetch_balances(self, client: Any) -> list[tuple[str, float, float, float]]:
        """``(asset, wallet, free, used)`` of the derivatives wallet holding the margin."""
        bal = client.fetch_balance()
        out = []
        for asset, total in (bal.get("total") or {}).items():
            if total is None:
                continue
            free = (bal.get("free") or {}).get(asset)
            used = (bal.get("used") or {}).get(asset)
            t = float(total)
            f = float(free) if free is not None else t
            u = float(used) if used is not None else t - f
            out.append((str(asset), t, f, u))
        return out

    def fetch_positions(self, client: Any, symbols: Sequence[str]) -> list[VenuePosition]:
        """Open positions on ``symbols`` (ccxt unified)."""
        return [self.parse_position(p) for p in client.fetch_positions(list(symbols)) if p.get("symbol") in symbols]

    def parse_position(self, p: Mapping[str, Any]) -> VenuePosition:
        """A ccxt position structure as a :class:`VenuePosition`."""
        contracts = _f(p.get("contracts"), 0.0)
        side = p.get("side")
        signed = -abs(contracts) if side == "short" else abs(contracts)
        raw_mode = p.get("marginMode")
        mode: Literal["isolated", "cross", ""] = raw_mode if raw_mode in ("isolated", "cross") else ""
        iso = _f(p.get("collateral")) if mode == "isolated" else math.nan
        return VenuePosition(
            symbol=str(p.get("symbol")),
            contracts=signed,
            entry_price=_f(p.get("entryPrice")),
            mark_price=_f(p.get("markPrice")),
            leverage=_f(p.get("leverage")),
            margin_mode=mode,
            isolated_margin=iso,
            initial_margin=_f(p.get("initialMargin")),
            liquidation_price=_f(p.get("liquidationPrice")),
            unrealized=_f(p.get("unrealizedPnl")),
            mmr=_f(p.get("maintenanceMarginPercentage")),
            updated_ms=int(p.get("timestamp") or 0),
        )

    def fetch_open_orders(self, client: Any, symbol: str) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], client.fetch_open_orders(symbol))

    def fetch_order_by_client_id(self, client: Any, symbol: str, client_id: str) -> dict[str, Any] | None:
        """The ccxt order with our ``client_id``; None when the venue does not know it. Errors propagate."""
        import ccxt

        try:
            return cast(dict[str, Any], client.fetch_order(None, symbol, {"clientOrderId": client_id}))
        except ccxt.OrderNotFound:
            return None

    def fetch_order_trades(self, client: Any, symbol: str, order: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The fills (ccxt trades) of ``order``."""
        trades = client.fetch_my_trades(symbol, None, None, {"orderId": order.get("id")})
        return [t for t in trades if str(t.get("order")) == str(order.get("id"))]

    def fetch_funding(self, client: Any, symbol: str, since_ms: int) -> list[VenueFunding]:
        """Funding ledger entries of ``symbol`` at or after ``since_ms`` (oldest first)."""
        rows = client.fetch_funding_history(symbol, since_ms or None)
        out = [
            VenueFunding(
                symbol=str(r.get("symbol") or symbol),
                ts_ms=int(r.get("timestamp") or 0),
                amount=_f(r.get("amount"), 0.0),
                asset=str(r.get("code") or ""),
                entry_id=str(r.get("id") or ""),
            )
            for r in rows
        ]
        return sorted(out, key=lambda e: (e.ts_ms, e.entry_id))

    def fetch_liquidations(self, client: Any, symbol: str, since_ms: int) -> list[tuple[float, ...]]:
        """Liquidations the venue reports: ``(ts_ms, price, contracts)`` or ``(ts_ms, price, contracts, loss)``
        (``loss`` in the settle asset, > 0 lost; nan/absent when the venue does not say); default none (left to
        the book's reconciliation)."""
        return []

    # -- writes ---------------------------------------------------------------------------------------------

    def order_params(self, req: OrderRequest) -> dict[str, Any]:
        """ccxt params for ``create_order``: our client id and reduce-only."""
        params: dict[str, Any] = {"clientOrderId": req.client_id}
        if req.reduce_only:
            params["reduceOnly"] = True
        return params

    def create_order(
        self, client: Any, symbol: str, req: OrderRequest, amount: float, price: float | None
    ) -> dict[str, Any]:
        """Send the order once (the account never retries it)."""
        return cast(
            dict[str, Any],
            client.create_order(symbol, req.order_type, req.side, amount, price, self.order_params(req)),
        )

    def cancel_by_client_id(self, client: Any, symbol: str, client_id: str) -> dict[str, Any] | None:
        """Cancel our order; None when the venue does not know it as an open order."""
        import ccxt

        try:
            return cast(dict[str, Any], client.cancel_order(None, symbol, {"clientOrderId": client_id}))
        except ccxt.OrderNotFound:
            return None

    # -- units ----------------------------------------------------------------------------------------------

    def entry_basis(self, inst: Instrument) -> Literal["harmonic", "arithmetic"]:
        return "harmonic" if inst.is_inverse else "arithmetic"

    def check_market(self, inst: Instrument, market: Mapping[str, Any]) -> None:
        """Refuse (ConfigError) a market whose contract is not our instrument's."""
        size = _f(market.get("contractSize"), 1.0)
        if not math.isclose(size, inst.contract_size, rel_tol=1e-9):
            raise ConfigError(
                f"instrument {inst.id}: the venue's contract size of {inst.ccxt_symbol} is {size:g} "
                f"{'USD' if market.get('inverse') else inst.base}, ours is {inst.contract_size:g} "
                f"{inst.contract_size_unit}; fix the spec before trading"
            )
        inverse = bool(market.get("inverse"))
        if inverse != inst.is_inverse:
            raise ConfigError(
                f"instrument {inst.id}: the venue lists {inst.ccxt_symbol} as "
                f"{'inverse' if inverse else 'linear'}, our spec says {inst.kind.value}"
            )


DialectFactory = Callable[[], VenueDialect]


def dialect_for(venue: str) -> VenueDialect:
    """The dialect of ``venue`` (imported lazily). ConfigError for an unknown venue, listing the five."""
    module = VENUES.get(venue)
    if module is None:
        raise ConfigError(f"invalid `exchange`: must be one of {', '.join(VENUES)}, was {venue!r}")
    try:
        mod = importlib.import_module(f"perphedge.exchange.{module}")
    except ModuleNotFoundError as exc:
        if exc.name == f"perphedge.exchange.{module}":
            raise ConfigError(
                f"invalid `exchange`: {venue} is not available in this build ({module} missing)"
            ) from None
        raise
    dialects: Mapping[str, DialectFactory] = mod.DIALECTS
    return dialects[venue]()


# ---------------------------------------------------------------------------------------------- helpers


def _f(value: Any, default: float = math.nan) -> float:
    if value is None or value == "":
        return default
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out


def round_to_lot(contracts: float, lot: float, *, down: bool) -> float:
    """``contracts`` on the lot grid: to the nearest lot (half up), or down (``down``: a reduce-only order never
    grows past the request); nan for a non-finite or negative request."""
    if not (math.isfinite(contracts) and contracts >= 0 and math.isfinite(lot) and lot > 0):
        return math.nan
    lots = contracts / lot
    eps = 1e-9 + 1e-12 * lots  # float dust: 0.3 / 0.1 = 2.9999999999999996 is 3 lots
    n = math.floor(lots + eps) if down else math.floor(lots + 0.5 + eps)
    return round(n * lot, 12)


def round_to_tick(price: float, tick: float) -> float:
    """``price`` (USD per coin) to the nearest tick; nan for a non-finite or non-positive price."""
    if not (math.isfinite(price) and price > 0 and math.isfinite(tick) and tick > 0):
        return math.nan
    return round(math.floor(price / tick + 0.5) * tick, 12)


_STATUS: dict[str, OrderStatus] = {
    "closed": "filled",
    "canceled": "cancelled",
    "cancelled": "cancelled",
    "expired": "expired",
    "rejected": "rejected",
}


@dataclass
class _Leg:
    inst: Instrument
    symbol: str  # ccxt unified
    lot: float
    tick: float
    funding_max_ms: int = -1
    liquidation_max_ms: int = -1


@dataclass
class _Retry:
    max_retries: int = 4
    base_delay: float = 0.25
    max_delay: float = 10.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.max_delay, self.base_delay * 2**attempt)
        wait = backoff + self.rng.uniform(0, backoff)
        return float(max(wait, retry_after)) if retry_after is not None else float(wait)


# ---------------------------------------------------------------------------------------------- account


class CcxtAccount:
    """A live venue account (implements :class:`perphedge.core.book.Account`). Build it with
    :func:`open_live_account`."""

    kind = "exchange"

    def __init__(
        self,
        *,
        name: str,
        venue: str,
        dialect: VenueDialect,
        client: Any,
        instruments: Sequence[Instrument],
        secrets: Iterable[str],
        read_only: bool = True,
        funding_since_ms: int = 0,
        budget: WeightBudget | None = None,
        retries: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not name:
            raise ConfigError("live account: `name` must not be empty")
        self.name = name
        self.venue = venue
        self.read_only = bool(read_only)
        self._dialect = dialect
        self._client = client
        self._secrets = _Secrets(secrets)
        self._sleep = sleep
        self._retry = _Retry(max_retries=retries)
        self._budget = budget
        self._legs: dict[str, _Leg] = {}
        self.funding_since_ms = int(funding_since_ms)
        client.logger = _WireLog(self._secrets)  # ccxt logs request headers (the API key) at DEBUG
        client.verbose = False
        self._install_fetch_hook()
        markets = self._read("load markets", lambda: dialect.load_markets(client))
        for inst in instruments:
            self._add_leg(inst, markets)
        self._read("check the account's settings", lambda: dialect.check_account(client, self.read_only))

    # -- plumbing -------------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "trading"
        return f"CcxtAccount(name={self.name!r}, venue={self.venue!r}, {mode}, instruments={list(self._legs)!r})"

    __str__ = __repr__

    @property
    def dialect(self) -> VenueDialect:
        return self._dialect

    @property
    def instruments(self) -> list[str]:
        return list(self._legs)

    def weight_used_last_minute(self) -> float:
        """Weight this account spent in the budget's window (a minute unless configured); 0 without budget."""
        return self._budget.used() if self._budget is not None else 0.0

    def _add_leg(self, inst: Instrument, markets: Mapping[str, Any]) -> None:
        if inst.exchange != self._dialect.exchange:
            raise ConfigError(
                f"account `{self.name}` ({self.venue}): instrument {inst.id} is on {inst.exchange}, "
                f"not {self._dialect.exchange}"
            )
        if inst.kind.value not in self._dialect.kinds:
            raise ConfigError(
                f"account `{self.name}` ({self.venue}): instrument {inst.id} is {inst.kind.value}; "
                f"{self.venue} lists {' and '.join(self._dialect.kinds)} contracts only"
            )
        symbol = inst.ccxt_symbol
        market = markets.get(symbol) if symbol else None
        if market is None:
            raise ConfigError(
                f"account `{self.name}` ({self.venue}): the venue lists no market {symbol or '(no ccxt_symbol)'} "
                f"for instrument {inst.id}"
            )
        self._dialect.check_market(inst, market)
        precision = market.get("precision") or {}
        step = _f(precision.get("amount"))
        tick = _f(precision.get("price"))
        lot = max(inst.lot_size, step) if math.isfinite(step) and step > 0 else inst.lot_size
        tick_ = max(inst.tick_size, tick) if math.isfinite(tick) and tick > 0 else inst.tick_size
        self._legs[inst.id] = _Leg(inst=inst, symbol=symbol, lot=lot, tick=tick_)

    def _leg(self, instrument: str) -> _Leg:
        leg = self._legs.get(instrument)
        if leg is None:
            known = ", ".join(self._legs) or "nothing"
            raise ConfigError(f"account `{self.name}` has no instrument {instrument} (it trades: {known})")
        return leg

    def _install_fetch_hook(self) -> None:
        """Route every HTTP request of the client through the weight budget and record the venue's count."""
        client = self._client
        original = client.fetch
        dialect = self._dialect
        budget = self._budget

        def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
            parts = urlsplit(url)
            query = {}
            for pair in parts.query.split("&"):
                if "=" in pair:
                    k, v = pair.split("=", 1)
                    query[k] = v
            booking = budget.acquire(dialect.weight(method.upper(), parts.path, query)) if budget is not None else None
            client.last_response_headers = None  # a dropped answer must not reuse the previous headers
            try:
                return original(url, method, headers, body)
            finally:
                if budget is not None and booking is not None:
                    budget.done(booking)
                    used = dialect.venue_used_weight(dict(getattr(client, "last_response_headers", None) or {}))
                    if used is not None:
                        budget.observe_venue(used)

        client.fetch = fetch

    def _retry_after(self) -> float | None:
        headers = getattr(self._client, "last_response_headers", None) or {}
        for key, value in dict(headers).items():
            if str(key).lower() == "retry-after":
                try:
                    return float(value)
                except (TypeError, ValueError):
                    return None
        return None

    def _err(self, what: str, exc: BaseException, c: Classified | None = None) -> ExchangeError:
        c = c or self._dialect.classify(exc)
        text = self._secrets.scrub(_one_line(str(exc)))
        if c.outcome == "auth":
            return ExchangeError(
                f"{self.venue} account `{self.name}`: {what}: the venue refused the credentials "
                f"(check the key, secret and its permissions): {text}"
            )
        return ExchangeError(f"{self.venue} account `{self.name}`: {what} failed: {type(exc).__name__}: {text}")

    def _read(self, what: str, fn: Callable[[], Any]) -> Any:
        """A read with retries of transient failures (``Retry-After`` honoured)."""
        import ccxt

        attempt = 0
        while True:
            try:
                return fn()
            except ccxt.BaseError as exc:
                c = self._dialect.classify(exc)
                if c.outcome != "retry" or attempt >= self._retry.max_retries:
                    raise self._err(what, exc, c) from None
                self._sleep(self._retry.delay(attempt, self._retry_after()))
                attempt += 1
            except PerphedgeError:
                raise
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # an unparseable answer
                raise ExchangeError(
                    f"{self.venue} account `{self.name}`: {what}: the venue's answer could not be read "
                    f"({type(exc).__name__}: {self._secrets.scrub(_one_line(str(exc), 200))})"
                ) from None

    # -- Account: reads -------------------------------------------------------------------------------------

    def balances(self) -> list[Balance]:
        """The derivatives wallet by asset (``wallet = free + used`` as the venue reports them)."""
        rows = self._read("fetch balances", lambda: self._dialect.fetch_balances(self._client))
        return [
            Balance(account=self.name, asset=a.upper(), wallet=w, free=f, used=u)
            for a, w, f, u in sorted(rows)
            if w or f or u or a.upper() in {leg.inst.settle for leg in self._legs.values()}
        ]

    def positions(self) -> list[Position]:
        """One position per instrument (flat ones with ``contracts`` 0); the venue's entry, mark, leverage,
        margin mode, isolated margin and its own liquidation price."""
        symbols = [leg.symbol for leg in self._legs.values()]
        rows = self._read("fetch positions", lambda: self._dialect.fetch_positions(self._client, symbols))
        by_symbol: dict[str, list[VenuePosition]] = {}
        for vp in rows:
            by_symbol.setdefault(vp.symbol, []).append(vp)
        out = []
        for key, leg in self._legs.items():
            found = [vp for vp in by_symbol.get(leg.symbol, []) if vp.contracts != 0]
            inst = leg.inst
            if not found:
                out.append(
                    Position(
                        account=self.name,
                        instrument=key,
                        contracts=0.0,
                        entry_price=0.0,
                        margin_settle=0.0,
                        settle_asset=inst.settle,
                        liquidation_price=math.nan,
                        mmr=math.nan,
                        cum_settle=math.nan,
                        entry_basis=self._dialect.entry_basis(inst),
                    )
                )
                continue
            # one-way mode has one row; hedge mode may have a long and a short row: net them, entry of the short
            contracts = -sum(vp.contracts for vp in found)  # short positive
            main = min(found, key=lambda vp: vp.contracts)
            margin = main.isolated_margin if main.margin_mode == "isolated" else main.initial_margin
            out.append(
                Position(
                    account=self.name,
                    instrument=key,
                    contracts=contracts,
                    entry_price=main.entry_price,
                    margin_settle=margin if math.isfinite(margin) else math.nan,
                    settle_asset=inst.settle,
                    liquidation_price=main.liquidation_price,
                    mmr=main.mmr,
                    cum_settle=math.nan,
                    entry_basis=self._dialect.entry_basis(inst),
                    updated_ms=main.updated_ms,
                    mark_price=main.mark_price,
                    leverage=main.leverage,
                    margin_mode=main.margin_mode,
                    unrealized_settle=sum(vp.unrealized for vp in found),
                )
            )
        return out

    def sync(self, snap: FeedSnapshot) -> list[AccountEvent]:
        """Funding payments from the venue's ledger since ``funding_since_ms``, each reported once per account
        object (the journal's unique keys dedupe across runs); liquidations the venue reports."""
        events: list[AccountEvent] = []
        for key, leg in self._legs.items():
            since = max(self.funding_since_ms, leg.funding_max_ms + 1)
            rows = self._read(
                f"fetch funding of {key}",
                functools.partial(self._dialect.fetch_funding, self._client, leg.symbol, since),
            )
            inst = leg.inst
            price = snap.prices.get(inst.base.upper(), math.nan)
            rates = {s.settlement_ms: s.rate for s in snap.funding.get(key, ())}
            for row in rows:
                if row.ts_ms < since or row.ts_ms <= leg.funding_max_ms:
                    continue
                usd = row.amount * price if inst.is_inverse else row.amount
                events.append(
                    FundingPayment(
                        account=self.name,
                        instrument=key,
                        settlement_ms=row.ts_ms,
                        rate=row.rate if math.isfinite(row.rate) else rates.get(row.ts_ms, math.nan),
                        amount_settle=row.amount,
                        asset=(row.asset or inst.settle).upper(),
                        amount_usd=usd,
                    )
                )
                leg.funding_max_ms = max(leg.funding_max_ms, row.ts_ms)
            liq_since = max(self.funding_since_ms, leg.liquidation_max_ms + 1)
            liqs = self._read(
                f"fetch liquidations of {key}",
                functools.partial(self._dialect.fetch_liquidations, self._client, leg.symbol, liq_since),
            )
            for row in sorted(liqs):
                ts, px, n = int(row[0]), float(row[1]), float(row[2])
                loss = float(row[3]) if len(row) > 3 else math.nan
                if ts < liq_since:
                    continue
                leg.liquidation_max_ms = max(leg.liquidation_max_ms, ts)
                events.append(
                    Liquidation(
                        account=self.name,
                        instrument=key,
                        ts_ms=ts,
                        price=px,
                        contracts=n,
                        loss_settle=loss,
                        loss_usd=loss * px if inst.is_inverse else loss,
                        asset=inst.settle,
                    )
                )
        return events

    def _result(
        self, leg: _Leg, client_id: str, order: Mapping[str, Any], trades: Sequence[Mapping[str, Any]]
    ) -> OrderResult:
        inst = leg.inst
        filled = _f(order.get("filled"), 0.0)
        raw = str(order.get("status") or "")
        status: OrderStatus
        if raw == "open":
            status = "partially_filled" if filled > 0 else "open"
        else:
            status = _STATUS.get(raw, "open")
        amount = _f(order.get("amount"))
        if status == "filled" and math.isfinite(amount) and filled < amount * (1 - 1e-9) - 1e-12:
            # ccxt calls an order that ended with its rest cancelled "closed" (Bybit `PartiallyFilledCanceled`,
            # ccxt issue 18685): it did not fill, whatever filled of it is in `filled`
            status = "cancelled"
        fills = tuple(self._fill(leg, client_id, t) for t in trades)
        avg = _f(order.get("average"))
        if not math.isfinite(avg) and fills:
            q = sum(f.contracts for f in fills)
            avg = sum(f.contracts * f.price for f in fills) / q if q else math.nan
        return OrderResult(
            client_id=client_id,
            account=self.name,
            instrument=inst.id,
            status=status,
            venue_id=str(order.get("id") or ""),
            filled_contracts=filled,
            avg_price=avg if filled > 0 else math.nan,
            fills=fills,
            reason="",
        )

    def _fill(self, leg: _Leg, client_id: str, t: Mapping[str, Any]) -> Fill:
        inst = leg.inst
        price = _f(t.get("price"))
        fee = t.get("fee") or {}
        fee_cost = _f(fee.get("cost"), 0.0)
        fee_ccy = str(fee.get("currency") or inst.settle).upper()
        if fee_ccy != inst.settle.upper() and fee_ccy not in ("USD", "USDT", "USDC"):
            fee_settle = math.nan  # paid in another asset (e.g. BNB): not in settle units
        else:
            fee_settle = fee_cost
        fee_usd = fee_cost * price if inst.is_inverse else fee_cost
        return Fill(
            fill_id=str(t.get("id")),
            client_id=client_id,
            account=self.name,
            instrument=inst.id,
            side="buy" if t.get("side") == "buy" else "sell",
            contracts=_f(t.get("amount"), 0.0),
            price=price,
            fee_settle=fee_settle,
            slippage_settle=0.0,
            fee_usd=fee_usd,
            slippage_usd=0.0,
            settle_asset=inst.settle,
            ts_ms=int(t.get("timestamp") or 0),
        )

    def _with_fills(self, leg: _Leg, client_id: str, order: Mapping[str, Any]) -> OrderResult:
        trades: list[dict[str, Any]] = []
        if _f(order.get("filled"), 0.0) > 0:
            trades = self._read(
                f"fetch fills of order {client_id}",
                lambda: self._dialect.fetch_order_trades(self._client, leg.symbol, order),
            )
        return self._result(leg, client_id, order, trades)

    def fetch_order(self, instrument: str, client_id: str) -> OrderResult | None:
        """The order with our ``client_id`` on ``instrument`` with its fills; None when the venue never saw it."""
        leg = self._leg(instrument)
        order = self._read(
            f"look up order {client_id}",
            lambda: self._dialect.fetch_order_by_client_id(self._client, leg.symbol, client_id),
        )
        if order is None:
            return None
        return self._with_fills(leg, client_id, order)

    def open_orders(self) -> list[OrderResult]:
        """Orders resting on the book's instruments (ours and any other; ``client_id`` as the venue shows it)."""
        out = []
        for leg in self._legs.values():
            rows = self._read(
                f"fetch open orders of {leg.inst.id}",
                functools.partial(self._dialect.fetch_open_orders, self._client, leg.symbol),
            )
            for o in rows:
                out.append(self._result(leg, str(o.get("clientOrderId") or ""), o, ()))
        return out

    # -- Account: writes ------------------------------------------------------------------------------------

    def _refuse_read_only(self, what: str) -> None:
        if self.read_only:
            raise ConfigError(
                f"account `{self.name}` ({self.venue}) is read-only: {what} was not sent "
                "(set `read_only: false` in the book file and pass --execute to trade)"
            )

    def _round_qty(self, leg: _Leg, contracts: float, reduce_only: bool) -> float:
        return round_to_lot(contracts, leg.lot, down=reduce_only)

    def _round_price(self, leg: _Leg, price: float) -> float:
        return round_to_tick(price, leg.tick)

    def place_order(self, req: OrderRequest, snap: FeedSnapshot) -> OrderResult:
        """Send ``req`` once (market or limit) with our client id; a known client id returns the existing order.

        Returns ``rejected`` (reason ``<kind>: <venue message>``) on a definitive refusal; raises ExchangeError
        when the outcome is unknown (look the id up before resending) and ConfigError for a read-only account.
        """
        import ccxt

        self._refuse_read_only(f"order {req.client_id}")
        leg = self._leg(req.instrument)
        if req.account != self.name:
            raise ConfigError(f"order {req.client_id} is for account {req.account}, sent to account {self.name}")
        if not re.match(self._dialect.client_id_pattern, req.client_id or ""):
            raise ConfigError(
                f"order client id {req.client_id!r} does not match {self.venue}'s format "
                f"{self._dialect.client_id_pattern}"
            )
        existing = self.fetch_order(req.instrument, req.client_id)
        if existing is not None:
            return existing
        qty = self._round_qty(leg, float(req.contracts), req.reduce_only)
        if not (math.isfinite(qty) and qty > 0):
            return OrderResult(
                client_id=req.client_id,
                account=self.name,
                instrument=req.instrument,
                status="rejected",
                reason=f"invalid: {req.contracts!r} contracts round to no whole lot of {leg.lot:g} (not sent)",
            )
        price: float | None = None
        if req.order_type == "limit":
            if not (math.isfinite(req.limit_price) and req.limit_price > 0):
                return OrderResult(
                    client_id=req.client_id,
                    account=self.name,
                    instrument=req.instrument,
                    status="rejected",
                    reason=f"invalid: limit price must be > 0, was {req.limit_price!r} (not sent)",
                )
            price = self._round_price(leg, req.limit_price)
            if not (math.isfinite(price) and price > 0):
                return OrderResult(
                    client_id=req.client_id,
                    account=self.name,
                    instrument=req.instrument,
                    status="rejected",
                    reason=f"invalid: limit price {req.limit_price!r} rounds to no tick of {leg.tick:g} (not sent)",
                )
        try:
            order = self._dialect.create_order(self._client, leg.symbol, req, qty, price)
        except PerphedgeError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:  # sent, answer unreadable
            raise ExchangeError(
                f"{self.venue} account `{self.name}`: order {req.client_id} outcome unknown (the answer could not "
                f"be read: {type(exc).__name__}: {self._secrets.scrub(_one_line(str(exc), 200))}); "
                "look it up by client id before sending it again"
            ) from None
        except ccxt.BaseError as exc:
            c = self._dialect.classify(exc)
            if c.outcome == "reject" and c.kind is not None:
                return OrderResult(
                    client_id=req.client_id,
                    account=self.name,
                    instrument=req.instrument,
                    status="rejected",
                    reason=f"{c.kind}: {self._secrets.scrub(c.detail)}",
                )
            raise ExchangeError(
                f"{self.venue} account `{self.name}`: order {req.client_id} outcome unknown "
                f"({type(exc).__name__}: {self._secrets.scrub(_one_line(str(exc), 200))}); "
                "look it up by client id before sending it again"
            ) from None
        try:
            return self._with_fills(leg, req.client_id, order)
        except ExchangeError as exc:
            raise ExchangeError(
                f"{self.venue} account `{self.name}`: order {req.client_id} was accepted "
                f"(venue id {order.get('id')}) but its fills could not be read: {exc}; look it up by client id"
            ) from None

    def cancel_order(self, instrument: str, client_id: str) -> OrderResult | None:
        """Cancel our open order; its final state (filled orders stay filled), None when the venue never saw it."""
        import ccxt

        self._refuse_read_only(f"cancel of order {client_id}")
        leg = self._leg(instrument)
        try:
            order = self._dialect.cancel_by_client_id(self._client, leg.symbol, client_id)
        except ccxt.BaseError as exc:
            c = self._dialect.classify(exc)
            if c.outcome not in ("not_found", "reject"):
                raise self._err(f"cancel order {client_id}", exc, c) from None
            order = None
        if order is None:
            return self.fetch_order(instrument, client_id)
        return self._with_fills(leg, client_id, order)

    def transfer(self, req: TransferRequest, snap: FeedSnapshot) -> TransferResult:
        """Live accounts do not move margin automatically: the move is left to the user (``applied=False``)."""
        leg = self._leg(req.instrument)
        inst = leg.inst
        direction = "into" if req.amount_settle >= 0 else "out of"
        return TransferResult(
            transfer_id=req.transfer_id,
            account=self.name,
            instrument=req.instrument,
            amount_settle=req.amount_settle,
            asset=inst.settle,
            applied=False,
            reason=(
                f"manual_transfer: move {abs(req.amount_settle):.8g} {inst.settle} {direction} "
                f"{inst.id}'s margin on the venue"
            ),
        )


# ---------------------------------------------------------------------------------------------- factory


def _opt_number(opts: Mapping[str, Any], key: str, *, minimum: float) -> float | None:
    """``opts[key]`` as a finite number >= ``minimum`` (None when absent); ConfigError naming the option."""
    raw = opts.get(key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(raw, bool) or not (math.isfinite(value) and value >= minimum):
        raise ConfigError(f"invalid option `{key}`: must be a number >= {minimum:g}, was {raw!r}")
    return value


def _check_url(base: str, what: str) -> str:
    from perphedge.exchange.ccxt_source import check_url

    return check_url(base, what)


def open_live_account(
    *,
    name: str,
    venue: str,
    credentials: Mapping[str, str],
    instruments: Sequence[Instrument],
    sandbox: bool = False,
    read_only: bool = True,
    base_url: str | None = None,
    funding_since_ms: int = 0,
    options: Mapping[str, Any] | None = None,
) -> CcxtAccount:
    """A :class:`CcxtAccount` on ``venue`` (one of :data:`VENUES`) holding ``instruments``.

    ``credentials``: ``key``, ``secret`` (and ``password`` for OKX; Hyperliquid: ``key`` = wallet address,
    ``secret`` = private key), read by the caller from the environment or keyring just before this call.
    ``base_url`` (or env ``PERPHEDGE_EXCHANGE_URL``) routes every API call to a mirror (the fake exchange).
    ``options``: ``weight_limit`` (the budget, default the venue's published limit), ``weight_window_ms``
    (default 60 000), ``timeout_ms``, ``rate_limit_ms`` (ccxt's throttle), ``retries`` (reads, default 4),
    ``sleep`` (a callable, tests), ``ccxt`` (extra ccxt options), plus dialect options.

    Raises ConfigError (unknown venue, missing credential, sandbox without a testnet, a market missing or with
    another contract size) and ExchangeError (the venue cannot be reached or refuses the credentials).
    Loads the venue's markets (network).
    """
    opts = dict(options or {})
    dialect = dialect_for(venue)
    missing = [k for k in dialect.credentials if not credentials.get(k)]
    if missing:
        raise ConfigError(
            f"account `{name}` ({venue}): missing credential(s) {', '.join(missing)} "
            "(set the environment variables named by key_env/secret_env/password_env)"
        )
    import ccxt

    cls = getattr(ccxt, dialect.ccxt_id)
    client = cls(dialect.client_config(credentials, opts))
    dialect.prepare_client(client)
    if sandbox:
        dialect.apply_sandbox(client)
    base = base_url or os.environ.get("PERPHEDGE_EXCHANGE_URL")
    if base:
        from perphedge.exchange.ccxt_source import _reroute

        _check_url(base, "the exchange URL" if base_url else "PERPHEDGE_EXCHANGE_URL")
        client.urls["api"] = _reroute(client.urls["api"], base)
    from perphedge.exchange.ccxt_source import _env_number

    rate = _opt_number(opts, "rate_limit_ms", minimum=0.0)
    if rate is None and base:
        rate = _env_number("PERPHEDGE_RATE_LIMIT_MS")
    if rate is not None:
        client.rateLimit = rate
    timeout = _opt_number(opts, "timeout_ms", minimum=1.0) or _env_number("PERPHEDGE_EXCHANGE_TIMEOUT_MS")
    if timeout:
        client.timeout = int(timeout)
    limit = _opt_number(opts, "weight_limit", minimum=1e-9) or dialect.weight_limit
    window = int(_opt_number(opts, "weight_window_ms", minimum=1.0) or dialect.weight_window_ms)
    retries_opt = _opt_number(opts, "retries", minimum=0.0)
    retries = 4 if retries_opt is None else int(retries_opt)
    sleep = opts.get("sleep") or time.sleep
    if not callable(sleep):
        raise ConfigError(f"invalid option `sleep` of account `{name}`: must be callable")
    budget = WeightBudget(limit, window, sleep=sleep) if limit > 0 else None
    secrets = [str(v) for v in credentials.values() if v]
    return CcxtAccount(
        name=name,
        venue=venue,
        dialect=dialect,
        client=client,
        instruments=instruments,
        secrets=secrets,
        read_only=read_only,
        funding_since_ms=funding_since_ms,
        budget=budget,
        retries=retries,
        sleep=sleep,
    )
