"""Parse and validate history files into store-ready frames: the ``../shared/data`` layout, or any
OHLCV / funding CSV or Parquet.

This module only reads and checks; it never writes. The import use case
(:mod:`perphedge.usecases.data`) writes what it returns, every file of one import in one
transaction. A bad file is rejected with its path, line and reason.

Timestamps (one rule set for every file):

* ISO 8601 dates/times, or epoch numbers in one unit per file (seconds, milliseconds,
  microseconds or nanoseconds, told apart by magnitude; a file that mixes them is refused);
* one time zone per file: every time carries the same offset (``Z``, ``+02:00``) or none (then
  ``--tz`` places it); a file mixing offsets, or times with and without one, is refused;
* years within 2009 .. next year;
* a candle opens on its timeframe's boundary (a ``1d`` candle at 00:00 UTC); ``align=True``
  (``--align``) snaps each to the nearest boundary instead and says how many it moved;
* funding settlements are spaced by their interval: a spacing that contradicts it is refused,
  missing settlements (a whole multiple of the interval) are reported as a warning.

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

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perphedge.data.tables import TABLE_COLUMNS
from perphedge.data.timeframes import TIMEFRAME_SECONDS, WEEK_ANCHOR_SECONDS, check_timeframe
from perphedge.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMN_NAMES",
    "FIRST_YEAR",
    "ImportReport",
    "ParsedFile",
    "is_sample_layout",
    "last_year",
    "parse_columns",
    "parse_file",
    "parse_path",
    "parse_sample",
    "parse_sample_member",
    "perp_ccxt_symbol",
    "read_frame",
    "sample_files",
    "validate_funding",
    "validate_ohlcv",
]

OHLCV = ("timestamp", "open", "high", "low", "close", "volume")
FUNDING = ("timestamp", "funding_rate")
#: Our column names that ``--columns ours=theirs`` may map.
COLUMN_NAMES = ("timestamp", "open", "high", "low", "close", "volume", "funding_rate", "interval_hours", "mark_price")
#: No crypto market data is older than Bitcoin.
FIRST_YEAR = 2009


MAX_PRICE = 1e15
"""Largest price accepted on import: far above any real quote, far below where products overflow."""

_SYMBOL = re.compile(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+(:[A-Za-z0-9._-]+)?")


def check_symbol(symbol: str, kind: str) -> None:
    """``BASE/QUOTE`` (OHLCV) or ``BASE/QUOTE:SETTLE`` (funding of a perpetual), as ccxt spells them."""
    match = _SYMBOL.fullmatch(symbol)
    if match is None:
        raise ConfigError(
            f"invalid `--symbol`: must be BASE/QUOTE such as SOL/USDT, or BASE/QUOTE:SETTLE for a perpetual "
            f"such as BTC/USDT:USDT, was {symbol!r}"
        )
    if kind == "funding" and match.group(1) is None:
        raise ConfigError(
            f"invalid `--symbol`: funding belongs to a perpetual, BASE/QUOTE:SETTLE such as BTC/USDT:USDT or "
            f"BTC/USD:BTC, was {symbol!r}"
        )


def last_year() -> int:
    """The newest year a timestamp may be in: next year (UTC)."""
    return datetime.now(UTC).year + 1


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportReport:
    """What one file puts in the store."""

    file: str
    table: str
    source: str
    symbol: str
    timeframe: str | None
    rows: int
    first: str | None
    last: str | None
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "table": self.table,
            "source": self.source,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "rows": self.rows,
            "first": self.first,
            "last": self.last,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class ParsedFile:
    """One validated file, ready to write: ``frame`` has exactly the columns of ``table`` in the store.

    Parameters
    ----------
    file
        Where the rows came from (a path, or a name such as ``bundled:prices/BTC.csv``).
    table
        ``candles``, ``funding``, ``basis`` or ``sentiment``.
    source, symbol, timeframe
        The series key (``symbol`` is the asset for basis and the index name for sentiment).
    frame
        The rows, ``ts`` naive UTC.
    warnings
        What the import should tell the user (missing funding settlements, aligned candles).
    """

    file: str
    table: str
    source: str
    symbol: str
    timeframe: str | None
    frame: pd.DataFrame
    warnings: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.table not in TABLE_COLUMNS:
            raise DataError(f"{self.file}: unknown table {self.table!r}")
        missing = [c for c in TABLE_COLUMNS[self.table] if c not in self.frame.columns]
        if missing:
            raise DataError(f"{self.file}: rows for {self.table} lack the columns {', '.join(missing)}")

    @property
    def rows(self) -> int:
        return len(self.frame)

    def report(self) -> ImportReport:
        first, last = _first_last(self.frame)
        return ImportReport(
            file=self.file,
            table=self.table,
            source=self.source,
            symbol=self.symbol,
            timeframe=self.timeframe,
            rows=self.rows,
            first=first,
            last=last,
            warnings=self.warnings,
        )


def _line(path: Path, index: int) -> str:
    """``path: line N`` of data row ``index`` (0-based; line 1 is the header) or ``row N`` of a Parquet file."""
    return f"{path}: line {index + 2}" if path.suffix.lower() != ".parquet" else f"{path}: row {index + 1}"


def _where(path: Path, index: int) -> str:
    """``line N`` / ``row N`` without the path."""
    return _line(path, index).split(": ", 1)[1]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_frame(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame of raw columns (CSV values kept as strings)."""
    import pandas as pd

    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a file")
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
        _unique_header(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=True)
    except DataError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text CSV file ({_one_line(exc)})") from exc
    except Exception as exc:  # pandas parser errors, OSError, duckdb errors on a corrupt parquet
        raise DataError(f"{path}: cannot read: {_one_line(exc)}") from exc


def _unique_header(path: Path) -> None:
    """Refuse a CSV header that names a column twice (pandas would silently read ``close.1`` beside ``close``)."""
    import csv

    with path.open(newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), [])
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        key = name.strip().lower()
        if not key:
            continue  # a trailing comma: an unnamed, empty column
        if key in seen:
            raise DataError(
                f"{path}: line 1: column {name.strip()!r} appears twice in the header (columns {seen[key]} and {i}); "
                "one column per field"
            )
        seen[key] = i


def parse_columns(text: str | None) -> dict[str, str]:
    """``timestamp=Date,close=Close`` → ``{"timestamp": "Date", "close": "Close"}``."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ConfigError(f"invalid `--columns`: {part!r} must be ours=theirs, e.g. timestamp=Date")
        if key not in COLUMN_NAMES:
            raise ConfigError(f"invalid `--columns`: {key!r} is not one of ours ({', '.join(COLUMN_NAMES)})")
        if key in out:
            raise ConfigError(f"invalid `--columns`: {key!r} is mapped twice ({out[key]!r} and {value!r})")
        if value in out.values():
            raise ConfigError(f"invalid `--columns`: their column {value!r} is mapped twice")
        out[key] = value
    return out


def check_tz(tz: str) -> str:
    """``tz`` if it is an IANA time zone name, else ConfigError naming ``--tz``."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ConfigError(f"invalid `--tz`: {tz!r} is not a time zone name (IANA, e.g. UTC or Europe/London)") from exc
    return tz


# ---------------------------------------------------------------------------------------------- timestamps

_EPOCH_UNITS = (("s", 1e11, 1.0), ("ms", 1e14, 1e3), ("us", 1e17, 1e6), ("ns", math.inf, 1e9))
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
_TZ_SUFFIX = re.compile(r"(?<=\d)\s*(?P<tz>[Zz]|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$")
_SECONDS_PER_YEAR = 365.2425 * 86_400


def _year_bounds() -> tuple[float, float]:
    """Epoch seconds of 2009-01-01 and of the first instant after the last allowed year."""
    lo = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC).timestamp()
    hi = datetime(last_year() + 1, 1, 1, tzinfo=UTC).timestamp()
    return lo, hi


def _year_error(path: Path, index: int, raw: Any, seconds: float, note: str = "", year: int | None = None) -> DataError:
    if year is None:
        try:
            year = datetime.fromtimestamp(seconds, UTC).year
        except (OverflowError, OSError, ValueError):
            year = int(1970 + seconds // _SECONDS_PER_YEAR)
    return DataError(
        f"{_line(path, index)}: timestamp {raw!r} is in the year {year}{note}: years must be within "
        f"{FIRST_YEAR}..{last_year()}"
    )


def _first(mask: pd.Series) -> int:
    """Position of the first True of a boolean Series."""
    return int(mask.to_numpy().nonzero()[0][0])


def _epoch(numeric: pd.Series, text: pd.Series, path: Path) -> pd.Series:
    import numpy as np
    import pandas as pd

    values = numeric.astype(float).to_numpy()
    finite = np.isfinite(values)
    if not finite.all():
        i = int((~finite).nonzero()[0][0])
        raise DataError(f"{_line(path, i)}: timestamp {text.iloc[i]!r} is not a finite number")
    mag = np.abs(values)
    units = np.select([mag < bound for _, bound, _ in _EPOCH_UNITS], [u for u, _, _ in _EPOCH_UNITS], "ns")
    unit = str(units[0])
    other = units != unit
    if other.any():
        i = int(other.nonzero()[0][0])
        raise DataError(
            f"{_line(path, i)}: epoch timestamp {text.iloc[i]!r} looks like {_UNIT_NAMES[str(units[i])]} but "
            f"{_where(path, 0)} ({text.iloc[0]!r}) looks like {_UNIT_NAMES[unit]}: one unit per file"
        )
    factor = dict((u, f) for u, _, f in _EPOCH_UNITS)[unit]
    seconds = values / factor
    lo, hi = _year_bounds()
    out_of_range = (seconds < lo) | (seconds >= hi)
    if out_of_range.any():
        i = int(out_of_range.nonzero()[0][0])
        raise _year_error(path, i, text.iloc[i], float(seconds[i]), f" (read as epoch {_UNIT_NAMES[unit]})")
    micros = np.round(seconds * 1e6).astype("int64")
    return pd.Series(pd.to_datetime(micros, unit="us"), index=text.index)


def _offset_minutes(token: str) -> int | None:
    """Minutes east of UTC of ``Z``/``UTC``/``GMT``/``±hh[:mm]``; None outside -12:00..+14:00."""
    if token.upper() in ("Z", "UTC", "GMT"):
        return 0
    sign = -1 if token[0] == "-" else 1
    digits = token[1:].replace(":", "")
    hours, minutes = int(digits[:2]), (int(digits[2:4]) if len(digits) > 2 else 0)
    if minutes >= 60 or hours * 60 + minutes > (14 if sign > 0 else 12) * 60:
        return None
    return sign * (hours * 60 + minutes)


def _fmt_offset(minutes: int) -> str:
    if minutes == 0:
        return "UTC"
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _iso(text: pd.Series, path: Path, tz: str) -> pd.Series:
    import pandas as pd

    bodies: list[str] = []
    tokens: list[str | None] = []
    for value in text.tolist():
        m = _TZ_SUFFIX.search(value) if ("T" in value or ":" in value) else None
        if m is None:
            bodies.append(value)
            tokens.append(None)
        else:
            bodies.append(value[: m.start()])
            tokens.append(m.group("tz"))
    aware = pd.Series([t is not None for t in tokens], index=text.index)
    if aware.any() and not aware.all():
        i = _first(aware != bool(aware.iloc[0]))
        this, first = ("states a time zone", "does not") if aware.iloc[i] else ("states no time zone", "does")
        raise DataError(
            f"{_line(path, i)}: timestamp {text.iloc[i]!r} {this} but {_where(path, 0)} ({text.iloc[0]!r}) {first}: "
            "one time zone per file"
        )
    body = pd.Series(bodies, index=text.index, dtype=object)
    minutes = [_offset_minutes(t) if t is not None else 0 for t in tokens]
    if None in minutes:
        i = minutes.index(None)
        raise DataError(
            f"{_line(path, i)}: timestamp {text.iloc[i]!r} has the offset {tokens[i]}, which no time zone has "
            "(offsets run from -12:00 to +14:00)"
        )
    offsets = pd.Series(minutes, index=text.index)
    if aware.all():
        differs = offsets != offsets.iloc[0]
        if differs.any():
            i = _first(differs)
            raise DataError(
                f"{_line(path, i)}: timestamp {text.iloc[i]!r} is at {_fmt_offset(int(offsets.iloc[i]))} but "
                f"{_where(path, 0)} ({text.iloc[0]!r}) is at {_fmt_offset(int(offsets.iloc[0]))}: one time zone "
                "per file (write every time in UTC, or without an offset and pass --tz)"
            )
        if tz != "UTC":
            raise ConfigError(
                f"{path}: the timestamps state their own time zone ({_fmt_offset(int(offsets.iloc[0]))}), so "
                f"`--tz {tz}` would be ignored: drop --tz or the offsets"
            )
    try:
        parsed = pd.to_datetime(body, format="ISO8601", errors="coerce")
    except (ValueError, OverflowError):  # a time zone pandas reads inside the body: parse row by row to find it
        parsed = pd.Series([_one_iso(b) for b in body.tolist()], index=body.index, dtype="datetime64[us]")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = pd.Series([_one_iso(b) for b in body.tolist()], index=body.index, dtype="datetime64[us]")
    bad = parsed.isna()
    if bad.any():
        i = _first(bad)
        raise DataError(
            f"{_line(path, i)}: unparsable timestamp {text.iloc[i]!r} (ISO 8601 such as 2024-01-31 or "
            "2024-01-31T08:00:00Z, or epoch seconds/milliseconds)"
        )
    if aware.all():
        return parsed - pd.to_timedelta(offsets.astype("int64"), unit="min")
    if tz == "UTC":
        return parsed
    try:
        local = parsed.dt.tz_localize(tz, ambiguous="raise", nonexistent="raise")
    except Exception:
        probe = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        i = _first(probe.isna())
        raise DataError(
            f"{_line(path, i)}: timestamp {text.iloc[i]!r} does not exist or is ambiguous in time zone {tz} (a "
            "daylight-saving change): write the times with an offset or in UTC"
        ) from None
    return local.dt.tz_convert("UTC").dt.tz_localize(None)


def _one_iso(text: str) -> Any:
    """One ISO 8601 time without a zone as a naive Timestamp, or NaT (a zone pandas found in it counts as bad)."""
    import pandas as pd

    try:
        value = pd.Timestamp(text)
    except (ValueError, OverflowError):
        return pd.NaT
    return pd.NaT if value.tzinfo is not None else value


def _timestamps(raw: pd.Series, path: Path, tz: str = "UTC") -> pd.Series:
    """Parse one file's timestamps into naive UTC (index kept); DataError naming the first bad line."""
    import pandas as pd

    raw = raw.reset_index(drop=True)
    missing = raw.isna()
    text = pd.Series(["" if m else str(v).strip() for v, m in zip(raw.tolist(), missing.tolist(), strict=True)])
    if len(text) == 0:
        return pd.Series(pd.to_datetime([]), dtype="datetime64[us]")
    empty = text == ""
    if empty.any():
        raise DataError(f"{_line(path, _first(empty))}: empty timestamp")
    numeric = pd.to_numeric(text, errors="coerce")
    is_num = numeric.notna()
    if is_num.any() and not is_num.all():
        i = _first(is_num != bool(is_num.iloc[0]))
        kind = {True: "an epoch number", False: "a date/time"}
        raise DataError(
            f"{_line(path, i)}: timestamp {text.iloc[i]!r} is {kind[bool(is_num.iloc[i])]} but {_where(path, 0)} "
            f"({text.iloc[0]!r}) is {kind[bool(is_num.iloc[0])]}: one timestamp format per file"
        )
    parsed = _epoch(numeric, text, path) if is_num.all() else _iso(text, path, tz)
    lo, hi = _year_bounds()
    seconds = (parsed.astype("datetime64[us]").astype("int64") / 1e6).to_numpy()
    out_of_range = (seconds < lo) | (seconds >= hi)
    if out_of_range.any():
        i = int(out_of_range.nonzero()[0][0])
        raise _year_error(path, i, text.iloc[i], float(seconds[i]), year=int(parsed.iloc[i].year))
    return parsed.astype("datetime64[us]")


def _boundary(timeframe: str) -> str:
    return {
        "1d": "00:00 UTC",
        "1w": "Monday 00:00 UTC",
        "8h": "00:00, 08:00 or 16:00 UTC",
        "1h": "the full hour",
        "1m": "the full minute",
    }.get(timeframe, f"a {timeframe} boundary (a multiple of {timeframe} after 00:00 UTC)")


def _fmt_span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _align(ts: pd.Series, timeframe: str, path: Path, align: bool) -> tuple[pd.Series, list[str]]:
    """Check that every candle opens on its timeframe's boundary, or (``align``) snap it to the nearest one."""
    import numpy as np
    import pandas as pd

    step = TIMEFRAME_SECONDS[timeframe] * 1_000_000
    anchor = WEEK_ANCHOR_SECONDS * 1_000_000 if timeframe == "1w" else 0
    micros = ts.astype("datetime64[us]").astype("int64").to_numpy()
    off = (micros - anchor) % step
    bad = off != 0
    if not bad.any():
        return ts, []
    if not align:
        i = int(bad.nonzero()[0][0])
        raise DataError(
            f"{_line(path, i)}: a {timeframe} candle must open at {_boundary(timeframe)}; this one opens at "
            f"{ts.iloc[i]} UTC (pass --align to snap each candle to the nearest {timeframe} boundary, or --tz "
            "if the times are local)"
        )
    half = off * 2 == step
    if half.any():
        i = int(half.nonzero()[0][0])
        raise DataError(
            f"{_line(path, i)}: {ts.iloc[i]} UTC is exactly between two {timeframe} boundaries: --align cannot "
            "tell which candle it is"
        )
    shift = np.where(off * 2 < step, -off, step - off)
    shift = np.where(bad, shift, 0)
    moved = pd.Series(pd.to_datetime(micros + shift, unit="us"), index=ts.index)
    n = int(bad.sum())
    worst = float(np.abs(shift).max()) / 1e6
    note = (
        f"{path}: --align moved {n} of {len(ts)} {timeframe} candles to {_boundary(timeframe)} "
        f"(by up to {_fmt_span(worst)})"
    )
    return moved, [note]


# ---------------------------------------------------------------------------------------------- rows


def _has_rows(frame: pd.DataFrame, path: Path) -> None:
    if frame.empty:
        raise DataError(f"{path}: no rows to import (the file has only a header)")


def _numbers(frame: pd.DataFrame, cols: tuple[str, ...], path: Path, *, optional: tuple[str, ...] = ()) -> None:
    import numpy as np
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
        column = frame[col]
        values = pd.to_numeric(column, errors="coerce")
        bad = values.isna()
        if bad.any():  # only then look at the text: blanks are allowed in optional columns, spaces around numbers
            text = pd.Series([("" if v is None else str(v).strip()) for v in column.tolist()], index=column.index)
            values = pd.to_numeric(text.where(text != "", None), errors="coerce")
            blank = (text == "") | column.isna()
            bad = values.isna() & ~blank if col in optional else values.isna()
        if bad.any():
            i = _first(bad)
            raise DataError(f"{_line(path, i)}: `{col}` is not a number: {frame[col].iloc[i]!r}")
        infinite = pd.Series(np.isinf(values.astype(float).to_numpy()), index=values.index)
        if infinite.any():
            i = _first(infinite)
            raise DataError(f"{_line(path, i)}: `{col}` must be a finite number, was {frame[col].iloc[i]!r}")
        frame[col] = values.astype(float)


def _rename(frame: pd.DataFrame, columns: Mapping[str, str], path: Path) -> pd.DataFrame:
    theirs = {v: k for k, v in columns.items()}
    missing = [v for v in theirs if v not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: --columns names `{missing[0]}`, which the file does not have "
            f"(it has {', '.join(map(str, frame.columns))})"
        )
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
                f"differ from {_where(path, int(a))}"
            )
    return frame.drop_duplicates("ts", keep="first")


def validate_ohlcv(
    raw: pd.DataFrame, path: Path, tz: str = "UTC", *, timeframe: str = "1d", align: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """Checked OHLCV rows with naive-UTC ``ts`` on ``timeframe`` boundaries: positive finite prices,
    ``low ≤ open, close ≤ high``, volume ≥ 0; and the warnings to show."""
    frame = raw.reset_index(drop=True).copy()
    if "timestamp" not in frame.columns:
        raise DataError(f"{path}: missing column `timestamp` (map yours with --columns timestamp=...)")
    _has_rows(frame, path)
    _numbers(frame, ("open", "high", "low", "close"), path)
    _numbers(frame, ("volume",), path, optional=("volume",))
    frame["ts"], notes = _align(_timestamps(frame["timestamp"], path, tz), timeframe, path, align)
    prices = frame[["open", "high", "low", "close"]]
    nonpos = (prices <= 0).any(axis=1)
    if nonpos.any():
        i = _first(nonpos)
        raise DataError(f"{_line(path, i)}: prices must be > 0, row has {prices.iloc[i].to_dict()}")
    huge = (prices > MAX_PRICE).any(axis=1)
    if huge.any():
        i = _first(huge)
        raise DataError(f"{_line(path, i)}: prices must be <= {MAX_PRICE:g}, row has {prices.iloc[i].to_dict()}")
    bad = (frame["low"] > frame[["open", "close"]].min(axis=1)) | (frame["high"] < frame[["open", "close"]].max(axis=1))
    bad |= frame["low"] > frame["high"]
    if bad.any():
        i = _first(bad)
        raise DataError(
            f"{_line(path, i)}: OHLC inconsistent (need low <= open, close <= high): {prices.iloc[i].to_dict()}"
        )
    neg_vol = frame["volume"] < 0
    if neg_vol.any():
        i = _first(neg_vol)
        raise DataError(f"{_line(path, i)}: volume must be >= 0, was {frame['volume'].iloc[i]}")
    frame = _dedupe(frame, path, ["open", "high", "low", "close", "volume"])
    return frame.sort_values("ts").reset_index(drop=True), notes


def _check_interval_option(interval_hours: float | None) -> None:
    if interval_hours is None:
        return
    if not math.isfinite(interval_hours) or interval_hours <= 0 or interval_hours > 168:
        raise ConfigError(f"invalid `--interval-hours`: must be > 0 and <= 168, was {interval_hours:g}")


def _spacing(frame: pd.DataFrame, path: Path, stated: str) -> list[str]:
    """Refuse settlements whose spacing contradicts their interval; report missing ones (whole multiples)."""
    import numpy as np

    if len(frame) < 2:
        return []
    micros = frame["ts"].astype("datetime64[us]").astype("int64").to_numpy()
    gap_h = np.diff(micros) / 3.6e9
    interval = frame["interval_hours"].to_numpy()[1:]
    slots = np.rint(gap_h / interval)
    tolerance_h = 1.0 / 60.0  # exchanges' settlement times jitter by milliseconds to seconds
    bad = (slots < 1) | (np.abs(gap_h - slots * interval) > tolerance_h)
    index = frame.index.to_numpy()
    stamps = frame["ts"]

    def ts_at(j: int) -> str:
        return str(stamps.iloc[j])

    if bad.any():
        k = int(bad.nonzero()[0][0])
        raise DataError(
            f"{_line(path, int(index[k + 1]))}: funding settlement {ts_at(k + 1)} is {gap_h[k]:g} h after the "
            f"previous one ({_where(path, int(index[k]))}, {ts_at(k)}), which contradicts its interval of "
            f"{interval[k]:g} h "
            f"({stated}); a file whose interval changes needs an `interval_hours` column"
        )
    missing = np.maximum(slots - 1, 0)
    if not missing.any():
        return []
    k = int(missing.nonzero()[0][0])
    return [
        f"{path}: {int(missing.sum())} funding settlements missing in {int((missing > 0).sum())} gaps "
        f"(first: {ts_at(k)} → {ts_at(k + 1)}, {_where(path, int(index[k + 1]))})"
    ]


def validate_funding(
    raw: pd.DataFrame, path: Path, tz: str = "UTC", interval_hours: float | None = None, *, stated: str | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Checked funding rows: finite rates within ±10% per settlement, interval known or inferred and
    consistent with the spacing of the settlements; and the warnings to show."""
    _check_interval_option(interval_hours)
    frame = raw.reset_index(drop=True).copy()
    if "timestamp" not in frame.columns:
        raise DataError(f"{path}: missing column `timestamp` (map yours with --columns timestamp=...)")
    if "funding_rate" not in frame.columns and "rate" in frame.columns:
        frame = frame.rename(columns={"rate": "funding_rate"})
    _has_rows(frame, path)
    _numbers(frame, ("funding_rate",), path)
    frame["ts"] = _timestamps(frame["timestamp"], path, tz)
    too_big = frame["funding_rate"].abs() > 0.1
    if too_big.any():
        i = _first(too_big)
        raise DataError(
            f"{_line(path, i)}: funding rate {frame['funding_rate'].iloc[i]} is beyond ±10% per settlement "
            "(is it in percent? rates are fractions: 0.0001 = 0.01%)"
        )
    if "interval_hours" in frame.columns:
        if interval_hours is not None:
            raise ConfigError(
                f"{path}: the file has an `interval_hours` column, so `--interval-hours` would be ignored"
            )
        _numbers(frame, ("interval_hours",), path)
        nonpos = frame["interval_hours"] <= 0
        if nonpos.any():
            i = _first(nonpos)
            raise DataError(f"{_line(path, i)}: `interval_hours` must be > 0, was {frame['interval_hours'].iloc[i]}")
        how = "from its `interval_hours` column"
    elif interval_hours is not None:
        frame["interval_hours"] = float(interval_hours)
        how = stated or "from --interval-hours"
    else:
        frame["interval_hours"] = _infer_interval(frame["ts"], path)
        how = "inferred from the median spacing; pass --interval-hours to state it"
    if "mark_price" in frame.columns:
        _numbers(frame, ("mark_price",), path, optional=("mark_price",))
    else:
        frame["mark_price"] = float("nan")
    frame = _dedupe(frame, path, ["funding_rate", "interval_hours"])
    frame = frame.sort_values("ts", kind="stable")
    notes = _spacing(frame, path, how)
    return frame.reset_index(drop=True).rename(columns={"funding_rate": "rate"}), notes


def _infer_interval(ts: pd.Series, path: Path) -> float:
    if len(ts) < 2:
        raise DataError(f"{path}: cannot infer the funding interval from one row; pass --interval-hours")
    diffs = ts.sort_values().diff().dropna().dt.total_seconds() / 3600.0
    diffs = diffs[diffs > 0]
    if diffs.empty:
        raise DataError(f"{path}: cannot infer the funding interval (timestamps repeat); pass --interval-hours")
    return round(float(diffs.median()), 6)


def _first_last(frame: pd.DataFrame) -> tuple[str | None, str | None]:
    if frame.empty:
        return None, None
    col = "ts" if "ts" in frame.columns else "expiry"  # futures_settlements: one row per delivery
    return str(frame[col].min()), str(frame[col].max())


def _series_frame(frame: pd.DataFrame, table: str, **key: Any) -> pd.DataFrame:
    out = frame.assign(**key)
    return out.loc[:, list(TABLE_COLUMNS[table])].reset_index(drop=True)


def parse_file(
    path: Path,
    *,
    kind: str,
    source: str,
    symbol: str,
    timeframe: str = "1d",
    columns: Mapping[str, str] | None = None,
    tz: str = "UTC",
    interval_hours: float | None = None,
    align: bool = False,
) -> ParsedFile:
    """Parse and validate one OHLCV or funding file (CSV or Parquet) as ``source``/``symbol``."""
    if kind not in ("ohlcv", "funding"):
        raise ConfigError(f"invalid `--kind`: must be ohlcv or funding, was {kind!r}")
    if not source.strip() or not symbol.strip():
        raise ConfigError("importing a single file needs `--source` and `--symbol`")
    if any(ch.isspace() for ch in source.strip() + symbol.strip()):
        raise ConfigError(f"invalid `--source`/`--symbol`: no spaces allowed, was {source!r} / {symbol!r}")
    check_tz(tz)
    source, symbol = source.strip().lower(), symbol.strip()
    check_symbol(symbol, kind)
    if kind == "ohlcv":
        check_timeframe(timeframe)
        if interval_hours is not None:
            raise ConfigError("`--interval-hours` applies to funding files, not OHLCV (--kind ohlcv)")
        frame = _rename(read_frame(path), columns or {}, path)
        rows, notes = validate_ohlcv(frame, path, tz, timeframe=timeframe, align=align)
        out = _series_frame(rows, "candles", source=source, symbol=symbol, timeframe=timeframe)
        return ParsedFile(
            file=str(path),
            table="candles",
            source=source,
            symbol=symbol,
            timeframe=timeframe,
            frame=out,
            warnings=tuple(notes),
        )
    if align:
        raise ConfigError("`--align` applies to OHLCV candles, not funding settlements (--kind funding)")
    frame = _rename(read_frame(path), columns or {}, path)
    rows, notes = validate_funding(frame, path, tz, interval_hours)
    out = _series_frame(rows, "funding", source=source, symbol=symbol)
    return ParsedFile(
        file=str(path), table="funding", source=source, symbol=symbol, timeframe=None, frame=out, warnings=tuple(notes)
    )


# ---------------------------------------------------------------------------------------------- sample layout

_FUNDING_FILE = re.compile(r"^(?P<ex>[A-Z]+)_(?P<sym>[A-Z0-9\-_]+?)(?:_(?P<suffix>1h|dailymean))?$")
_BASIS_COLUMNS = (
    "spot_open",
    "spot_close",
    "perp_usdtm_open",
    "perp_usdtm_close",
    "perp_coinm_open",
    "perp_coinm_close",
)


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
    return root.is_dir() and any((root / d).is_dir() for d in ("prices", "funding", "basis", "sentiment", "futures"))


def sample_files(root: Path) -> list[Path]:
    """The files of the sample layout under ``root`` that an import reads, in import order."""
    if not is_sample_layout(root):
        raise DataError(
            f"{root}: not the sample-data layout (expected prices/, funding/, basis/, sentiment/ or futures/)"
        )
    files = [
        *sorted((root / "prices").glob("*.csv")),
        *sorted((root / "funding").glob("*.csv")),
        *sorted((root / "basis").glob("*_8h.csv")),
    ]
    fg = root / "sentiment" / "fear_greed.csv"
    if fg.is_file():
        files.append(fg)
    from perphedge.data.futures_import import futures_files

    files.extend(futures_files(root))  # dated futures (futures/)
    if not files:
        raise DataError(f"{root}: the sample layout holds no files to import")
    return files


def parse_sample_member(name: str, raw: pd.DataFrame, *, file: str | None = None) -> ParsedFile:
    """Validate the rows of one file of the sample layout.

    Parameters
    ----------
    name
        Its path inside the layout, e.g. ``prices/BTC.csv`` or ``funding/DERIBIT_BTC-PERPETUAL_1h.csv``:
        the folder and the file name say what it is.
    raw
        Its rows as read (:func:`read_frame`).
    file
        How messages name it (default ``name``).
    """
    import pandas as pd

    rel = Path(name)
    folder = rel.parent.name
    path = Path(file) if file is not None else rel
    stem = rel.stem
    if folder == "prices":
        rows, notes = validate_ohlcv(raw, path)
        asset = stem.upper()
        out = _series_frame(rows, "candles", source="binance", symbol=f"{asset}/USDT", timeframe="1d")
        return ParsedFile(
            file=str(path),
            table="candles",
            source="binance",
            symbol=f"{asset}/USDT",
            timeframe="1d",
            frame=out,
            warnings=tuple(notes),
        )
    if folder == "funding":
        m = _FUNDING_FILE.match(stem)
        if not m:
            raise DataError(f"{path}: funding files are named EXCHANGE_SYMBOL.csv")
        exchange, native, suffix = m.group("ex").lower(), m.group("sym"), m.group("suffix")
        source = f"{exchange}_dailymean" if suffix == "dailymean" else exchange
        interval = 1.0 if suffix == "1h" else (24.0 if suffix == "dailymean" else None)
        stated = {"1h": "hourly accrual (file name ends _1h)", "dailymean": "one a day (daily mean file)"}.get(
            suffix or ""
        )
        rows, notes = validate_funding(raw, path, interval_hours=interval, stated=stated)
        if suffix == "dailymean":
            rows["rate"] = rows["rate"] * 3.0  # mean of three 8h rates → the day's funding, one 24h settlement
        symbol = perp_ccxt_symbol(exchange, native)
        out = _series_frame(rows, "funding", source=source, symbol=symbol)
        return ParsedFile(
            file=str(path),
            table="funding",
            source=source,
            symbol=symbol,
            timeframe=None,
            frame=out,
            warnings=tuple(notes),
        )
    if folder == "basis":
        parts = stem.split("_")
        if len(parts) != 3 or parts[2] != "8h":
            raise DataError(f"{path}: basis files are named EXCHANGE_ASSET_8h.csv")
        exchange, asset = parts[0].lower(), parts[1].upper()
        frame = raw.reset_index(drop=True).copy()
        _has_rows(frame, path)
        _numbers(frame, _BASIS_COLUMNS, path)
        nonpos = (frame[list(_BASIS_COLUMNS)] <= 0).any(axis=1)
        if nonpos.any():
            raise DataError(f"{_line(path, _first(nonpos))}: prices must be > 0")
        if "timestamp" not in frame.columns:
            raise DataError(f"{path}: missing column `timestamp`")
        frame["ts"], notes = _align(_timestamps(frame["timestamp"], path), "8h", path, False)
        frame = _dedupe(frame, path, list(_BASIS_COLUMNS)).sort_values("ts")
        out = pd.DataFrame(
            {
                "source": exchange,
                "asset": asset,
                "ts": frame["ts"],
                "timeframe": "8h",
                "spot_open": frame["spot_open"],
                "spot_close": frame["spot_close"],
                "perp_linear_open": frame["perp_usdtm_open"],
                "perp_linear_close": frame["perp_usdtm_close"],
                "perp_inverse_open": frame["perp_coinm_open"],
                "perp_inverse_close": frame["perp_coinm_close"],
            }
        ).reset_index(drop=True)
        return ParsedFile(
            file=str(path), table="basis", source=exchange, symbol=asset, timeframe="8h", frame=out, warnings=()
        )
    if folder == "sentiment" and rel.name == "fear_greed.csv":
        frame = raw.reset_index(drop=True).copy()
        _has_rows(frame, path)
        _numbers(frame, ("value",), path)
        out_of_range = (frame["value"] < 0) | (frame["value"] > 100)
        if out_of_range.any():
            i = _first(out_of_range)
            raise DataError(f"{_line(path, i)}: Fear & Greed values are 0..100, was {frame['value'].iloc[i]:g}")
        if "timestamp" not in frame.columns:
            raise DataError(f"{path}: missing column `timestamp`")
        frame["ts"], _ = _align(_timestamps(frame["timestamp"], path), "1d", path, False)
        frame = _dedupe(frame, path, ["value"]).sort_values("ts")
        out = pd.DataFrame(
            {"source": "alternative.me", "name": "fear_greed", "ts": frame["ts"], "value": frame["value"]}
        ).reset_index(drop=True)
        return ParsedFile(
            file=str(path), table="sentiment", source="alternative.me", symbol="fear_greed", timeframe="1d", frame=out
        )
    if folder == "futures":
        from perphedge.data.futures_import import parse_futures_member

        return parse_futures_member(name, raw, path)
    raise DataError(
        f"{path}: not a file of the sample layout (prices/, funding/, basis/*_8h.csv, sentiment/, futures/)"
    )


def parse_sample(root: Path, progress: Callable[[str], None] | None = None) -> list[ParsedFile]:
    """Parse every file of the sample layout under ``root``; the first bad file stops it with a DataError."""
    out = []
    for path in sample_files(root):
        if progress is not None:
            progress(str(path))
        out.append(parse_sample_member(path.relative_to(root).as_posix(), read_frame(path), file=str(path)))
    return out


def parse_path(path: Path, *, progress: Callable[[str], None] | None = None, **options: Any) -> Sequence[ParsedFile]:
    """A sample-layout directory (no options), or one file with ``kind``/``source``/``symbol`` and the
    options of :func:`parse_file`."""
    if path.is_dir():
        if not is_sample_layout(path):
            raise ConfigError(
                f"{path}: a directory must be in the sample layout (prices/, funding/, basis/, sentiment/)"
            )
        return parse_sample(path, progress=progress)
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    if progress is not None:
        progress(str(path))
    return [parse_file(path, **options)]
