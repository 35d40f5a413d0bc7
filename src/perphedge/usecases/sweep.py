"""Parameter sweeps: every combination of a grid applied to a base run, run on all cores, ranked.

Grid file (YAML)::

    base: altcoins-50pct.yaml          # a run file (relative to the grid file)
    grid:                              # dotted keys of the run file → values to try
      policy.ratio: [0.25, 0.5, 0.75, 1.0]
      hedge.leverage: [1.5, 2, 3]
    rank_by: hedged.sharpe             # any number in the backtest summary
    descending: true
    top: 20

Work is bounded: a grid of more than ``max_configs`` combinations (default 10,000) is refused before
anything runs, and the worker processes die with their parent (``PR_SET_PDEATHSIG`` on Linux, and a
watchdog thread polling the parent's pid everywhere), so a ``kill -9`` of the sweep leaves no orphans.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perphedge.errors import ConfigError

__all__ = [
    "DEFAULT_MAX_CONFIGS",
    "SweepRequest",
    "check",
    "count_configs",
    "execute",
    "expand",
    "load_grid",
    "run_sweep",
]

DEFAULT_MAX_CONFIGS = 10_000

_STATE: dict[str, Any] = {}
_GRID_KEYS = {"base", "grid", "rank_by", "descending", "top"}
SUMMARY_KEYS = ("total_return", "annual_return", "volatility", "max_drawdown", "sharpe", "sortino", "cvar_95")
RANKABLE = (
    *(f"hedged.{k}" for k in SUMMARY_KEYS),
    *(f"unhedged.{k}" for k in SUMMARY_KEYS),
    "hedge_effectiveness",
    "funding_received_usd",
    "fees_usd",
    "rebalances",
    "liquidations",
)


def _set(doc: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = doc
    for p in parts[:-1]:
        nxt = cur.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"invalid grid key `{dotted}`: `{p}` is not a mapping in the base run")
        cur = nxt
    cur[parts[-1]] = value


def load_grid(path: str | Path, max_configs: int | None = None) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """The grid document and the base run document (raw), with the base file's path.

    With ``max_configs``, a grid of more combinations is refused before its values are checked.
    """
    from perphedge.config import read_yaml

    p = Path(path)
    doc, _ = read_yaml(p)
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: must be a mapping with `base:` and `grid:`")
    unknown = sorted(set(doc) - _GRID_KEYS)
    if unknown:
        raise ConfigError(f"{p}: field `{unknown[0]}`: unknown key (use {', '.join(sorted(_GRID_KEYS))})")
    if "base" not in doc or "grid" not in doc:
        raise ConfigError(f"{p}: needs `base:` (a run file) and `grid:` (dotted keys → lists)")
    grid = doc["grid"]
    if not isinstance(grid, dict) or not grid:
        raise ConfigError(f"{p}: field `grid`: must map dotted run-file keys to non-empty lists")
    for key, values in grid.items():
        if not (isinstance(values, list) and values):
            shown = "an empty list" if values == [] else repr(values)
            raise ConfigError(
                f"{p}: field `grid.{key}`: must be a non-empty list of values, e.g. [0.25, 0.5], was {shown}"
            )
    count = count_configs(grid)
    if max_configs is not None and count > max_configs:
        raise ConfigError(
            f"{p}: the grid makes {count:,} combinations, more than --max-configs {max_configs:,}: "
            "narrow the grid or raise --max-configs"
        )
    if "rank_by" in doc and not (isinstance(doc["rank_by"], str) and doc["rank_by"].strip()):
        raise ConfigError(f"{p}: field `rank_by`: must be a metric name such as hedged.sharpe, was {doc['rank_by']!r}")
    if "rank_by" in doc and doc["rank_by"] not in RANKABLE:
        raise ConfigError(f"{p}: field `rank_by`: unknown metric {doc['rank_by']!r}; use one of {', '.join(RANKABLE)}")
    if "descending" in doc and not isinstance(doc["descending"], bool):
        raise ConfigError(f"{p}: field `descending`: must be true or false, was {doc['descending']!r}")
    if "top" in doc and (isinstance(doc["top"], bool) or not isinstance(doc["top"], int) or doc["top"] < 1):
        raise ConfigError(f"{p}: field `top`: must be a whole number >= 1, was {doc['top']!r}")
    base_path = (p.parent / str(doc["base"])).resolve()
    base_doc, _ = read_yaml(base_path)
    if not isinstance(base_doc, dict):
        raise ConfigError(f"{base_path}: must be a run file mapping")
    if isinstance(base_doc.get("portfolio"), str):
        base_doc["portfolio"] = str((base_path.parent / base_doc["portfolio"]).resolve())
    _check_grid_values(p, doc, grid, base_doc, base_path)
    from perphedge.files import plain

    # combinations are new documents: their errors must not point at lines of the base file
    return doc, plain(base_doc), base_path


def _base_value(doc: dict[str, Any], dotted: str) -> Any:
    cur: Any = doc
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _check_grid_values(
    path: Path, doc: dict[str, Any], grid: dict[str, Any], base_doc: dict[str, Any], base_path: Path
) -> None:
    """The base run must be valid, and each grid value of the same kind as the base's (number, true/false, text).

    A value of the wrong kind (``policy.ratio: [0.5, true]``, ``'0.5'``, ``.nan``, a list) is refused up front
    with the grid file's line; combinations are still checked one by one when they run.
    """
    import math

    from perphedge.config import parse_run
    from perphedge.files import line_of, plain

    parse_run(base_doc, str(base_path))
    for key, values in grid.items():
        line = line_of(doc, ("grid", key))
        at = f"line {line}: " if line else ""
        for i, value in enumerate(values):  # the same combination twice is a typo, not a wish
            if any(type(value) is type(prev) and value == prev for prev in values[:i]):
                raise ConfigError(f"{path}: {at}field `grid.{key}[{i}]`: {value!r} is given twice")
        probe = copy.deepcopy(plain(base_doc))
        try:
            _set(probe, key, values[0])
        except ConfigError as exc:  # a key through a value of the base run: every combination would fail
            raise ConfigError(f"{path}: {at}{exc}") from None
        if _base_value(base_doc, key) is None:  # not in the base run: it must at least be a run-file field
            try:
                parse_run(probe, str(base_path))
            except ConfigError as exc:
                if "unknown key" in str(exc):
                    raise ConfigError(
                        f"{path}: {at}field `grid.{key}`: `{key}` is not a field of a run file (check the spelling); "
                        "every combination would fail"
                    ) from None
        base = _base_value(base_doc, key)
        if base is None or isinstance(base, dict | list):
            continue
        for i, value in enumerate(values):
            if value is None:
                continue
            if isinstance(base, bool):
                ok, kind = isinstance(value, bool), "true or false"
            elif isinstance(base, int | float):
                ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
                kind = "a finite number"
            elif isinstance(base, str):
                ok, kind = isinstance(value, str), "text"
            else:
                continue
            if not ok:
                line = line_of(doc, ("grid", key, i))
                at = f"line {line}: " if line else ""
                raise ConfigError(
                    f"{path}: {at}field `grid.{key}[{i}]`: must be {kind} like the base run's {base!r}, was {value!r}"
                )


def count_configs(grid: dict[str, list[Any]]) -> int:
    """How many combinations a grid makes (computed without building them)."""
    return math.prod(len(v) for v in grid.values())


def expand(grid: dict[str, list[Any]], base_doc: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every combination: ``(overrides, run document)``."""
    keys = list(grid)
    out = []
    for values in itertools.product(*(grid[k] for k in keys)):
        doc = copy.deepcopy(base_doc)
        overrides = dict(zip(keys, values, strict=True))
        for k, v in overrides.items():
            _set(doc, k, v)
        out.append((overrides, doc))
    return out


def _data_key(run_doc: dict[str, Any]) -> str:
    keep = {k: run_doc.get(k) for k in ("portfolio", "start", "end", "step", "hedge", "funding")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


def _parse_config(index: int, run_doc: dict[str, Any]) -> tuple[Any, Any]:
    """The run and portfolio of combination ``index`` (ConfigError when the combination is not a valid run)."""
    from perphedge.config import parse_portfolio, parse_run, read_yaml

    run_cfg = parse_run(run_doc, f"grid #{index}")
    if isinstance(run_cfg.portfolio, str):
        pdoc, _ = read_yaml(run_cfg.portfolio)
        return run_cfg, parse_portfolio(pdoc, run_cfg.portfolio)
    return run_cfg, parse_portfolio(run_cfg.portfolio, f"grid #{index}: portfolio")


def _some_valid(path: str | Path, configs: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Refuse, before any work, a grid none of whose combinations is a valid run file (a misspelt or
    misplaced grid key, values all out of range): that is the grid's mistake, not a failed backtest."""
    from perphedge.errors import PerphedgeError

    first: str | None = None
    for index, (_, run_doc) in enumerate(configs):
        try:
            _parse_config(index, run_doc)
        except PerphedgeError as exc:
            first = first or str(exc)
            continue
        return
    raise ConfigError(f"{path}: none of the {len(configs):,} combinations is a valid run (first: {first})")


def _one(index: int) -> dict[str, Any]:
    from perphedge.data.store import MarketStore
    from perphedge.errors import PerphedgeError
    from perphedge.usecases.backtest import config_hash, prepare, run

    overrides, run_doc = _STATE["configs"][index]
    row: dict[str, Any] = {"index": index, "overrides": overrides}
    try:
        run_cfg, pfile = _parse_config(index, run_doc)
        key = _data_key(run_doc)
        cache = _STATE.setdefault("prepared", {})
        if key not in cache:
            with MarketStore(_STATE["store"], read_only=True) as store:
                cache[key] = prepare(run_cfg, pfile, store, _STATE["registry"])
        prep = cache[key]
        doc = run(prep, run_cfg, config_hash=config_hash(run_cfg, pfile), full=False)
        row.update({f"hedged.{k}": doc["hedged"][k] for k in SUMMARY_KEYS})
        row.update({f"unhedged.{k}": doc["unhedged"][k] for k in SUMMARY_KEYS})
        row.update(
            {
                "hedge_effectiveness": doc["hedge_effectiveness"],
                "funding_received_usd": doc["funding_received_usd"],
                "fees_usd": doc["fees_usd"],
                "rebalances": doc["rebalances"],
                "liquidations": len(doc["liquidations"]),
                "policy_fallback_days": sum(int(f.get("days", 1)) for f in doc["policy_fallbacks"]),
                "config_hash": doc["config_hash"],
            }
        )
    except PerphedgeError as exc:
        row["error"] = str(exc)
    return row


_PR_SET_PDEATHSIG = 1


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.5)


def _worker_init(parent: int) -> None:
    """A worker dies with its parent: the kernel kills it (Linux), and a watchdog thread exits it when the parent
    pid changes (every platform; also covers a parent that died before this ran).

    Ctrl-C reaches the whole foreground process group: a worker ignores SIGINT and leaves it to the parent,
    which stops the pool and prints one line (a worker's KeyboardInterrupt would print its traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - the watchdog still runs
            pass
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="perphedge-parent-watchdog", daemon=True).start()


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepRequest:
    """A sweep: the grid file, the market store (None: the default), extra specs, processes (None: all cores),
    the most combinations allowed, and where to write ``sweep.json`` (None: nowhere)."""

    grid_file: str | Path
    store_path: str | Path | None = None
    specs: str | None = None
    workers: int | None = None
    max_configs: int = DEFAULT_MAX_CONFIGS
    out: str | Path | None = None


def execute(request: SweepRequest, on_result: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the sweep and write ``sweep.json`` atomically when asked; returns the ``perphedge.sweep/1`` document."""
    from perphedge.specs import default_registry
    from perphedge.usecases.outputs import check_output_file, write_file_atomic

    if request.out is not None:
        check_output_file(request.out)
    result = run_sweep(
        request.grid_file,
        store_path=None if request.store_path is None else str(request.store_path),
        registry=default_registry(request.specs),
        workers=request.workers,
        on_result=on_result,
        max_configs=request.max_configs,
    )
    if request.out is not None:
        from perphedge.jsonsafe import json_safe

        text = json.dumps(json_safe(result), indent=2, default=str, allow_nan=False) + "\n"
        write_file_atomic(request.out, text)
        result["file"] = str(request.out)
    return result


def _checked_grid(
    path: str | Path, max_configs: int, workers: int | None
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    if isinstance(max_configs, bool) or max_configs < 1:
        raise ConfigError(f"invalid `--max-configs`: must be >= 1, was {max_configs!r}")
    if workers is not None and workers < 1:
        raise ConfigError(f"invalid `--workers`: must be >= 1, was {workers!r}")
    gdoc, base_doc, base_path = load_grid(path, max_configs)
    count = count_configs(gdoc["grid"])
    if count > max_configs:
        raise ConfigError(
            f"{path}: the grid makes {count:,} combinations, more than --max-configs {max_configs:,}: "
            "narrow the grid or raise --max-configs"
        )
    return gdoc, base_doc, base_path


def check(request: SweepRequest) -> int:
    """Refuse a request before any work (bad grid, too many combinations, unwritable output); returns the number
    of combinations."""
    from perphedge.usecases.outputs import check_output_file

    if request.out is not None:
        check_output_file(request.out)
    gdoc, base_doc, _ = _checked_grid(request.grid_file, request.max_configs, request.workers)
    _some_valid(request.grid_file, expand(gdoc["grid"], base_doc))
    return count_configs(gdoc["grid"])


def run_sweep(
    path: str | Path,
    *,
    store_path: str | None,
    registry: Any,
    workers: int | None = None,
    on_result: Callable[[int, int], None] | None = None,
    max_configs: int = DEFAULT_MAX_CONFIGS,
) -> dict[str, Any]:
    """Run every configuration of the grid (in ``workers`` processes) and rank them.

    More than ``max_configs`` combinations are refused before any work.
    """
    import multiprocessing as mp

    from perphedge.data.store import default_store_path

    gdoc, base_doc, base_path = _checked_grid(path, max_configs, workers)
    configs = expand(gdoc["grid"], base_doc)
    _some_valid(path, configs)
    rank_by = str(gdoc.get("rank_by", "hedged.sharpe"))
    descending = bool(gdoc.get("descending", True))
    top = int(gdoc.get("top", 20))
    _STATE.clear()
    _STATE.update(configs=configs, store=str(store_path or default_store_path()), registry=registry)
    n = len(configs)
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    rows: list[dict[str, Any]] = []
    if workers == 1:
        for i in range(n):
            rows.append(_one(i))
            if on_result:
                on_result(len(rows), n)
    else:
        ctx = mp.get_context("fork")
        with ctx.Pool(workers, initializer=_worker_init, initargs=(os.getpid(),)) as pool:
            for row in pool.imap_unordered(_one, range(n), chunksize=max(1, n // (workers * 8))):
                rows.append(row)
                if on_result:
                    on_result(len(rows), n)
    ok = [r for r in rows if "error" not in r]
    failed = [r for r in rows if "error" in r]

    def score(r: dict[str, Any]) -> float:
        v = r.get(rank_by)
        return float("-inf") if v is None else float(v) * (1 if descending else -1)

    ranked = sorted(ok, key=score, reverse=True)
    return {
        "schema": "perphedge.sweep/1",
        "grid": str(path),
        "base": str(base_path),
        "configurations": n,
        "workers": workers,
        "rank_by": rank_by,
        "descending": descending,
        "succeeded": len(ok),
        "failed_count": len(failed),
        "top": ranked[:top],
        "failed": failed,
        "all": sorted(rows, key=lambda r: r["index"]),
    }
