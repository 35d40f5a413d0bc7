"""``perphedge data``: import, fetch, status and check of the market store.

Each command parses its options into a request, calls its use case in
:mod:`perphedge.usecases.data` and renders the result document; the store is opened there.
"""

from __future__ import annotations

import json
import sys
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
    if stderr:
        from rich.console import Console

        return Console(stderr=True, highlight=False)
    from perphedge.cli import _console as make

    return make()


def _split(text: str | None) -> tuple[str, ...]:
    """Comma-separated symbols; an empty item (``BTC/USDT,,``) is kept for the use case to refuse."""
    items = tuple(s.strip() for s in (text or "").split(","))
    return items if any(items) else ()


def _json(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def render_import(doc: dict[str, Any], fmt: str) -> None:
    """Print a ``perphedge.data-import/1`` document as a table (warnings on stderr) or JSON."""
    if fmt == "json":
        _json(doc)
        return
    from rich.table import Table

    t = Table(title=f"Imported into {doc['store']} (import #{doc['import_id']})", title_justify="left")
    for col in ("table", "source", "symbol", "rows", "first", "last"):
        t.add_column(col, justify="right" if col == "rows" else "left")
    for r in doc["files"]:
        t.add_row(r["table"], r["source"], r["symbol"], f"{r['rows']:,}", r["first"] or "-", r["last"] or "-")
    console = _console()
    console.print(t)
    console.print(f"{len(doc['files'])} files, {doc['rows']:,} rows in {doc['seconds']:.2f} s (one transaction)")
    for warning in doc["warnings"]:
        print(f"perphedge: warning: {warning}", file=sys.stderr)


@data_app.command(
    "import",
    help=(
        "Import history into the store: the sample history bundled with perphedge (--sample, offline), a "
        "directory in the sample-data layout, or one OHLCV / funding CSV or Parquet file. Every file is validated "
        "before anything is written, and all of them are written in one transaction: one bad file (reported with "
        "its line and reason) and the store is unchanged. Timestamps: ISO 8601 or epoch s/ms (one unit and one time "
        "zone per file), years 2009..next year, candles on their timeframe's boundary (1d at 00:00 UTC; --align "
        "snaps them).\n\n"
        "Example:\n\n"
        "  perphedge data import --sample\n\n"
        "  perphedge data import ../shared/data\n\n"
        "  perphedge data import my.csv --kind ohlcv --source kraken --symbol SOL/USD "
        "--columns timestamp=Date,close=Close,open=Open,high=High,low=Low,volume=Vol --tz Europe/London"
    ),
    no_args_is_help=True,
)
def import_cmd(
    path: Annotated[
        str | None, typer.Argument(help="Directory in the sample layout, or a .csv / .parquet file.")
    ] = None,
    sample: Annotated[
        bool, typer.Option("--sample", help="Import the sample history bundled with perphedge (offline).")
    ] = False,
    kind: Annotated[str | None, typer.Option(help="ohlcv or funding (single file).")] = None,
    source: Annotated[str | None, typer.Option(help="Source name, e.g. binance (single file).")] = None,
    symbol: Annotated[str | None, typer.Option(help="Symbol, e.g. SOL/USDT or BTC/USDT:USDT (single file).")] = None,
    timeframe: Annotated[
        str | None, typer.Option(help="Candle timeframe of an OHLCV file: 1m 5m 15m 1h 4h 8h 1d 1w (default 1d).")
    ] = None,
    columns: Annotated[str | None, typer.Option(help="Map columns ours=theirs: timestamp=Date,close=Close,...")] = None,
    tz: Annotated[
        str | None, typer.Option(help="Time zone of timestamps without one (IANA name; default UTC).")
    ] = None,
    interval_hours: Annotated[float | None, typer.Option(help="Funding interval when the file has none.")] = None,
    align: Annotated[
        bool, typer.Option("--align", help="Snap candles to the nearest timeframe boundary instead of refusing.")
    ] = False,
    store: StoreOpt = None,
    fmt: FormatOpt = "table",
) -> None:
    from perphedge.usecases.data import ImportRequest, import_data

    fmt = _fmt(fmt)
    req = ImportRequest(
        path=path,
        sample=sample,
        kind=kind,
        source=source,
        symbol=symbol,
        timeframe=timeframe,
        columns=columns,
        tz=tz,
        interval_hours=interval_hours,
        align=align,
        store=store,
    )
    err = _console(stderr=True)
    if err.is_terminal:
        from rich.progress import Progress

        with Progress(transient=True, console=err) as progress:
            task = progress.add_task("validating", total=None)
            doc = import_data(req, progress=lambda f: progress.update(task, description=f"validating {f}"))
    else:
        doc = import_data(req)
    render_import(doc, fmt)


def _fetch_logging() -> None:
    """Retry warnings: one plain line each on stderr (no level column, no doubled prefix)."""
    import logging

    log = logging.getLogger("perphedge.fetch")
    for handler in list(log.handlers):
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("perphedge: warning: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False


@data_app.command(
    help=(
        "Fetch daily OHLCV, funding history and contract specs through ccxt into the store. Interrupt it "
        "(Ctrl-C, or worse) and run it again: it continues where it stopped and ends with the same data. "
        "An exchange that cannot be reached fails within seconds.\n\n"
        "Example:\n\n"
        "  perphedge data fetch --exchange binance --spot BTC/USDT,SOL/USDT --perps BTC/USDT:USDT,BTC/USD:BTC "
        "--since 2020-01-01"
    ),
    no_args_is_help=True,
)
def fetch(
    exchange: Annotated[str, typer.Option(help="binance, bybit, okx or hyperliquid.")],
    since: Annotated[str, typer.Option(help="First date (UTC, ISO 8601), e.g. 2020-01-01.")],
    spot: Annotated[str | None, typer.Option(help="Spot symbols, comma-separated: BTC/USDT,SOL/USDT.")] = None,
    perps: Annotated[
        str | None, typer.Option(help="Perpetuals, comma-separated: BTC/USDT:USDT (linear), BTC/USD:BTC (inverse).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Last date (UTC, ISO 8601); default now.")] = None,
    timeframe: Annotated[str, typer.Option(help="Candle timeframe: 1m 5m 15m 1h 4h 8h 1d 1w.")] = "1d",
    funding: Annotated[
        bool, typer.Option("--funding/--no-funding", help="Also fetch perpetual funding history.")
    ] = True,
    retries: Annotated[int, typer.Option(help="Retries of a failed request (backoff with jitter).")] = 8,
    store: StoreOpt = None,
    fmt: FormatOpt = "table",
    futures: Annotated[
        str | None,
        typer.Option(
            "--futures",
            help="Instead: the dated futures of this coin the venue lists (e.g. BTC: BTCUSD_YYMMDD), their daily "
            "candles with each contract's expiry.",
        ),
    ] = None,
) -> None:
    from perphedge.usecases.data import FetchRequest, fetch_data

    fmt = _fmt(fmt)
    if futures is not None:  # dated futures (usecases/data_futures.py)
        from perphedge.errors import ConfigError

        if timeframe != "1d" or not funding:  # they fetch daily candles only: refuse rather than ignore
            flag = "--timeframe" if timeframe != "1d" else "--no-funding"
            raise ConfigError(f"invalid `{flag}`: --futures fetches the contracts' daily candles only; leave it out")
        _fetch_futures(exchange, futures, since, until, spot, perps, retries, store, fmt)
        return
    req = FetchRequest(
        exchange=exchange,
        since=since,
        until=until,
        spot=_split(spot),
        perps=_split(perps),
        timeframe=timeframe,
        funding=funding,
        retries=retries,
        store=store,
    )
    _fetch_logging()
    err = _console(stderr=True)
    try:
        if err.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=err) as progress:

                def start(label: str, total: int) -> Any:
                    tid = progress.add_task(label, total=total)
                    return lambda completed: progress.update(tid, completed=completed)

                doc = fetch_data(req, progress=start)
        else:
            doc = fetch_data(req)
    except KeyboardInterrupt:
        err.print("interrupted: what was fetched is stored; run the same command again to continue")
        raise
    if fmt == "json":
        _json(doc)
        return
    from rich.table import Table

    t = Table(title=f"Fetched from {doc['exchange']} into {doc['store']}", title_justify="left")
    for col in ("series", "rows written", "pages", "retries", "first", "last", "resumed from"):
        t.add_column(col, justify="right" if col in ("rows written", "pages", "retries") else "left")
    for r in doc["series"]:
        t.add_row(
            f"{r['symbol']} {r['timeframe'] or 'funding'}",
            f"{r['rows']:,}",
            str(r["pages"]),
            str(r["retries"]),
            r["first"] or "-",
            r["last"] or "-",
            r["resumed_from"] or "",
        )
    console = _console()
    console.print(t)
    for note in doc.get("notes", []):
        console.print(f"note: {note}")
    console.print(f"{doc['instruments']} instrument specs stored; {doc['seconds']:.1f} s")


def _incomplete_lines(runs: list[dict[str, Any]]) -> list[str]:
    out = []
    for run in runs:
        why = f" ({run['detail']})" if run["detail"] else ""
        out.append(
            f"INCOMPLETE: {run['kind']} #{run['id']} of {run['source']} started {str(run['started'])[:19]} is "
            f"{run['state']}{why}; what it was writing is not in the store: run it again"
        )
    return out


@data_app.command(
    help="Show what the store holds: series, first/last, rows, missing slots; and imports or fetches that did not "
    "finish.\n\nExample:\n\n  perphedge data status --format json"
)
def status(store: StoreOpt = None, fmt: FormatOpt = "table") -> None:
    from perphedge.usecases.data import StatusRequest
    from perphedge.usecases.data import status as run_status

    fmt = _fmt(fmt)
    doc = run_status(StatusRequest(store=store))
    if fmt == "json":
        _json(doc)
        return
    from rich.table import Table

    console = _console()
    for line in _incomplete_lines(doc["incomplete"]):
        console.print(line, style="bold red", markup=False)
    t = Table(title=f"Market store {doc['store']}", title_justify="left")
    for col in ("table", "source", "symbol", "timeframe", "first", "last", "rows", "missing"):
        t.add_column(col, justify="right" if col in ("rows", "missing") else "left")
    for s in doc["series"]:
        t.add_row(
            s["table"],
            s["source"],
            s["symbol"],
            s["timeframe"],
            s["first"][:16],
            s["last"][:16],
            f"{s['rows']:,}",
            f"{s['missing']:,}" if s["missing"] else "",
        )
    console.print(t)
    if doc["instruments"]:
        console.print("instrument specs: " + ", ".join(doc["instruments"]))
    if doc["imports"]:
        last = doc["imports"][0]
        console.print(
            f"last {last['kind']}: #{last['id']} {last['state']} {str(last['started'])[:19]}, "
            f"{last['files']} files/series, {last['rows']:,} rows ({last['source']})"
        )


@data_app.command(
    help=(
        "Check the store: imports that did not finish, gaps, duplicates, OHLC violations, outliers (robust z-score "
        "of log returns), stale and flat series. --strict exits 1 when anything is found.\n\nExample:\n\n"
        "  perphedge data check --format json"
    )
)
def check(
    outlier_z: Annotated[float, typer.Option(help="Flag returns beyond this many robust sigmas.")] = 10.0,
    stale_days: Annotated[int, typer.Option(help="Flag series ending this many days before the newest.")] = 7,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any finding is reported.")] = False,
    store: StoreOpt = None,
    fmt: FormatOpt = "table",
) -> None:
    from perphedge.usecases.data import CheckRequest
    from perphedge.usecases.data import check as run_check

    fmt = _fmt(fmt)
    doc = run_check(CheckRequest(store=store, outlier_z=outlier_z, stale_days=stale_days))
    findings = doc["findings"]
    if fmt == "json":
        _json(doc)
    else:
        from rich.table import Table

        t = Table(title=f"Quality of {doc['store']}: {len(findings)} findings", title_justify="left")
        for col in ("kind", "series", "count", "detail", "examples"):
            t.add_column(col, justify="right" if col == "count" else "left")
        for f in findings:
            t.add_row(
                f["kind"],
                f"{f['table']} {f['source']} {f['symbol']}",
                f"{f['count']:,}",
                f["detail"],
                "\n".join(f["examples"][:3]),
            )
        _console().print(t)
    if strict and findings:
        raise typer.Exit(1)


def _fetch_futures(
    exchange: str,
    underlying: str,
    since: str,
    until: str | None,
    spot: str | None,
    perps: str | None,
    retries: int,
    store: str | None,
    fmt: str,
) -> None:
    from perphedge.errors import ConfigError
    from perphedge.usecases.data_futures import fetch_futures

    if spot or perps:
        raise ConfigError("invalid `--futures`: fetch dated futures on their own, without --spot or --perps")
    _fetch_logging()
    doc = fetch_futures(
        exchange=exchange, underlying=underlying, since=since, until=until, store_path=store, retries=retries
    )
    if fmt == "json":
        _json(doc)
        return
    from rich.table import Table

    t = Table(
        title=f"Dated futures of {doc['underlying']} from {doc['exchange']} into {doc['store']}", title_justify="left"
    )
    for col in ("contract", "ccxt symbol", "delivery", "listed", "rows written", "first", "last"):
        t.add_column(col, justify="right" if col == "rows written" else "left")
    for c in doc["contracts"]:
        t.add_row(
            c["contract"],
            c["ccxt_symbol"],
            c["expiry"],
            "yes" if c["listed"] else "delivered",
            f"{c['rows']:,}",
            c["first"] or "—",
            c["last"] or "—",
        )
    _console().print(t)
