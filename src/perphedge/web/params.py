"""Request parameters read as the command line reads its options, refused with the command line's one line.

A query parameter ``ratio`` is the flag ``--ratio``: a bad value reads ``invalid value for --ratio: 'x' is not a
number``, exactly what ``perphedge plan FILE --ratio x`` prints after ``perphedge: error:``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from perphedge.errors import ConfigError

__all__ = ["choice", "flag_of", "integer", "number", "optional_number", "switch", "text"]


def flag_of(name: str) -> str:
    """``funding_rate_8h`` → ``--funding-rate-8h``."""
    return "--" + name.replace("_", "-")


def _bad(name: str, reason: str) -> ConfigError:
    return ConfigError(f"invalid value for {flag_of(name)}: {reason}")


def _one(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if isinstance(value, list | tuple):
        if len(value) > 1:
            raise ConfigError(f"invalid `{flag_of(name)}`: given {len(value)} times, give it once")
        value = value[0] if value else None
    if value is None:
        return None
    return str(value)


def _finite(text: str, name: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise _bad(name, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise _bad(name, f"{text!r} is not a finite number")
    return value


def number(params: Mapping[str, Any], name: str, default: float | None = None, *, required: bool = False) -> float:
    """A finite number (the command line's ``number`` parser)."""
    text = _one(params, name)
    if text is None or text == "":
        if required or default is None:
            raise ConfigError(f"missing {flag_of(name)}: give a number")
        return default
    return _finite(text, name)


def optional_number(params: Mapping[str, Any], name: str) -> float | None:
    """A finite number, or None when absent or blank."""
    text = _one(params, name)
    if text is None or text.strip() == "":
        return None
    return _finite(text, name)


def integer(params: Mapping[str, Any], name: str, default: int) -> int:
    """A whole number (``1e3`` and ``2.5`` refused, as the command line's int options do)."""
    text = _one(params, name)
    if text is None or text.strip() == "":
        return default
    try:
        return int(text.strip())
    except ValueError:
        raise _bad(name, f"{text!r} is not a whole number") from None


def text(params: Mapping[str, Any], name: str, *, required: bool = False, max_len: int = 500) -> str | None:
    """A string option (blank = absent unless ``required``)."""
    value = _one(params, name)
    if value is None or value == "":
        if required:
            raise ConfigError(f"missing {flag_of(name)}: it is required")
        return None
    if len(value) > max_len:
        raise _bad(name, f"longer than {max_len} characters")
    return value


def texts(params: Mapping[str, Any], name: str, *, max_items: int = 50) -> list[str]:
    """A repeatable string option (``scenario=...&scenario=...``); blanks dropped."""
    value = params.get(name)
    items: Sequence[Any] = value if isinstance(value, list | tuple) else ([] if value is None else [value])
    out = [str(v) for v in items if str(v).strip()]
    if len(out) > max_items:
        raise ConfigError(f"invalid `{flag_of(name)}`: at most {max_items}, was {len(out)}")
    return out


def choice(params: Mapping[str, Any], name: str, choices: Sequence[str], default: str | None = None) -> str | None:
    """One of ``choices`` (the command line's enum options)."""
    value = _one(params, name)
    if value is None or value == "":
        return default
    if value not in choices:
        quoted = ", ".join(repr(c) for c in choices)
        raise _bad(name, f"{value!r} is not one of {quoted}.")
    return value


def switch(params: Mapping[str, Any], name: str) -> bool:
    """A boolean flag: true/1/yes/on or false/0/no/off (absent = false)."""
    value = _one(params, name)
    if value is None or value == "":
        return False
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise _bad(name, f"{value!r} is not a valid boolean")
