"""``perphedge backtest`` and ``perphedge sweep``."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from perphedge.cli.options import positive_whole
from perphedge.errors import ConfigError


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


def _f(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _num(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def render(doc: dict[str, Any], files: list[str], console: Any) -> None:
    from rich.table import Table

    t = Table(
        title=f"{doc.get('name') or doc['source']}: {doc['start']} → {doc['end']} ({doc['days']} days), "
        f"policy {doc['policy']['kind']}",
        title_justify="left",
    )
    for col in (
        "",
        "start USD",
        "end USD",
        "total",
        "annual",
        "volatility",
        "max drawdown",
        "Sharpe",
        "Sortino",
        "CVaR 95%",
    ):
        t.add_column(col, justify="left" if not col else "right")
    for label in ("hedged", "unhedged"):
        b = doc[label]
        t.add_row(
            label,
            f"{b['start_value_usd']:,.0f}",
            f"{b['end_value_usd']:,.0f}",
            _pct(b["total_return"]),
            _pct(b["annual_return"]),
            _f(b["volatility"], ".1%"),
            f"{_f(b['max_drawdown'], '.1%')} ({b['max_drawdown_peak']} → {b['max_drawdown_trough']})",
            _num(b["sharpe"]),
            _num(b["sortino"]),
            _f(b["cvar_95"], ".2%"),
        )
    console.print(t)
    if doc.get("btc_terms"):
        bt = doc["btc_terms"]
        console.print(
            f"in BTC: hedged {bt['hedged']['start_value_btc']:.4f} → {bt['hedged']['end_value_btc']:.4f} BTC "
            f"({_pct(bt['hedged']['total_return'])}), unhedged {bt['unhedged']['start_value_btc']:.4f} → "
            f"{bt['unhedged']['end_value_btc']:.4f} BTC ({_pct(bt['unhedged']['total_return'])})"
        )
    console.print(
        f"hedge effectiveness {_num(doc['hedge_effectiveness'])}; downside capture {_num(doc['downside_capture'])}, "
        f"upside capture {_num(doc['upside_capture'])}; funding {doc['funding_received_usd']:+,.0f} USD "
        f"(+ = received); fees {doc['fees_usd']:,.0f} USD; slippage {doc['slippage_usd']:,.0f} USD; "
        f"top-ups {doc['top_ups_usd']:,.0f} USD; {doc['rebalances']} rebalances; {doc['days_hedged']} days hedged"
    )
    if doc.get("defi"):
        from perphedge.usecases.backtest_defi import summary_lines

        for line in summary_lines(doc["defi"]):
            console.print(line, highlight=False)
        for a in doc["defi"]["assumptions"]:
            console.print(f"assumed: {a}", highlight=False)
    if doc["liquidations"]:
        lt = Table(
            title="Liquidations (the leg closes at the bankruptcy price: its margin is lost)", title_justify="left"
        )
        for col in ("date", "instrument", "price", "margin lost USD"):
            lt.add_column(col, justify="right" if col in ("price", "margin lost USD") else "left")
        for x in doc["liquidations"]:
            lt.add_row(x["date"], x["instrument"], f"{x['price']:,.2f}", f"{x['loss_usd']:,.0f}")
        console.print(lt)
    fallbacks = doc.get("policy_fallbacks") or []
    if fallbacks:
        ft = Table(
            title=f"Policy fallbacks ({len(fallbacks)}): bars where the policy's rule could not apply as stated",
            title_justify="left",
        )
        for col in ("when", "days", "reason", "ratio used"):
            ft.add_column(col, justify="right" if col in ("days", "ratio used") else "left")
        for f in fallbacks:
            when = f["date"] if "date" in f else f"{f['from']} → {f['to']}"
            ft.add_row(when, str(f.get("days", 1)), f["reason"], f"{f['ratio_used']:g}")
        console.print(ft)
    for w in doc["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    for f in files:
        console.print(f"wrote {f}")


def backtest_cmd(
    run_file: Annotated[str, typer.Argument(help="Run file (YAML).")],
    out: Annotated[
        str | None,
        typer.Option(help="Directory for report.html and result.json (default: backtest-results/<run name>)."),
    ] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip report.html.")] = False,
    store: Annotated[str | None, typer.Option("--store", help="Market store file.")] = None,
    specs: Annotated[str | None, typer.Option("--specs", help="Extra instrument spec file.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    from perphedge.usecases.backtest import BacktestRequest, execute

    if fmt not in ("table", "json"):
        raise ConfigError(f"invalid `--format`: must be table or json, was {fmt!r}")
    outcome = execute(
        BacktestRequest(run_file=run_file, store_path=store, specs=specs, out_dir=out, report=not no_report)
    )
    result, files = outcome.document, outcome.files
    if fmt == "json":
        sys.stdout.write(json.dumps(result | {"files": files}, indent=2, allow_nan=False) + "\n")
    else:
        from perphedge.cli import _console

        if result.get("schema") == "perphedge.backtest-futures/1":
            from perphedge.cli.backtest_futures import render as render_dated

            render_dated(result, files, _console())
            return
        render(result, files, _console())


def sweep_cmd(
    grid_file: Annotated[str, typer.Argument(help="Grid file (YAML): base run file, grid of dotted keys.")],
    workers: Annotated[
        int | None, typer.Option(parser=positive_whole, help="Processes, >= 1 (default: all cores).")
    ] = None,
    out: Annotated[str | None, typer.Option(help="Write sweep.json here.")] = None,
    max_configs: Annotated[
        int,
        typer.Option(
            "--max-configs",
            parser=positive_whole,
            help="Refuse grids of more combinations than this (before any work).",
        ),
    ] = 10_000,
    store: Annotated[str | None, typer.Option("--store", help="Market store file.")] = None,
    specs: Annotated[str | None, typer.Option("--specs", help="Extra instrument spec file.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from perphedge.usecases.sweep import SweepRequest, check, execute

    if fmt not in ("table", "json"):
        raise ConfigError(f"invalid `--format`: must be table or json, was {fmt!r}")
    from rich.console import Console

    err = Console(stderr=True)
    request = SweepRequest(
        grid_file=grid_file, store_path=store, specs=specs, workers=workers, max_configs=max_configs, out=out
    )
    check(request)  # refusals come before the progress bar
    with Progress(
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=fmt == "json",
    ) as progress:
        task = progress.add_task("sweep", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result = execute(request, on_result=tick)
    if fmt == "json":
        from perphedge.jsonsafe import json_safe

        sys.stdout.write(json.dumps(json_safe(result), indent=2, default=str) + "\n")
    else:
        _render_sweep(result)
    if result["failed"] and not result["succeeded"]:
        print(
            f"perphedge: error: all {result['configurations']} configurations failed (first: "
            f"{result['failed'][0]['error']})",
            file=sys.stderr,
        )
        raise typer.Exit(1)


def _render_sweep(result: dict[str, Any]) -> None:
    from rich.table import Table

    from perphedge.cli import _console

    t = Table(
        title=f"{result['configurations']} configurations on {result['workers']} processes, ranked by "
        f"{result['rank_by']} ({'high' if result['descending'] else 'low'} first)",
        title_justify="left",
    )
    keys = list(result["top"][0]["overrides"]) if result["top"] else []
    for col in ("#", *keys, "total", "max DD", "Sharpe", "HE", "funding USD", "fees USD", "liq."):
        t.add_column(col, justify="right")
    for i, r in enumerate(result["top"], 1):
        t.add_row(
            str(i),
            *[str(r["overrides"][k]) for k in keys],
            _pct(r["hedged.total_return"]),
            _f(r["hedged.max_drawdown"], ".1%"),
            _num(r["hedged.sharpe"]),
            _num(r["hedge_effectiveness"]),
            f"{r['funding_received_usd']:+,.0f}",
            f"{r['fees_usd']:,.0f}",
            str(r["liquidations"]),
        )
    console = _console()
    console.print(t)
    if result["top"]:
        u = result["top"][0]
        console.print(
            f"unhedged: total {_pct(u['unhedged.total_return'])}, max DD {_f(u['unhedged.max_drawdown'], '.1%')}, "
            f"Sharpe {_num(u['unhedged.sharpe'])}"
        )
    if result["failed"]:
        console.print(
            f"[yellow]{result['failed_count']} of {result['configurations']} configurations failed[/yellow]"
            + (" (first 10 shown)" if result["failed_count"] > 10 else "")
        )
    for r in result["failed"][:10]:
        console.print(f"[yellow]failed:[/yellow] {r['overrides']}: {r['error']}")
    if result.get("file"):
        console.print(f"wrote {result['file']}")
