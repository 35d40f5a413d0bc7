"""What ``perphedge web`` serves: the folders and books given on its command line, the token, trading on or off.

Every file the server reads comes through :class:`Folders` (a relative name inside one of the folders the
command line gave) or is a book named on it; nothing else on the disk is reachable from a request.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from perphedge.errors import ConfigError

__all__ = ["LOOPBACK_HOSTS", "Folders", "WebConfig", "book_name", "is_loopback", "safe_relative"]

#: Hosts that bind to this machine only (no token needed).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

#: Longest relative name a request may give.
MAX_NAME = 300

_BOOK_SUFFIXES = (".book.yaml", ".book.yml", ".yaml", ".yml")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def book_name(path: Path) -> str:
    """The name a book is served under: its file name without ``.book.yaml`` / ``.yaml``."""
    name = path.name
    for suffix in _BOOK_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def safe_relative(name: str, what: str = "file") -> tuple[str, ...]:
    """The parts of a relative name a request gave, or ConfigError: absolute paths, ``..``, NUL and control
    characters, backslashes, drive letters and empty parts are refused (before the disk is looked at)."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"invalid `{what}`: give a file name relative to a served folder, was {name!r}")
    if len(name) > MAX_NAME:
        raise ConfigError(f"invalid `{what}`: longer than {MAX_NAME} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        raise ConfigError(f"invalid `{what}`: {name!r} contains control characters")
    if "\\" in name or re.match(r"^[A-Za-z]:", name):
        raise ConfigError(f"invalid `{what}`: {name!r}: use / between folders, no drive letters")
    if name.startswith(("/", "~")):
        raise ConfigError(f"invalid `{what}`: {name!r} is absolute; give a name relative to a served folder")
    parts = tuple(name.split("/"))
    if any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"invalid `{what}`: {name!r}: `.`, `..` and empty parts are not allowed")
    return parts


@dataclass(frozen=True, slots=True)
class Folders:
    """The folders files may be read from (resolved once, at start)."""

    roots: tuple[Path, ...]

    @classmethod
    def of(cls, paths: tuple[str | Path, ...], flag: str) -> Folders:
        roots: list[Path] = []
        for p in paths:
            path = Path(p).expanduser()
            if not path.is_dir():
                raise ConfigError(f"invalid `{flag}`: {p} is not a folder")
            real = path.resolve()
            if real not in roots:
                roots.append(real)
        return cls(tuple(roots))

    def resolve(self, name: str, what: str = "file", *, suffixes: tuple[str, ...] = (".yaml", ".yml")) -> Path:
        """The regular file ``name`` inside one of the folders (the first that has it). Symbolic links are followed
        only when the target stays inside that folder."""
        parts = safe_relative(name, what)
        if suffixes and not parts[-1].lower().endswith(suffixes):
            raise ConfigError(f"invalid `{what}`: {name!r} must end with {' or '.join(suffixes)}")
        if not self.roots:
            raise ConfigError(f"no folder is served: start `perphedge web` with --runs DIR to read {what} files")
        for root in self.roots:
            candidate = root.joinpath(*parts)
            try:
                real = candidate.resolve(strict=True)
            except (OSError, RuntimeError):
                continue
            if real != root and root not in real.parents:
                raise ConfigError(f"invalid `{what}`: {name!r} leads outside the served folders")
            try:
                mode = real.stat().st_mode
            except OSError:
                continue
            if not stat.S_ISREG(mode):
                raise ConfigError(f"invalid `{what}`: {name!r} is not a regular file")
            return real
        raise ConfigError(f"invalid `{what}`: no file {name!r} in the served folders")

    def listing(self, suffixes: tuple[str, ...] = (".yaml", ".yml"), *, limit: int = 500) -> list[str]:
        """Relative names of the files (recursively, symbolic links that leave a folder skipped), sorted."""
        names: set[str] = set()
        for root in self.roots:
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in filenames:
                    if f.startswith(".") or not f.lower().endswith(suffixes):
                        continue
                    full = Path(dirpath) / f
                    try:
                        real = full.resolve(strict=True)
                    except (OSError, RuntimeError):
                        continue
                    if (root in real.parents) and real.is_file():
                        names.add(full.relative_to(root).as_posix())
                    if len(names) >= limit:
                        return sorted(names)
        return sorted(names)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebConfig:
    """The server's settings (from the command line)."""

    host: str = "127.0.0.1"
    port: int = 8765
    books: tuple[Path, ...] = ()
    store: str | None = None
    runs: Folders = field(default_factory=lambda: Folders(()))
    out: Path = Path("backtest-results")
    token: str | None = None
    allow_trading: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"invalid `--port`: must be 0 to 65535, was {self.port}")
        if self.token is not None and (len(self.token) < 16 or any(ch.isspace() for ch in self.token)):
            raise ConfigError("invalid `--token`: give at least 16 characters without spaces")
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"invalid `--host`: {self.host} is reachable from other machines; set a token (--token or "
                "PERPHEDGE_WEB_TOKEN) to serve it there, or keep the default 127.0.0.1"
            )
        names: dict[str, Path] = {}
        for b in self.books:
            n = book_name(b)
            if n in names:
                raise ConfigError(f"invalid `--book`: {b} and {names[n]} would both be served as {n!r}; rename one")
            names[n] = b

    def book_paths(self) -> dict[str, Path]:
        """Served books by name."""
        return {book_name(b): b for b in self.books}
