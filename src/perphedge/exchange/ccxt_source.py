"""ccxt: the one door to exchanges. Markets → instruments; OHLCV and funding history as pages.

This adapter only reads and yields: :class:`CcxtSource` pages through a series from where the
caller says it should resume and yields each page as a frame shaped like its store table. The
fetch use case (:mod:`perphedge.usecases.data`) decides what to store and writes each page in its
own transaction, which makes a fetch resumable.

Faults:

* network errors, 429 (``Retry-After`` honoured) and 5xx are retried with exponential backoff and
  jitter, up to ``RetryPolicy.max_retries`` times;
* an exchange that cannot be reached at all (connection refused, host name that does not
  resolve, network unreachable, connect timeout) is retried only within
  ``RetryPolicy.unreachable_budget`` seconds per request, then it is one clear
  :class:`~perphedge.errors.ExchangeError`;
* anything else is an :class:`~perphedge.errors.ExchangeError` at once.

``PERPHEDGE_EXCHANGE_URL`` routes every API call to a mirror (the test suite's fake exchange).
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import os
import random
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from perphedge.data.timeframes import TIMEFRAME_SECONDS, check_timeframe
from perphedge.errors import ConfigError, ExchangeError

if TYPE_CHECKING:
    import pandas as pd

    from perphedge.core.instruments import Instrument

__all__ = [
    "PAGE_LIMITS",
    "SUPPORTED",
    "TIMEFRAME_MS",
    "VENUES",
    "CcxtSource",
    "Page",
    "RetryPolicy",
    "funding_intervals",
    "make_exchange",
    "market_to_instrument",
    "native_symbol",
]

log = logging.getLogger("perphedge.fetch")

TIMEFRAME_MS = {name: seconds * 1000 for name, seconds in TIMEFRAME_SECONDS.items()}
PAGE_LIMITS = {  # (ohlcv, funding) page sizes the exchanges accept
    "binance": {"spot": (1000, 0), "linear": (1500, 1000), "inverse": (1500, 1000)},
    "bybit": {"spot": (1000, 0), "linear": (1000, 200), "inverse": (1000, 200)},
    # OKX: market/history-candles up to 300 a call (ccxt okx.fetch_ohlcv), public/funding-rate-history 100
    "okx": {"spot": (300, 0), "linear": (300, 100), "inverse": (300, 100)},
    # Hyperliquid: candleSnapshot up to 5000 candles, fundingHistory at most 500 records a call (oldest first)
    "hyperliquid": {"spot": (5000, 0), "linear": (5000, 500), "inverse": (5000, 500)},
}
#: venues the live ticker feed reads (``ccxt_feed``)
SUPPORTED = ("binance", "bybit")
#: venues ``data fetch`` and ``instruments --refresh`` read
VENUES = ("binance", "bybit", "okx", "hyperliquid")
#: venues whose funding history pages come newest first (a full page may not reach back to the window's start)
_NEWEST_FIRST = ("bybit", "okx")
#: how far back OKX keeps funding history (its API docs: "the last 3 months"), in days
OKX_FUNDING_DAYS = 92
#: ccxt market types each venue loads for fetching
_MARKET_TYPES: dict[str, list[str]] = {
    "binance": ["spot", "linear", "inverse"],
    "bybit": ["spot", "linear", "inverse"],
    "okx": ["spot", "swap"],
    "hyperliquid": ["swap"],
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Retries of transient failures: ``base·2^n`` seconds (capped), plus uniform jitter.

    ``unreachable_budget`` bounds the seconds one request keeps retrying an exchange that cannot be
    reached at all (refused, unresolvable, unreachable): a missing network fails fast.
    """

    max_retries: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    unreachable_budget: float = 10.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool) or self.max_retries < 0:
            raise ConfigError(f"invalid `--retries`: must be a whole number >= 0, was {self.max_retries!r}")
        if self.max_retries > 50:
            raise ConfigError(f"invalid `--retries`: must be <= 50, was {self.max_retries}")
        for name in ("base_delay", "max_delay", "unreachable_budget"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"invalid `{name}`: must be a finite number >= 0, was {value!r}")

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        backoff = min(self.max_delay, self.base_delay * 2**attempt)
        wait = backoff + rng.uniform(0, backoff)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return float(wait)


class RetryCounter(Protocol):
    """Anything that counts retries (the fetch use case's per-series result)."""

    retries: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Page:
    """One page of a series, shaped like its store table.

    ``frame`` has the columns of ``candles`` (kind ``ohlcv``) or ``funding`` (kind ``funding``),
    ``ts`` naive UTC; ``newest_ms`` is its newest timestamp (epoch ms).
    """

    kind: str
    symbol: str
    timeframe: str | None
    frame: pd.DataFrame
    newest_ms: int
    notes: tuple[str, ...] = ()  # what the page revealed about the series (funding interval changes, gaps)

    @property
    def table(self) -> str:
        return "candles" if self.kind == "ohlcv" else "funding"


def _reroute(obj: Any, base: str) -> Any:
    if isinstance(obj, dict):
        return {k: _reroute(v, base) for k, v in obj.items()}
    if isinstance(obj, str) and obj.startswith("http"):
        return base.rstrip("/") + urlsplit(obj).path
    return obj


#: The largest PERPHEDGE_*_MS value taken (10 minutes): a larger rate limit or timeout would hang the command.
ENV_MS_MAX = 600_000.0


def _env_number(name: str) -> float | None:
    text = os.environ.get(name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0 or value > ENV_MS_MAX:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ConfigError(
            f"invalid environment variable {name}: must be a number of milliseconds > 0 and at most "
            f"{ENV_MS_MAX:.0f}, was {shown!r}"
        )
    return value


def check_url(base: str, what: str) -> str:
    """``base`` if it is an http(s) URL with a host (and a valid port), no whitespace and no user:password;
    ConfigError naming ``what`` otherwise."""
    shown = base if len(base) <= 200 else base[:200] + "..."
    try:
        parts = urlsplit(base)
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or _URL_BAD_CHARS.search(base):
        raise ConfigError(f"invalid {what}: must be an http(s) URL such as http://127.0.0.1:8080, was {shown!r}")
    if parts.username is not None or parts.password is not None:
        # a user:password in the URL would be echoed by every network error: refuse it, without showing it
        raise ConfigError(f"invalid {what}: must not carry a user or password (`user:pass@`); give host and port only")
    return base


#: Whitespace and control characters: never part of a URL (a pasted newline would be sent as part of the path).
_URL_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")


def make_exchange(exchange_id: str, *, base_url: str | None = None, timeout_ms: int | None = None) -> Any:
    """A ccxt client for public endpoints (no keys), optionally routed to a mirror URL."""
    name = str(exchange_id).lower()
    if name not in VENUES:
        raise ConfigError(f"invalid `--exchange`: fetching supports {', '.join(VENUES)}, was {exchange_id!r}")
    base = base_url or os.environ.get("PERPHEDGE_EXCHANGE_URL")
    if base:
        check_url(base, "PERPHEDGE_EXCHANGE_URL" if not base_url else "the exchange URL")
    env_rate = _env_number("PERPHEDGE_RATE_LIMIT_MS") if base else None
    env_timeout = _env_number("PERPHEDGE_EXCHANGE_TIMEOUT_MS")
    import ccxt

    cls = getattr(ccxt, name)
    options: dict[str, Any] = {"fetchCurrencies": False, "fetchMarkets": {"types": list(_MARKET_TYPES[name])}}
    client = cls({"enableRateLimit": True, "options": options})
    client.has["fetchCurrencies"] = False
    if base:
        client.urls["api"] = _reroute(client.urls["api"], base)
        if env_rate is not None:
            client.rateLimit = env_rate
    timeout = timeout_ms or env_timeout
    if timeout:
        client.timeout = int(timeout)
    return client


def _retry_after(client: Any) -> float | None:
    headers = getattr(client, "last_response_headers", None) or {}
    for key, value in dict(headers).items():
        if str(key).lower() == "retry-after":
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and everything it was raised from (``__cause__``, ``__context__``, urllib3's ``reason``)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        for nxt in (cur.__cause__, cur.__context__, getattr(cur, "reason", None)):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
        for arg in getattr(cur, "args", ()):
            if isinstance(arg, BaseException):
                todo.append(arg)


def unreachable_reason(exc: BaseException) -> str | None:
    """Why the exchange cannot be reached at all (refused, name not resolved, network down), or None
    when the failure is of another kind (a timeout of a request that got through, a 5xx, a dropped answer)."""
    for cur in _chain(exc):
        name = type(cur).__name__
        if isinstance(cur, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cur, socket.gaierror) or name == "NameResolutionError":
            return "the host name does not resolve"
        if isinstance(cur, OSError) and cur.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN):
            return "network unreachable"
        if name in ("ConnectTimeoutError", "ConnectTimeout"):
            return "connection timed out"
    return None


_URL = re.compile(r"https?://[^/\s]+")


def _call(
    client: Any,
    what: str,
    fn: Callable[[], Any],
    policy: RetryPolicy,
    rng: random.Random,
    counter: RetryCounter | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """``fn()`` with retries of transient failures (see :class:`RetryPolicy`); ExchangeError when it gives up."""
    import ccxt

    attempt = 0
    start = clock()
    while True:
        try:
            return fn()
        except ccxt.OperationFailed as exc:  # NetworkError (timeouts, 429, 5xx, dropped sockets) and kin
            reason = unreachable_reason(exc)
            retry_after = _retry_after(client)  # 429 and 503 may say how long to wait
            wait = policy.delay(attempt, rng, retry_after)
            if reason is not None:
                spent = clock() - start
                if attempt >= policy.max_retries or spent + wait > policy.unreachable_budget:
                    m = _URL.search(str(exc))
                    where = m.group(0) if m else "its API"
                    hint = (
                        "check PERPHEDGE_EXCHANGE_URL"
                        if os.environ.get("PERPHEDGE_EXCHANGE_URL")
                        else "check the network connection"
                    )
                    raise ExchangeError(
                        f"{client.id}: cannot reach {where}: {reason} ({attempt + 1} attempts in {spent:.1f} s); {hint}"
                    ) from exc
                log.info("%s: %s: %s; retry %d in %.2f s", client.id, what, reason, attempt + 1, wait)
            else:
                if attempt >= policy.max_retries:
                    raise ExchangeError(
                        f"{client.id}: {what} failed after {attempt + 1} attempts: {type(exc).__name__}: "
                        f"{_short(exc, 200)}"
                    ) from exc
                log.warning(
                    "%s: %s: %s (%s); retry %d/%d in %.2f s",
                    client.id,
                    what,
                    type(exc).__name__,
                    _short(exc, 120),
                    attempt + 1,
                    policy.max_retries,
                    wait,
                )
            if counter is not None:
                counter.retries += 1
            sleep(wait)
            attempt += 1
        except ccxt.BadSymbol as exc:
            raise ExchangeError(f"{client.id}: unknown symbol in {what}: {_short(exc, 200)}") from exc
        except ccxt.BaseError as exc:
            raise ExchangeError(f"{client.id}: {what} failed: {type(exc).__name__}: {_short(exc, 300)}") from exc


def _short(exc: BaseException, n: int) -> str:
    """The exception's text on one line, at most ``n`` characters."""
    return " ".join(str(exc).split())[:n]


def _num(value: Any, default: float) -> float:
    return default if value is None else float(value)


def native_symbol(exchange_id: str, market: dict[str, Any]) -> str:
    """The venue's own name of a ccxt market, as the bundled specs key it (Hyperliquid: the coin, e.g. ``BTC``;
    ccxt's ``id`` there is the asset index)."""
    if exchange_id == "hyperliquid":
        return str(market.get("baseName") or (market.get("info") or {}).get("name") or market.get("base"))
    return str(market.get("id"))


def market_to_instrument(client: Any, market: dict[str, Any], bundled: Instrument | None) -> Instrument:
    """An :class:`Instrument` from a ccxt market (margin tiers from the bundled spec when it is the same contract)."""
    from perphedge.core.instruments import (
        ContractKind,
        Instrument,
        LiquidationMethod,
        MarginSchedule,
    )

    inverse = bool(market.get("inverse"))
    kind = ContractKind.INVERSE if inverse else ContractKind.LINEAR
    if client.id in ("binance", "okx", "hyperliquid"):
        # OKX: MM at the liquidation price as Binance USDⓈ-M; Hyperliquid: the same closed form (specs source)
        method = LiquidationMethod.MM_AT_LIQUIDATION_PRICE if inverse else LiquidationMethod.BINANCE_USDM
    else:
        method = LiquidationMethod.MM_AT_LIQUIDATION_PRICE if inverse else LiquidationMethod.BYBIT_LINEAR
    precision = market.get("precision") or {}
    limits = (market.get("limits") or {}).get("leverage") or {}
    max_lev = float(limits.get("max") or (bundled.max_leverage if bundled else 20.0))
    if bundled is not None:
        schedule = bundled.margin
    else:
        info = market.get("info") or {}
        # Hyperliquid (and the fallback): maintenance margin = half the initial margin at max leverage
        mmr = float(info.get("maintMarginPercent") or 0) / 100 or 1.0 / max(max_lev, 1.0) / 2.0
        schedule = MarginSchedule.single(min(max(mmr, 0.001), 0.5), max_leverage=max_lev)
    contract_size = float(market.get("contractSize") or 1.0)
    return Instrument(
        exchange=client.id,
        symbol=native_symbol(client.id, market),
        kind=kind,
        base=str(market["base"]),
        quote=str(market["quote"]),
        settle=str(market["settle"]),
        contract_size=contract_size,
        lot_size=float(precision.get("amount") or (bundled.lot_size if bundled else 1.0)),
        tick_size=float(precision.get("price") or (bundled.tick_size if bundled else 0.01)),
        max_leverage=max_lev,
        margin=schedule,
        liquidation_method=bundled.liquidation_method if bundled else method,
        funding_interval_hours=bundled.funding_interval_hours
        if bundled
        else (1.0 if client.id == "hyperliquid" else 8.0),
        maker_fee=_num(market.get("maker"), 0.0002),
        taker_fee=_num(market.get("taker"), 0.0005),
        ccxt_symbol=str(market["symbol"]),
        source=f"ccxt fetchMarkets {client.id} (tiers: {'bundled spec' if bundled else 'first tier from market info'})",
        as_of=time.strftime("%Y-%m-%d", time.gmtime()),
    )


def _frame_ohlcv(rows: list[list[Any]], symbol: str, source: str, timeframe: str) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["ms", "open", "high", "low", "close", "volume"])
    frame = frame.dropna(subset=["ms", "open", "high", "low", "close"]).drop_duplicates("ms", keep="last")
    frame["ts"] = pd.to_datetime(frame["ms"], unit="ms")
    frame = frame.assign(source=source, symbol=symbol, timeframe=timeframe).sort_values("ts")
    return frame.loc[:, ["source", "symbol", "timeframe", "ts", "open", "high", "low", "close", "volume", "ms"]]


class CcxtSource:
    """One exchange through ccxt: its markets, instrument specs and history pages (never writes).

    Parameters
    ----------
    exchange_id
        ``binance`` or ``bybit``.
    client
        A ccxt client to use instead of :func:`make_exchange` (tests point one at the fake exchange).
    policy
        Retries (:class:`RetryPolicy`).
    """

    def __init__(self, exchange_id: str, *, client: Any = None, policy: RetryPolicy | None = None) -> None:
        self.client = client if client is not None else make_exchange(exchange_id)
        self.id: str = str(self.client.id)
        if self.id not in PAGE_LIMITS:
            raise ConfigError(f"invalid `--exchange`: fetching supports {', '.join(VENUES)}, was {self.id!r}")
        self.policy = policy or RetryPolicy()
        self.rng = random.Random(self.policy.seed)
        self._markets: dict[str, Any] | None = None

    def call(self, what: str, fn: Callable[[], Any], counter: RetryCounter | None = None) -> Any:
        """``fn()`` with this source's retry policy."""
        return _call(self.client, what, fn, self.policy, self.rng, counter)

    def markets(self) -> dict[str, Any]:
        """The exchange's markets by ccxt symbol (loaded once)."""
        if self._markets is None:
            self._markets = dict(self.call("load_markets", self.client.load_markets))
        return self._markets

    def check_symbols(self, spot: Sequence[str], perps: Sequence[str]) -> None:
        """ExchangeError for a symbol the exchange does not list; ConfigError for one of the wrong type."""
        markets = self.markets()
        for sym in [*spot, *perps]:
            if sym not in markets:
                close = [m for m in markets if m.split("/")[0] == sym.split("/")[0]][:6]
                raise ExchangeError(
                    f"{self.id} has no market {sym!r}" + (f"; similar: {', '.join(close)}" if close else "")
                )
        for sym in spot:
            if markets[sym].get("type") != "spot":
                raise ConfigError(f"{sym} is not a spot market on {self.id}; pass it with --perps")
        for sym in perps:
            if not markets[sym].get("swap"):
                raise ConfigError(
                    f"{sym} is not a perpetual on {self.id}; perpetuals look like BTC/USDT:USDT or BTC/USD:BTC"
                )

    def market_type(self, symbol: str) -> str:
        """``spot``, ``linear`` or ``inverse``."""
        market = self.markets()[symbol]
        if market.get("type") == "spot":
            return "spot"
        return "inverse" if market.get("inverse") else "linear"

    def instruments(self, perps: Sequence[str]) -> list[Instrument]:
        """Instrument specs of ``perps`` (margin tiers from the bundled spec when it is the same contract)."""
        from perphedge.specs import default_registry

        registry = default_registry()
        markets = self.markets()
        out = []
        for sym in perps:
            market = markets[sym]
            bundled = None
            try:
                candidate = registry.get(f"{self.id}:{native_symbol(self.id, market)}")
                bundled = candidate if candidate.ccxt_symbol == sym else None
            except ConfigError:
                bundled = None
            out.append(market_to_instrument(self.client, market, bundled))
        return out

    def page_limit(self, symbol: str, kind: str) -> int:
        """Rows per request the exchange accepts for ``symbol`` (``kind`` ohlcv or funding)."""
        return PAGE_LIMITS[self.id][self.market_type(symbol)][0 if kind == "ohlcv" else 1]

    def ohlcv_pages(
        self,
        symbol: str,
        timeframe: str,
        since_ms: int,
        until_ms: int,
        *,
        resume_ms: int | None = None,
        counter: RetryCounter | None = None,
    ) -> Iterator[Page]:
        """Candles of ``symbol`` from ``since_ms`` (or from ``resume_ms``, inclusive: a candle that was
        still open when it was stored comes again) to ``until_ms``, one page at a time.

        Pages forward in windows of ``limit`` candles, so a window never holds more than one page
        whichever end of it the exchange answers from (Binance: oldest first, Bybit: newest first).
        """
        check_timeframe(timeframe)
        limit = self.page_limit(symbol, "ohlcv")
        step = TIMEFRAME_MS[timeframe]
        window = limit * step
        cursor = since_ms if resume_ms is None else max(since_ms, resume_ms)
        while cursor <= until_ms:
            end = min(until_ms, cursor + window - 1)
            rows = self.call(
                f"fetch_ohlcv {symbol} {timeframe} since {cursor}",
                functools.partial(
                    self.client.fetch_ohlcv,
                    symbol,
                    timeframe,
                    since=cursor,
                    limit=limit,
                    # OKX's `after` (ccxt's `until`) is exclusive: one past the window's end keeps its last candle
                    params={"until": end + 1 if self.id == "okx" else end},
                ),
                counter,
            )
            rows = [r for r in rows if r and r[0] is not None and since_ms <= r[0] <= end]
            if not rows:
                cursor = end + 1
                continue
            frame = _frame_ohlcv(rows, symbol, self.id, timeframe)
            newest = int(frame["ms"].max())
            yield Page(
                kind="ohlcv", symbol=symbol, timeframe=timeframe, frame=frame.drop(columns="ms"), newest_ms=newest
            )
            cursor = max(newest + step, cursor + step)

    def _funding_params(self, end_ms: int) -> dict[str, Any]:
        """The extra request parameters bounding a funding page at ``end_ms`` (inclusive)."""
        if self.id == "okx":
            return {"after": end_ms + 1}  # OKX: records earlier than `after` (ccxt maps `since` to `before`)
        return {"until": end_ms}

    def _ended_early(
        self, symbol: str, newest_ms: int, until_ms: int, interval_hours: float, now_ms: int | None
    ) -> str | None:
        """A note when a series paged by time ends more than two intervals before ``until`` (and before now)."""
        import pandas as pd

        now = int(time.time() * 1000) if now_ms is None else now_ms
        end = min(until_ms, now)
        if end - newest_ms <= 2 * interval_hours * 3_600_000:
            return None
        return (
            f"{self.id} answered no funding after {pd.Timestamp(newest_ms, unit='ms')} up to "
            f"{pd.Timestamp(end, unit='ms')}: the venue's history ends there (a delisted coin) or it dropped "
            f"a page; fetch again to retry"
        )

    def funding_pages(
        self,
        symbol: str,
        since_ms: int,
        until_ms: int,
        *,
        default_interval: float,
        resume_ms: int | None = None,
        resume_interval: float | None = None,
        counter: RetryCounter | None = None,
        now_ms: int | None = None,
    ) -> Iterator[Page]:
        """Funding settlements of ``symbol`` after ``resume_ms`` (or from ``since_ms``) to ``until_ms``.

        Each row's ``interval_hours`` is the interval in force at that settlement, read from the spacing
        of the settlements (ccxt's history rows carry none; :func:`funding_intervals`): a change of
        interval (8h → 4h → 1h) is kept per settlement and stated in the page's ``notes``, a missing
        settlement is not taken for a change. Paging:

        * Binance: forward in windows of ``limit`` settlements (oldest first);
        * Bybit and OKX answer newest first: a full page may hide older rows of a shorter interval, so
          the window is halved and asked again; OKX keeps only the last 3 months (stated in ``notes``);
        * Hyperliquid answers at most 500 records from ``startTime``, oldest first: paged by time from
          the newest record received, until a page comes back short.
        """
        import pandas as pd

        limit = self.page_limit(symbol, "funding")
        newest_first = self.id in _NEWEST_FIRST
        by_time = self.id == "hyperliquid"
        full_window = int(limit * default_interval * 3_600_000)
        window = full_window
        cursor = since_ms
        prev_ms: int | None = None
        prev_interval = resume_interval
        if resume_ms is not None:
            cursor = max(since_ms, resume_ms + 1)
            prev_ms = resume_ms
        if self.id == "okx":
            now = int(time.time() * 1000) if now_ms is None else now_ms
            oldest = now - OKX_FUNDING_DAYS * 86_400_000
            if cursor < oldest:
                note = (
                    f"okx keeps funding history for the last 3 months only: settlements before "
                    f"{pd.Timestamp(oldest, unit='ms'):%Y-%m-%d} may be missing"
                )
                yield Page(
                    kind="funding",
                    symbol=symbol,
                    timeframe=None,
                    frame=pd.DataFrame(columns=["source", "symbol", "ts", "rate", "interval_hours", "mark_price"]),
                    newest_ms=cursor,
                    notes=(note,),
                )
        last_full, reasked = False, False
        while cursor <= until_ms:
            end = until_ms if by_time else min(until_ms, cursor + window - 1)
            rows = self.call(
                f"fetch_funding_rate_history {symbol} since {cursor}",
                functools.partial(
                    self.client.fetch_funding_rate_history,
                    symbol,
                    since=cursor,
                    limit=limit,
                    params=self._funding_params(end),
                ),
                counter,
            )
            recs = sorted(
                {
                    int(r["timestamp"]): r
                    for r in rows
                    if r.get("timestamp") is not None and cursor <= int(r["timestamp"]) <= end
                }.values(),
                key=lambda r: int(r["timestamp"]),
            )
            if newest_first and len(rows) >= limit and window > 3_600_000:
                window //= 2  # the page may not reach back to `cursor`: ask for less
                continue
            if not recs:
                if by_time:
                    if len(rows) == 0 and last_full and not reasked:
                        reasked = True  # an empty page right after a full one: ask once more before believing it
                        continue
                    end_note = self._ended_early(symbol, cursor - 1, until_ms, default_interval, now_ms)
                    if end_note:
                        yield Page(
                            kind="funding",
                            symbol=symbol,
                            timeframe=None,
                            frame=pd.DataFrame(
                                columns=["source", "symbol", "ts", "rate", "interval_hours", "mark_price"]
                            ),
                            newest_ms=cursor,
                            notes=(end_note,),
                        )
                    break  # nothing from `cursor` to the end
                cursor = end + 1
                window = full_window
                continue
            bad = [r for r in recs if _finite(r.get("fundingRate")) is None]
            recs = [r for r in recs if _finite(r.get("fundingRate")) is not None]
            skipped = [
                f"the venue's funding record at {pd.Timestamp(int(r['timestamp']), unit='ms')} has no valid "
                f"rate ({str(r.get('fundingRate'))[:20]!r}): skipped (not stored)"
                for r in bad
            ]
            if not recs:
                yield Page(
                    kind="funding",
                    symbol=symbol,
                    timeframe=None,
                    frame=pd.DataFrame(columns=["source", "symbol", "ts", "rate", "interval_hours", "mark_price"]),
                    newest_ms=cursor,
                    notes=tuple(skipped),
                )
                cursor = max(int(r["timestamp"]) for r in bad) + 1
                window = full_window
                continue
            stamps = [int(r["timestamp"]) for r in recs]
            held: int | None = None
            more = stamps[-1] < until_ms and (not by_time or len(rows) >= limit)
            for _ in range(3):
                if not (more and len(stamps) >= 3 and stamps[-1] - stamps[-2] != stamps[-2] - stamps[-3]):
                    break
                # the page's last spacing differs from the one before: a change or a gap, which only the
                # settlements after it tell apart; that record goes with the next page
                held = stamps[-1]
                recs, stamps = recs[:-1], stamps[:-1]
            intervals, notes = funding_intervals(stamps, prev_ms, prev_interval, default_interval)
            notes = skipped + notes
            out = []
            for r, ms, interval in zip(recs, stamps, intervals, strict=True):
                mark_f = _finite((r.get("info") or {}).get("markPrice"))
                if mark_f is None:
                    mark_f = math.nan
                out.append(
                    {
                        "source": self.id,
                        "symbol": symbol,
                        "ts": pd.Timestamp(ms, unit="ms"),
                        "rate": float(r["fundingRate"]),
                        "interval_hours": interval,
                        "mark_price": mark_f if mark_f > 0 else math.nan,
                    }
                )
            prev_ms, prev_interval = stamps[-1], intervals[-1]
            newest = stamps[-1]
            yield Page(
                kind="funding",
                symbol=symbol,
                timeframe=None,
                frame=pd.DataFrame(out),
                newest_ms=newest,
                notes=tuple(notes),
            )
            cursor = newest + 1 if held is None else held
            window = full_window
            last_full, reasked = len(rows) >= limit, False
            if by_time and len(rows) < limit:
                end_note = self._ended_early(symbol, newest, until_ms, default_interval, now_ms)
                if end_note:
                    yield Page(
                        kind="funding",
                        symbol=symbol,
                        timeframe=None,
                        frame=pd.DataFrame(columns=["source", "symbol", "ts", "rate", "interval_hours", "mark_price"]),
                        newest_ms=newest,
                        notes=(end_note,),
                    )
                break  # a short page: the venue has nothing more up to `until`


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, empty, not a number, NaN, inf: a garbled record)."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _hours(value: float) -> str:
    return f"{value:g}h"


def _missing_split(gap: float, current: float, nxt: float) -> tuple[float, int] | None:
    """How ``gap`` hours splits into ``a`` settlements every ``current`` hours then ``b >= 1`` every ``nxt`` (or,
    failing that, ``a >= 2`` every ``current``) with the fewest settlements: (interval at the end, missing count),
    or None when it does not split (then the spacing is taken as a change of interval)."""
    best: tuple[float, int] | None = None
    if current <= 0 or nxt <= 0:
        return None
    for a in range(int(gap // current + 1e-9) + 1):
        rest = gap - a * current
        b = rest / nxt
        if rest > 1e-6 and abs(b - round(b)) < 1e-6 and a + round(b) >= 2:
            missing = a + round(b) - 1
            if best is None or missing < best[1]:
                best = (nxt, missing)
    if best is None:
        slots = gap / current
        if abs(slots - round(slots)) < 1e-6 and round(slots) >= 2:
            best = (current, round(slots) - 1)
    return best


def funding_intervals(
    stamps: Sequence[int], prev_ms: int | None, prev_interval: float | None, default: float
) -> tuple[list[float], list[str]]:
    """The funding interval in force at each settlement of ``stamps`` (ascending epoch ms) and notes on changes.

    The interval at a settlement is its spacing from the previous one (``prev_ms`` before the first);
    the first settlement of a series takes the spacing to the next one (``default`` when it is alone, or when the
    spacing after that is ``default`` and divides it: a gap right after the first settlement).
    A spacing unlike both the interval in force and the spacing after it is a gap (missing settlements), not a
    change: when it splits into settlements at the interval in force then at the next spacing (8h, 8h | 4h: a
    settlement missing right at a change), the next spacing holds there; when it is a whole multiple (>= 2) of
    the interval in force, that interval stays. Every change of
    the interval in force is a note ``funding interval changed from 8h to 4h at <time>``.
    """
    import pandas as pd

    hour = 3_600_000
    out: list[float] = []
    notes: list[str] = []
    last_ms, current = prev_ms, prev_interval
    for i, ms in enumerate(stamps):
        nxt = (stamps[i + 1] - ms) / hour if i + 1 < len(stamps) else None
        if last_ms is None:
            interval = round(nxt, 6) if nxt is not None and nxt > 0 else float(default)
            after = (stamps[i + 2] - stamps[i + 1]) / hour if i + 2 < len(stamps) else None
            if nxt is not None and after is not None and 0 < after < nxt and abs(after - default) < 1e-6:
                slots = nxt / after
                if abs(slots - round(slots)) < 1e-6:
                    interval = round(after, 6)  # a gap right after the first settlement: the spec's interval holds
        else:
            gap = round((ms - last_ms) / hour, 6)
            interval = gap
            if current is not None and nxt is not None and abs(gap - current) > 1e-6 and abs(gap - nxt) > 1e-6:
                # a spacing unlike both the interval in force and the next one: settlements are missing (a one-off
                # interval, a change at once followed by another, is not how venues change it), also right at a change
                found = _missing_split(gap, current, round(nxt, 6))
                if found is not None:
                    interval, missing = found
                    notes.append(
                        f"{missing} funding settlement(s) missing before {pd.Timestamp(ms, unit='ms')} "
                        f"(every {_hours(interval)})"
                    )
            if interval <= 0:
                interval = float(default)
            if current is not None and abs(interval - current) > 1e-6:
                notes.append(
                    f"funding interval changed from {_hours(current)} to {_hours(interval)} at "
                    f"{pd.Timestamp(ms, unit='ms')}"
                )
        out.append(float(interval))
        last_ms, current = ms, interval
    return out, notes
