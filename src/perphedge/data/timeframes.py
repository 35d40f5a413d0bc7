"""Candle timeframes: their length and where their candles open (UTC)."""

from __future__ import annotations

from perphedge.errors import ConfigError

__all__ = ["TIMEFRAME_SECONDS", "WEEK_ANCHOR_SECONDS", "check_timeframe", "timeframe_seconds"]

#: Length of one candle of each supported timeframe, in seconds.
TIMEFRAME_SECONDS: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "1h": 3600,
    "4h": 14_400,
    "8h": 28_800,
    "1d": 86_400,
    "1w": 604_800,
}

#: Weekly candles open on Monday 00:00 UTC; the Unix epoch was a Thursday, so they sit 4 days off a multiple of 7.
WEEK_ANCHOR_SECONDS = 4 * 86_400


def check_timeframe(timeframe: str, flag: str = "--timeframe") -> str:
    """``timeframe`` if it is supported, else a :class:`ConfigError` naming ``flag`` and the choices."""
    if timeframe not in TIMEFRAME_SECONDS:
        raise ConfigError(f"invalid `{flag}`: must be one of {', '.join(TIMEFRAME_SECONDS)}, was {timeframe!r}")
    return timeframe


def timeframe_seconds(timeframe: str) -> int:
    """Seconds in one candle of ``timeframe`` (ConfigError when it is not supported)."""
    return TIMEFRAME_SECONDS[check_timeframe(timeframe)]
