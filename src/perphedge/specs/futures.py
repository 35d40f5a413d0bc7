"""Dated-futures series (``futures.json``) and the resolution of their symbols to instruments.

A series says how a venue names its delivery contracts (``BTCUSD_{YYMMDD}``, ``BTC-{DMMMYY}``, ...),
their size, delivery hour and which dates it lists, and takes margin tiers, liquidation method and
fees from the venue's perpetual (``margin_from``). :func:`resolve_dated` turns
``binance:BTCUSD_210924`` or ``binance:BTC/USD:BTC-210924`` into an :class:`Instrument` with
``expiry_ms`` set.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from perphedge.core.instruments import ContractKind, Instrument
from perphedge.errors import ConfigError

if TYPE_CHECKING:
    from perphedge.specs import InstrumentRegistry

__all__ = ["FuturesSeries", "dated_symbol", "expiry_listed", "futures_series", "resolve_dated", "series_for"]

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_FIELDS = {
    "exchange",
    "underlying",
    "kind",
    "contract_size",
    "symbol_pattern",
    "ccxt_pattern",
    "delivery_hour_utc",
    "expiry_rule",
    "margin_from",
    "source",
    "as_of",
}
_RULES = ("last_friday_of_quarter", "friday", "any_day")
_TOKENS = {"{YYMMDD}": r"(?P<yymmdd>\d{6})", "{DMMMYY}": r"(?P<dmmmyy>\d{1,2}[A-Z]{3}\d{2})"}


@dataclass(frozen=True, slots=True, kw_only=True)
class FuturesSeries:
    """One venue's series of dated futures on one underlying (see ``futures.json``)."""

    exchange: str
    underlying: str
    kind: ContractKind
    contract_size: float
    symbol_pattern: str
    ccxt_pattern: str
    delivery_hour_utc: int
    expiry_rule: str
    margin_from: str
    source: str
    as_of: str

    def _regex(self, pattern: str) -> re.Pattern[str]:
        text = re.escape(pattern)
        for token, group in _TOKENS.items():
            text = text.replace(re.escape(token), group)
        return re.compile(text, re.ASCII)  # ASCII digits only: `\\d` would take ２１０９２４ too

    def match(self, symbol: str) -> dt.date | None:
        """The delivery date in ``symbol`` if it is this series' native or ccxt symbol, else None.

        A symbol of this series with an impossible date (``BTCUSD_211331``) is refused.
        """
        for pattern in (self.symbol_pattern, self.ccxt_pattern):
            m = self._regex(pattern).fullmatch(symbol.upper())
            if m is None:
                continue
            groups = m.groupdict()
            try:
                if groups.get("yymmdd"):
                    raw = groups["yymmdd"]
                    return dt.date(2000 + int(raw[:2]), int(raw[2:4]), int(raw[4:]))
                raw = groups["dmmmyy"]
                mon = raw[-5:-2]
                if mon not in _MONTHS:
                    raise ValueError(mon)
                return dt.date(2000 + int(raw[-2:]), _MONTHS.index(mon) + 1, int(raw[:-5]))
            except ValueError:
                raise ConfigError(
                    f"invalid dated-futures symbol {self.exchange}:{symbol}: {pattern} needs a real calendar date"
                ) from None
        return None

    def expiry_ms(self, day: dt.date) -> int:
        """Delivery time in epoch ms UTC on ``day``."""
        when = dt.datetime(day.year, day.month, day.day, self.delivery_hour_utc, tzinfo=dt.UTC)
        return int(when.timestamp() * 1000)

    def native(self, day: dt.date) -> str:
        """The venue's symbol of the contract delivering on ``day``."""
        return _fill(self.symbol_pattern, day)

    def ccxt(self, day: dt.date) -> str:
        """The ccxt unified symbol of the contract delivering on ``day``."""
        return _fill(self.ccxt_pattern, day)


def _fill(pattern: str, day: dt.date) -> str:
    return pattern.replace("{YYMMDD}", day.strftime("%y%m%d")).replace(
        "{DMMMYY}", f"{day.day}{_MONTHS[day.month - 1]}{day.strftime('%y')}"
    )


def expiry_listed(rule: str, day: dt.date) -> bool:
    """True if a venue with ``rule`` lists a contract delivering on ``day``."""
    if rule == "any_day":
        return True
    if day.weekday() != 4:  # Friday
        return False
    if rule == "friday":
        return True
    last_day = calendar.monthrange(day.year, day.month)[1]
    return day.month in (3, 6, 9, 12) and day.day + 7 > last_day


def _series(raw: Any, where: str) -> FuturesSeries:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field `{unknown[0]}`")
    missing = sorted(_FIELDS - set(raw))
    if missing:
        raise ConfigError(f"{where}: field `{missing[0]}` is required")
    hour = raw["delivery_hour_utc"]
    if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
        raise ConfigError(f"{where}: field `delivery_hour_utc`: must be a whole hour 0..23, was {hour!r}")
    if raw["expiry_rule"] not in _RULES:
        raise ConfigError(
            f"{where}: field `expiry_rule`: must be one of {', '.join(_RULES)}, was {raw['expiry_rule']!r}"
        )
    size = raw["contract_size"]
    if isinstance(size, bool) or not isinstance(size, int | float) or not size > 0:
        raise ConfigError(f"{where}: field `contract_size`: must be > 0, was {size!r}")
    for name in ("symbol_pattern", "ccxt_pattern"):
        if not any(t in str(raw[name]) for t in _TOKENS):
            raise ConfigError(f"{where}: field `{name}`: must hold {{YYMMDD}} or {{DMMMYY}}, was {raw[name]!r}")
    try:
        kind = ContractKind(str(raw["kind"]))
    except ValueError:
        raise ConfigError(f"{where}: field `kind`: must be inverse or linear, was {raw['kind']!r}") from None
    return FuturesSeries(
        exchange=str(raw["exchange"]).lower(),
        underlying=str(raw["underlying"]).upper(),
        kind=kind,
        contract_size=float(size),
        symbol_pattern=str(raw["symbol_pattern"]).upper(),
        ccxt_pattern=str(raw["ccxt_pattern"]).upper(),
        delivery_hour_utc=hour,
        expiry_rule=str(raw["expiry_rule"]),
        margin_from=str(raw["margin_from"]),
        source=str(raw["source"]),
        as_of=str(raw["as_of"]),
    )


@lru_cache(maxsize=1)
def futures_series() -> tuple[FuturesSeries, ...]:
    """The bundled dated-futures series (``futures.json``)."""
    from perphedge.files import load_json_text

    where = "bundled futures.json"
    text = resources.files("perphedge.specs").joinpath("futures.json").read_text(encoding="utf-8")
    doc = load_json_text(text, where)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("series"), list):
        raise ConfigError(f"{where}: must be a mapping with a `series` list")
    return tuple(_series(item, f"{where}: series[{i}]") for i, item in enumerate(doc["series"]))


def series_for(exchange: str, symbol: str) -> tuple[FuturesSeries, dt.date] | None:
    """The series and delivery date of ``exchange:symbol``, or None if it names no dated future."""
    for series in futures_series():
        if series.exchange != exchange.lower():
            continue
        day = series.match(symbol)
        if day is not None:
            return series, day
    return None


def dated_symbol(series: FuturesSeries, day: dt.date) -> str:
    """``exchange:SYMBOL`` of the contract of ``series`` delivering on ``day``."""
    return f"{series.exchange}:{series.native(day)}"


def resolve_dated(registry: InstrumentRegistry, exchange: str, symbol: str) -> Instrument | None:
    """The dated-future instrument ``exchange:symbol`` (native or ccxt form), or None if no series
    matches. A date the venue does not list is refused with the rule."""
    found = series_for(exchange, symbol)
    if found is None:
        return None
    series, day = found
    if not expiry_listed(series.expiry_rule, day):
        rule = {
            "last_friday_of_quarter": "the last Friday of March, June, September and December",
            "friday": "Fridays",
        }.get(series.expiry_rule, series.expiry_rule)
        raise ConfigError(
            f"unknown expiry {exchange}:{symbol}: {series.exchange} lists {series.underlying} dated futures "
            f"only on {rule}; {day.isoformat()} is not one"
        )
    perp = registry.get(series.margin_from)
    if perp.kind is not series.kind or perp.base != series.underlying:
        raise ConfigError(
            f"bundled futures.json: `margin_from` {series.margin_from} is not a {series.kind.value} "
            f"{series.underlying} contract"
        )
    return replace(
        perp,
        symbol=series.native(day),
        ccxt_symbol=series.ccxt(day),
        contract_size=series.contract_size,
        expiry_ms=series.expiry_ms(day),
        source=f"{series.source}; margin: {perp.source}",
        as_of=series.as_of,
        notes=(
            f"dated future: delivers {day.isoformat()} {series.delivery_hour_utc:02d}:00 UTC at the delivery price; "
            "no funding",
            f"margin tiers, liquidation method and fees of {perp.id}",
        ),
    )
