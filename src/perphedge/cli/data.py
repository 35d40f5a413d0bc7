"""``perphedge data``: import, fetch, status and check of the market store."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

data_app = typer.Typer(
    name="data",
    help="The market store (DuckDB): import files, fetch from exchanges, show coverage, check quality.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Store file (default: $PERPHEDGE_HOME/market.duckdb, ~/.perphedge/market.duckdb)."),
]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table or json.")]


def _fmt(value: str) -> str:
    from perphedge.errors import ConfigError

    if value not in ("table", "json"):
        raise ConfigError(f"invalid `--format`: must be table or json, was {value!r}")
    return value


def _console(stderr: bool = False) -> Any:
    from perphedge.cli import _console as make

    console = make()
    if stderr:
        from rich.console import Console

        return Console(stderr=True, highlight=False)
    return console


def _split(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _import_arg(path: str | None) -> Path:
    from perphedge.errors import ConfigError

    if path is None:
        raise ConfigError(
            "missing PATH: a directory in the sample layout or a file (or `--sample` for the bundled history)"
        )
    return Path(path)


def _sample_root(ctx: typer.Context, path: str | None, single_file_options: dict[str, object]) -> Path:
    """``--sample``: the bundled history rebuilt (hash-checked, byte-identical CSVs) in a directory that is
    removed when the command ends; it then imports like any directory in the sample layout."""
    import tempfile

    from perphedge.data.sample import materialise
    from perphedge.errors import ConfigError

    if path is not None:
        raise ConfigError(f"give either PATH ({path}) or `--sample`, not both")
    given = [f"`--{name}`" for name, value in single_file_options.items() if value is not None]
    if given:
        raise ConfigError(f"{', '.join(given)}: for importing one file, not with `--sample`")
    tmp = ctx.with_resource(tempfile.TemporaryDirectory(prefix="perphedge-sample-"))
    return materialise(Path(tmp) / "sample")


@data_app.command(
    "import",
    help=(
        "Import history into the store: the sample history bundled with perphedge (--sample, offline), a "
        "directory in the sample-data layout, or one OHLCV / funding CSV or Parquet file. A bad file is "
        "rejected with its line and reason and nothing of it is written.\n\n"
        "Example:\n\n"
        "  perphedge data import --sample\n\n"
        "  perphedge data import ../shared/data\n\n"
        "  perphedge data import my.csv --kind ohlcv --source kraken --symbol SOL/USD "
        "--columns timestamp=Date,close=Close,open=Open,high=High,low=Low,volume=Vol --tz Europe/London"
    ),
    no_args_is_help=True,
)
def import_cmd(
    ctx: typer.Context,
    path: Annotated[
        str | None, typer.Argument(help="Directory in the sample layout, or a .csv / .parquet file.")
    ] = None,
    sample: Annotated[
        bool, typer.Option("--sample", help="Import the sample history bundled with perphedge (offline).")
    ] = False,
    kind: Annotated[str | None, typer.Option(help="ohlcv or funding (single file).")] = None,
    source: Annotated[str | None, typer.Option(help="Source name, e.g. binance (single file).")] = None,
    symbol: Annotated[str | None, typer.Option(help="Symbol, e.g. SOL/USDT or BTC/USDT:USDT (single file).")] = None,
    timeframe: Annotated[str, typer.Option(help="Candle timeframe of an OHLCV file.")] = "1d",
    columns: Annotated[str | None, typer.Option(help="Map columns ours=theirs: timestamp=Date,close=Close,...")] = None,
    tz: Annotated[str, typer.Option(help="Time zone of timestamps without one (IANA name).")] = "UTC",
    interval_hours: Annotated[float | None, typer.Option(help="Funding interval when the file has none.")] = None,
    store: StoreOpt = None,
    fmt: FormatOpt = "table",
) -> None:
    from perphedge.data.importer import import_path, is_sample_layout, parse_columns
    from perphedge.data.store import MarketStore
    from perphedge.errors import ConfigError

    fmt = _fmt(fmt)
    p = (
        _sample_root(
            ctx,
            path,
            {"kind": kind, "source": source, "symbol": symbol, "columns": columns, "interval-hours": interval_hours},
        )
        if sample
        else _import_arg(path)
    )
    if not p.exists():
        raise ConfigError(f"{p}: no such file or directory")
    if p.is_dir() and not is_sample_layout(p):
        raise ConfigError(f"{p}: a directory must be in the sample layout (prices/, funding/, basis/, sentiment/)")
    t0 = time.perf_counter()
    with MarketStore(store) as st:
        if p.is_dir():
            from rich.progress import Progress

            with Progress(transient=True, console=_console(stderr=True)) as progress:
                files = sorted(p.glob("*/*.csv"))
                task = progress.add_task("importing", total=len(files))
                reports = import_path(
                    st, p, progress=lambda f: progress.update(task, advance=1, description=Path(f).name)
                )
        else:
            if not kind:
                raise ConfigError("importing a single file needs `--kind ohlcv|funding`, `--source` and `--symbol`")
            reports = import_path(
                st,
                p,
                kind=kind,
                source=source or "",
                symbol=symbol or "",
                timeframe=timeframe,
                columns=parse_columns(columns),
                tz=tz,
                interval_hours=interval_hours,
            )
        store_path = str(st.path)
    elapsed = time.perf_counter() - t0
    rows: list[dict[str, Any]] = [
        {
            "file": f"sample:{Path(r.file).relative_to(p).as_posix()}" if sample else r.file,
            "table": r.table,
            "source": r.source,
            "symbol": r.symbol,
            "timeframe": r.timeframe,
            "rows": r.rows,
            "first": r.first,
            "last": r.last,
        }
        for r in reports
    ]
    if fmt == "json":
        sys.stdout.write(
            json.dumps(
                {
                    "schema": "perphedge.data-import/1",
                    "store": store_path,
                    "files": rows,
                    "rows": sum(r["rows"] for r in rows),
                    "seconds": round(elapsed, 3),
                },
                indent=2,
            )
            + "\n"
        )
        return
    from rich.table import Table

    t = Table(title=f"Imported into {store_path}", title_justify="left")
    for col in ("table", "source", "symbol", "rows", "first", "last"):
        t.add_column(col, justify="right" if col == "rows" else "left")
    for r in rows:
        t.add_row(r["table"], r["source"], r["symbol"], f"{r['rows']:,}", r["first"] or "-", r["last"] or "-")
    console = _console()
    console.print(t)
    console.print(f"{len(rows)} files, {sum(r['rows'] for r in rows):,} rows in {elapsed:.2f} s")


@data_app.command(
    help=(
        "Fetch daily OHLCV, funding history and contract specs through ccxt into the store. Interrupt it "
        "(Ctrl-C, or worse) and run it again: it continues where it stopped and ends with the same data.\n\n"
        "Example:\n\n"
        "  perphedge data fetch --exchange binance --spot BTC/USDT,SOL/USDT --perps BTC/USDT:USDT,BTC/USD:BTC "
        "--since 2020-01-01"
    ),
    no_args_is_help=True,
)
def fetch(
    exchange: Annotated[str, typer.Option(help="binance or bybit.")],
    since: Annotated[str, typer.Option(help="First date (UTC), e.g. 2020-01-01.")],
    spot: Annotated[str | None, typer.Option(help="Spot symbols, comma-separated: BTC/USDT,SOL/USDT.")] = None,
    perps: Annotated[
        str | None, typer.Option(help="Perpetuals, comma-separated: BTC/USDT:USDT (linear), BTC/USD:BTC (inverse).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Last date (UTC); default now.")] = None,
    timeframe: Annotated[str, typer.Option(help="Candle timeframe.")] = "1d",
    funding: Annotated[
        bool, typer.Option("--funding/--no-funding", help="Also fetch perpetual funding history.")
    ] = True,
    retries: Annotated[int, typer.Option(help="Retries of a failed request (backoff with jitter).")] = 8,
    store: StoreOpt = None,
    fmt: FormatOpt = "table",
) -> None:
    import logging

    from rich.logging import RichHandler
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from perphedge.data.store import MarketStore
    from perphedge.exchange.ccxt_source import RetryPolicy
    from perphedge.exchange.ccxt_source import fetch as run_fetch

    fmt = _fmt(fmt)
    err = _console(stderr=True)
    logging.basicConfig(level=logging.WARNING, handlers=[RichHandler(console=err, show_path=False)], force=True)
    t0 = time.perf_counter()
    with (
        MarketStore(store) as st,
        Progress(
            TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
        ) as progress,
    ):
        try:
            result = run_fetch(
                st,
                exchange,
                spot=_split(spot),
                perps=_split(perps),
                since=since,
                until=until,
                timeframe=timeframe,
                funding=funding,
                policy=RetryPolicy(max_retries=retries),
                progress=progress,
            )
        except KeyboardInterrupt:
            err.print("interrupted: what was fetched is stored; run the same command again to continue")
            raise
        store_path = str(st.path)
    elapsed = time.perf_counter() - t0
    rows: list[dict[str, Any]] = [
        {
            "kind": s.kind,
            "symbol": s.symbol,
            "timeframe": s.timeframe,
            "rows": s.rows,
            "pages": s.pages,
            "retries": s.retries,
            "first": s.first,
            "last": s.last,
            "resumed_from": s.resumed_from,
        }
        for s in result.series
    ]
    if fmt == "json":
        sys.stdout.write(
            json.dumps(
                {
                    "schema": "perphedge.data-fetch/1",
                    "exchange": result.exchange,
                    "store": store_path,
                    "instruments": result.instruments,
                    "series": rows,
                    "seconds": round(elapsed, 3),
                },
                indent=2,
            )
            + "\n"
        )
        return
    from rich.table import Table

    t = Table(title=f"Fetched from {result.exchange} into {store_path}", title_justify="left")
    for col in ("series", "rows written", "pages", "retries", "first", "last", "resumed from"):
        t.add_column(col, justify="right" if col in ("rows written", "pages", "retries") else "left")
    for r in rows:
        label = f"{r['symbol']} {r['timeframe'] or 'funding'}"
        t.add_row(
            label,
            f"{r['rows']:,}",
            str(r["pages"]),
            str(r["retries"]),
            r["first"] or "-",
            r["last"] or "-",
            r["resumed_from"] or "",
        )
    console = _console()
    console.print(t)
    console.print(f"{result.instruments} instrument specs stored; {elapsed:.1f} s")


@data_app.command(
    help="Show what the store holds: series, first/last, rows, missing slots.\n\nExample:\n\n"
    "  perphedge data status --format json"
)
def status(store: StoreOpt = None, fmt: FormatOpt = "table") -> None:
    from perphedge.data import quality
    from perphedge.data.store import MarketStore

    fmt = _fmt(fmt)
    with MarketStore(store, read_only=True) as st:
        series = quality.status(st)
        instruments = st.instruments()
        path = str(st.path)
    if fmt == "json":
        sys.stdout.write(
            json.dumps(
                {
                    "schema": "perphedge.data-status/1",
                    "store": path,
                    "series": [s.as_dict() for s in series],
                    "instruments": [f"{i['source']}:{i['symbol']}" for i in instruments],
                },
                indent=2,
            )
            + "\n"
        )
        return
    from rich.table import Table

    t = Table(title=f"Market store {path}", title_justify="left")
    for col in ("table", "source", "symbol", "timeframe", "first", "last", "rows", "missing"):
        t.add_column(col, justify="right" if col in ("rows", "missing") else "left")
    for s in series:
        t.add_row(
            s.table,
            s.source,
            s.symbol,
            s.timeframe,
            s.first[:16],
            s.last[:16],
            f"{s.rows:,}",
            f"{s.missing:,}" if s.missing else "",
        )
    console = _console()
    console.print(t)
    if instruments:
        console.print("instrument specs: " + ", ".join(f"{i['source']}:{i['symbol']}" for i in instruments))


@data_app.command(
    help=(
        "Check the store: gaps, duplicates, OHLC violations, outliers (robust z-score of log returns), stale and "
        "flat series. --strict exits 1 when anything is found.\n\nExample:\n\n  perphedge data check --format json"
    )
)
def check(
    outlier_z: Annotated[float, typer.Option(help="Flag returns beyond this many robust sigmas.")] = 10.0,
    stale_days: Annotated[int, typer.Option(help="Flag series ending this many days before the newest.")] = 7,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any finding is reported.")] = False,
    store: StoreOpt = None,
    fmt: FormatOpt = "table",
) -> None:
    from perphedge.data import quality
    from perphedge.data.store import MarketStore

    fmt = _fmt(fmt)
    with MarketStore(store, read_only=True) as st:
        findings = quality.check(st, outlier_z=outlier_z, stale_days=stale_days)
        path = str(st.path)
    if fmt == "json":
        sys.stdout.write(
            json.dumps(
                {"schema": "perphedge.data-check/1", "store": path, "findings": [f.as_dict() for f in findings]},
                indent=2,
            )
            + "\n"
        )
    else:
        from rich.table import Table

        t = Table(title=f"Quality of {path}: {len(findings)} findings", title_justify="left")
        for col in ("kind", "series", "count", "detail", "examples"):
            t.add_column(col, justify="right" if col == "count" else "left")
        for f in findings:
            t.add_row(f.kind, f"{f.table} {f.source} {f.symbol}", f"{f.count:,}", f.detail, "\n".join(f.examples[:3]))
        _console().print(t)
    if strict and findings:
        raise typer.Exit(1)
