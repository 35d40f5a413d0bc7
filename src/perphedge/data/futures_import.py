"""Parse the ``futures/`` folder of the sample layout (dated futures) into store-ready frames.

* ``BINANCE_<UNDERLYING>USD_quarterly_1d_<YEAR>.csv`` → ``futures_candles`` (source ``binance``,
  symbol the contract, ``1d`` mark candles with the contract's ``expiry``, ``spot_close`` and the
  perpetual's ``perp_close``). Every bar must close before delivery, and every contract's expiry must
  be on the date its symbol ends with (``BTCUSD_210924``).
* ``BINANCE_<UNDERLYING>USD_quarterly_<YEAR>_settlements.csv`` → ``futures_settlements`` (delivery
  price per contract; an exact duplicate row is dropped, two different prices for one contract are refused).
* ``BINANCE_<SYMBOL>_PERP_mark_1d_<YEAR>.csv`` → ``candles`` source ``binance_mark``, symbol the
  perpetual's ccxt symbol (``BTC/USD:BTC``), ``1d``.
* ``BINANCE_<SYMBOL>_PERP_funding_<YEAR>.csv`` → ``funding`` source ``binance``, symbol ``BTC/USD:BTC``
  (8h settlements, the same series as ``funding/BINANCE_BTCUSD_PERP.csv``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from perphedge.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from perphedge.data.importer import ParsedFile

__all__ = ["CANDLE_COLUMNS", "FUTURES_FILE", "MAX_BASIS", "SETTLEMENT_COLUMNS", "futures_files", "parse_futures_member"]

CANDLE_COLUMNS = ("timestamp", "contract", "expiry", "open", "high", "low", "close", "spot_close", "perp_close")
SETTLEMENT_COLUMNS = ("contract", "expiry", "settlement_price")
#: A contract's (or the perpetual's) close further than this from spot (F/S − 1) is refused as a wrong price.
MAX_BASIS = 0.5

FUTURES_FILE = re.compile(
    r"(?P<ex>[A-Z]+)_(?:(?P<q>[A-Z0-9]+)_quarterly_(?:1d_(?P<y1>\d{4})|(?P<y2>\d{4})_settlements)"
    r"|(?P<perp>[A-Z0-9]+_PERP)_(?:mark_1d|funding)_(?P<y3>\d{4}))"
)


def futures_files(root: Path) -> list[Path]:
    """The dated-futures files under ``root/futures`` that an import reads (settlements after candles)."""
    folder = root / "futures"
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.glob("*.csv") if FUTURES_FILE.fullmatch(p.stem))
    return sorted(files, key=lambda p: (p.stem.endswith("_settlements"), p.name))


def _expiry_ms(text: pd.Series, path: Path) -> pd.Series:
    from perphedge.data.importer import _timestamps

    return _timestamps(text, path)


def _check_contract(contract: str, expiry: pd.Timestamp, where: str) -> None:
    """The contract's symbol ends with its delivery date, ``_YYMMDD`` or ``-YYMMDD``, and ``expiry`` is on it.

    (The delivery hour and whether the venue lists that date are the instrument's: the use cases resolve
    each contract through ``specs/futures.json`` and refuse one whose stored expiry differs.)
    """
    import datetime as dt

    m = re.fullmatch(r"[A-Z0-9]+(?:-[A-Z0-9]+)*[_-](\d{6})", contract)
    if m is None:
        raise DataError(f"{where}: contract {contract!r} must end with its delivery date, e.g. BTCUSD_210924")
    raw = m.group(1)
    try:
        day = dt.date(2000 + int(raw[:2]), int(raw[2:4]), int(raw[4:]))
    except ValueError:
        raise DataError(f"{where}: contract {contract!r} must end with a real delivery date YYMMDD") from None
    if expiry.date() != day:
        raise DataError(f"{where}: contract {contract}: `expiry` {expiry} is not its delivery date {day.isoformat()}")


def parse_futures_member(name: str, raw: pd.DataFrame, path: Path) -> ParsedFile:
    """Validate one file of ``futures/`` (see the module docstring)."""
    import pandas as pd

    from perphedge.data.importer import (
        ParsedFile,
        _has_rows,
        _line,
        _numbers,
        _series_frame,
        perp_ccxt_symbol,
        validate_funding,
        validate_ohlcv,
    )

    stem = Path(name).stem
    m = FUTURES_FILE.fullmatch(stem)
    if m is None:
        raise DataError(
            f"{path}: futures files are named EXCHANGE_UNDERLYINGUSD_quarterly_1d_YEAR.csv, "
            "EXCHANGE_UNDERLYINGUSD_quarterly_YEAR_settlements.csv or EXCHANGE_SYMBOL_PERP_{mark_1d,funding}_YEAR.csv"
        )
    exchange = m.group("ex").lower()
    if m.group("perp"):
        symbol = perp_ccxt_symbol(exchange, m.group("perp"))
        if stem.endswith("_funding_" + m.group("y3")):
            rows, funding_notes = validate_funding(raw, path, interval_hours=8.0, stated="8h (Binance COIN-M)")
            out = _series_frame(rows, "funding", source=exchange, symbol=symbol)
            return ParsedFile(
                file=str(path),
                table="funding",
                source=exchange,
                symbol=symbol,
                timeframe=None,
                frame=out,
                warnings=tuple(funding_notes),
            )
        frame = raw.copy()
        if "volume" not in frame.columns:
            frame["volume"] = float("nan")
        rows, mark_notes = validate_ohlcv(frame, path)
        source = f"{exchange}_mark"
        out = _series_frame(rows, "candles", source=source, symbol=symbol, timeframe="1d")
        return ParsedFile(
            file=str(path),
            table="candles",
            source=source,
            symbol=symbol,
            timeframe="1d",
            frame=out,
            warnings=tuple(mark_notes),
        )
    frame = raw.reset_index(drop=True).copy()
    _has_rows(frame, path)
    required = SETTLEMENT_COLUMNS if m.group("y2") else CANDLE_COLUMNS
    absent = [c for c in required if c not in frame.columns]
    if absent:
        raise DataError(
            f"{path}: missing column `{absent[0]}` (a futures {'settlements' if m.group('y2') else 'candles'} file "
            f"has the columns {', '.join(required)}; it has {', '.join(map(str, raw.columns))})"
        )
    frame["contract"] = frame["contract"].astype(str).str.strip().str.upper()
    frame["expiry_ts"] = _expiry_ms(frame["expiry"].astype(str), path)
    for contract, group in frame.groupby("contract", sort=True):
        expiries = group["expiry_ts"].unique()
        if len(expiries) != 1:
            raise DataError(f"{_line(path, int(group.index[0]))}: contract {contract} has more than one `expiry`")
        _check_contract(str(contract), pd.Timestamp(expiries[0]), _line(path, int(group.index[0])))
    if m.group("y2"):  # settlements
        _numbers(frame, ("settlement_price",), path)
        bad = ~(frame["settlement_price"] > 0)
        if bad.any():
            i = int(bad.to_numpy().argmax())
            raise DataError(
                f"{_line(path, i)}: `settlement_price` must be > 0, was {frame['settlement_price'].iloc[i]}"
            )
        dup = frame.duplicated("contract", keep=False)
        for contract, group in frame[dup].groupby("contract", sort=False):
            if group["settlement_price"].nunique() > 1:
                a, b = group.index[:2]
                raise DataError(
                    f"{_line(path, int(b))}: contract {contract} has a second settlement price that differs from "
                    f"line {int(a) + 2}"
                )
        frame = frame.drop_duplicates("contract", keep="first")
        out = pd.DataFrame(
            {
                "source": exchange,
                "symbol": frame["contract"],
                "expiry": frame["expiry_ts"],
                "settlement_price": frame["settlement_price"].astype(float),
            }
        ).reset_index(drop=True)
        symbols = ",".join(sorted(out["symbol"]))
        return ParsedFile(
            file=str(path), table="futures_settlements", source=exchange, symbol=symbols, timeframe=None, frame=out
        )
    # daily mark candles of each contract, with spot and the perpetual
    _numbers(frame, ("spot_close", "perp_close"), path)
    for col in ("spot_close", "perp_close"):
        bad = ~(frame[col] > 0)
        if bad.any():
            i = int(bad.to_numpy().argmax())
            raise DataError(f"{_line(path, i)}: `{col}` must be > 0, was {frame[col].iloc[i]}")
    values = ["open", "high", "low", "close", "spot_close", "perp_close"]
    keyed = frame.assign(_t=frame["timestamp"].astype(str).str.strip())
    dup = keyed.duplicated(["contract", "_t"], keep=False)
    if dup.any():  # validate_ohlcv compares OHLC only: spot and perp closes of a repeated day must agree too
        for (contract, stamp), group in keyed[dup].groupby(["contract", "_t"], sort=False):
            if len(group[[c for c in values if c in group.columns]].drop_duplicates()) > 1:
                a, b = group.index[:2]
                raise DataError(
                    f"{_line(path, int(b))}: duplicate timestamp {stamp} of {contract} with values that differ from "
                    f"line {int(a) + 2}"
                )
        frame = frame[~keyed.duplicated(["contract", "_t"], keep="first")]
    parts = []
    notes: list[str] = []
    for contract, group in frame.groupby("contract", sort=True):
        work = group.reset_index(drop=True)
        if "volume" not in work.columns:
            work["volume"] = float("nan")
        try:
            rows, more = validate_ohlcv(work, path)
        except DataError as exc:  # its line numbers count this contract's rows: give the file's
            index = list(group.index)

            def _file_line(m: re.Match[str], index: list[int] = index) -> str:
                return f"line {int(index[int(m.group(1)) - 2]) + 2}"

            text = re.sub(r"line (\d+)", _file_line, str(exc), count=1)
            raise DataError(text) from None
        notes.extend(f"{contract}: {n}" for n in more)
        for col in ("close", "perp_close"):  # a wrong column or digit would show as a basis of -99% or +900%
            off = ~((rows[col] / rows["spot_close"] - 1.0).abs() < MAX_BASIS)
            if off.any():
                i = int(off.to_numpy().argmax())
                raise DataError(
                    f"{path}: contract {contract}: on {rows['ts'].iloc[i].date()} `{col}` {rows[col].iloc[i]:,.6g} is "
                    f"{rows[col].iloc[i] / rows['spot_close'].iloc[i] - 1:+.1%} from `spot_close` "
                    f"{rows['spot_close'].iloc[i]:,.6g}; more than ±{MAX_BASIS:.0%} is not a basis but a wrong price"
                )
        close = rows["ts"] + pd.Timedelta(days=1)
        late = close > rows["expiry_ts"]
        if late.any():
            i = int(late.to_numpy().argmax())
            raise DataError(
                f"{path}: contract {contract}: the bar of {rows['ts'].iloc[i].date()} closes after delivery "
                f"({rows['expiry_ts'].iloc[i]}); only bars that close before delivery are kept"
            )
        parts.append(
            pd.DataFrame(
                {
                    "source": exchange,
                    "symbol": str(contract),
                    "timeframe": "1d",
                    "ts": rows["ts"],
                    "expiry": rows["expiry_ts"],
                    "open": rows["open"],
                    "high": rows["high"],
                    "low": rows["low"],
                    "close": rows["close"],
                    "spot_close": rows["spot_close"],
                    "perp_close": rows["perp_close"],
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    symbols = ",".join(sorted(out["symbol"].unique()))
    return ParsedFile(
        file=str(path),
        table="futures_candles",
        source=exchange,
        symbol=symbols,
        timeframe="1d",
        frame=out,
        warnings=tuple(notes),
    )
