"""ccxt: the one door to exchanges. Markets → instruments, OHLCV and funding history → the store.

The fetch is resumable and survives faults:

* each page is written in its own transaction, so a killed run loses at most the page in flight;
* a series resumes from its newest stored timestamp (inclusive: a candle that was still open when
  it was stored is fetched again and replaced), so an interrupted and resumed fetch ends with
  exactly the store an uninterrupted one would;
* network errors, 429 (``Retry-After`` honoured) and 5xx are retried with exponential backoff and
  jitter; anything else is an :class:`~perphedge.errors.ExchangeError`.

``PERPHEDGE_EXCHANGE_URL`` routes every API call to a mirror (the test suite's fake exchange).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from perphedge.errors import ConfigError, ExchangeError

if TYPE_CHECKING:
    import pandas as pd

    from perphedge.core.instruments import Instrument
    from perphedge.data.store import MarketStore

__all__ = ["FetchResult", "RetryPolicy", "SeriesResult", "fetch", "make_exchange", "market_to_instrument"]

log = logging.getLogger("perphedge.fetch")

TIMEFRAME_MS = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "8h": 28_800_000,
    "1d": 86_400_000,
    "1w": 604_800_000,
}
PAGE_LIMITS = {  # (ohlcv, funding) page sizes the exchanges accept
    "binance": {"spot": (1000, 0), "linear": (1500, 1000), "inverse": (1500, 1000)},
    "bybit": {"spot": (1000, 0), "linear": (1000, 200), "inverse": (1000, 200)},
}
SUPPORTED = ("binance", "bybit")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Retries of transient failures: ``base·2^n`` seconds (capped), plus uniform jitter."""

    max_retries: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    seed: int | None = None

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        backoff = min(self.max_delay, self.base_delay * 2**attempt)
        wait = backoff + rng.uniform(0, backoff)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return float(wait)


@dataclass(slots=True, kw_only=True)
class SeriesResult:
    """What one series fetch did."""

    kind: str  # ohlcv | funding
    symbol: str
    timeframe: str | None
    rows: int = 0
    pages: int = 0
    retries: int = 0
    first: str | None = None
    last: str | None = None
    resumed_from: str | None = None


@dataclass(slots=True, kw_only=True)
class FetchResult:
    """All series of one fetch."""

    exchange: str
    series: list[SeriesResult] = field(default_factory=list)
    instruments: int = 0


def _reroute(obj: Any, base: str) -> Any:
    if isinstance(obj, dict):
        return {k: _reroute(v, base) for k, v in obj.items()}
    if isinstance(obj, str) and obj.startswith("http"):
        return base.rstrip("/") + urlsplit(obj).path
    return obj


def make_exchange(exchange_id: str, *, base_url: str | None = None, timeout_ms: int | None = None) -> Any:
    """A ccxt client for public endpoints (no keys), optionally routed to a mirror URL."""
    import ccxt

    name = exchange_id.lower()
    if name not in SUPPORTED:
        raise ConfigError(f"invalid `--exchange`: fetching supports {', '.join(SUPPORTED)}, was {exchange_id!r}")
    cls = getattr(ccxt, name)
    options: dict[str, Any] = {"fetchCurrencies": False, "fetchMarkets": {"types": ["spot", "linear", "inverse"]}}
    client = cls({"enableRateLimit": True, "options": options})
    client.has["fetchCurrencies"] = False
    base = base_url or os.environ.get("PERPHEDGE_EXCHANGE_URL")
    if base:
        client.urls["api"] = _reroute(client.urls["api"], base)
        env_rate = os.environ.get("PERPHEDGE_RATE_LIMIT_MS")
        if env_rate:
            client.rateLimit = float(env_rate)
    timeout = timeout_ms or os.environ.get("PERPHEDGE_EXCHANGE_TIMEOUT_MS")
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


def _call(
    client: Any,
    what: str,
    fn: Callable[[], Any],
    policy: RetryPolicy,
    rng: random.Random,
    counter: SeriesResult | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    import ccxt

    attempt = 0
    while True:
        try:
            return fn()
        except ccxt.OperationFailed as exc:  # NetworkError (timeouts, 429, 5xx, dropped sockets) and kin
            if attempt >= policy.max_retries:
                raise ExchangeError(
                    f"{client.id}: {what} failed after {attempt + 1} attempts: {type(exc).__name__}: {str(exc)[:200]}"
                ) from exc
            retry_after = _retry_after(client)  # 429 and 503 may say how long to wait
            wait = policy.delay(attempt, rng, retry_after)
            log.warning(
                "%s: %s: %s (%s); retry %d/%d in %.2f s",
                client.id,
                what,
                type(exc).__name__,
                str(exc)[:120],
                attempt + 1,
                policy.max_retries,
                wait,
            )
            if counter is not None:
                counter.retries += 1
            sleep(wait)
            attempt += 1
        except ccxt.BadSymbol as exc:
            raise ExchangeError(f"{client.id}: unknown symbol in {what}: {exc}") from exc
        except ccxt.BaseError as exc:
            raise ExchangeError(f"{client.id}: {what} failed: {type(exc).__name__}: {str(exc)[:300]}") from exc


def _num(value: Any, default: float) -> float:
    return default if value is None else float(value)


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
    if client.id == "binance":
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
        mmr = float(info.get("maintMarginPercent") or 0) / 100 or 1.0 / max(max_lev, 2.0) / 2.0
        schedule = MarginSchedule.single(min(max(mmr, 0.001), 0.5), max_leverage=max_lev)
    contract_size = float(market.get("contractSize") or 1.0)
    return Instrument(
        exchange=client.id,
        symbol=str(market.get("id")),
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
        funding_interval_hours=bundled.funding_interval_hours if bundled else 8.0,
        maker_fee=_num(market.get("maker"), 0.0002),
        taker_fee=_num(market.get("taker"), 0.0005),
        ccxt_symbol=str(market["symbol"]),
        source=f"ccxt fetchMarkets {client.id} (tiers: {'bundled spec' if bundled else 'first tier from market info'})",
        as_of=time.strftime("%Y-%m-%d", time.gmtime()),
    )


def _ms(ts: Any) -> int:
    import pandas as pd

    return (
        int(pd.Timestamp(ts).tz_localize("UTC").value // 1_000_000)
        if pd.Timestamp(ts).tzinfo is None
        else int(pd.Timestamp(ts).value // 1_000_000)
    )


def _frame_ohlcv(rows: list[list[Any]], symbol: str, source: str, timeframe: str) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["ms", "open", "high", "low", "close", "volume"])
    frame = frame.dropna(subset=["ms", "open", "high", "low", "close"]).drop_duplicates("ms", keep="last")
    frame["ts"] = pd.to_datetime(frame["ms"], unit="ms")
    return frame.assign(source=source, symbol=symbol, timeframe=timeframe).sort_values("ts")


def _fetch_ohlcv_series(
    client: Any,
    store: MarketStore,
    symbol: str,
    timeframe: str,
    since_ms: int,
    until_ms: int,
    limit: int,
    policy: RetryPolicy,
    rng: random.Random,
    on_page: Callable[[int, int], None],
) -> SeriesResult:
    """Page forward in windows of ``limit`` candles, so a window never holds more than one page
    whichever end of it the exchange answers from (Binance: oldest first, Bybit: newest first)."""
    res = SeriesResult(kind="ohlcv", symbol=symbol, timeframe=timeframe)
    step = TIMEFRAME_MS[timeframe]
    window = limit * step
    last = store.last_ts("candles", client.id, symbol, timeframe)
    cursor = since_ms
    if last is not None:
        cursor = max(since_ms, _ms(last))  # inclusive: re-fetch the newest stored candle
        res.resumed_from = str(last)
    while cursor <= until_ms:
        end = min(until_ms, cursor + window - 1)
        rows = _call(
            client,
            f"fetch_ohlcv {symbol} {timeframe} since {cursor}",
            functools.partial(client.fetch_ohlcv, symbol, timeframe, since=cursor, limit=limit, params={"until": end}),
            policy,
            rng,
            res,
        )
        rows = [r for r in rows if r and r[0] is not None and since_ms <= r[0] <= end]
        if not rows:
            cursor = end + 1
            continue
        frame = _frame_ohlcv(rows, symbol, client.id, timeframe)
        store.upsert("candles", frame)
        res.rows += len(frame)
        res.pages += 1
        newest = int(frame["ms"].max())
        res.first = res.first or str(frame["ts"].min())
        res.last = str(frame["ts"].max())
        on_page(len(frame), newest)
        cursor = max(newest + step, cursor + step)
    return res


def _fetch_funding_series(
    client: Any,
    store: MarketStore,
    symbol: str,
    since_ms: int,
    until_ms: int,
    limit: int,
    default_interval: float,
    policy: RetryPolicy,
    rng: random.Random,
    on_page: Callable[[int, int], None],
) -> SeriesResult:
    """Page forward in windows of ``limit`` settlements; a full page from an exchange that answers
    newest first (Bybit) may hide older rows of a shorter interval, so the window is halved and asked again."""
    import pandas as pd

    res = SeriesResult(kind="funding", symbol=symbol, timeframe=None)
    newest_first = client.id == "bybit"
    full_window = int(limit * default_interval * 3_600_000)
    window = full_window
    last = store.last_ts("funding", client.id, symbol)
    cursor = since_ms
    prev_ms: int | None = None
    if last is not None:
        cursor = max(since_ms, _ms(last) + 1)
        prev_ms = _ms(last)
        res.resumed_from = str(last)
    while cursor <= until_ms:
        end = min(until_ms, cursor + window - 1)
        rows = _call(
            client,
            f"fetch_funding_rate_history {symbol} since {cursor}",
            functools.partial(
                client.fetch_funding_rate_history, symbol, since=cursor, limit=limit, params={"until": end}
            ),
            policy,
            rng,
            res,
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
            cursor = end + 1
            window = full_window
            continue
        out = []
        for i, r in enumerate(recs):
            ms = int(r["timestamp"])
            # ccxt's history rows carry no interval: it is the spacing to the previous settlement
            if prev_ms is not None:
                interval = round((ms - prev_ms) / 3_600_000, 6)
            elif i + 1 < len(recs):
                interval = round((int(recs[i + 1]["timestamp"]) - ms) / 3_600_000, 6)
            else:
                interval = default_interval
            mark = (r.get("info") or {}).get("markPrice")
            mark_f = float(mark) if mark not in (None, "") else math.nan
            out.append(
                {
                    "ms": ms,
                    "rate": float(r["fundingRate"]),
                    "interval_hours": interval if interval > 0 else default_interval,
                    "mark_price": mark_f if mark_f > 0 else math.nan,
                }
            )
            prev_ms = ms
        frame = pd.DataFrame(out).assign(source=client.id, symbol=symbol)
        frame["ts"] = pd.to_datetime(frame.pop("ms"), unit="ms")
        store.upsert("funding", frame)
        res.rows += len(frame)
        res.pages += 1
        res.first = res.first or str(frame["ts"].min())
        res.last = str(frame["ts"].max())
        newest = int(recs[-1]["timestamp"])
        on_page(len(frame), newest)
        cursor = newest + 1
        window = full_window
    return res


def fetch(
    store: MarketStore,
    exchange_id: str,
    *,
    spot: Sequence[str] = (),
    perps: Sequence[str] = (),
    since: str,
    until: str | None = None,
    timeframe: str = "1d",
    funding: bool = True,
    policy: RetryPolicy | None = None,
    progress: Any = None,
    client: Any = None,
) -> FetchResult:
    """Fetch OHLCV of ``spot`` and ``perps`` and the funding history of ``perps`` into ``store``.

    ``progress`` is a rich ``Progress`` (or None); one task per series.
    """
    import pandas as pd

    if timeframe not in TIMEFRAME_MS:
        raise ConfigError(f"invalid `--timeframe`: must be one of {', '.join(TIMEFRAME_MS)}, was {timeframe!r}")
    if not spot and not perps:
        raise ConfigError("nothing to fetch: give `--spot` and/or `--perps` symbols")
    try:
        since_ms = int(pd.Timestamp(since, tz="UTC").value // 1_000_000)
        until_ms = int(pd.Timestamp(until, tz="UTC").value // 1_000_000) if until else int(time.time() * 1000)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid `--since`/`--until`: {exc}") from exc
    if until_ms < since_ms:
        raise ConfigError("invalid `--until`: it is before `--since`")
    policy = policy or RetryPolicy()
    rng = random.Random(policy.seed)
    client = client or make_exchange(exchange_id)
    result = FetchResult(exchange=client.id)
    markets = _call(client, "load_markets", client.load_markets, policy, rng)
    for sym in [*spot, *perps]:
        if sym not in markets:
            close = [m for m in markets if m.split("/")[0] == sym.split("/")[0]][:6]
            raise ExchangeError(
                f"{client.id} has no market {sym!r}" + (f"; similar: {', '.join(close)}" if close else "")
            )
    for sym in spot:
        if markets[sym].get("type") != "spot":
            raise ConfigError(f"{sym} is not a spot market on {client.id}; pass it with --perps")
    for sym in perps:
        if not markets[sym].get("swap"):
            raise ConfigError(
                f"{sym} is not a perpetual on {client.id}; perpetuals look like BTC/USDT:USDT or BTC/USD:BTC"
            )

    from perphedge.specs import default_registry

    registry = default_registry()
    instruments = []
    for sym in perps:
        market = markets[sym]
        bundled = None
        try:
            candidate = registry.get(f"{client.id}:{market['id']}")
            bundled = candidate if candidate.ccxt_symbol == sym else None
        except ConfigError:
            bundled = None
        instruments.append(market_to_instrument(client, market, bundled))
    if instruments:
        result.instruments = store.upsert_instruments(client.id, instruments)

    limits = PAGE_LIMITS[client.id]
    step = TIMEFRAME_MS[timeframe]

    def task(label: str, total: int) -> Callable[[int, int], None]:
        if progress is None:
            return lambda n, newest: None
        tid = progress.add_task(label, total=max(total, 1))

        def advance(n: int, newest: int) -> None:
            progress.update(tid, completed=min(total, max(0, (newest - since_ms) // step + 1)))

        return advance

    periods = (until_ms - since_ms) // step + 1
    for sym in [*spot, *perps]:
        mtype = "spot" if sym in spot else ("inverse" if markets[sym].get("inverse") else "linear")
        result.series.append(
            _fetch_ohlcv_series(
                client,
                store,
                sym,
                timeframe,
                since_ms,
                until_ms,
                limits[mtype][0],
                policy,
                rng,
                (tick := task(f"{sym} {timeframe}", periods)),
            )
        )
        tick(0, until_ms)  # the series is complete up to `until`, even where the exchange had nothing
    if funding:
        for inst, sym in zip(instruments, perps, strict=True):
            mtype = "inverse" if markets[sym].get("inverse") else "linear"
            settle_step = int(inst.funding_interval_hours * 3_600_000)
            total = (until_ms - since_ms) // settle_step + 1

            def funding_task(
                label: str, total: int = total, settle_step: int = settle_step
            ) -> Callable[[int, int], None]:
                if progress is None:
                    return lambda n, newest: None
                tid = progress.add_task(label, total=max(total, 1))
                return lambda n, newest: progress.update(
                    tid, completed=min(total, max(0, (newest - since_ms) // settle_step + 1))
                )

            result.series.append(
                _fetch_funding_series(
                    client,
                    store,
                    sym,
                    since_ms,
                    until_ms,
                    limits[mtype][1],
                    inst.funding_interval_hours,
                    policy,
                    rng,
                    (ftick := funding_task(f"{sym} funding")),
                )
            )
            ftick(0, until_ms)
    return result
