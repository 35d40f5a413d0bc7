"""``perphedge backtest`` and ``perphedge sweep``."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
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
        int | None,
        typer.Option(
            "--max-configs",
            parser=positive_whole,
            help="Refuse grids of more combinations than this, before any work (default 10,000; "
            "100,000,000 with --dataset).",
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Run on Dask: local (a local cluster of --workers processes) or tcp://scheduler:8786.",
        ),
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="Stream one row per configuration to a Parquet dataset in this directory; "
            "run again with the same directory to compute only the missing rows.",
        ),
    ] = None,
    batch: Annotated[
        int | None,
        typer.Option(parser=positive_whole, help="Configurations per task (default: up to 64)."),
    ] = None,
    plot_dir: Annotated[
        str | None,
        typer.Option("--plot", help="Write the Pareto front (max drawdown vs return) as PNG + HTML here."),
    ] = None,
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
        grid_file=grid_file,
        store_path=store,
        specs=specs,
        workers=workers,
        max_configs=max_configs,
        out=out,
        cluster=cluster,
        dataset=dataset,
        batch=batch,
    )
    from perphedge.cli.options import output_dir

    plots = output_dir(plot_dir, "--plot", create=False) if plot_dir else None
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
    if plots is not None:
        from perphedge.cli.options import write_plots

        result["plots"] = write_plots(plot_pareto, result, output_dir(plots, "--plot"))
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
    if result.get("dataset"):
        console.print(
            f"dataset {result['dataset']}: {result['computed']:,} computed now, {result['resumed']:,} already there"
        )
    if result.get("file"):
        console.print(f"wrote {result['file']}")
    for p in result.get("plots", []):
        console.print(f"plot: {p}")


def plot_pareto(result: dict[str, Any], out_dir: Path) -> list[str]:
    """The Pareto front of hedged max drawdown (smaller magnitude is better) vs hedged annual return: PNG + HTML.

    With a dataset every configuration is plotted (read column by column); otherwise the rows in ``all``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    from perphedge.usecases.sweep import pareto_front, read_dataset

    x_key, y_key = "hedged.max_drawdown", "hedged.annual_return"
    if result.get("dataset"):
        table = read_dataset(result["dataset"], columns=["index", x_key, y_key])
        idx = table.column("index").to_pylist()
        xs = table.column(x_key).to_pylist()
        ys = table.column(y_key).to_pylist()
    else:
        rows = [r for r in result.get("all", []) if "error" not in r]
        idx = [r["index"] for r in rows]
        xs = [r[x_key] for r in rows]
        ys = [r[y_key] for r in rows]
    pts = [
        (abs(x) if x is not None else math.nan, y if y is not None else math.nan) for x, y in zip(xs, ys, strict=True)
    ]
    front = pareto_front(pts)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ax.scatter(
        [p[0] * 100 for p in pts], [p[1] * 100 for p in pts], s=6, alpha=0.35, color="#999999", label="configurations"
    )
    ax.plot(
        [pts[i][0] * 100 for i in front], [pts[i][1] * 100 for i in front], "o-", color="#d62728", label="Pareto front"
    )
    ax.set_xlabel("max drawdown, hedged (%)")
    ax.set_ylabel("annual return, hedged (%)")
    ax.set_title(f"Sweep: {len(pts):,} configurations, {len(front)} on the Pareto front")
    ax.legend()
    fig.tight_layout()
    png = out_dir / "pareto.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    g = go.Figure()
    g.add_trace(
        go.Scattergl(
            x=[p[0] * 100 for p in pts],
            y=[p[1] * 100 for p in pts],
            mode="markers",
            marker={"size": 4, "color": "#999999"},
            text=[f"#{i}" for i in idx],
            name="configurations",
        )
    )
    g.add_trace(
        go.Scatter(
            x=[pts[i][0] * 100 for i in front],
            y=[pts[i][1] * 100 for i in front],
            mode="lines+markers",
            text=[f"#{idx[i]}" for i in front],
            name="Pareto front",
        )
    )
    g.update_layout(
        title="Sweep: max drawdown vs annual return (hedged)",
        xaxis_title="max drawdown (%)",
        yaxis_title="annual return (%)",
    )
    html = out_dir / "pareto.html"
    g.write_html(html, include_plotlyjs=True, full_html=True)
    return [str(png), str(html)]
