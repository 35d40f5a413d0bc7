"""Use cases of the market store: ``data import``, ``data fetch``, ``data status`` and ``data check``.

Each takes a request object and returns a result document (a JSON-safe dict with a ``schema``).
The adapters only read: :mod:`perphedge.data.importer` parses and validates files into frames,
:class:`perphedge.exchange.ccxt_source.CcxtSource` yields pages from an exchange. What is written,
and in which transactions, is decided here:

* an import writes every file in ONE transaction, after all of them validated: one bad file and
  the store is unchanged; a killed import leaves the store as it was, with its ``imports`` row
  saying ``running`` (then ``failed``: interrupted) until an import of the same source completes;
* a fetch writes each page in its own transaction and resumes each series from its newest stored
  timestamp, so a killed fetch run again ends with exactly the store an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perphedge.data.timeframes import check_timeframe
from perphedge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from perphedge.data.importer import ParsedFile
    from perphedge.data.store import MarketStore
    from perphedge.exchange.ccxt_source import CcxtSource, RetryPolicy

__all__ = [
    "CheckRequest",
    "FetchRequest",
    "FetchResult",
    "ImportOutcome",
    "ImportRequest",
    "SeriesResult",
    "StatusRequest",
    "check",
    "fetch_data",
    "fetch_into",
    "import_data",
    "import_frames",
    "import_parsed",
    "parse_import",
    "status",
]

#: ``progress(label, total)`` starts one task and returns ``update(completed)``.
ProgressFactory = Callable[[str, int], Callable[[int], None]]


# ---------------------------------------------------------------------------------------------- import


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportRequest:
    """``perphedge data import``: a directory in the sample layout, or one OHLCV / funding file.

    The single-file options are None when not given, so that giving one with a directory is refused
    instead of silently ignored.
    """

    path: str | None = None
    sample: bool = False  # the sample history bundled with perphedge instead of ``path``
    kind: str | None = None
    source: str | None = None
    symbol: str | None = None
    timeframe: str | None = None
    columns: str | Mapping[str, str] | None = None
    tz: str | None = None
    interval_hours: float | None = None
    align: bool = False
    store: str | Path | None = None
    label: str | None = None  # what the imports journal calls it (default: the resolved path), e.g. "bundled sample"


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportOutcome:
    """What one import wrote: its ``imports`` row, and the per-file reports."""

    run_id: int
    files: tuple[ParsedFile, ...]

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


_FILE_OPTIONS = ("kind", "source", "symbol", "timeframe", "columns", "tz", "interval_hours", "align")


def parse_import(req: ImportRequest, progress: Callable[[str], None] | None = None) -> list[ParsedFile]:
    """Validate the request and every file it names (nothing is written)."""
    from perphedge.data.importer import is_sample_layout, parse_columns, parse_file, parse_sample

    if req.path is None:
        raise ConfigError("missing PATH: a directory in the sample layout or a file")
    path = Path(req.path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    if path.is_dir():
        if not is_sample_layout(path):
            raise ConfigError(
                f"{path}: a directory must be in the sample layout (prices/, funding/, basis/, sentiment/)"
            )
        given = [f"--{name.replace('_', '-')}" for name in _FILE_OPTIONS if getattr(req, name) not in (None, False)]
        if given:
            raise ConfigError(
                f"`{given[0]}` applies to a single file; a directory in the sample layout is imported as it is"
            )
        return parse_sample(path, progress=progress)
    if not req.kind:
        raise ConfigError("importing a single file needs `--kind ohlcv|funding`, `--source` and `--symbol`")
    if req.kind == "funding" and req.timeframe is not None:
        raise ConfigError("`--timeframe` applies to OHLCV candles, not funding settlements (--kind funding)")
    columns = parse_columns(req.columns) if isinstance(req.columns, str) or req.columns is None else req.columns
    if progress is not None:
        progress(str(path))
    return [
        parse_file(
            path,
            kind=req.kind,
            source=req.source or "",
            symbol=req.symbol or "",
            timeframe=req.timeframe or "1d",
            columns=dict(columns),
            tz=req.tz or "UTC",
            interval_hours=req.interval_hours,
            align=req.align,
        )
    ]


def import_frames(store: MarketStore, files: Sequence[ParsedFile], *, source: str) -> ImportOutcome:
    """Write validated files into ``store`` in ONE transaction, journalled in the ``imports`` table.

    The ``imports`` row is committed as ``running`` first; the rows of every file and the row's
    ``complete`` are committed together. A failure rolls all of it back and marks the row
    ``failed``; a killed process leaves it ``running`` (the next import marks it ``failed``:
    interrupted). ``source`` names what was imported (a path, ``bundled sample``).
    """
    if not files:
        raise DataError(f"{source}: nothing to import")
    run_id = store.begin_run("import", source)
    total = sum(f.rows for f in files)
    try:
        with store.transaction():
            for parsed in files:
                store.upsert(parsed.table, parsed.frame)
            store.finish_run(run_id, state="complete", files=len(files), rows=total)
    except BaseException as exc:
        detail = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else _one_line(exc)
        _record_failure(store, run_id, files=len(files), rows=0, detail=detail)
        raise
    return ImportOutcome(run_id=run_id, files=tuple(files))


def import_parsed(
    store: str | Path | None, files: Sequence[ParsedFile], *, source: str, started: float | None = None
) -> dict[str, Any]:
    """Open the store (created if needed), :func:`import_frames`, and return the import document."""
    from perphedge.data.store import MarketStore

    t0 = time.perf_counter() if started is None else started
    with MarketStore(store) as st:
        outcome = import_frames(st, files, source=source)
        store_path = str(st.path)
    reports = [f.report().as_dict() for f in outcome.files]
    return {
        "schema": "perphedge.data-import/1",
        "store": store_path,
        "import_id": outcome.run_id,
        "source": source,
        "files": reports,
        "rows": outcome.rows,
        "warnings": [w for r in reports for w in r["warnings"]],
        "seconds": round(time.perf_counter() - t0, 3),
    }


def import_data(req: ImportRequest, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``data import``: validate every file first (the store is not even opened when one is bad), then
    write them all in one transaction.

    With ``sample``, the bundled history is rebuilt (hash-checked, byte-identical CSVs) in a temporary
    directory that is removed afterwards, and imported exactly as that directory would be; its files are
    named ``sample:prices/BTC.csv`` in the result.
    """
    if req.sample:
        return _import_sample(req, progress)
    if req.path is None:
        raise ConfigError(
            "missing PATH: a directory in the sample layout or a file (or `--sample` for the bundled history)"
        )
    t0 = time.perf_counter()
    files = parse_import(req, progress)
    return import_parsed(req.store, files, source=req.label or str(Path(req.path).resolve()), started=t0)


def _import_sample(req: ImportRequest, progress: Callable[[str], None] | None) -> dict[str, Any]:
    import tempfile

    from perphedge.data.sample import materialise

    if req.path is not None:
        raise ConfigError(f"give either PATH ({req.path}) or `--sample`, not both")
    given = [
        f"`--{name.replace('_', '-')}`"
        for name in _FILE_OPTIONS
        if (getattr(req, name) is not None and name != "align") or (name == "align" and req.align)
    ]
    if given:
        raise ConfigError(f"{', '.join(given)}: for importing one file, not with `--sample`")
    with tempfile.TemporaryDirectory(prefix="perphedge-sample-") as tmp:
        root = materialise(Path(tmp) / "sample")
        doc = import_data(replace(req, sample=False, path=str(root), label=req.label or "bundled sample"), progress)
        prefix = str(root) + "/"
        for row in doc["files"]:
            row["file"] = f"sample:{Path(row['file']).relative_to(root).as_posix()}"
        doc["warnings"] = [w.replace(prefix, "sample:") for w in doc["warnings"]]
    return doc


# ---------------------------------------------------------------------------------------------- fetch


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchRequest:
    """``perphedge data fetch``: daily (or ``timeframe``) OHLCV of ``spot`` and ``perps``, funding of ``perps``."""

    exchange: str
    since: str
    until: str | None = None
    spot: tuple[str, ...] = ()
    perps: tuple[str, ...] = ()
    timeframe: str = "1d"
    funding: bool = True
    retries: int = 8
    store: str | Path | None = None


@dataclass(slots=True, kw_only=True)
class SeriesResult:
    """What one series fetch did."""

    kind: str  # ohlcv | funding
    symbol: str
    timeframe: str | None
    rows: int = 0
    pages: int = 0
    retries: int = 0
    first: str | None = None
    last: str | None = None
    resumed_from: str | None = None
    notes: list[str] = field(default_factory=list)  # funding interval changes, gaps, venue limits

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "rows": self.rows,
            "pages": self.pages,
            "retries": self.retries,
            "first": self.first,
            "last": self.last,
            "resumed_from": self.resumed_from,
            "notes": list(self.notes),
        }


@dataclass(slots=True, kw_only=True)
class FetchResult:
    """All series of one fetch."""

    exchange: str
    series: list[SeriesResult] = field(default_factory=list)
    instruments: int = 0
    run_id: int | None = None


def _utc_ms(text: str, flag: str) -> int:
    """Epoch ms of an ISO 8601 date or date-time (UTC unless it states an offset)."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except (ValueError, TypeError, AttributeError):
        raise ConfigError(
            f"invalid `{flag}`: must be an ISO 8601 date such as 2024-01-31 or 2024-01-31T08:00Z, was {text!r}"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


_FETCH_SYMBOL = re.compile(r"[A-Za-z0-9._-]+/[A-Za-z0-9._-]+(:[A-Za-z0-9._-]+)?")


def _record_failure(store: MarketStore, run_id: int, *, files: int, rows: int, detail: str) -> None:
    """Mark the run ``failed``; when even that cannot be written (a full disk, a store DuckDB has invalidated),
    leave it: the original error is the one to show, and the run, still ``running``, is marked failed
    (interrupted) by the next import and shown so by ``data status``."""
    with contextlib.suppress(DataError):
        store.finish_run(run_id, state="failed", files=files, rows=rows, detail=detail)


def _symbols(values: Sequence[str], flag: str) -> tuple[str, ...]:
    out: list[str] = []
    for sym in values:
        if not sym:
            raise ConfigError(f"invalid `{flag}`: an empty symbol between commas, was {','.join(values)!r}")
        perp = flag == "--perps"
        if not _FETCH_SYMBOL.fullmatch(sym) or (":" in sym) != perp:
            shape = "BASE/QUOTE:SETTLE such as BTC/USDT:USDT" if perp else "BASE/QUOTE such as BTC/USDT"
            other = " (a perpetual belongs in --perps)" if ":" in sym and not perp else ""
            raise ConfigError(f"invalid `{flag}`: {sym!r} must be {shape}{other}")
        if sym in out:
            raise ConfigError(f"invalid `{flag}`: {sym} is listed twice")
        out.append(sym)
    return tuple(out)


def _window(req: FetchRequest) -> tuple[int, int]:
    check_timeframe(req.timeframe)
    if not req.spot and not req.perps:
        raise ConfigError("nothing to fetch: give `--spot` and/or `--perps` symbols")
    _symbols(req.spot, "--spot")
    _symbols(req.perps, "--perps")
    both = set(req.spot) & set(req.perps)
    if both:
        raise ConfigError(f"{sorted(both)[0]} is given as both --spot and --perps")
    since_ms = _utc_ms(req.since, "--since")
    now_ms = int(time.time() * 1000)
    until_ms = _utc_ms(req.until, "--until") if req.until else now_ms
    if since_ms > now_ms:
        raise ConfigError(f"invalid `--since`: {req.since} is in the future (there is nothing to fetch yet)")
    if until_ms < since_ms:
        if not req.until:
            raise ConfigError(f"invalid `--since`: {req.since} is in the future (there is nothing to fetch yet)")
        raise ConfigError(f"invalid `--until`: {req.until} is before `--since` {req.since}")
    return since_ms, until_ms


def _open_source(req: FetchRequest, client: Any, policy: RetryPolicy | None) -> CcxtSource:
    from perphedge.exchange.ccxt_source import CcxtSource, RetryPolicy

    src = CcxtSource(req.exchange, client=client, policy=policy or RetryPolicy(max_retries=req.retries))
    src.check_symbols(req.spot, req.perps)  # loads the markets: the first request, and the network check
    return src


def _ms(ts: Any) -> int:
    import pandas as pd

    stamp = pd.Timestamp(ts)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value // 1_000_000)


def _label(req: FetchRequest) -> str:
    what = ",".join([*req.spot, *req.perps])
    extra = " +funding" if req.funding and req.perps else ""
    return f"{req.exchange.lower()} {what} {req.timeframe}{extra} {req.since}..{req.until or 'now'}"


def fetch_into(
    store: MarketStore,
    req: FetchRequest,
    *,
    client: Any = None,
    policy: RetryPolicy | None = None,
    progress: ProgressFactory | None = None,
    source: CcxtSource | None = None,
) -> FetchResult:
    """Fetch into an open store: instrument specs, then each series page by page (one transaction
    per page), resuming each from its newest stored timestamp. Journalled in ``imports`` (kind fetch)."""
    since_ms, until_ms = _window(req)
    src = source if source is not None else _open_source(req, client, policy)
    result = FetchResult(exchange=src.id)
    run_id = store.begin_run("fetch", _label(req))
    result.run_id = run_id
    try:
        _fetch_all(store, req, src, result, since_ms, until_ms, progress)
    except BaseException as exc:
        detail = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else _one_line(exc)
        rows = sum(s.rows for s in result.series)
        _record_failure(store, run_id, files=len(result.series), rows=rows, detail=detail)
        raise
    store.finish_run(run_id, state="complete", files=len(result.series), rows=sum(s.rows for s in result.series))
    return result


def _fetch_all(
    store: MarketStore,
    req: FetchRequest,
    src: CcxtSource,
    result: FetchResult,
    since_ms: int,
    until_ms: int,
    progress: ProgressFactory | None,
) -> None:
    from perphedge.exchange.ccxt_source import TIMEFRAME_MS

    instruments = src.instruments(req.perps)
    if instruments:
        result.instruments = store.upsert_instruments(src.id, instruments)

    def task(label: str, step_ms: int) -> Callable[[int], None]:
        total = max((until_ms - since_ms) // step_ms + 1, 1)
        if progress is None:
            return lambda newest: None
        update = progress(label, total)
        return lambda newest: update(min(total, max(0, (newest - since_ms) // step_ms + 1)))

    step = TIMEFRAME_MS[req.timeframe]
    for sym in [*req.spot, *req.perps]:
        res = SeriesResult(kind="ohlcv", symbol=sym, timeframe=req.timeframe)
        result.series.append(res)
        last = _resume_point(store, "candles", src.id, sym, since_ms, step, req.timeframe)
        if last is not None:
            res.resumed_from = str(last)
        tick = task(f"{sym} {req.timeframe}", step)
        pages = src.ohlcv_pages(
            sym, req.timeframe, since_ms, until_ms, resume_ms=None if last is None else _ms(last), counter=res
        )
        for page in pages:
            _store_page(store, page, res)
            tick(page.newest_ms)
        tick(until_ms)  # the series is complete up to `until`, even where the exchange had nothing
    if not req.funding:
        return
    for inst, sym in zip(instruments, req.perps, strict=True):
        res = SeriesResult(kind="funding", symbol=sym, timeframe=None)
        result.series.append(res)
        last = _resume_point(
            store, "funding", src.id, sym, since_ms, int(inst.funding_interval_hours * 3_600_000) * 2, None
        )
        if last is not None:
            res.resumed_from = str(last)
        tick = task(f"{sym} funding", int(inst.funding_interval_hours * 3_600_000))
        pages = src.funding_pages(
            sym,
            since_ms,
            until_ms,
            default_interval=inst.funding_interval_hours,
            resume_ms=None if last is None else _ms(last),
            resume_interval=None if last is None else _last_interval(store, src.id, sym),
            counter=res,
        )
        for page in pages:
            _store_page(store, page, res)
            tick(page.newest_ms)
        tick(until_ms)
        now = _last_interval(store, src.id, sym) if res.rows else None
        if now is not None and abs(now - inst.funding_interval_hours) > 1e-9:
            res.notes.append(
                f"funding settles every {now:g}h at {res.last} but the instrument spec says "
                f"{inst.funding_interval_hours:g}h: the stored interval is used per settlement (plan --as-of reads it)"
            )


def _resume_point(
    store: MarketStore, table: str, source: str, symbol: str, since_ms: int, step_ms: int, timeframe: str | None
) -> Any:
    """The newest stored timestamp to resume the series from, or None to fetch it from ``--since``: when the stored
    series starts later than ``--since`` (an earlier start asked for), resuming would leave the older part out
    (the upserts make fetching the stored part again harmless)."""
    args: list[Any] = [source, symbol] + ([timeframe] if timeframe is not None else [])
    where = "source = ? AND symbol = ?" + (" AND timeframe = ?" if timeframe is not None else "")
    rows = store.query(f"SELECT min(ts) AS first, max(ts) AS last FROM {table} WHERE {where}", args)
    if rows.empty or rows["last"].isna().iloc[0]:
        return None
    if _ms(rows["first"].iloc[0]) > since_ms + step_ms:
        return None
    return rows["last"].iloc[0]


def _last_interval(store: MarketStore, source: str, symbol: str) -> float | None:
    """The funding interval in force at the newest stored settlement of ``source`` ``symbol`` (None: none stored)."""
    rows = store.query(
        "SELECT interval_hours FROM funding WHERE source = ? AND symbol = ? ORDER BY ts DESC LIMIT 1", [source, symbol]
    )
    return None if rows.empty else float(rows["interval_hours"].iloc[0])


def _store_page(store: MarketStore, page: Any, res: SeriesResult) -> None:
    """One page, one transaction: a kill loses at most the page in flight."""
    res.notes.extend(getattr(page, "notes", ()))
    if page.frame.empty:
        return  # a page of notes only (e.g. the venue's history limit)
    store.upsert(page.table, page.frame)
    res.rows += len(page.frame)
    res.pages += 1
    res.first = res.first or str(page.frame["ts"].min())
    res.last = str(page.frame["ts"].max())


def fetch_data(
    req: FetchRequest,
    *,
    client: Any = None,
    policy: RetryPolicy | None = None,
    progress: ProgressFactory | None = None,
) -> dict[str, Any]:
    """``data fetch``: reach the exchange first (a missing network fails before the store is touched),
    then fetch into the store; returns the fetch document."""
    from perphedge.data.store import MarketStore

    t0 = time.perf_counter()
    _window(req)
    src = _open_source(req, client, policy)
    with MarketStore(req.store) as st:
        result = fetch_into(st, req, progress=progress, source=src)
        store_path = str(st.path)
    return {
        "schema": "perphedge.data-fetch/1",
        "exchange": result.exchange,
        "store": store_path,
        "fetch_id": result.run_id,
        "instruments": result.instruments,
        "series": [s.as_dict() for s in result.series],
        "notes": [f"{s.symbol}: {n}" for s in result.series for n in s.notes],
        "seconds": round(time.perf_counter() - t0, 3),
    }


# ---------------------------------------------------------------------------------------------- status, check


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRequest:
    """``perphedge data status``."""

    store: str | Path | None = None
    history: int = 10


def status(req: StatusRequest) -> dict[str, Any]:
    """Series coverage, instrument specs, recent imports and fetches, and the unfinished ones."""
    from perphedge.data import quality
    from perphedge.data.store import MarketStore

    if req.history < 0:
        raise ConfigError(f"invalid `history`: must be >= 0, was {req.history}")
    with MarketStore(req.store, read_only=True) as st:
        series = quality.status(st)
        instruments = st.instruments()
        runs = st.runs(req.history)
        unfinished = st.unfinished_runs()
        path = str(st.path)
    return {
        "schema": "perphedge.data-status/1",
        "store": path,
        "complete": not unfinished,
        "incomplete": unfinished,
        "series": [s.as_dict() for s in series],
        "instruments": [f"{i['source']}:{i['symbol']}" for i in instruments],
        "imports": runs,
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckRequest:
    """``perphedge data check``."""

    store: str | Path | None = None
    outlier_z: float = 10.0
    stale_days: int = 7


def check(req: CheckRequest) -> dict[str, Any]:
    """Quality findings of the store (unfinished imports first)."""
    from perphedge.data import quality
    from perphedge.data.store import MarketStore

    if not math.isfinite(req.outlier_z) or req.outlier_z <= 0:
        raise ConfigError(f"invalid `--outlier-z`: must be a number > 0, was {req.outlier_z:g}")
    if req.stale_days < 0:
        raise ConfigError(f"invalid `--stale-days`: must be >= 0, was {req.stale_days}")
    with MarketStore(req.store, read_only=True) as st:
        findings = quality.check(st, outlier_z=req.outlier_z, stale_days=req.stale_days)
        path = str(st.path)
    return {"schema": "perphedge.data-check/1", "store": path, "findings": [f.as_dict() for f in findings]}


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
