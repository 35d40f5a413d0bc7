"""Atomic outputs: a run folder holds one run's files, and a single file is never half-written.

A run folder (``result.json``, ``report.html``, ``report.png``, ``manifest.json``) is built whole in a
hidden sibling directory, then swapped in with one atomic ``renameat2(RENAME_EXCHANGE)`` on Linux (a
plain rename when the folder is new); the previous run's folder leaves in the same step and is
deleted afterwards. A kill at any instant leaves either the complete old folder or the complete new
one, never a new ``result.json`` beside an old report, and never a stale ``report.png`` of an earlier
run beside a run that wrote none. ``manifest.json`` (written last inside the new folder) lists every
file with its size and SHA-256 and the run's ``config_hash``.

Where the exchange is not available (another OS, a filesystem without it) the old folder is renamed
aside and the new one renamed in: a kill between the two leaves the old folder complete under its
hidden name (and no folder at the destination), never a mix.

Single files (``sweep.json``) go to a temporary name in the same directory and are ``os.replace``-d.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perphedge.errors import ConfigError

__all__ = [
    "RUN_FILES",
    "check_output_dir",
    "check_output_file",
    "check_writable",
    "write_file_atomic",
    "write_run_folder",
]

#: The files a run folder may hold; anything else there means it is not a perphedge run folder.
RUN_FILES = frozenset({"result.json", "report.html", "report.png", "manifest.json"})
_NEW, _OLD = ".perphedge-new-", ".perphedge-old-"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_writable(path: Path, flag: str) -> None:
    """The nearest existing ancestor of ``path`` (``path`` itself when it exists) is a writable directory, so
    ``path`` can be created or written into; otherwise a ConfigError naming ``flag`` and the path."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"invalid `{flag}`: cannot create {path}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "write into" if probe == path else f"create {path} in"
        raise ConfigError(f"invalid `{flag}`: cannot {what} {probe}: permission denied")


def _make_parent(parent: Path, flag: str) -> None:
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"invalid `{flag}`: cannot create {parent}: {_reason(exc)}") from None


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """Refuse, before any work, a run folder that cannot be written: a file, a folder of other files, a
    read-only place, a parent that cannot be created. Creates nothing."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"invalid `{flag}`: {out} is a file, not a directory")
    if out.is_dir():
        try:
            foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES)
        except OSError as exc:
            raise ConfigError(f"invalid `{flag}`: cannot read {out}: {_reason(exc)}") from None
        if foreign:
            raise ConfigError(
                f"invalid `{flag}`: {out} holds files that are not a perphedge run's ({', '.join(foreign[:3])}): "
                "a run folder holds one run's files; choose an empty or new folder"
            )
        if not os.access(out, os.W_OK | os.X_OK):
            raise ConfigError(f"invalid `{flag}`: {out} is read-only")
    check_writable(out.absolute().parent, flag)
    return out


def check_output_file(path: str | Path, flag: str = "--out") -> Path:
    """Refuse, before any work, an output file that cannot be written (a directory, an uncreatable or read-only
    parent). Creates nothing."""
    if not str(path).strip():
        raise ConfigError(f"invalid `{flag}`: give a file name, was {str(path)!r}")
    out = Path(path)
    if out.is_dir():
        raise ConfigError(f"invalid `{flag}`: {out} is a directory, not a file")
    if out.exists() and not out.is_file():  # a device, a pipe, a socket: renaming over it would replace the node
        raise ConfigError(f"invalid `{flag}`: {out} is not a regular file (a device, pipe or socket)")
    check_writable(out.absolute().parent, flag)
    if out.exists() and not os.access(out, os.W_OK):
        raise ConfigError(f"invalid `{flag}`: {out} is read-only")
    return out


def write_file_atomic(path: str | Path, text: str | bytes, flag: str = "--out") -> Path:
    """Write ``text`` (or bytes) to a temporary file beside ``path`` and rename it into place."""
    out = check_output_file(path, flag)
    _make_parent(out.absolute().parent, flag)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.absolute().parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8") if isinstance(text, str) else text)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ConfigError(f"invalid `{flag}`: cannot write {out}: {_reason(exc)}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return out


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _file_mode() -> int:
    return 0o666 & ~_umask()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False where not available."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return bool(fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0)


def _sweep_leftovers(out: Path) -> None:
    """Delete hidden siblings left by a killed earlier run into ``out``."""
    for p in out.parent.glob(f".{out.name}{_NEW}*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in out.parent.glob(f".{out.name}{_OLD}*"):
        shutil.rmtree(p, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_run_folder(
    path: str | Path,
    writers: dict[str, Callable[[Path], Any]],
    *,
    config_hash: str,
    flag: str = "--out",
) -> list[Path]:
    """Build the run folder ``path`` from ``writers`` (file name → function writing that file) and swap it in.

    Returns the final paths, ``manifest.json`` last. Nothing at ``path`` changes until every writer succeeded.
    """
    out = check_output_dir(path, flag).absolute()
    if out.is_symlink():  # replace the folder the link points to, keep the link
        out = Path(os.path.realpath(out))
    unknown = sorted(set(writers) - RUN_FILES)
    if unknown:  # pragma: no cover - a programming error
        raise ValueError(f"not a run-folder file: {unknown}")
    _make_parent(out.parent, flag)
    _sweep_leftovers(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{_NEW}", dir=out.parent))
    except OSError as exc:
        raise ConfigError(f"invalid `{flag}`: cannot write in {out.parent}: {_reason(exc)}") from None
    try:
        os.chmod(tmp, stat.S_IMODE(out.stat().st_mode) if out.is_dir() else 0o777 & ~_umask())
        for name, write in writers.items():
            write(tmp / name)
        files = {name: {"bytes": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)} for name in writers}
        manifest = {"schema": "perphedge.run-folder/1", "config_hash": config_hash, "files": files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for p in tmp.iterdir():
            os.chmod(p, _file_mode())
        _swap_in(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"invalid `{flag}`: cannot write {out}: {_reason(exc)}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / name for name in writers] + [out / "manifest.json"]


def _swap_in(new: Path, out: Path) -> None:
    """Put the finished folder ``new`` at ``out`` in one step; the previous folder is deleted afterwards."""
    if not out.exists():
        os.rename(new, out)
        return
    if _exchange(new, out):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the previous run
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}{_OLD}", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    os.rename(new, out)
    shutil.rmtree(old, ignore_errors=True)
