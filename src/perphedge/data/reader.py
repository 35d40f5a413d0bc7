"""Reading API: aligned frames of prices, funding and sentiment from the market store.

All frames are indexed by tz-aware UTC timestamps. Listing dates are respected: an asset's
column is NaN before its first candle and after its last (nothing is forward-filled across a
period in which the asset did not trade); ``fill_gaps=True`` forward-fills only inside an asset's
own life.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from perphedge.core.units import normalise_asset
from perphedge.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from perphedge.data.store import MarketStore

__all__ = ["funding_daily", "funding_series", "ohlc", "prices_as_of", "sentiment", "spot_symbol"]


def spot_symbol(asset: str, quote: str = "USDT") -> str:
    """ccxt spot symbol of ``asset`` against ``quote`` (``SOL`` → ``SOL/USDT``)."""
    return f"{normalise_asset(asset)}/{quote}"


def _bound(value: str | date | datetime | None) -> Any:
    import pandas as pd

    if value is None:
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


def _where(start: Any, end: Any) -> tuple[str, list[Any]]:
    sql, params = "", []
    if start is not None:
        sql += " AND ts >= ?"
        params.append(start)
    if end is not None:
        sql += " AND ts <= ?"
        params.append(end)
    return sql, params


def ohlc(
    store: MarketStore,
    assets: Sequence[str],
    start: str | date | datetime | None = None,
    end: str | date | datetime | None = None,
    *,
    fields: Sequence[str] = ("close",),
    source: str = "binance",
    quote: str = "USDT",
    timeframe: str = "1d",
    fill_gaps: bool = False,
) -> dict[str, pd.DataFrame]:
    """Aligned frames (one per field of open/high/low/close/volume), columns = assets.

    Raises
    ------
    DataError
        An asset has no candles of ``source``/``timeframe`` in the store.
    """
    import pandas as pd

    allowed = {"open", "high", "low", "close", "volume"}
    bad = [f for f in fields if f not in allowed]
    if bad:
        raise DataError(f"unknown price field {bad[0]!r}; use {sorted(allowed)}")
    codes = [normalise_asset(a) for a in assets]
    symbols = [spot_symbol(a, quote) for a in codes]
    where, params = _where(_bound(start), _bound(end))
    marks = ", ".join("?" for _ in symbols)
    frame = store.query(
        f"SELECT ts, symbol, {', '.join(fields)} FROM candles WHERE source = ? AND timeframe = ? "
        f"AND symbol IN ({marks}){where} ORDER BY ts",
        [source, timeframe, *symbols, *params],
    )
    present = set(frame["symbol"].unique()) if not frame.empty else set()
    missing = [s for s in symbols if s not in present]
    if missing:
        known = store.query(
            "SELECT DISTINCT symbol FROM candles WHERE source = ? AND timeframe = ? ORDER BY 1", [source, timeframe]
        )["symbol"].tolist()
        span = "" if start is None and end is None else f" between {start or '…'} and {end or '…'}"
        raise DataError(
            f"no {timeframe} candles of {', '.join(missing)} from {source} in the store{span}; "
            f"it has {', '.join(known) or 'none'} (run `perphedge data import` or `data fetch`)"
        )
    out: dict[str, pd.DataFrame] = {}
    rename = dict(zip(symbols, codes, strict=True))
    for field in fields:
        wide = frame.pivot(index="ts", columns="symbol", values=field).rename(columns=rename)
        wide = wide.reindex(columns=codes)
        wide.index = pd.DatetimeIndex(wide.index).tz_localize("UTC")
        wide.index.name = "ts"
        wide.columns.name = None
        if fill_gaps:
            for col in wide.columns:
                s = wide[col]
                first, last = s.first_valid_index(), s.last_valid_index()
                if first is not None:
                    wide.loc[first:last, col] = s.loc[first:last].ffill()
        out[field] = wide
    return out


def funding_series(
    store: MarketStore,
    source: str,
    symbol: str,
    start: str | date | datetime | None = None,
    end: str | date | datetime | None = None,
) -> pd.DataFrame:
    """Funding settlements of one contract: index ts (UTC), columns ``rate``, ``interval_hours``, ``mark_price``."""
    import pandas as pd

    where, params = _where(_bound(start), _bound(end))
    frame = store.query(
        f"SELECT ts, rate, interval_hours, mark_price FROM funding WHERE source = ? AND symbol = ?{where} ORDER BY ts",
        [source, symbol, *params],
    )
    if frame.empty:
        known = store.query("SELECT DISTINCT source || ' ' || symbol AS s FROM funding ORDER BY 1")["s"].tolist()
        raise DataError(f"no funding of {source} {symbol} in the store; it has {', '.join(known) or 'none'}")
    frame.index = pd.DatetimeIndex(frame.pop("ts")).tz_localize("UTC")
    return frame


def funding_daily(store: MarketStore, source: str, symbol: str, start: Any = None, end: Any = None) -> pd.Series:
    """Funding per UTC day as a fraction of notional (sum of that day's settlement rates; + = shorts receive)."""
    frame = funding_series(store, source, symbol, start, end)
    daily = frame["rate"].groupby(frame.index.floor("D")).sum()
    daily.name = "funding_per_day"
    return daily


def sentiment(store: MarketStore, name: str = "fear_greed", source: str = "alternative.me") -> pd.Series:
    """A sentiment index as a daily series."""
    import pandas as pd

    frame = store.query("SELECT ts, value FROM sentiment WHERE source = ? AND name = ? ORDER BY ts", [source, name])
    if frame.empty:
        raise DataError(f"no {name} sentiment from {source} in the store")
    return pd.Series(frame["value"].to_numpy(), index=pd.DatetimeIndex(frame["ts"]).tz_localize("UTC"), name=name)


def prices_as_of(
    store: MarketStore,
    assets: Sequence[str],
    as_of: str | date | datetime | None = None,
    *,
    source: str = "binance",
    quote: str = "USDT",
    timeframe: str = "1d",
) -> dict[str, tuple[float, datetime]]:
    """Close of each asset at its last candle on or before ``as_of`` (``None``/``latest``: the newest)."""
    bound = None if as_of in (None, "latest") else _bound(as_of)
    if bound is not None and isinstance(as_of, str) and len(as_of) == 10:
        bound = bound.replace(hour=0, minute=0)  # the daily candle of that UTC day
    out: dict[str, tuple[float, datetime]] = {}
    for asset in assets:
        code = normalise_asset(asset)
        sql = "SELECT ts, close FROM candles WHERE source = ? AND symbol = ? AND timeframe = ?"
        params: list[Any] = [source, spot_symbol(code, quote), timeframe]
        if bound is not None:
            sql += " AND ts <= ?"
            params.append(bound)
        rows = store.con.execute(sql + " ORDER BY ts DESC LIMIT 1", params).fetchall()
        row = rows[0] if rows else None
        if row is not None:
            out[code] = (float(row[1]), row[0])
    return out
