"""Parameter sweeps: every combination of a grid applied to a base run, run on all cores, ranked.

Grid file (YAML)::

    base: altcoins-50pct.yaml          # a run file (relative to the grid file)
    grid:                              # dotted keys of the run file → values to try
      policy.ratio: [0.25, 0.5, 0.75, 1.0]
      hedge.leverage: [1.5, 2, 3]
    rank_by: hedged.sharpe             # any number in the backtest summary
    descending: true
    top: 20

A grid file may also (or instead) sample parameters from ranges::

    sample:
      method: lhs                      # random | lhs (Latin hypercube)
      n: 500
      seed: 7
      ranges:
        policy.band: [0.02, 0.3]       # [low, high], finite numbers, low < high

Every grid combination is crossed with every sample. Configurations are numbered and built from their number
(never all held in memory); the data each needs (``prepare``: prices, funding) is loaded once per distinct data
set in the calling process and shipped once to each worker (:mod:`perphedge.usecases.engine`), never re-read in
a task. Batches of configurations run on the chosen engine: this process, a fork pool, or Dask (``--cluster``).

Work is bounded: without a dataset a grid of more than ``max_configs`` combinations (default 10,000) is refused
before anything runs; with ``dataset`` (a directory) rows stream to Parquet part files written atomically as
batches finish (default cap 100,000,000), the memory stays bounded, and a killed sweep run again with the same
directory computes only the configurations whose rows are missing. Worker processes die with their parent
(``PR_SET_PDEATHSIG`` on Linux, and a watchdog thread polling the parent's pid everywhere), so a ``kill -9`` of
the sweep leaves no orphans.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perphedge.errors import ConfigError

__all__ = [
    "DATASET_MAX_CONFIGS",
    "DEFAULT_MAX_CONFIGS",
    "Space",
    "SweepRequest",
    "check",
    "count_configs",
    "execute",
    "expand",
    "load_grid",
    "pareto_front",
    "rank_dataset",
    "read_dataset",
    "run_sweep",
]

DEFAULT_MAX_CONFIGS = 10_000
DATASET_MAX_CONFIGS = 100_000_000
MAX_DATA_SETS = 256
DATASET_SCHEMA = "perphedge.sweep-dataset/1"
_DATA_SECTIONS = ("portfolio", "start", "end", "step", "hedge", "funding")

_GRID_KEYS = {"base", "grid", "sample", "rank_by", "descending", "top"}
_SAMPLE_KEYS = {"method", "n", "seed", "ranges"}
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
    if "base" not in doc or ("grid" not in doc and "sample" not in doc):
        raise ConfigError(f"{p}: needs `base:` (a run file) and `grid:` (dotted keys → lists) and/or `sample:`")
    grid = doc.get("grid", {})
    if "grid" in doc and (not isinstance(grid, dict) or not grid):
        raise ConfigError(f"{p}: field `grid`: must map dotted run-file keys to non-empty lists")
    for key, values in grid.items():
        if not (isinstance(values, list) and values):
            shown = "an empty list" if values == [] else repr(values)
            raise ConfigError(
                f"{p}: field `grid.{key}`: must be a non-empty list of values, e.g. [0.25, 0.5], was {shown}"
            )
    sample = _check_sample(p, doc)
    if sample is not None:
        both = sorted(set(sample["ranges"]) & set(grid))
        if both:
            raise ConfigError(f"{p}: field `sample.ranges.{both[0]}`: `{both[0]}` is also in `grid:`; keep it in one")
        doc["sample"] = sample
    doc["grid"] = grid
    count = count_configs(grid) * (sample["n"] if sample else 1)
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
    if sample is not None:
        _check_sample_keys(p, doc, sample, base_doc, base_path)
    from perphedge.files import plain

    # combinations are new documents: their errors must not point at lines of the base file
    return doc, plain(base_doc), base_path


def _check_sample(p: Path, doc: dict[str, Any]) -> dict[str, Any] | None:
    """The ``sample:`` block, checked: method random|lhs, n >= 1, seed >= 0, ranges of finite [low, high]."""
    if "sample" not in doc:
        return None
    block = doc["sample"]
    if not isinstance(block, dict):
        raise ConfigError(f"{p}: field `sample`: must be a mapping with method, n, seed and ranges, was {block!r}")
    unknown = sorted(set(block) - _SAMPLE_KEYS)
    if unknown:
        raise ConfigError(f"{p}: field `sample.{unknown[0]}`: unknown key (use {', '.join(sorted(_SAMPLE_KEYS))})")
    method = block.get("method", "lhs")
    if method not in ("random", "lhs"):
        raise ConfigError(f"{p}: field `sample.method`: must be random or lhs, was {method!r}")
    n = block.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{p}: field `sample.n`: must be a whole number >= 1 (samples to draw), was {n!r}")
    seed = block.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{p}: field `sample.seed`: must be a whole number >= 0, was {seed!r}")
    ranges = block.get("ranges")
    if not isinstance(ranges, dict) or not ranges:
        raise ConfigError(f"{p}: field `sample.ranges`: must map dotted run-file keys to [low, high], was {ranges!r}")
    out: dict[str, tuple[float, float]] = {}
    for key, rng in ranges.items():
        ok = (
            isinstance(rng, list)
            and len(rng) == 2
            and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in rng)
        )
        if not ok or not rng[0] < rng[1]:
            raise ConfigError(
                f"{p}: field `sample.ranges.{key}`: must be [low, high] with finite numbers and low < high, was {rng!r}"
            )
        out[str(key)] = (float(rng[0]), float(rng[1]))
    return {"method": method, "n": n, "seed": seed, "ranges": out}


def _check_sample_keys(
    path: Path, doc: dict[str, Any], sample: dict[str, Any], base_doc: dict[str, Any], base_path: Path
) -> None:
    """A sampled key must be a numeric field of the run file (both ends of its range are tried)."""
    from perphedge.config import parse_run
    from perphedge.errors import PerphedgeError
    from perphedge.files import plain

    for key, (lo, hi) in sample["ranges"].items():
        base = _base_value(base_doc, key)
        if base is not None and (isinstance(base, bool) or not isinstance(base, int | float)):
            raise ConfigError(
                f"{path}: field `sample.ranges.{key}`: the base run's `{key}` is {base!r}, not a number to sample"
            )
        for end in (lo, hi):
            probe = copy.deepcopy(plain(base_doc))
            try:
                _set(probe, key, end)
                parse_run(probe, str(base_path))
            except PerphedgeError as exc:
                raise ConfigError(
                    f"{path}: field `sample.ranges.{key}`: {end:g} is not a valid value ({exc})"
                ) from None


class Space:
    """The configurations of a grid file, numbered 0 … size − 1 and built from their number.

    Configuration ``i`` is grid combination ``i // n_samples`` (in ``itertools.product`` order, the last key
    varying fastest) with sample ``i % n_samples``. Samples: ``random`` draws uniform points, ``lhs`` a Latin
    hypercube (each range cut into ``n`` equal strata, one point in each), both from ``numpy.random.default_rng
    (seed)``; values are rounded to 12 significant digits so that they read back the same from YAML or JSON.
    """

    def __init__(self, grid: dict[str, list[Any]], sample: dict[str, Any] | None) -> None:
        import numpy as np

        self.grid_keys = list(grid)
        self.grid_values = [list(grid[k]) for k in self.grid_keys]
        self.radix = [len(v) for v in self.grid_values]
        self.n_grid = math.prod(self.radix)
        self.sample_keys: list[str] = list(sample["ranges"]) if sample else []
        self.n_samples = int(sample["n"]) if sample else 1
        self.points = np.zeros((0, 0))
        if sample:
            rng = np.random.default_rng(sample["seed"])
            n, d = sample["n"], len(self.sample_keys)
            if sample["method"] == "lhs":
                u = np.empty((n, d))
                for j in range(d):
                    u[:, j] = (rng.permutation(n) + rng.random(n)) / n
            else:
                u = rng.random((n, d))
            lo = np.array([sample["ranges"][k][0] for k in self.sample_keys])
            hi = np.array([sample["ranges"][k][1] for k in self.sample_keys])
            pts = lo + u * (hi - lo)
            self.points = np.array([[float(f"{x:.12g}") for x in row] for row in pts]).reshape(n, d)
        self.size = self.n_grid * self.n_samples

    @property
    def keys(self) -> list[str]:
        return self.grid_keys + self.sample_keys

    def overrides(self, index: int) -> dict[str, Any]:
        g, r = divmod(index, self.n_samples)
        out: dict[str, Any] = {}
        values = []
        for size in reversed(self.radix):
            g, digit = divmod(g, size)
            values.append(digit)
        for key, vals, digit in zip(self.grid_keys, self.grid_values, reversed(values), strict=True):
            out[key] = vals[digit]
        for j, key in enumerate(self.sample_keys):
            out[key] = float(self.points[r, j])
        return out

    def run_doc(self, index: int, base_doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        overrides = self.overrides(index)
        doc = copy.deepcopy(base_doc)
        for k, v in overrides.items():
            _set(doc, k, v)
        return overrides, doc

    def data_indices(self) -> list[int]:
        """One configuration per distinct data set (the keys under portfolio/start/end/step/hedge/funding)."""
        data_grid = [i for i, k in enumerate(self.grid_keys) if k.split(".")[0] in _DATA_SECTIONS]
        data_sampled = any(k.split(".")[0] in _DATA_SECTIONS for k in self.sample_keys)
        n_data = math.prod(self.radix[i] for i in data_grid) * (self.n_samples if data_sampled else 1)
        if n_data > MAX_DATA_SETS:
            raise ConfigError(
                f"the sweep loads {n_data:,} distinct data sets (its keys under {', '.join(_DATA_SECTIONS)} "
                f"change what is read from the store), more than {MAX_DATA_SETS}: grid fewer such values"
            )
        seen: dict[tuple[Any, ...], int] = {}
        for combo in itertools.product(*(range(self.radix[i]) for i in data_grid)):
            digits = [0] * len(self.radix)
            for i, d in zip(data_grid, combo, strict=True):
                digits[i] = d
            g = 0
            for size, d in zip(self.radix, digits, strict=True):
                g = g * size + d
            for r in range(self.n_samples if data_sampled else 1):
                seen.setdefault((g, r), g * self.n_samples + r)
        return sorted(seen.values())


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


def _some_valid(path: str | Path, configs: Iterable[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Refuse, before any work, a grid none of whose combinations is a valid run file (a misspelt or
    misplaced grid key, values all out of range): that is the grid's mistake, not a failed backtest."""
    from perphedge.errors import PerphedgeError

    first: str | None = None
    count = 0
    for index, (_, run_doc) in enumerate(configs):
        count += 1
        try:
            _parse_config(index, run_doc)
        except PerphedgeError as exc:
            first = first or str(exc)
            continue
        return
    raise ConfigError(f"{path}: none of the {count:,} combinations is a valid run (first: {first})")


METRIC_COLUMNS = (
    *(f"hedged.{k}" for k in SUMMARY_KEYS),
    *(f"unhedged.{k}" for k in SUMMARY_KEYS),
    "hedge_effectiveness",
    "funding_received_usd",
    "fees_usd",
)
COUNT_COLUMNS = ("rebalances", "liquidations", "policy_fallback_days")


def _row(shared: dict[str, Any], index: int) -> dict[str, Any]:
    """Backtest configuration ``index`` on its prepared data (a failed configuration: a row with ``error``)."""
    from perphedge.errors import PerphedgeError
    from perphedge.usecases.backtest import config_hash, run

    space: Space = shared["space"]
    overrides, run_doc = space.run_doc(index, shared["base"])
    row: dict[str, Any] = {"index": index, "overrides": overrides}
    try:
        run_cfg, pfile = _parse_config(index, run_doc)
        prep = shared["prepared"].get(_data_key(run_doc))
        if prep is None:  # pragma: no cover - every data key was prepared up front
            raise ConfigError(f"grid #{index}: no prepared data for this configuration")
        if isinstance(prep, str):
            raise ConfigError(prep)
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


def _batch(shared: dict[str, Any], indices: tuple[int, int]) -> list[dict[str, Any]]:
    """The rows of configurations ``lo … hi − 1`` (one task)."""
    return [_row(shared, i) for i in range(*indices)]


def _worker_init(parent: int) -> None:
    """A worker dies with its parent (see :func:`perphedge.usecases.engine.die_with_parent`)."""
    from perphedge.usecases.engine import die_with_parent

    die_with_parent(parent)


def _prepare_all(space: Space, base_doc: dict[str, Any], store_path: str, registry: Any) -> dict[str, Any]:
    """Load every distinct data set once, here (data key → Prepared, or the error text of a failed one)."""
    from perphedge.data.store import MarketStore
    from perphedge.errors import PerphedgeError
    from perphedge.usecases.backtest import prepare

    prepared: dict[str, Any] = {}
    with MarketStore(store_path, read_only=True) as store:
        for index in space.data_indices():
            _, run_doc = space.run_doc(index, base_doc)
            key = _data_key(run_doc)
            if key in prepared:
                continue
            try:
                run_cfg, pfile = _parse_config(index, run_doc)
                prepared[key] = prepare(run_cfg, pfile, store, registry)
            except PerphedgeError as exc:
                prepared[key] = str(exc)
    return prepared


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepRequest:
    """A sweep: the grid file, the market store (None: the default), extra specs, processes (None: all cores),
    a Dask cluster (``local`` or ``tcp://host:port``; None: no Dask), the most combinations allowed (None:
    10,000, or 100,000,000 with a dataset), where to write ``sweep.json`` (None: nowhere), and the Parquet
    dataset directory rows stream to (None: rows held in memory)."""

    grid_file: str | Path
    store_path: str | Path | None = None
    specs: str | None = None
    workers: int | None = None
    max_configs: int | None = None
    out: str | Path | None = None
    cluster: str | None = None
    dataset: str | Path | None = None
    batch: int | None = None

    @property
    def cap(self) -> int:
        if self.max_configs is not None:
            return self.max_configs
        return DATASET_MAX_CONFIGS if self.dataset is not None else DEFAULT_MAX_CONFIGS


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
        max_configs=request.cap,
        cluster=request.cluster,
        dataset=request.dataset,
        batch=request.batch,
    )
    if request.out is not None:
        from perphedge.jsonsafe import json_safe

        text = json.dumps(json_safe(result), indent=2, default=str, allow_nan=False) + "\n"
        write_file_atomic(request.out, text)
        result["file"] = str(request.out)
    return result


def _checked_grid(
    path: str | Path, max_configs: int, workers: int | None, cluster: str | None = None
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    from perphedge.usecases.engine import check_cluster

    if isinstance(max_configs, bool) or not isinstance(max_configs, int) or max_configs < 1:
        raise ConfigError(f"invalid `--max-configs`: must be >= 1, was {max_configs!r}")
    check_cluster(cluster, workers)
    gdoc, base_doc, base_path = load_grid(path, max_configs)
    return gdoc, base_doc, base_path


def _space(gdoc: dict[str, Any]) -> Space:
    return Space(gdoc["grid"], gdoc.get("sample"))


def _configs(space: Space, base_doc: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for i in range(space.size):
        yield space.run_doc(i, base_doc)


def check(request: SweepRequest) -> int:
    """Refuse a request before any work (bad grid, too many combinations, unwritable output, bad engine
    options, a dataset of another grid); returns the number of combinations."""
    from perphedge.usecases.outputs import check_output_file

    if request.out is not None:
        check_output_file(request.out)
    gdoc, base_doc, _ = _checked_grid(request.grid_file, request.cap, request.workers, request.cluster)
    if request.batch is not None and (isinstance(request.batch, bool) or request.batch < 1):
        raise ConfigError(f"invalid `--batch`: must be >= 1, was {request.batch!r}")
    space = _space(gdoc)
    _some_valid(request.grid_file, _configs(space, base_doc))
    space.data_indices()  # refuses too many distinct data sets
    if request.dataset is not None:
        _open_dataset(Path(request.dataset), _fingerprint(gdoc, base_doc), space, create=False)
    if request.cluster is not None and request.cluster != "local":  # an unreachable scheduler: refused up front
        from perphedge.usecases.engine import DaskEngine

        DaskEngine(request.cluster, request.workers).close()
    return space.size


# ------------------------------------------------------------------------------------------- Parquet dataset


def _fingerprint(gdoc: dict[str, Any], base_doc: dict[str, Any]) -> str:
    """What identifies the configurations of a sweep: the grid, the samples and the base run (not rank_by/top)."""
    from perphedge.jsonsafe import json_safe

    keep = {"grid": gdoc["grid"], "sample": gdoc.get("sample"), "base": base_doc}
    return hashlib.sha256(json.dumps(json_safe(keep), sort_keys=True, default=str).encode()).hexdigest()


def _open_dataset(directory: Path, fingerprint: str, space: Space, *, create: bool) -> Any:
    """Check (and with ``create``, create) the dataset directory; a mask of the configurations already done
    (None when not created)."""
    import numpy as np
    import pyarrow.parquet as pq

    from perphedge.usecases.outputs import check_writable

    flag = "--dataset"
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"invalid `{flag}`: {directory} is a file, not a directory")
    manifest = directory / "manifest.json"
    if directory.is_dir() and any(directory.iterdir()):
        if not manifest.is_file():
            raise ConfigError(
                f"invalid `{flag}`: {directory} is not empty and holds no sweep dataset (manifest.json); "
                "use a new or empty directory"
            )
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"invalid `{flag}`: {manifest} is unreadable ({exc})") from None
        if not isinstance(doc, dict) or doc.get("schema") != DATASET_SCHEMA:
            raise ConfigError(f"invalid `{flag}`: {manifest} is not a {DATASET_SCHEMA} manifest")
        if doc.get("fingerprint") != fingerprint:
            raise ConfigError(
                f"invalid `{flag}`: {directory} holds a sweep of another grid, samples or base run "
                "(fingerprint differs); use a new directory"
            )
    try:
        if not create:
            check_writable(directory if directory.is_dir() else directory.absolute().parent, flag)
            return None
        directory.mkdir(parents=True, exist_ok=True)
        check_writable(directory, flag)
    except OSError as exc:
        raise ConfigError(f"invalid `{flag}`: cannot create {directory}: {exc.strerror or exc}") from None
    if not manifest.is_file():
        from perphedge.usecases.outputs import write_file_atomic

        text = json.dumps(
            {"schema": DATASET_SCHEMA, "fingerprint": fingerprint, "configurations": space.size, "keys": space.keys},
            indent=2,
        )
        write_file_atomic(manifest, text + "\n", flag)
    for tmp in directory.glob(".part-*.tmp"):  # a part being written when the last run was killed
        tmp.unlink(missing_ok=True)
    done = np.zeros(space.size, dtype=bool)  # one byte per configuration, whatever the row width
    for part in sorted(directory.glob("part-*.parquet")):
        try:  # pyarrow raises several kinds of error for a damaged file
            idx = pq.read_table(part, columns=["index"]).column("index").to_numpy()
        except Exception as exc:
            raise ConfigError(f"invalid `{flag}`: {part} is not a readable Parquet part ({exc}); remove it") from None
        if len(idx) and (idx.min() < 0 or idx.max() >= space.size):
            raise ConfigError(f"invalid `{flag}`: {part} has configuration numbers outside this sweep; remove it")
        done[idx] = True
    return done


def _param_types(space: Space) -> dict[str, str]:
    """Parquet type of each parameter column (in the grid file's order): int64 or float64 for numbers, bool,
    else JSON text."""
    out: dict[str, str] = {}
    for key, values in zip(space.grid_keys, space.grid_values, strict=True):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            out[key] = "int64"
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            out[key] = "float64"
        elif all(isinstance(v, bool) for v in values):
            out[key] = "bool"
        else:
            out[key] = "string"
    out.update(dict.fromkeys(space.sample_keys, "float64"))
    return out


def _schema(space: Space) -> Any:
    import pyarrow as pa

    kinds = {"int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(), "string": pa.string()}
    fields = [pa.field("index", pa.int64()), pa.field("config_hash", pa.string()), pa.field("error", pa.string())]
    fields += [pa.field(f"param.{k}", kinds[t]) for k, t in _param_types(space).items()]
    fields += [pa.field(m, pa.float64()) for m in METRIC_COLUMNS]
    fields += [pa.field(c, pa.int64()) for c in COUNT_COLUMNS]
    return pa.schema(fields)


def _write_part(directory: Path, rows: list[dict[str, Any]], space: Space, schema: Any) -> None:
    """Write ``rows`` as one Parquet part, atomically (a temporary file renamed into place)."""
    import uuid

    import pyarrow as pa
    import pyarrow.parquet as pq

    types = _param_types(space)
    cols: dict[str, list[Any]] = {name: [] for name in schema.names}
    for r in rows:
        cols["index"].append(r["index"])
        cols["config_hash"].append(r.get("config_hash"))
        cols["error"].append(r.get("error"))
        for k, t in types.items():
            v = r["overrides"].get(k)
            cols[f"param.{k}"].append(json.dumps(v) if t == "string" else v)
        for m in (*METRIC_COLUMNS, *COUNT_COLUMNS):
            v = r.get(m)
            cols[m].append(None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v)
    table = pa.table(cols, schema=schema)
    first = min(r["index"] for r in rows)
    name = f"part-{first:012d}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = directory / f".{name}.tmp"
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, directory / name)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"invalid `--dataset`: cannot write {directory / name}: {exc.strerror or exc}") from None


def read_dataset(directory: str | Path, columns: list[str] | None = None) -> Any:
    """The sweep dataset as one pyarrow Table (only ``columns`` when given), sorted by configuration number."""
    import pyarrow.dataset as ds

    d = Path(directory)
    if not (d / "manifest.json").is_file():
        raise ConfigError(f"invalid `--dataset`: {d} holds no sweep dataset (manifest.json)")
    table = ds.dataset(sorted(str(p) for p in d.glob("part-*.parquet")), format="parquet").to_table(columns=columns)
    return table.sort_by("index")


def _row_from_record(rec: dict[str, Any], types: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {"index": rec["index"]}
    row["overrides"] = {
        k: (json.loads(rec[f"param.{k}"]) if t == "string" and rec[f"param.{k}"] is not None else rec[f"param.{k}"])
        for k, t in types.items()
    }
    if rec.get("error") is not None:
        row["error"] = rec["error"]
        return row
    for m in (*METRIC_COLUMNS, *COUNT_COLUMNS):
        row[m] = rec[m]
    row["config_hash"] = rec["config_hash"]
    return row


def rank_dataset(
    directory: str | Path, space: Space, *, rank_by: str, descending: bool, top: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int, int]:
    """The ``top`` rows by ``rank_by`` (missing values last), the first 100 failed rows, and the counts of
    succeeded and failed rows: the dataset is scanned batch by batch keeping only the best ``top`` (memory
    bounded whatever its size), then those rows are read whole."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    d = Path(directory)
    parts = sorted(str(p) for p in d.glob("part-*.parquet"))
    best_i = np.zeros(0, dtype=np.int64)
    best_s = np.zeros(0)
    failed_idx: list[int] = []
    n_ok = n_failed = 0
    for rb in ds.dataset(parts, format="parquet").to_batches(columns=["index", "error", rank_by]) if parts else []:
        failed_mask = pc.is_valid(rb.column(1)).to_numpy(zero_copy_only=False)
        index = rb.column(0).to_numpy()
        values = rb.column(2).to_numpy(zero_copy_only=False).astype(float)
        ok = ~failed_mask
        n_ok += int(ok.sum())
        n_failed += int(failed_mask.sum())
        failed_idx = sorted([*failed_idx, *index[failed_mask].tolist()])[:100]
        score = np.where(np.isnan(values), -np.inf, values * (1 if descending else -1))
        best_i = np.concatenate([best_i, index[ok]])
        best_s = np.concatenate([best_s, score[ok]])
        keep = np.lexsort((best_i, -best_s))[:top]  # best first, ties by configuration number
        best_i, best_s = best_i[keep], best_s[keep]
    chosen = best_i.tolist()
    wanted = pa.array(sorted(set(chosen) | set(failed_idx)), pa.int64())
    types = _param_types(space)
    picked = (
        ds.dataset(parts, format="parquet").to_table(filter=pc.is_in(pc.field("index"), value_set=wanted))
        if parts
        else None
    )
    by_index = {rec["index"]: _row_from_record(rec, types) for rec in (picked.to_pylist() if picked else [])}
    return [by_index[i] for i in chosen], [by_index[i] for i in failed_idx], n_ok, n_failed


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (x smaller is better, y larger is better),
    sorted by x. A point equal to another on both axes keeps the first."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    best = -math.inf
    for i in order:
        x, y = points[i]
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        if y > best:
            front.append(i)
            best = y
    return front


# -------------------------------------------------------------------------------------------------- running


def _batch_size(n: int, workers: int, requested: int | None) -> int:
    """Configurations per task: ~64 (a backtest takes ~5 ms, a Dask task costs ~1–3 ms to schedule, so the
    overhead stays under 5 %), fewer when that would leave workers idle; never changes a result."""
    if requested is not None:
        return requested
    return max(1, min(64, math.ceil(n / (4 * max(1, workers)))))


def run_sweep(
    path: str | Path,
    *,
    store_path: str | None,
    registry: Any,
    workers: int | None = None,
    on_result: Callable[[int, int], None] | None = None,
    max_configs: int = DEFAULT_MAX_CONFIGS,
    cluster: str | None = None,
    dataset: str | Path | None = None,
    batch: int | None = None,
    engine: Any = None,
) -> dict[str, Any]:
    """Run every configuration of the grid file and rank them.

    ``workers``/``cluster`` choose the engine (:func:`perphedge.usecases.engine.make_engine`; an ``engine``
    given here is used as is and not closed). With ``dataset`` (a directory) rows stream to Parquet and a
    re-run computes only the missing ones; without it, more than ``max_configs`` combinations are refused
    before any work and every row is returned under ``all``.
    """
    from perphedge.data.store import default_store_path
    from perphedge.usecases.engine import make_engine

    gdoc, base_doc, base_path = _checked_grid(path, max_configs, workers, cluster)
    space = _space(gdoc)
    _some_valid(path, _configs(space, base_doc))
    rank_by = str(gdoc.get("rank_by", "hedged.sharpe"))
    descending = bool(gdoc.get("descending", True))
    top = int(gdoc.get("top", 20))
    n = space.size
    n_done = 0
    directory = Path(dataset) if dataset is not None else None
    done = None
    if directory is not None:
        done = _open_dataset(directory, _fingerprint(gdoc, base_doc), space, create=True)
        n_done = int(done.sum())
    n_todo = n - n_done
    shared = {
        "space": space,
        "base": base_doc,
        "prepared": _prepare_all(space, base_doc, str(store_path or default_store_path()), registry) if n_todo else {},
    }
    own = engine is None
    if engine is None:
        n_workers = max(1, min(workers or os.cpu_count() or 1, n_todo or 1)) if cluster is None else workers
        engine = make_engine(cluster, n_workers)
    size = _batch_size(n_todo, engine.workers, batch)
    rows: list[dict[str, Any]] = []
    buffer: list[dict[str, Any]] = []
    schema = _schema(space) if directory is not None else None
    completed = n_done
    t0 = last_flush = time.perf_counter()

    def ranges() -> Iterator[tuple[int, int]]:  # runs of consecutive missing configurations, at most `size` long
        start = prev = None
        count = 0
        todo = range(n) if done is None else (i for i in range(n) if not done[i])
        for i in todo:
            if start is None:
                start, prev, count = i, i, 1
                continue
            assert prev is not None
            if i == prev + 1 and count < size:
                prev, count = i, count + 1
                continue
            yield (start, prev + 1)
            start, prev, count = i, i, 1
        if start is not None:
            assert prev is not None
            yield (start, prev + 1)

    try:
        for _i, part in engine.map_batches(_batch, ranges(), shared):
            completed += len(part)
            if directory is not None:
                buffer.extend(part)
                # a part every 4,096 rows or second: memory bounded, and a kill loses at most that much
                if len(buffer) >= 4096 or time.perf_counter() - last_flush >= 1.0:
                    _write_part(directory, buffer, space, schema)
                    buffer, last_flush = [], time.perf_counter()
            else:
                rows.extend(part)
            if on_result:
                on_result(completed, n)
        if directory is not None and buffer:
            _write_part(directory, buffer, space, schema)
    finally:
        if own:
            engine.close()
    elapsed = time.perf_counter() - t0
    result: dict[str, Any] = {
        "schema": "perphedge.sweep/1",
        "grid": str(path),
        "base": str(base_path),
        "configurations": n,
        "workers": engine.workers,
        "engine": engine.describe(),
        "rank_by": rank_by,
        "descending": descending,
        "computed": n_todo,
        "seconds": round(elapsed, 3),
    }
    if directory is not None:
        top_rows, failed, n_ok, n_failed = rank_dataset(
            directory, space, rank_by=rank_by, descending=descending, top=top
        )
        result.update(
            {
                "dataset": str(directory),
                "resumed": n_done,
                "succeeded": n_ok,
                "failed_count": n_failed,
                "top": top_rows,
                "failed": failed,
            }
        )
        return result
    ok = [r for r in rows if "error" not in r]
    failed = [r for r in rows if "error" in r]

    def score(r: dict[str, Any]) -> float:
        v = r.get(rank_by)
        return float("-inf") if v is None else float(v) * (1 if descending else -1)

    ranked = sorted(sorted(ok, key=lambda r: r["index"]), key=score, reverse=True)
    result.update(
        {
            "succeeded": len(ok),
            "failed_count": len(failed),
            "top": ranked[:top],
            "failed": sorted(failed, key=lambda r: r["index"]),
            "all": sorted(rows, key=lambda r: r["index"]),
        }
    )
    return result
