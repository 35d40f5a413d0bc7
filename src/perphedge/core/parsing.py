"""Parsers of the small texts users type: day counts, dates and price moves.

One rule each, shared by every edge (CLI flags, run files, the web form later), so that a value
cannot mean one thing in one place and another elsewhere:

* **days** — ``180d`` or ``26w`` (a whole, positive number of days or weeks). A bare ``180`` is
  refused: it could be read as hours, bars or weeks.
* **dates** — ISO 8601 calendar dates ``YYYY-MM-DD`` only, naming a UTC day (daily bars close at
  00:00 UTC). ``01/02/2024`` (day or month first?), ``2024-1-2``, ``20240102``, ``2024-02-30``,
  ``yesterday`` and anything with a time or a UTC offset (``2024-01-01T00:00:00+02:00``) are
  refused, not converted: an offset would silently move the day.
* **moves** — a percentage with its sign (``+20%``, ``-15%``, ``0%``) or a fraction written
  with a decimal point (``0.2``, ``-0.15``), above −100% and at most +1000%. A bare integer such
  as ``20`` is refused: 20 is not 20%.

Every failure is a :class:`~perphedge.errors.ConfigError` whose message names the flag (or
field), the rule and the value; nothing else is raised. Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
import re
from datetime import date

from perphedge.errors import ConfigError

__all__ = [
    "MAX_DAYS",
    "MAX_MOVE",
    "MAX_YEAR",
    "MIN_MOVE",
    "MIN_YEAR",
    "format_days",
    "format_move",
    "parse_date",
    "parse_date_or_latest",
    "parse_date_range",
    "parse_days",
    "parse_move",
]

#: Longest window or horizon accepted (100 years).
MAX_DAYS = 36_500
#: Dates outside these years are refused (no crypto market before 2009; a typo beyond 2099).
MIN_YEAR = 2009
MAX_YEAR = 2099
#: A price move is a return in (MIN_MOVE, MAX_MOVE]: above −100% (the price stays positive),
#: at most +1000%.
MIN_MOVE = -1.0
MAX_MOVE = 10.0

_DAYS = re.compile(r"([0-9]+)([dw])", re.ASCII | re.IGNORECASE)
_SIGNED_DAYS = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?[dw]?", re.ASCII | re.IGNORECASE)
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", re.ASCII)
_DATE_TIME = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([T ]|[+-][0-9]{2}|Z)", re.ASCII | re.IGNORECASE)
_PERCENT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)%", re.ASCII)
_FRACTION = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+)", re.ASCII)
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)


def _flag(name: str) -> str:
    return name if name.startswith("`") else f"`{name}`"


def parse_days(text: str, flag: str, *, minimum: int = 1, maximum: int = MAX_DAYS) -> int:
    """``180d`` → 180, ``26w`` → 182.

    Parameters
    ----------
    text
        A whole number followed by ``d`` (days) or ``w`` (weeks); case and surrounding spaces are
        ignored.
    flag
        The flag or field named in the error, e.g. ``--window``.
    minimum, maximum
        Inclusive bounds in days.

    Raises
    ------
    ConfigError
        For anything else: no unit, zero, a sign, a fraction, a value out of bounds.
    """
    where = _flag(flag)
    raw = text.strip() if isinstance(text, str) else text
    if not isinstance(raw, str):
        raise ConfigError(f"invalid {where}: must be a number of days such as 180d, was {text!r}")
    m = _DAYS.fullmatch(raw)
    if m is None:
        if _INTEGER.fullmatch(raw) and int(raw) > 0:
            raise ConfigError(
                f"invalid {where}: {text!r} has no unit; write {raw.lstrip('+')}d for days (or Nw for weeks)"
            )
        if _SIGNED_DAYS.fullmatch(raw):
            raise ConfigError(f"invalid {where}: must be a whole, positive number of days such as 180d, was {text!r}")
        raise ConfigError(f"invalid {where}: {text!r} is not a number of days such as 180d or 26w")
    digits, unit = m.groups()
    if len(digits) > 9:
        raise ConfigError(f"invalid {where}: at most {maximum} days, was {text!r}")
    days = int(digits) * (7 if unit.lower() == "w" else 1)
    if days < minimum:
        raise ConfigError(f"invalid {where}: at least {minimum} day{'s' if minimum != 1 else ''}, was {text!r}")
    if days > maximum:
        raise ConfigError(f"invalid {where}: at most {maximum} days, was {text!r}")
    return days


def format_days(days: int) -> str:
    """The canonical text of a day count: ``180`` → ``"180d"`` (inverse of :func:`parse_days`)."""
    return f"{days}d"


def _date_hint(raw: str) -> str:
    if "/" in raw or "." in raw:
        return "day and month order is ambiguous; write YYYY-MM-DD"
    if _DATE_TIME.match(raw) or ":" in raw:
        return "times and UTC offsets are refused, not converted: write the UTC day, daily bars close at 00:00 UTC"
    if raw.isdigit() and len(raw) == 8:
        return f"write {raw[:4]}-{raw[4:6]}-{raw[6:]}"
    return "dates are ISO 8601, YYYY-MM-DD"


def parse_date(text: str, flag: str, *, expected: str = "a date YYYY-MM-DD") -> date:
    """An ISO 8601 calendar date ``YYYY-MM-DD`` naming a UTC day.

    Raises
    ------
    ConfigError
        For any other spelling (``01/02/2024``, ``2024-1-2``, ``20240102``, times, offsets,
        words), a day that does not exist (``2024-02-30``), or a year outside
        ``MIN_YEAR..MAX_YEAR``.
    """
    where = _flag(flag)
    if not isinstance(text, str):
        raise ConfigError(f"invalid {where}: must be {expected}, was {text!r}")
    raw = text.strip()
    m = _DATE.fullmatch(raw)
    if m is None:
        raise ConfigError(f"invalid {where}: {text!r} is not {expected} ({_date_hint(raw)})")
    year, month, day = (int(g) for g in m.groups())
    try:
        out = date(year, month, day)
    except ValueError as exc:
        raise ConfigError(f"invalid {where}: {text!r} is not a calendar date ({exc})") from None
    if not MIN_YEAR <= out.year <= MAX_YEAR:
        raise ConfigError(f"invalid {where}: the year must be {MIN_YEAR}..{MAX_YEAR}, was {text!r}")
    return out


def parse_date_or_latest(text: str, flag: str) -> date | None:
    """:func:`parse_date`, or ``None`` for ``latest`` (the newest data available)."""
    if isinstance(text, str) and text.strip().lower() == "latest":
        return None
    return parse_date(text, flag, expected="a date YYYY-MM-DD or latest")


def parse_date_range(
    since: str | None, until: str | None, since_flag: str = "--since", until_flag: str = "--until"
) -> tuple[date | None, date | None]:
    """Two optional dates, the first not after the second."""
    first = None if since is None else parse_date(since, since_flag)
    last = None if until is None else parse_date(until, until_flag)
    if first is not None and last is not None and first > last:
        raise ConfigError(
            f"invalid {_flag(since_flag)}: {first.isoformat()} is after {_flag(until_flag)} {last.isoformat()}"
        )
    return first, last


def parse_move(text: str, where: str) -> float:
    """A price move as a fraction: ``+20%`` → 0.2, ``-0.15`` → -0.15, ``0`` → 0.0.

    Accepted: a number followed by ``%``, or a fraction written with a decimal point; the move
    must lie in (−100%, +1000%]. Refused: bare integers other than 0 (``20`` could be 20% or
    2000%), exponents, ``nan``/``inf``, anything else.

    Raises
    ------
    ConfigError
        Naming ``where`` and the text.
    """
    place = _flag(where)
    if not isinstance(text, str):
        raise ConfigError(f"invalid {place}: {text!r} is not a return such as -20% or -0.2")
    raw = text.strip()
    if _PERCENT.fullmatch(raw):
        value = float(raw[:-1]) / 100.0
    elif _FRACTION.fullmatch(raw):
        value = float(raw)
    elif _INTEGER.fullmatch(raw):
        if int(raw) != 0:
            whole = raw.lstrip("+")
            raise ConfigError(
                f"invalid {place}: {text!r} is ambiguous; write {whole}% for a percentage "
                f"or {int(raw) / 100:.2f} for the same move as a fraction"
            )
        value = 0.0
    else:
        raise ConfigError(f"invalid {place}: {text!r} is not a return such as -20% or -0.2")
    if not math.isfinite(value) or not MIN_MOVE < value <= MAX_MOVE:
        raise ConfigError(f"invalid {place}: a move must be above -100% and at most +1000%, was {text!r}")
    return value + 0.0  # -0.0 -> 0.0


def format_move(value: float) -> str:
    """A move as a fraction text that :func:`parse_move` reads back exactly: ``0.2`` → ``"0.2000…"``.

    The text is the exact decimal value of the float (so it may be long); for display use a
    percentage instead.
    """
    from decimal import Decimal

    text = format(Decimal(value), "f")
    return text if "." in text else f"{text}.0"
