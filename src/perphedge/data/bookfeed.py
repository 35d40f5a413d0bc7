"""Price feeds of the book (:class:`perphedge.core.book.Feed`): replay history, the market store, constants.

* :class:`HistoryFeed` (``kind = "history"``): ``book replay``. Built from the arrays the backtest's
  ``prepare`` loads (bar opens, closes, highs, funding per bar), so replay prices every bar exactly as the
  backtest does. **Replay books one funding settlement per bar**: the bar's summed rate (the backtest's
  ``LegData.funding``), stamped at the bar's close. Several settlements inside a bar are therefore one
  settlement in the journal, as they are one addition in the backtest kernel.
* :class:`StoreFeed` (``kind = "store"``): a book on stored data (``feed: {kind: store}``). Opens the DuckDB
  market store read-only for each snapshot and never holds it in between, so ``perphedge data fetch`` can
  refresh it while a book runs. Perpetuals are priced from the spot candles, as in the backtest. Each real
  funding settlement in the window is reported with its own time and rate.
* :class:`PortfolioFeed` (``kind = "portfolio"``): constant prices (the portfolio file's), a constant
  funding rate settled at 00:00, 08:00 and 16:00 UTC. For offline demos and tests; never stale.

Times are epoch milliseconds (UTC); a candle's close time is its open ``ts`` plus its timeframe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np

from perphedge.core.book import FeedSnapshot, FundingSettlement
from perphedge.core.units import is_stablecoin, normalise_asset
from perphedge.errors import DataError

__all__ = ["EIGHT_HOURS_MS", "HistoryFeed", "PortfolioFeed", "StoreFeed"]

EIGHT_HOURS_MS = 8 * 3_600_000
_STEP_MS = {"1d": 86_400_000, "8h": EIGHT_HOURS_MS}
_EPOCH = datetime(1970, 1, 1)


def _iso(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%d %H:%M:%S UTC")


def _naive(ms: int) -> datetime:
    """Epoch ms as the market store's naive-UTC timestamp (exact to the microsecond)."""
    return _EPOCH + timedelta(milliseconds=ms)


def _check_window(now_ms: int, since_ms: int) -> None:
    if since_ms > now_ms:
        raise DataError(f"feed window starts after it ends: since {_iso(since_ms)} > now {_iso(now_ms)}")


# ---------------------------------------------------------------------------------------------- replay


class HistoryFeed:
    """Replay of prepared history, one snapshot per bar close.

    Parameters
    ----------
    bar_open_ms
        Open time of each bar (int64 epoch ms), strictly increasing.
    bar_ms
        Bar length in ms; bar ``t`` closes at ``bar_open_ms[t] + bar_ms``.
    closes, highs
        Per asset, the close and high of every bar (USD per coin). NaN = not traded then (the asset is
        left out of that snapshot).
    funding
        Per instrument id, the funding of every bar as a fraction of notional: the **sum** of the bar's
        settlement rates, exactly the backtest's ``LegData.funding`` (finite everywhere).
    funding_rate_8h_now
        Per instrument id and bar, the rate in force (per 8 h) for status and alerts; by default the bar's
        summed funding scaled to 8 h.
    """

    kind = "history"

    def __init__(
        self,
        *,
        bar_open_ms: np.ndarray,
        bar_ms: int,
        closes: Mapping[str, np.ndarray],
        highs: Mapping[str, np.ndarray],
        funding: Mapping[str, np.ndarray],
        funding_rate_8h_now: Mapping[str, np.ndarray] | None = None,
        source: str = "store",
    ) -> None:
        opens = np.asarray(bar_open_ms)
        if opens.ndim != 1 or opens.size == 0:
            raise DataError("history feed: `bar_open_ms` must be a non-empty 1-D array")
        if not np.issubdtype(opens.dtype, np.integer):
            raise DataError(f"history feed: `bar_open_ms` must hold integers (epoch ms), was {opens.dtype}")
        if isinstance(bar_ms, bool) or not isinstance(bar_ms, int | np.integer) or bar_ms <= 0:
            raise DataError(f"history feed: `bar_ms` must be a positive integer, was {bar_ms!r}")
        self.bar_ms = int(bar_ms)
        self._opens = opens.astype(np.int64)
        if opens.size > 1 and np.any(np.diff(self._opens) < self.bar_ms):
            bad = int(np.argmax(np.diff(self._opens) < self.bar_ms)) + 1
            raise DataError(
                f"history feed: bar {bad} opens at {_iso(int(self._opens[bad]))}, less than one bar "
                f"({self.bar_ms} ms) after the previous one; bars must be increasing and not overlap"
            )
        self._closes_ms = self._opens + self.bar_ms
        n = opens.size
        self.source = source
        self._closes = self._series("closes", closes, n, positive=True)
        self._highs = self._series("highs", highs, n, positive=True)
        missing = sorted(set(self._closes) - set(self._highs))
        if missing:
            raise DataError(f"history feed: `highs` has no series for {', '.join(missing)} (closes has)")
        self._funding = {str(k): self._array(f"funding[{k}]", v, n) for k, v in funding.items()}
        for inst, arr in self._funding.items():
            if not np.all(np.isfinite(arr)):
                bad = int(np.argmin(np.isfinite(arr)))
                raise DataError(f"history feed: funding of {inst} is not finite at bar {bad} ({_iso(int(opens[bad]))})")
        self._rate_now: dict[str, np.ndarray] = {}
        if funding_rate_8h_now is not None:
            self._rate_now = {
                str(k): self._array(f"funding_rate_8h_now[{k}]", v, n) for k, v in funding_rate_8h_now.items()
            }

    @staticmethod
    def _array(name: str, values: Any, n: int) -> np.ndarray:
        arr = np.asarray(values, dtype=np.float64)
        if arr.shape != (n,):
            raise DataError(f"history feed: `{name}` has shape {arr.shape}, expected ({n},) like `bar_open_ms`")
        return arr

    def _series(self, name: str, values: Mapping[str, np.ndarray], n: int, *, positive: bool) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for key, arr in values.items():
            code = normalise_asset(key)
            if code in out:
                raise DataError(f"history feed: `{name}` names {code} twice")
            a = self._array(f"{name}[{code}]", arr, n)
            if positive and np.any(a[np.isfinite(a)] <= 0):
                raise DataError(f"history feed: `{name}[{code}]` holds a price <= 0")
            if np.any(np.isinf(a)):
                raise DataError(f"history feed: `{name}[{code}]` holds an infinite price")
            out[code] = a
        return out

    def bar_closes(self) -> list[int]:
        """The closing instant (epoch ms) of every bar: ``bar_open_ms + bar_ms``."""
        return [int(x) for x in self._closes_ms]

    def bar_of(self, now_ms: int) -> int:
        """The bar closing exactly at ``now_ms`` (DataError when no bar closes then)."""
        t = int(np.searchsorted(self._closes_ms, now_ms))
        if t >= self._closes_ms.size or int(self._closes_ms[t]) != now_ms:
            first, last = int(self._closes_ms[0]), int(self._closes_ms[-1])
            raise DataError(
                f"history feed: {_iso(now_ms)} is not a bar close of the history ({_iso(first)} → {_iso(last)}, "
                f"every {self.bar_ms // 60_000} min)"
            )
        return t

    def snapshot(self, now_ms: int, since_ms: int) -> FeedSnapshot:
        """Bar ``t`` closing at ``now_ms``: its closes, the highest high of the bars closing in ``(since_ms, now_ms]``
        and, per instrument, one settlement at ``now_ms`` with the sum (in bar order) of those bars' funding.

        ``since_ms == now_ms`` covers no bar: highs are the closes and there is no funding.
        """
        now_ms, since_ms = int(now_ms), int(since_ms)
        _check_window(now_ms, since_ms)
        t = self.bar_of(now_ms)
        lo = int(np.searchsorted(self._closes_ms, since_ms, side="right"))  # first bar closing after since_ms
        prices: dict[str, float] = {}
        highs: dict[str, float] = {}
        for code, close in self._closes.items():
            price = float(close[t])
            if math.isnan(price):
                continue
            prices[code] = price
            window = self._highs[code][lo : t + 1]
            window = window[~np.isnan(window)]
            highs[code] = float(window.max()) if window.size else price
        funding: dict[str, tuple[FundingSettlement, ...]] = {}
        rate_8h: dict[str, float] = {}
        for inst, arr in self._funding.items():
            total = 0.0
            for x in arr[lo : t + 1]:  # in bar order, as the kernel adds them
                total += float(x)
            if total != 0.0:
                funding[inst] = (FundingSettlement(instrument=inst, settlement_ms=now_ms, rate=total),)
            now_rate = self._rate_now.get(inst)
            rate_8h[inst] = float(now_rate[t]) if now_rate is not None else float(arr[t]) * EIGHT_HOURS_MS / self.bar_ms
        return FeedSnapshot(
            now_ms=now_ms,
            source=self.source,
            prices=prices,
            highs=highs,
            funding=funding,
            funding_rate_8h=rate_8h,
            last_price_ms=now_ms,
            stale=False,
            bar=t,
        )


# ---------------------------------------------------------------------------------------------- market store


def _series_of(value: str | tuple[str, str], source: str, inst: str) -> tuple[str, str]:
    """``"binance:BTC/USDT:USDT"`` → (binance, BTC/USDT:USDT); a bare ``"BTC/USDT:USDT"`` takes the feed's source."""
    if isinstance(value, tuple):
        if len(value) != 2 or not all(isinstance(v, str) and v for v in value):
            raise DataError(f"store feed: instrument {inst}: funding series must be (source, symbol), was {value!r}")
        return value[0], value[1]
    if not isinstance(value, str) or not value:
        raise DataError(f"store feed: instrument {inst}: funding series must be text, was {value!r}")
    head, sep, tail = value.partition(":")
    if sep and "/" not in head and tail:
        return head, tail
    return source, value


class StoreFeed:
    """Latest stored closes and funding from the DuckDB market store (opened read-only per snapshot).

    Parameters
    ----------
    store_path
        The market store file.
    source
        Candle source (``binance``): assets are priced from their spot candles ``<ASSET>/USDT``.
    assets
        Coins to price (stablecoins are left out: 1 USD).
    instruments
        Instrument id → the funding series the market store holds for it: ``"source:symbol"`` as in run
        files (``binance:BTC/USDT:USDT``), a bare symbol (the feed's ``source``), or ``(source, symbol)``.
    step
        The candle timeframe to read (``1d`` or ``8h``).
    stale_after_s
        A snapshot whose oldest close is older than this is ``stale``.
    assumed_rate_8h
        The rate in force reported when the store holds no funding of an instrument at or before now.
    """

    kind = "store"

    def __init__(
        self,
        store_path: str | Path,
        *,
        source: str,
        assets: Sequence[str],
        instruments: Mapping[str, str | tuple[str, str]],
        step: Literal["1d", "8h"],
        stale_after_s: int,
        assumed_rate_8h: float,
        quote: str = "USDT",
        lock_timeout: float = 10.0,
    ) -> None:
        if step not in _STEP_MS:
            raise DataError(f"store feed: step must be 1d or 8h, was {step!r}")
        if stale_after_s <= 0:
            raise DataError(f"store feed: stale_after_s must be > 0, was {stale_after_s!r}")
        if not math.isfinite(assumed_rate_8h):
            raise DataError(f"store feed: assumed_rate_8h must be finite, was {assumed_rate_8h!r}")
        self.store_path = Path(store_path)
        self.source = source
        self.step = step
        self.step_ms = _STEP_MS[step]
        self.stale_after_s = int(stale_after_s)
        self.assumed_rate_8h = float(assumed_rate_8h)
        self.quote = quote
        self.lock_timeout = lock_timeout
        self.assets = sorted({normalise_asset(a) for a in assets if not is_stablecoin(a)})
        self.instruments = {str(k): _series_of(v, source, str(k)) for k, v in instruments.items()}
        #: per instrument, the newest stored settlement (epoch ms) seen by the last snapshot, None = none stored;
        #: the use case warns when the store's funding ends before now (nothing is assumed for those settlements)
        self.funding_last_ms: dict[str, int | None] = {}

    def snapshot(self, now_ms: int, since_ms: int) -> FeedSnapshot:
        """Closes at or before ``now_ms``, highs of the candles closing in ``(since_ms, now_ms]``, the stored
        settlements in ``(since_ms, now_ms]`` and the rate in force (per 8 h).

        Ctrl-C during a DuckDB query surfaces as DuckDB's "Query interrupted" error: it is raised as the
        KeyboardInterrupt it is, so ``book watch`` stops with its resumable "stopped (Ctrl-C)" and not as an
        internal error."""
        try:
            return self._snapshot(now_ms, since_ms)
        except Exception as exc:
            if _interrupted(exc):
                raise KeyboardInterrupt from None
            raise

    def _snapshot(self, now_ms: int, since_ms: int) -> FeedSnapshot:
        from perphedge.data.store import MarketStore

        now_ms, since_ms = int(now_ms), int(since_ms)
        _check_window(now_ms, since_ms)
        tf = self.step_ms
        with MarketStore(self.store_path, read_only=True, lock_timeout=self.lock_timeout) as store:
            con = store.con
            prices: dict[str, float] = {}
            highs: dict[str, float] = {}
            times: list[int] = []
            for code in self.assets:
                symbol = f"{code}/{self.quote}"
                row = con.execute(
                    "SELECT epoch_ms(ts), close FROM candles WHERE source = ? AND symbol = ? AND timeframe = ? "
                    "AND ts <= ? ORDER BY ts DESC LIMIT 1",
                    [self.source, symbol, self.step, _naive(now_ms - tf)],
                ).fetchone()
                if row is None:
                    raise DataError(
                        f"store feed: no {self.step} candle of {code} ({symbol} from {self.source}) closing at or "
                        f"before {_iso(now_ms)} in the market store {self.store_path}: run `perphedge data fetch` "
                        "(or `perphedge data import`) for it"
                    )
                close_ms, price = int(row[0]) + tf, float(row[1])
                top = con.execute(
                    "SELECT max(high) FROM candles WHERE source = ? AND symbol = ? AND timeframe = ? "
                    "AND ts > ? AND ts <= ?",
                    [self.source, symbol, self.step, _naive(since_ms - tf), _naive(now_ms - tf)],
                ).fetchone()
                high = float(top[0]) if top and top[0] is not None else price
                prices[code] = price
                highs[code] = max(high, price)
                times.append(close_ms)
            funding: dict[str, tuple[FundingSettlement, ...]] = {}
            rate_8h: dict[str, float] = {}
            for inst, (src, sym) in self.instruments.items():
                rows = con.execute(
                    "SELECT epoch_ms(ts), rate FROM funding WHERE source = ? AND symbol = ? AND ts > ? AND ts <= ? "
                    "ORDER BY ts",
                    [src, sym, _naive(since_ms), _naive(now_ms)],
                ).fetchall()
                if rows:
                    funding[inst] = tuple(
                        FundingSettlement(instrument=inst, settlement_ms=int(ms), rate=float(rate)) for ms, rate in rows
                    )
                last = con.execute(
                    "SELECT epoch_ms(ts), rate, interval_hours FROM funding WHERE source = ? AND symbol = ? "
                    "AND ts <= ? ORDER BY ts DESC LIMIT 1",
                    [src, sym, _naive(now_ms)],
                ).fetchone()
                if last is None or not last[2]:
                    rate_8h[inst] = self.assumed_rate_8h
                    self.funding_last_ms[inst] = None
                else:
                    rate_8h[inst] = float(last[1]) * 8.0 / float(last[2])
                    self.funding_last_ms[inst] = int(last[0])
        last_price_ms = min(times) if times else now_ms
        return FeedSnapshot(
            now_ms=now_ms,
            source=self.source,
            prices=prices,
            highs=highs,
            funding=funding,
            funding_rate_8h=rate_8h,
            last_price_ms=last_price_ms,
            stale=now_ms - last_price_ms > self.stale_after_s * 1000,
            bar=None,
        )


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) is DuckDB's answer to Ctrl-C."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if type(seen).__name__ == "InterruptException" or "query interrupted" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# ---------------------------------------------------------------------------------------------- constants


class PortfolioFeed:
    """Constant prices, funding at ``rate_8h`` settled at 00:00, 08:00 and 16:00 UTC; never stale."""

    kind = "portfolio"

    def __init__(
        self, prices: Mapping[str, float], *, instruments: Sequence[str], rate_8h: float, source: str = "portfolio"
    ) -> None:
        out: dict[str, float] = {}
        for key, value in prices.items():
            code = normalise_asset(key)
            price = float(value)
            if not math.isfinite(price) or price <= 0:
                raise DataError(f"portfolio feed: price of {code} must be a finite number > 0, was {value!r}")
            out[code] = price
        if not math.isfinite(rate_8h):
            raise DataError(f"portfolio feed: rate_8h must be finite, was {rate_8h!r}")
        self.prices = out
        self.instruments = list(dict.fromkeys(str(i) for i in instruments))
        self.rate_8h = float(rate_8h)
        self.source = source

    @staticmethod
    def settlement_times(since_ms: int, now_ms: int) -> list[int]:
        """Every 00:00/08:00/16:00 UTC instant in ``(since_ms, now_ms]``."""
        first = (since_ms // EIGHT_HOURS_MS + 1) * EIGHT_HOURS_MS
        return list(range(first, now_ms + 1, EIGHT_HOURS_MS))

    def snapshot(self, now_ms: int, since_ms: int) -> FeedSnapshot:
        """The constant prices at ``now_ms`` with the settlements in ``(since_ms, now_ms]``."""
        now_ms, since_ms = int(now_ms), int(since_ms)
        _check_window(now_ms, since_ms)
        times = self.settlement_times(since_ms, now_ms)
        funding: dict[str, tuple[FundingSettlement, ...]] = {}
        if times:
            for inst in self.instruments:
                funding[inst] = tuple(
                    FundingSettlement(instrument=inst, settlement_ms=ms, rate=self.rate_8h) for ms in times
                )
        return FeedSnapshot(
            now_ms=now_ms,
            source=self.source,
            prices=dict(self.prices),
            highs=dict(self.prices),
            funding=funding,
            funding_rate_8h=dict.fromkeys(self.instruments, self.rate_8h),
            last_price_ms=now_ms,
            stale=False,
            bar=None,
        )
