"""Option parsing shared by every ``perphedge`` command.

Two kinds of helpers live here:

* **typer parsers** (``typer.Option(parser=...)``) for numbers: :func:`number`,
  :func:`non_negative`, :func:`positive`, :func:`whole`, :func:`non_negative_whole`. They refuse
  ``nan``, ``inf`` and out-of-range values while the command line is parsed, so the error names
  the option (``perphedge: error: invalid value for --ratio: 'nan' is not a finite number``).
* **in-command checks** that raise :class:`~perphedge.errors.ConfigError`: ISO dates
  (:func:`iso_date`, :func:`as_of_date`, :func:`date_range`), day counts (:func:`days`), and
  output locations (:func:`output_dir`, :func:`output_file`) checked *before* the work starts.

:func:`usage_error_line` turns the usage errors of the command-line parser (bad value, unknown
option, missing argument, unknown command) into the one line that ``main`` prints.

This module imports nothing heavy: it is on the path of every command.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perphedge.core.parsing import parse_date, parse_date_or_latest, parse_date_range, parse_days
from perphedge.errors import ConfigError

__all__ = [
    "as_of_date",
    "date_range",
    "days",
    "iso_date",
    "non_negative",
    "non_negative_whole",
    "number",
    "output_dir",
    "output_file",
    "positive",
    "positive_whole",
    "usage_error_line",
    "whole",
    "write_text",
]


# ---------------------------------------------------------------------------- number parsers


def number(text: Any) -> float:
    """A finite number (``nan``, ``inf`` refused)."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a number")
    if isinstance(text, int | float):
        value = float(text)
    else:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def non_negative(text: Any) -> float:
    """A finite number >= 0."""
    value = number(text)
    if value < 0:
        raise ValueError(f"must be >= 0, was {text!r}")
    return value + 0.0


def positive(text: Any) -> float:
    """A finite number > 0."""
    value = number(text)
    if value <= 0:
        raise ValueError(f"must be > 0, was {text!r}")
    return value


def whole(text: Any) -> int:
    """A whole number (``3``; ``3.5``, ``1e3`` and ``abc`` refused)."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a whole number")
    if isinstance(text, int):
        return text
    raw = str(text).strip()
    body = raw[1:] if raw[:1] in "+-" else raw
    if not body.isascii() or not body.isdigit():
        raise ValueError(f"{text!r} is not a whole number")
    return int(raw)


def positive_whole(text: Any) -> int:
    """A whole number >= 1."""
    value = whole(text)
    if value < 1:
        raise ValueError(f"must be >= 1, was {text!r}")
    return value


def non_negative_whole(text: Any) -> int:
    """A whole number >= 0."""
    value = whole(text)
    if value < 0:
        raise ValueError(f"must be >= 0, was {text!r}")
    return value


# ---------------------------------------------------------------------------- dates and days


def iso_date(text: str | None, flag: str) -> str | None:
    """``YYYY-MM-DD`` (a UTC day), returned in canonical form; None stays None."""
    return None if text is None else parse_date(text, flag).isoformat()


def as_of_date(text: str | None, flag: str = "--as-of") -> str | None:
    """A UTC day ``YYYY-MM-DD`` or ``latest``; returned as ``YYYY-MM-DD`` or ``"latest"``."""
    if text is None:
        return None
    day = parse_date_or_latest(text, flag)
    return "latest" if day is None else day.isoformat()


def date_range(
    since: str | None, until: str | None, since_flag: str = "--since", until_flag: str = "--until"
) -> tuple[str | None, str | None]:
    """Two optional ``YYYY-MM-DD`` days, the first not after the second, in canonical form."""
    first, last = parse_date_range(since, until, since_flag, until_flag)
    return (None if first is None else first.isoformat(), None if last is None else last.isoformat())


def days(text: str, flag: str, *, minimum: int = 1) -> int:
    """A number of days written ``180d`` or ``26w`` (see :func:`perphedge.core.parsing.parse_days`)."""
    return parse_days(text, flag, minimum=minimum)


# ---------------------------------------------------------------------------- output locations


def output_dir(path: str | Path, flag: str, *, create: bool = True) -> Path:
    """Check (and with ``create``, create) a directory the command will write into.

    Call it before the work starts, so that a bad ``--out``/``--plot`` fails in a second rather
    than after a long run; with ``create=False`` nothing is created yet.

    Raises
    ------
    ConfigError
        The path or one of its parents is a file, it cannot be created, or it is not writable.
    """
    from perphedge.usecases.outputs import check_writable

    if not str(path).strip():  # Path("") is the working directory: an empty flag is a mistake, not "here"
        raise ConfigError(f"invalid `{flag}`: give a directory name, was {str(path)!r}")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"invalid `{flag}`: {p} is a file, not a directory")
    check_writable(p, flag)
    if create:
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"invalid `{flag}`: cannot create the directory {p}: {exc.strerror or exc}") from None
    return p


def output_file(path: str | Path, flag: str, *, create: bool = True) -> Path:
    """Check a file the command will write (with ``create``, its directory is created), before any work."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"invalid `{flag}`: {p} is a directory; give a file name")
    output_dir(p.parent, flag, create=create)
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"invalid `{flag}`: cannot overwrite {p}: permission denied")
    return p


def write_text(path: str | Path, text: str, flag: str) -> Path:
    """Write ``text`` to ``path``; a file-system failure (disk full, permissions) names the flag and path."""
    p = Path(path)
    try:
        p.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"invalid `{flag}`: cannot write {p}: {exc.strerror or exc}") from None
    return p


# ---------------------------------------------------------------------------- usage errors

_PYDANTIC_MESSAGES = {
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "int_parsing": "is not a whole number",
    "int_from_float": "is not a whole number",
    "int_type": "is not a whole number",
    "bool_parsing": "is not true or false",
    "finite_number": "is not a finite number",
}


def _param_name(param: Any) -> str:
    if param is None:
        return "a parameter"
    if getattr(param, "param_type_name", "") == "argument":
        return str(param.name or "argument").upper()
    opts = [o for o in getattr(param, "opts", []) if o.startswith("--")] or list(getattr(param, "opts", []))
    return opts[0] if opts else str(getattr(param, "name", "a parameter"))


def _bad_value(exc: Any) -> str:
    """The reason a value was refused, with the value itself where the parser kept it."""
    cause = exc.__cause__
    errors = getattr(cause, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
        except (IndexError, TypeError, ValueError):
            first = None
        if first:
            kind = first.get("type", "")
            raw = first.get("input")
            if kind == "value_error" and first.get("ctx", {}).get("error") is not None:
                return str(first["ctx"]["error"])
            if kind in _PYDANTIC_MESSAGES:
                return f"{raw!r} {_PYDANTIC_MESSAGES[kind]}"
            return f"{raw!r}: {first.get('msg', 'invalid')}"
    msg = str(getattr(exc, "message", exc))
    return msg.removeprefix("Value error, ")


def usage_error_line(exc: Any) -> str:
    """One line for a command-line usage error (bad value, unknown option, missing argument, ...)."""
    kind = type(exc).__name__
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "perphedge"
    see = f"; see `{path} --help`" if ctx is not None else ""
    param = getattr(exc, "param", None)
    if kind == "NoSuchOption":
        name = getattr(exc, "option_name", "?")
        if name in ("--debug", "--version") and path != "perphedge":
            return f"{name} goes before the command: perphedge {name} {path.removeprefix('perphedge ')} ..."
        options = sorted(getattr(exc, "possibilities", None) or ())
        hint = f" (did you mean {' or '.join(options)}?)" if options else ""
        return f"`{path}` has no option {name}{hint}{see}"
    if kind == "MissingParameter":
        what = "argument" if getattr(param, "param_type_name", "") == "argument" else "option"
        return f"`{path}` needs the {what} {_param_name(param)}{see}"
    if kind == "BadOptionUsage" and str(getattr(exc, "message", "")).endswith("requires an argument."):
        return f"option {getattr(exc, 'option_name', '?')} needs a value"
    if param is not None or kind == "BadParameter":
        return f"invalid value for {_param_name(param)}: {_bad_value(exc)}"
    text = " ".join(str(exc.format_message()).split())
    text = text[:1].lower() + text[1:]
    return f"{text.rstrip('.')}{see}"


def write_plots(plot: Callable[[dict[str, Any], Path], list[str]], doc: dict[str, Any], out_dir: Path) -> list[str]:
    """Write a command's plots into ``out_dir``; a file-system failure (disk full, a folder made read-only
    meanwhile) is one line naming the folder, and no half-written plot file is left behind."""
    before = {p.name for p in out_dir.iterdir()} if out_dir.is_dir() else set()
    try:
        return plot(doc, out_dir)
    except OSError as exc:
        for p in out_dir.iterdir() if out_dir.is_dir() else ():
            if p.name not in before and p.is_file():
                with contextlib.suppress(OSError):
                    p.unlink()
        raise ConfigError(f"invalid `--plot`: cannot write the plots in {out_dir}: {exc.strerror or exc}") from exc
