"""``perphedge optimize`` command: search hedge designs walk-forward, print/write the Pareto front and the choice."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from perphedge.errors import ConfigError

__all__ = ["optimize_cmd", "render"]

NONE = "—"


def _f(x: Any, spec: str) -> str:
    return NONE if x is None else format(x, spec)


def render(doc: dict[str, Any], console: Any) -> None:
    """Tables: objective, walk-forward comparison, stability, Pareto front, recommendation."""
    from rich.table import Table

    o = doc["objective"]
    console.print(
        f"[bold]perphedge optimize[/bold] — {doc['source']}: {doc['period']['start']} → {doc['period']['end']} "
        f"({doc['period']['days']} days), {doc['space']['designs']:,} designs"
    )
    d = o["defaults"]
    console.print(
        f"objective = {o['formula']}; risk {o['risk']} (default {d['risk']}), lambda {o['lambda']:g} (default "
        f"{d['lambda']:g}), horizon {o['horizon_days']}d (default {d['horizon_days']}d), max P(liq) "
        f"{o['max_liq_prob']:g} (default {d['max_liq_prob']:g})"
    )
    console.print(f"  risk: {o['risk_definition']}; carry: {o['carry_definition']}")
    console.print(f"  P(liq): {o['p_liq_definition']}")
    wf = doc["walk_forward"]
    t = Table(
        title=f"Walk-forward: train {wf['train_days']}d, test {wf['test_days']}d, mean objective (lower is better)",
        title_justify="left",
    )
    for col in (
        "strategy",
        "windows",
        "in sample",
        "out of sample",
        "OOS risk",
        "OOS carry",
        "OOS P(liq)",
        "liquidations in tests",
    ):
        t.add_column(col, justify="left" if col == "strategy" else "right")
    for r in wf["summary"]:
        t.add_row(
            r["name"],
            str(r["windows"]),
            _f(r["in_sample_mean"], ".5f"),
            _f(r["out_of_sample_mean"], ".5f"),
            _f(r.get("out_of_sample_risk_mean"), ".5f"),
            _f(r.get("out_of_sample_carry_mean"), "+.3%"),
            _f(r.get("out_of_sample_p_liq_mean"), ".2%"),
            str(r["test_liquidations"]),
        )
    console.print(t)
    s = wf["stability"]
    console.print(
        f"stability: {s['distinct']} distinct choices over {s['windows']} windows; most frequent "
        f"({_f(s['share'], '.0%')}): {s['most_frequent'] or NONE}"
    )
    p = Table(title="Pareto front on the latest training window (risk, carry, P(liq))", title_justify="left")
    for col in ("design", "risk", "carry", "P(liq)", "objective"):
        p.add_column(col, justify="left" if col == "design" else "right")
    for r in doc["pareto"][:25]:
        p.add_row(
            ("* " if r["recommended"] else "") + r["key"],
            _f(r["risk"], ".5f"),
            _f(r["carry"], "+.3%"),
            _f(r["p_liq"], ".2%"),
            _f(r["objective"], ".5f"),
        )
    console.print(p)
    rec = doc["recommended"]
    if rec is None:
        console.print("[bold]no design meets the constraints[/bold] on the latest training window:")
        for r in doc.get("rejected", [])[:5]:
            console.print(f"  {r['designs']:,} design(s): {r['violation']}")
        console.print("  relax that constraint (--max-liq-prob, lower --leverages or --ratios) or change the grids")
    else:
        ins = rec["in_sample"]
        console.print(
            f"recommended: [bold]{rec['key']}[/bold] — risk {_f(ins['risk'], '.5f')}, carry {_f(ins['carry'], '+.3%')}"
            f", P(liq) {_f(ins['p_liq'], '.2%')}, hedge effectiveness {_f(rec['hedge_effectiveness'], '.1%')}"
        )
    for w in doc["warnings"][:5]:
        console.print(f"[yellow]warning[/yellow]: {w}")
    if doc.get("written"):
        console.print(f"portfolio file written: {doc['written']} (try `perphedge plan {doc['written']}`)")
    for f in doc.get("plots", []):
        console.print(f"plot: {f}")
    timing = doc.get("timing")
    if timing:
        console.print(f"searched in {timing['total_seconds']:.1f} s (designs: {timing['evaluate_seconds']:.1f} s)")


def optimize_cmd(
    file: Annotated[str, typer.Argument(help="Portfolio YAML file (holdings; its hedge block names the venue).")],
    ratios: Annotated[str, typer.Option(help="Hedge ratios to try, in (0, 2].")] = "0.25,0.5,0.75,1",
    leverages: Annotated[str, typer.Option(help="Leverages to try, in [1, 125].")] = "1,2,3,5",
    hedges: Annotated[str, typer.Option(help="btc, eth, btc_eth, own (each coin's own perpetual), or all.")] = "all",
    kinds: Annotated[str, typer.Option(help="inverse, linear, or all.")] = "all",
    venues: Annotated[str | None, typer.Option(help="Venues from the specs (default: the portfolio's).")] = None,
    methods: Annotated[str, typer.Option(help="notional, beta, min_variance, ewma, or all.")] = "all",
    collateral: Annotated[str, typer.Option(help="stable, buy, holdings, or all.")] = "all",
    policies: Annotated[str, typer.Option(help="band, calendar, or all.")] = "all",
    risk: Annotated[str, typer.Option(help="variance or cvar95.")] = "variance",
    lam: Annotated[str, typer.Option("--lambda", help="Weight of P(liquidation) in the objective (>= 0).")] = "1",
    horizon: Annotated[str, typer.Option(help="Horizon of risk, carry and P(liq), e.g. 30d.")] = "30d",
    max_liq_prob: Annotated[str, typer.Option("--max-liq-prob", help="Hard limit on P(liq), in (0, 1).")] = "0.01",
    paths: Annotated[str, typer.Option(help="Monte Carlo paths per window (100 … 200,000).")] = "2000",
    seed: Annotated[str, typer.Option(help="Random seed (>= 0).")] = "0",
    train: Annotated[str, typer.Option(help="Training window, e.g. 365d.")] = "365d",
    test: Annotated[str, typer.Option(help="Test window, e.g. 90d.")] = "90d",
    start: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD; default: the joint history).")] = None,
    end: Annotated[str | None, typer.Option(help="Last day (YYYY-MM-DD).")] = None,
    write: Annotated[
        str | None, typer.Option("--write", help="Write the recommended design as a portfolio file.")
    ] = None,
    plot_dir: Annotated[str | None, typer.Option("--plot", help="Write the Pareto plot (PNG, HTML) here.")] = None,
    store: Annotated[str | None, typer.Option("--store", help="Market store file.")] = None,
    specs: Annotated[str | None, typer.Option("--specs", help="Extra instrument spec file.")] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Run the designs on Dask: local (a local cluster of --workers processes) or tcp://scheduler:8786.",
        ),
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option(
            "--workers", help="Processes, >= 1 (default: this process only; with --cluster local: the machine's cores)."
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    from perphedge.cli.options import iso_date, output_dir, write_plots
    from perphedge.core.optimize import (
        COLLATERALS,
        HEDGES,
        KINDS,
        METHODS,
        POLICIES,
        parse_choices,
        parse_grid,
    )
    from perphedge.core.parsing import parse_days
    from perphedge.usecases.optimize import OptimizeRequest, run_optimize, to_json
    from perphedge.usecases.optimize import write_plots as plot

    if fmt not in ("table", "json"):
        raise ConfigError(f"invalid `--format`: must be table or json, was {fmt!r}")

    def number(text: str, flag: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            raise ConfigError(f"invalid `{flag}`: {text!r} is not a number") from None

    def whole(text: str, flag: str) -> int:
        s = text.strip()
        if not (s.isascii() and s.isdigit()):  # '²'.isdigit() is True, int('²') fails
            raise ConfigError(f"invalid `{flag}`: must be a whole number >= 0, was {text!r}")
        return int(s)

    from perphedge.usecases.engine import check_cluster

    n_workers = None
    if workers is not None:
        w = workers.strip()
        if not (w.isascii() and w.isdigit()) or int(w) < 1:
            raise ConfigError(f"invalid `--workers`: must be a whole number >= 1, was {workers!r}")
        n_workers = int(workers.strip())
    check_cluster(cluster, n_workers)
    start_d = iso_date(start, "--start")
    end_d = iso_date(end, "--end")
    vs = None
    if venues is not None:
        items = [v.strip().lower() for v in venues.split(",")]
        if not venues.strip() or "" in items:
            raise ConfigError(f"invalid `--venues`: give venue names such as binance,bybit, was {venues!r}")
        if len(set(items)) < len(items):
            raise ConfigError(f"invalid `--venues`: a venue is given twice in {venues!r}")
        vs = tuple(items)
    req = OptimizeRequest(
        file=file,
        ratios=parse_grid(ratios, "--ratios", low=0.0, high=2.0, low_open=True),
        leverages=parse_grid(leverages, "--leverages", low=1.0, high=125.0),
        hedges=parse_choices(hedges, "--hedges", HEDGES),
        kinds=parse_choices(kinds, "--kinds", KINDS),
        venues=vs,
        methods=parse_choices(methods, "--methods", METHODS),
        collaterals=parse_choices(collateral, "--collateral", COLLATERALS),
        policies=parse_choices(policies, "--policies", POLICIES),
        risk=risk.strip().lower(),
        lam=number(lam, "--lambda"),
        horizon=parse_days(horizon, "--horizon", maximum=365),
        max_liq_prob=number(max_liq_prob, "--max-liq-prob"),
        paths=whole(paths, "--paths"),
        seed=whole(seed, "--seed"),
        train=parse_days(train, "--train"),
        test=parse_days(test, "--test"),
        start=start_d,
        end=end_d,
        store_path=store,
        specs=specs,
        cluster=cluster,
        workers=n_workers,
    )
    plots = output_dir(plot_dir, "--plot", create=False) if plot_dir is not None else None
    doc = run_optimize(req, write=write)
    if plots is not None:
        doc["plots"] = write_plots(plot, doc, output_dir(plots, "--plot"))
    if fmt == "json":
        sys.stdout.write(to_json(doc))
    else:
        from perphedge.cli import _console
        from perphedge.jsonsafe import json_safe

        render(json_safe(doc), _console(160))
