"""``LiveTickerFeed``: the book's ``feed: {kind: live}`` — public tickers through ccxt, no keys.

Per tick (:meth:`LiveTickerFeed.snapshot`):

* per instrument, ``fetch_funding_rate``: the **mark price** of its base asset, the funding rate in force and
  the next settlement time (Binance ``premiumIndex``, Bybit ``/v5/market/tickers``);
* per held asset that is not an instrument's base and not a stablecoin, ``fetch_ticker("<ASSET>/USDT")``: the
  last spot price, USDT taken as 1 USD. An instrument's base is priced at the mark (the price the venue
  liquidates and charges funding on), so a held coin that is also hedged is valued at the mark too.
  Stablecoins are absent from ``prices`` (= 1 USD, as :class:`~perphedge.core.book.FeedSnapshot` says).

**Settlements.** When a settlement time falls in ``(since_ms, now_ms]`` — a ``nextFundingTime`` seen in an
earlier snapshot, or a time on the instrument's funding grid (multiples of ``funding_interval_hours`` from
00:00 UTC, which also covers the first tick after a restart) — the settled rates are read with
``fetch_funding_rate_history`` over ``(since_ms, now_ms]``. Settlement times are kept in whole seconds (a
venue may stamp the history a few ms off the announced time; both paths then give the same key). A
settlement that was announced but is missing from the history (or the history call failed) is emitted
with **the last rate seen for that settlement time** (the rate the venue showed in force before it), and
logged. If the history cannot be read and a grid
time passed with no rate ever seen for it, the snapshot fails (ExchangeError) rather than drop a payment:
the caller retries the tick with the same ``since_ms``.

**Highs.** There is no intrabar data live: ``highs[asset]`` is the highest price this feed object has seen
for the asset in ``(since_ms, now_ms]`` (the current price at least). A restarted process starts again from
the current price.

**Staleness.** ``last_price_ms`` is the oldest price timestamp used (the venue's ticker time; a ticker
without one counts as received at ``now_ms``); ``stale`` when ``now_ms − last_price_ms`` exceeds
``stale_after_s``. An exchange that fails or answers nonsense (a missing or non-positive price) raises one
:class:`~perphedge.errors.ExchangeError` line (reads are retried first, see
:class:`~perphedge.exchange.ccxt_source.RetryPolicy`); :attr:`LiveTickerFeed.last_snapshot` keeps the last good
snapshot for a caller that wants to show it as stale.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from perphedge.core.book import FeedSnapshot, FundingSettlement
from perphedge.core.units import is_stablecoin
from perphedge.errors import ConfigError, ExchangeError
from perphedge.exchange.ccxt_source import SUPPORTED, RetryPolicy, _call, _short, make_exchange

if TYPE_CHECKING:
    from perphedge.core.instruments import Instrument

__all__ = ["LIVE_POLICY", "MAX_WINDOW_MS", "LiveTickerFeed"]

log = logging.getLogger("perphedge.book.feed")

#: Retries for a live tick: a few quick ones (the watch loop comes back at the next interval anyway).
LIVE_POLICY = RetryPolicy(max_retries=2, base_delay=0.25, max_delay=2.0, unreachable_budget=5.0)
_HOUR_MS = 3_600_000
#: A venue's history may stamp a settlement a few ms off the announced time: within this, they are one.
_SAME_SETTLEMENT_MS = 60_000
#: Longest window one snapshot reads settlements over (a gap longer than this is a caller error).
MAX_WINDOW_MS = 366 * 24 * _HOUR_MS


def _positive(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x > 0 else None


def _interval_hours(text: Any, default: float) -> float:
    """``"8h"`` → 8.0; the instrument's interval when the venue does not say."""
    if isinstance(text, str) and text.endswith("h"):
        hours = _positive(text[:-1])
        if hours is not None:
            return hours
    return default


class LiveTickerFeed:
    """Live public prices and funding of one exchange's ``instruments`` and the held ``assets``.

    Parameters
    ----------
    exchange_id
        ``binance`` or ``bybit`` (as ``feed.source`` in the book file).
    instruments
        The book's perpetuals on that exchange (their ``ccxt_symbol`` is asked for).
    assets
        Asset codes to price (holdings, account balances); bases of ``instruments`` and stablecoins need
        no spot ticker.
    stale_after_s
        ``alerts.feed_stale_after`` in seconds.
    client
        A ccxt client to use instead of :func:`~perphedge.exchange.ccxt_source.make_exchange` (tests).
    policy
        Retries of the reads (default :data:`LIVE_POLICY`).
    """

    kind = "live"

    def __init__(
        self,
        exchange_id: str,
        *,
        instruments: Sequence[Instrument],
        assets: Sequence[str] = (),
        stale_after_s: float,
        client: Any = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        name = exchange_id.lower()
        if name not in SUPPORTED:
            raise ConfigError(
                f"invalid `feed.source`: the live feed supports {', '.join(SUPPORTED)}, was {exchange_id!r}"
            )
        if not math.isfinite(stale_after_s) or stale_after_s <= 0:
            raise ConfigError(f"invalid `alerts.feed_stale_after`: must be > 0 seconds, was {stale_after_s!r}")
        for inst in instruments:
            if inst.exchange.lower() != name:
                raise ConfigError(f"the live feed of {name} cannot price {inst.id}: it is listed on {inst.exchange}")
            if not inst.ccxt_symbol:
                raise ConfigError(f"the live feed cannot price {inst.id}: its spec has no ccxt symbol")
        self.exchange = name
        self.source = f"live:{name}"
        self.instruments = tuple(instruments)
        bases = {i.base.upper() for i in self.instruments}
        codes = {a.strip().upper() for a in assets if a.strip()}
        self.spot_assets = tuple(sorted(a for a in codes - bases if not is_stablecoin(a)))
        self.stale_after_ms = int(stale_after_s * 1000)
        self.client = client if client is not None else make_exchange(name)
        self.policy = policy or LIVE_POLICY
        self._rng = random.Random(self.policy.seed)
        self._markets: dict[str, Any] | None = None
        #: per instrument id: settlement time -> the last rate seen in force before it
        self._announced: dict[str, dict[int, float]] = {i.id: {} for i in self.instruments}
        #: per asset: (snapshot time, price) seen by this object
        self._seen: dict[str, list[tuple[int, float]]] = {}
        #: per instrument id: the next settlement time the venue announced at the last snapshot
        self.next_funding_ms: dict[str, int] = {}
        #: the last snapshot that succeeded (None before the first)
        self.last_snapshot: FeedSnapshot | None = None

    # ------------------------------------------------------------------ reads

    def _read(self, what: str, fn: Any) -> Any:
        return _call(self.client, what, fn, self.policy, self._rng)

    def _check_markets(self) -> None:
        if self._markets is not None:
            return
        markets = dict(self._read("load_markets", self.client.load_markets))
        for inst in self.instruments:
            if inst.ccxt_symbol not in markets:
                raise ExchangeError(f"{self.exchange} has no market {inst.ccxt_symbol!r} (instrument {inst.id})")
        for asset in self.spot_assets:
            if f"{asset}/USDT" not in markets:
                raise ExchangeError(f"{self.exchange} has no spot market {asset}/USDT to price {asset}")
        self._markets = markets

    def _history(self, inst: Instrument, since_ms: int, now_ms: int) -> dict[int, float]:
        """Settled rates of ``inst`` in ``(since_ms, now_ms]`` by settlement time (paged forward)."""
        out: dict[int, float] = {}
        cursor = since_ms + 1
        limit = 200 if self.exchange == "bybit" else 1000
        window = int(limit * inst.funding_interval_hours * _HOUR_MS) // 2  # half a page: never more than a page
        while cursor <= now_ms:
            end = min(now_ms, cursor + window - 1)
            rows = self._read(
                f"fetch_funding_rate_history {inst.ccxt_symbol} since {cursor}",
                functools.partial(
                    self.client.fetch_funding_rate_history,
                    inst.ccxt_symbol,
                    since=cursor,
                    limit=limit,
                    params={"until": end},
                ),
            )
            for r in rows or ():
                ts, rate = r.get("timestamp"), r.get("fundingRate")
                if ts is None or rate is None:
                    continue
                ts = (int(ts) + 500) // 1000 * 1000  # whole seconds: one settlement, one key, on every path
                rate_f = float(rate)
                if since_ms < ts <= now_ms and math.isfinite(rate_f):
                    out[ts] = rate_f
            cursor = end + 1
        return out

    def _settlements(self, inst: Instrument, since_ms: int, now_ms: int) -> tuple[FundingSettlement, ...]:
        announced = {t: r for t, r in self._announced[inst.id].items() if since_ms < t <= now_ms}
        step = int(inst.funding_interval_hours * _HOUR_MS)
        first_grid = (since_ms // step + 1) * step
        if not announced and first_grid > now_ms:
            return ()
        try:
            settled = self._history(inst, since_ms, now_ms)
        except ExchangeError as exc:
            t = first_grid
            while t <= now_ms and any(abs(t - a) <= _SAME_SETTLEMENT_MS for a in announced):
                t += step
            if t <= now_ms:
                raise ExchangeError(
                    f"{self.exchange}: cannot read the funding settled on {inst.id} at {t} ms "
                    f"({_short(exc, 200)}); the tick is retried"
                ) from exc
            log.warning("%s: funding history failed (%s); using the announced rates", inst.id, _short(exc, 160))
            settled = {}
        for t, rate in announced.items():
            if not any(abs(t - s) <= _SAME_SETTLEMENT_MS for s in settled):
                log.info("%s: settlement %d not in the history; using the rate seen before it (%g)", inst.id, t, rate)
                settled[t] = rate
        return tuple(FundingSettlement(instrument=inst.id, settlement_ms=t, rate=settled[t]) for t in sorted(settled))

    # ------------------------------------------------------------------ the port

    def snapshot(self, now_ms: int, since_ms: int) -> FeedSnapshot:
        """Prices at ``now_ms``; funding settlements and highs over ``(since_ms, now_ms]``."""
        if isinstance(now_ms, bool) or not isinstance(now_ms, int) or isinstance(since_ms, bool):
            raise ValueError(f"`now_ms` must be whole milliseconds, was {now_ms!r}")
        if not isinstance(since_ms, int) or since_ms > now_ms:
            raise ValueError(f"`since_ms` must be whole milliseconds <= now_ms ({now_ms}), was {since_ms!r}")
        if now_ms - since_ms > MAX_WINDOW_MS:
            raise ValueError(
                f"the window ({since_ms}, {now_ms}] is longer than 366 days: pass the previous tick's time"
            )
        self._check_markets()
        prices: dict[str, float] = {}
        stamps: list[int] = []
        rates_8h: dict[str, float] = {}
        next_ms: dict[str, int] = {}
        for inst in self.instruments:
            fr = self._read(
                f"fetch_funding_rate {inst.ccxt_symbol}",
                functools.partial(self.client.fetch_funding_rate, inst.ccxt_symbol),
            )
            if not isinstance(fr, dict):
                raise ExchangeError(f"{self.exchange}: no funding rate answer for {inst.id}")
            mark = _positive(fr.get("markPrice"))
            if mark is None:
                raise ExchangeError(f"{self.exchange}: no valid mark price for {inst.id} (was {fr.get('markPrice')!r})")
            rate = fr.get("fundingRate")
            rate_f = float(rate) if rate is not None else math.nan
            if not math.isfinite(rate_f):
                raise ExchangeError(f"{self.exchange}: no valid funding rate for {inst.id} (was {rate!r})")
            hours = _interval_hours(fr.get("interval"), inst.funding_interval_hours)
            rates_8h[inst.id] = rate_f * 8.0 / hours
            nxt = fr.get("fundingTimestamp")
            if nxt is not None:
                nxt_ms = (int(nxt) + 500) // 1000 * 1000
                next_ms[inst.id] = nxt_ms
                if nxt_ms > now_ms:
                    self._announced[inst.id][nxt_ms] = rate_f
            prices[inst.base.upper()] = mark
            ts = fr.get("timestamp")
            stamps.append(int(ts) if ts is not None else now_ms)
        for asset in self.spot_assets:
            t = self._read(f"fetch_ticker {asset}/USDT", functools.partial(self.client.fetch_ticker, f"{asset}/USDT"))
            if not isinstance(t, dict):
                raise ExchangeError(f"{self.exchange}: no ticker answer for {asset}/USDT")
            last = _positive(t.get("last"))
            if last is None:
                raise ExchangeError(f"{self.exchange}: no valid price for {asset}/USDT (was {t.get('last')!r})")
            prices[asset] = last
            ts = t.get("timestamp")
            stamps.append(int(ts) if ts is not None else now_ms)
        funding = {}
        for inst in self.instruments:
            settled = self._settlements(inst, since_ms, now_ms)
            if settled:
                funding[inst.id] = settled
        highs: dict[str, float] = {}
        for asset, price in prices.items():
            seen = [(t, p) for t, p in self._seen.get(asset, []) if since_ms < t <= now_ms]
            seen.append((now_ms, price))
            self._seen[asset] = seen
            highs[asset] = max(p for _, p in seen)
        for inst_id in self._announced:
            self._announced[inst_id] = {t: r for t, r in self._announced[inst_id].items() if t > since_ms}
        last_ms = min(stamps) if stamps else now_ms
        snap = FeedSnapshot(
            now_ms=now_ms,
            source=self.source,
            prices=prices,
            highs=highs,
            funding=funding,
            funding_rate_8h=rates_8h,
            last_price_ms=last_ms,
            stale=now_ms - last_ms > self.stale_after_ms,
        )
        self.next_funding_ms = next_ms
        self.last_snapshot = snap
        return snap
