"""Import history from files: the ``../shared/data`` layout, or any OHLCV / funding CSV or Parquet.

Every file is validated whole before anything is written, and written in one transaction: a bad
file is rejected with its path, line and reason, and nothing from it reaches the store.

Sample layout (``PERPHEDGE_SAMPLE_DATA``):

* ``prices/<ASSET>.csv`` → candles ``binance``, ``<ASSET>/USDT``, ``1d`` (Binance spot).
* ``funding/<EXCHANGE>_<SYMBOL>.csv`` → funding of the perpetual, stored under its ccxt symbol
  (``BTC/USDT:USDT`` linear, ``BTC/USD:BTC`` inverse); ``interval_hours`` from the file when it has
  the column, else 1 for Deribit's hourly accrual, else inferred from the spacing. The Binance
  daily-mean file (mean of the day's 8h rates, still per 8h) goes to source ``binance_dailymean`` as
  one 24h settlement a day carrying the day's funding (the mean × 3).
* ``basis/<EXCHANGE>_<ASSET>_8h.csv`` → basis (spot, linear and inverse perp 8h open/close).
* ``sentiment/fear_greed.csv`` → sentiment ``alternative.me`` / ``fear_greed``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perphedge.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from perphedge.data.store import MarketStore

__all__ = [
    "ImportReport",
    "import_file",
    "import_path",
    "import_sample",
    "is_sample_layout",
    "parse_columns",
    "perp_ccxt_symbol",
]

OHLCV = ("timestamp", "open", "high", "low", "close", "volume")
FUNDING = ("timestamp", "funding_rate")


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportReport:
    """What one file put in the store."""

    file: str
    table: str
    source: str
    symbol: str
    timeframe: str | None
    rows: int
    first: str | None
    last: str | None


def _line(path: Path, index: int) -> str:
    return f"{path}: line {index + 2}" if path.suffix.lower() != ".parquet" else f"{path}: row {index + 1}"


def read_frame(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame of raw columns (strings kept as read)."""
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import duckdb

            rel = duckdb.sql("SELECT * FROM read_parquet(?)", params=[str(path)])
            if rel is None:
                raise DataError(f"{path}: cannot read the parquet file")
            return rel.df()
        return pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=True)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    except Exception as exc:  # duckdb errors on a corrupt parquet
        raise DataError(f"{path}: cannot read: {exc}") from exc


def parse_columns(text: str | None) -> dict[str, str]:
    """``timestamp=Date,close=Close`` → ``{"timestamp": "Date", "close": "Close"}``."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"invalid `--columns`: {part!r} must be ours=theirs, e.g. timestamp=Date")
        out[key.strip()] = value.strip()
    return out


def _timestamps(raw: pd.Series, path: Path, tz: str) -> pd.Series:
    """Parse ISO dates/times or epoch seconds/milliseconds; naive UTC result; DataError on the first bad row."""
    import pandas as pd

    text = raw.astype(str).str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    if len(text) and numeric.notna().all():
        unit = "ms" if float(numeric.abs().max()) > 1e11 else "s"
        parsed = pd.to_datetime(numeric, unit=unit, utc=True, errors="coerce")
    else:
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=False)
        if parsed.isna().any():
            parsed = pd.to_datetime(text, format="mixed", errors="coerce", utc=False)
        bad = parsed.isna()
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise DataError(f"{_line(path, i)}: unparsable timestamp {raw.iloc[i]!r}")
        if getattr(parsed.dt, "tz", None) is None:
            try:
                parsed = parsed.dt.tz_localize(tz, ambiguous="raise", nonexistent="raise")
            except Exception as exc:
                raise DataError(f"{path}: cannot place timestamps in time zone {tz!r}: {exc}") from exc
        parsed = parsed.dt.tz_convert("UTC")
    bad = parsed.isna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(f"{_line(path, i)}: unparsable timestamp {raw.iloc[i]!r}")
    return parsed.dt.tz_localize(None)


def _numbers(frame: pd.DataFrame, cols: tuple[str, ...], path: Path, *, optional: tuple[str, ...] = ()) -> None:
    import pandas as pd

    for col in cols:
        if col not in frame.columns:
            if col in optional:
                frame[col] = float("nan")
                continue
            raise DataError(
                f"{path}: missing column `{col}` (columns are {', '.join(map(str, frame.columns))}; "
                "map yours with --columns)"
            )
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() & ~(frame[col].astype(str).str.strip() == "") if col in optional else values.isna()
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise DataError(f"{_line(path, i)}: `{col}` is not a number: {frame[col].iloc[i]!r}")
        frame[col] = values.astype(float)


def _rename(frame: pd.DataFrame, columns: Mapping[str, str], path: Path) -> pd.DataFrame:
    theirs = {v: k for k, v in columns.items()}
    missing = [v for v in theirs if v not in frame.columns]
    if missing:
        raise DataError(f"{path}: --columns names `{missing[0]}`, which the file does not have")
    frame = frame.rename(columns=theirs)
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return frame


def _dedupe(frame: pd.DataFrame, path: Path, value_cols: list[str]) -> pd.DataFrame:
    dup = frame.duplicated("ts", keep=False)
    if not dup.any():
        return frame
    sub = frame.loc[dup, ["ts", *value_cols]]
    for _, group in sub.groupby("ts", sort=False):
        if len(group.drop_duplicates()) > 1:
            a, b = group.index[:2]
            raise DataError(
                f"{_line(path, int(b))}: duplicate timestamp {group['ts'].iloc[0]} with values that "
                f"differ from {_line(path, int(a)).split(': ', 1)[1]}"
            )
    return frame.drop_duplicates("ts", keep="first")


def validate_ohlcv(raw: pd.DataFrame, path: Path, tz: str = "UTC") -> pd.DataFrame:
    """Checked OHLCV rows with naive-UTC ``ts``: positive prices, ``low ≤ open, close ≤ high``."""
    frame = raw.copy()
    if "timestamp" not in frame.columns:
        raise DataError(f"{path}: missing column `timestamp` (map yours with --columns timestamp=...)")
    _numbers(frame, ("open", "high", "low", "close"), path)
    _numbers(frame, ("volume",), path, optional=("volume",))
    frame["ts"] = _timestamps(frame["timestamp"], path, tz)
    prices = frame[["open", "high", "low", "close"]]
    nonpos = (prices <= 0).any(axis=1)
    if nonpos.any():
        i = int(nonpos.to_numpy().nonzero()[0][0])
        raise DataError(f"{_line(path, i)}: prices must be > 0, row has {prices.iloc[i].to_dict()}")
    bad = (frame["low"] > frame[["open", "close"]].min(axis=1)) | (frame["high"] < frame[["open", "close"]].max(axis=1))
    bad |= frame["low"] > frame["high"]
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise DataError(
            f"{_line(path, i)}: OHLC inconsistent (need low <= open, close <= high): {prices.iloc[i].to_dict()}"
        )
    neg_vol = frame["volume"] < 0
    if neg_vol.any():
        i = int(neg_vol.to_numpy().nonzero()[0][0])
        raise DataError(f"{_line(path, i)}: volume must be >= 0, was {frame['volume'].iloc[i]}")
    frame = _dedupe(frame, path, ["open", "high", "low", "close", "volume"])
    return frame.sort_values("ts").reset_index(drop=True)


def validate_funding(
    raw: pd.DataFrame, path: Path, tz: str = "UTC", interval_hours: float | None = None
) -> pd.DataFrame:
    """Checked funding rows: finite rates within ±10% per settlement, interval known or inferred."""
    frame = raw.copy()
    if "timestamp" not in frame.columns:
        raise DataError(f"{path}: missing column `timestamp` (map yours with --columns timestamp=...)")
    if "funding_rate" not in frame.columns and "rate" in frame.columns:
        frame = frame.rename(columns={"rate": "funding_rate"})
    _numbers(frame, ("funding_rate",), path)
    frame["ts"] = _timestamps(frame["timestamp"], path, tz)
    too_big = frame["funding_rate"].abs() > 0.1
    if too_big.any():
        i = int(too_big.to_numpy().nonzero()[0][0])
        raise DataError(
            f"{_line(path, i)}: funding rate {frame['funding_rate'].iloc[i]} is beyond ±10% per settlement "
            "(is it in percent? rates are fractions: 0.0001 = 0.01%)"
        )
    if "interval_hours" in frame.columns:
        _numbers(frame, ("interval_hours",), path)
    else:
        frame["interval_hours"] = interval_hours if interval_hours is not None else _infer_interval(frame["ts"], path)
    if (frame["interval_hours"] <= 0).any():
        raise DataError(f"{path}: interval_hours must be > 0")
    if "mark_price" in frame.columns:
        _numbers(frame, ("mark_price",), path, optional=("mark_price",))
    else:
        frame["mark_price"] = float("nan")
    frame = _dedupe(frame, path, ["funding_rate"])
    return frame.sort_values("ts").reset_index(drop=True).rename(columns={"funding_rate": "rate"})


def _infer_interval(ts: pd.Series, path: Path) -> float:
    if len(ts) < 2:
        raise DataError(f"{path}: cannot infer the funding interval from one row; pass --interval-hours")
    diffs = ts.sort_values().diff().dropna().dt.total_seconds() / 3600.0
    hours = float(diffs.median())
    if hours <= 0:
        raise DataError(f"{path}: cannot infer the funding interval (timestamps repeat); pass --interval-hours")
    return round(hours, 6)


# ---------------------------------------------------------------------------------------------- sample layout

_FUNDING_FILE = re.compile(r"^(?P<ex>[A-Z]+)_(?P<sym>[A-Z0-9\-_]+?)(?:_(?P<suffix>1h|dailymean))?$")


def perp_ccxt_symbol(exchange: str, native: str) -> str:
    """ccxt unified symbol of an exchange-native perpetual symbol.

    ``BTCUSDT`` / ``BTC-USDT-SWAP`` → ``BTC/USDT:USDT``; ``BTCUSD_PERP`` / ``BTCUSD`` /
    ``BTC-USD-SWAP`` / ``BTC-PERPETUAL`` / ``XBTUSD`` → ``BTC/USD:BTC``.
    """
    s = native.upper()
    for quote in ("USDT", "USDC"):
        m = re.fullmatch(rf"([A-Z0-9]+?)-?{quote}(?:-SWAP)?", s)
        if m:
            return f"{m.group(1)}/{quote}:{quote}"
    m = re.fullmatch(r"([A-Z0-9]+?)(?:-?USD(?:_PERP|-SWAP)?|-PERPETUAL)", s)
    if m:
        base = "BTC" if m.group(1) == "XBT" else m.group(1)
        return f"{base}/USD:{base}"
    raise DataError(f"cannot tell which perpetual {exchange}:{native} is; import it with --symbol BASE/QUOTE:SETTLE")


def is_sample_layout(root: Path) -> bool:
    """True if ``root`` looks like the ``../shared/data`` layout."""
    return root.is_dir() and any((root / d).is_dir() for d in ("prices", "funding", "basis", "sentiment"))


def _first_last(frame: pd.DataFrame) -> tuple[str | None, str | None]:
    if frame.empty:
        return None, None
    return str(frame["ts"].min()), str(frame["ts"].max())


def import_sample(store: MarketStore, root: Path, progress: Callable[[str], None] | None = None) -> list[ImportReport]:
    """Import every file of the sample layout under ``root`` (each file one transaction)."""
    import pandas as pd

    if not is_sample_layout(root):
        raise DataError(f"{root}: not the sample-data layout (expected prices/, funding/, basis/ or sentiment/)")
    reports: list[ImportReport] = []

    def note(path: Path) -> None:
        if progress is not None:
            progress(str(path))

    for path in sorted((root / "prices").glob("*.csv")):
        note(path)
        frame = validate_ohlcv(read_frame(path), path)
        asset = path.stem.upper()
        reports.append(_write_candles(store, frame, path, "binance", f"{asset}/USDT", "1d"))
    for path in sorted((root / "funding").glob("*.csv")):
        note(path)
        m = _FUNDING_FILE.match(path.stem)
        if not m:
            raise DataError(f"{path}: funding files are named EXCHANGE_SYMBOL.csv")
        exchange, native, suffix = m.group("ex").lower(), m.group("sym"), m.group("suffix")
        source = f"{exchange}_dailymean" if suffix == "dailymean" else exchange
        interval = 1.0 if suffix == "1h" else (24.0 if suffix == "dailymean" else None)
        frame = validate_funding(read_frame(path), path, interval_hours=interval)
        if suffix == "dailymean":
            frame["rate"] = frame["rate"] * 3.0  # mean of three 8h rates → the day's funding, one 24h settlement
        reports.append(_write_funding(store, frame, path, source, perp_ccxt_symbol(exchange, native)))
    for path in sorted((root / "basis").glob("*_8h.csv")):
        note(path)
        exchange, asset = path.stem.split("_")[:2]
        raw = read_frame(path)
        frame = raw.copy()
        cols = ("spot_open", "spot_close", "perp_usdtm_open", "perp_usdtm_close", "perp_coinm_open", "perp_coinm_close")
        _numbers(frame, cols, path)
        if (frame[list(cols)] <= 0).any(axis=None):
            raise DataError(f"{path}: prices must be > 0")
        frame["ts"] = _timestamps(frame["timestamp"], path, "UTC")
        frame = _dedupe(frame, path, list(cols))
        out = pd.DataFrame(
            {
                "source": exchange.lower(),
                "asset": asset.upper(),
                "ts": frame["ts"],
                "timeframe": "8h",
                "spot_open": frame["spot_open"],
                "spot_close": frame["spot_close"],
                "perp_linear_open": frame["perp_usdtm_open"],
                "perp_linear_close": frame["perp_usdtm_close"],
                "perp_inverse_open": frame["perp_coinm_open"],
                "perp_inverse_close": frame["perp_coinm_close"],
            }
        )
        store.upsert("basis", out)
        first, last = _first_last(out)
        reports.append(
            ImportReport(
                file=str(path),
                table="basis",
                source=exchange.lower(),
                symbol=asset.upper(),
                timeframe="8h",
                rows=len(out),
                first=first,
                last=last,
            )
        )
    fg = root / "sentiment" / "fear_greed.csv"
    if fg.is_file():
        note(fg)
        raw = read_frame(fg)
        frame = raw.copy()
        _numbers(frame, ("value",), fg)
        if ((frame["value"] < 0) | (frame["value"] > 100)).any():
            raise DataError(f"{fg}: Fear & Greed values are 0..100")
        frame["ts"] = _timestamps(frame["timestamp"], fg, "UTC")
        frame = _dedupe(frame, fg, ["value"])
        out = pd.DataFrame(
            {"source": "alternative.me", "name": "fear_greed", "ts": frame["ts"], "value": frame["value"]}
        )
        store.upsert("sentiment", out)
        first, last = _first_last(out)
        reports.append(
            ImportReport(
                file=str(fg),
                table="sentiment",
                source="alternative.me",
                symbol="fear_greed",
                timeframe="1d",
                rows=len(out),
                first=first,
                last=last,
            )
        )
    return reports


def _write(
    store: MarketStore, table: str, frame: pd.DataFrame, path: Path, source: str, symbol: str, timeframe: str | None
) -> ImportReport:
    """Upsert one validated file's rows (one transaction) and report what went in."""
    out = frame.assign(source=source, symbol=symbol)
    if table == "candles":
        out = out.assign(timeframe=timeframe)
    store.upsert(table, out)
    first, last = _first_last(out)
    return ImportReport(
        file=str(path),
        table=table,
        source=source,
        symbol=symbol,
        timeframe=timeframe,
        rows=len(out),
        first=first,
        last=last,
    )


def _write_candles(
    store: MarketStore, frame: pd.DataFrame, path: Path, source: str, symbol: str, timeframe: str
) -> ImportReport:
    return _write(store, "candles", frame, path, source, symbol, timeframe)


def _write_funding(store: MarketStore, frame: pd.DataFrame, path: Path, source: str, symbol: str) -> ImportReport:
    return _write(store, "funding", frame, path, source, symbol, None)


def import_file(
    store: MarketStore,
    path: Path,
    *,
    kind: str,
    source: str,
    symbol: str,
    timeframe: str = "1d",
    columns: Mapping[str, str] | None = None,
    tz: str = "UTC",
    interval_hours: float | None = None,
) -> ImportReport:
    """Import one OHLCV or funding file (CSV or Parquet) as ``source``/``symbol``."""
    if kind not in ("ohlcv", "funding"):
        raise ConfigError(f"invalid `--kind`: must be ohlcv or funding, was {kind!r}")
    if not source or not symbol:
        raise ConfigError("importing a single file needs `--source` and `--symbol`")
    frame = _rename(read_frame(path), columns or {}, path)
    if kind == "ohlcv":
        return _write_candles(store, validate_ohlcv(frame, path, tz), path, source.lower(), symbol, timeframe)
    return _write_funding(store, validate_funding(frame, path, tz, interval_hours), path, source.lower(), symbol)


def import_path(store: MarketStore, path: Path, **kwargs: Any) -> list[ImportReport]:
    """A sample-layout directory, or one file with ``kind``/``source``/``symbol``."""
    if path.is_dir():
        return import_sample(store, path, progress=kwargs.get("progress"))
    kwargs.pop("progress", None)
    return [import_file(store, path, **kwargs)]
