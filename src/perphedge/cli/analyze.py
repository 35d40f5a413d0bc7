"""``perphedge analyze`` command: tables, JSON and plots."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from perphedge.errors import ConfigError


def _clean_json(obj: Any) -> Any:
    from perphedge.jsonsafe import json_safe

    return json_safe(obj, 10)


NONE = "—"


def _f(x: float | None, nd: int = 2) -> str:
    """``x`` to ``nd`` decimals, or an em dash when it is undefined (None, NaN)."""
    return NONE if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def _p(x: float | None, spec: str) -> str:
    return NONE if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def render(doc: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    est = doc["estimators"]
    t = Table(
        title=f"Hedging each asset with {doc['proxy']} (daily, {doc['since'] or 'start'} → {doc['until'] or 'end'};"
        f" walk-forward window {doc['window_days']}d)",
        title_justify="left",
    )
    for col in (
        "asset",
        "days",
        "beta",
        "corr",
        "R²",
        "R² log",
        "HE in",
        "down β",
        "stress β",
        "1-R² best",
        *[f"OOS {e.replace('_ols', '')}" for e in est],
    ):
        t.add_column(col, justify="left" if col == "asset" else "right")
    for a in doc["assets"]:
        oos = a["oos_hedge_effectiveness"]
        defined = {k: v for k, v in oos.items() if v is not None}
        best = max(defined, key=lambda k: defined[k]) if defined else None
        t.add_row(
            a["asset"],
            str(a["n_days"]),
            _f(a["beta"]),
            _f(a["correlation"]),
            _f(a["r2"]),
            _f((a["log_returns"] or {}).get("r2")),
            _f(a["hedge_effectiveness"]),
            _f(a["downside_beta"]),
            _f(a["stress_beta"]),
            _f(a["unhedgeable_variance"]),
            *[(f"[bold]{_f(oos.get(e))}[/bold]" if e == best else _f(oos.get(e))) for e in est],
        )
    console.print(t)
    for a in doc["assets"]:
        if a.get("undefined"):
            console.print(f"{a['asset']}: {a['undefined']}")
    if any("7d" in a["horizons"] for a in doc["assets"]):
        w = Table(title="Weekly (7d, non-overlapping) hedge effectiveness out of sample", title_justify="left")
        for col in ("asset", "HE in", *est):
            w.add_column(col, justify="left" if col == "asset" else "right")
        for a in doc["assets"]:
            h = a["horizons"].get("7d")
            if h:
                w.add_row(
                    a["asset"],
                    _f(h["in_sample_hedge_effectiveness"]),
                    *[_f(h["estimators"][e]["oos_hedge_effectiveness"]) for e in est],
                )
        console.print(w)
    b = doc.get("basket")
    if b:
        console.print(
            f"equal-weight basket of {', '.join(b['assets'])}: beta {_f(b['beta'])}, R² {_f(b['r2'])}, "
            f"OOS HE " + ", ".join(f"{k} {_f(v)}" for k, v in b["oos_hedge_effectiveness"].items())
        )
    r = Table(title="Calm vs stress (beta / correlation)", title_justify="left")
    for col in ("asset", "calm (drawdown)", "stress (drawdown)", "calm (vol)", "stress (vol)", "crash windows"):
        r.add_column(col)

    def bc(x: dict[str, Any] | None) -> str:
        return NONE if not x else f"{_f(x['beta'])} / {_f(x['correlation'])} (n={x['n']})"

    for a in doc["assets"]:
        g = a["regimes"]
        crashes = "\n".join(
            f"{c['name']}: β {_f(c['beta'])}, {_p(c['asset_return'], '+.0%')} vs {_p(c['proxy_return'], '+.0%')}"
            for c in g["crash_windows"]
        )
        r.add_row(
            a["asset"],
            bc(g["drawdown"]["calm"]),
            bc(g["drawdown"]["stress"]),
            bc(g["volatility"]["calm"]),
            bc(g["volatility"]["stress"]),
            crashes or NONE,
        )
    console.print(r)
    rows = [a for a in doc["assets"] if a.get("instrument_hedge")]
    if rows:
        it = Table(
            title=f"Hedging with {doc['proxy']}'s own perpetuals (Binance, where their prices exist): "
            "minimum-variance ratio / HE",
            title_justify="left",
        )
        for col in ("asset", "period", "linear perp", "inverse perp (USD acc.)", f"{doc['proxy']} spot"):
            it.add_column(col)
        for a in rows:
            ih = a["instrument_hedge"]
            it.add_row(
                a["asset"],
                f"{ih['first']} → {ih['last']} ({ih['n_days']} d)",
                *[
                    f"{_f(ih[k]['min_variance_ratio'], 3)} / {_f(ih[k]['hedge_effectiveness'], 3)}"
                    for k in ("linear", "inverse", "proxy_spot")
                ],
            )
        console.print(it)
    if doc.get("funding"):
        ft = Table(title="Funding for a short (positive = received)", title_justify="left")
        for col in ("source", "contract", "settlements", "interval h", "share > 0", "carry/yr", "by year", "worst 30d"):
            ft.add_column(col, justify="left" if col in ("source", "contract", "by year") else "right")
        for row in doc["funding"]:
            years = ", ".join(f"{y}: {v:+.1%}" for y, v in row["short_carry_by_year"].items())
            ft.add_row(
                row["source"],
                row["symbol"],
                f"{row['settlements']:,}",
                "/".join(f"{x:g}" for x in row["interval_hours"]),
                _p(row["share_positive"], ".1%"),
                _p(row["short_carry_annual"], "+.1%"),
                years or NONE,
                NONE if row["worst_30d_carry"] is None else f"{row['worst_30d_carry']:+.2%} ({row['worst_30d_end']})",
            )
        console.print(ft)
    if doc.get("basis"):
        bt = Table(title="Perp–spot basis (bp) and daily HE of spot hedged with each perpetual", title_justify="left")
        for col in ("source", "asset", "linear mean [p1, p99]", "inverse mean [p1, p99]", "HE linear", "HE inverse"):
            bt.add_column(col)
        for row in doc["basis"]:
            lb, ib = row["linear_basis_bp"], row["inverse_basis_bp"]
            bt.add_row(
                row["source"],
                row["asset"],
                f"{lb['mean']:+.1f} [{lb['p1']:+.1f}, {lb['p99']:+.1f}]",
                f"{ib['mean']:+.1f} [{ib['p1']:+.1f}, {ib['p99']:+.1f}]",
                _f(row["linear_daily_hedge"]["hedge_effectiveness"], 4),
                _f(row["inverse_daily_hedge"]["hedge_effectiveness"], 4),
            )
        console.print(bt)
    for p in doc.get("plots", []):
        console.print(f"plot: {p}")


def plot(doc: dict[str, Any], out_dir: Path) -> list[str]:
    """Rolling beta and OOS HE by estimator, as PNG (matplotlib) and self-contained HTML (plotly)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    fig, ax = plt.subplots(figsize=(11, 5))
    pfig = go.Figure()
    for a in doc["assets"]:
        idx, ratios = a["_rolling"]
        ax.plot(idx, ratios, label=a["asset"], linewidth=1)
        pfig.add_trace(
            go.Scatter(
                x=list(idx), y=[None if not math.isfinite(v) else v for v in ratios], name=a["asset"], mode="lines"
            )
        )
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_title(f"Rolling {doc['window_days']}-day beta to {doc['proxy']} (the hedge ratio known each day)")
    ax.set_ylabel("beta")
    ax.legend(ncol=4)
    fig.tight_layout()
    png = out_dir / "rolling_beta.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    pfig.update_layout(title=f"Rolling {doc['window_days']}-day beta to {doc['proxy']}", yaxis_title="beta")
    html = out_dir / "rolling_beta.html"
    pfig.write_html(html, include_plotlyjs=True, full_html=True)
    files += [str(png), str(html)]

    est = doc["estimators"]
    fig, ax = plt.subplots(figsize=(11, 5))
    n = len(doc["assets"])
    width = 0.8 / max(len(est), 1)
    bfig = go.Figure()
    for i, e in enumerate(est):
        vals = [v if (v := a["oos_hedge_effectiveness"].get(e)) is not None else float("nan") for a in doc["assets"]]
        ax.bar([j + i * width for j in range(n)], vals, width=width, label=e)
        bfig.add_trace(go.Bar(x=[a["asset"] for a in doc["assets"]], y=vals, name=e))
    ax.set_xticks([j + width * (len(est) - 1) / 2 for j in range(n)])
    ax.set_xticklabels([a["asset"] for a in doc["assets"]])
    ax.set_ylabel("out-of-sample hedge effectiveness (daily)")
    ax.set_title(f"Hedge effectiveness by estimator, walk-forward, hedged with {doc['proxy']}")
    ax.legend(ncol=3)
    fig.tight_layout()
    png = out_dir / "hedge_effectiveness.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    bfig.update_layout(
        barmode="group", title="Out-of-sample hedge effectiveness by estimator", yaxis_title="HE (daily)"
    )
    html = out_dir / "hedge_effectiveness.html"
    bfig.write_html(html, include_plotlyjs=True, full_html=True)
    files += [str(png), str(html)]
    return files


def analyze_cmd(
    assets: Annotated[
        str | None, typer.Option(help="Assets, comma-separated: SOL,AVAX,DOT,LINK (not the proxy).")
    ] = None,
    proxy: Annotated[str, typer.Option(help="Hedge instrument's coin.")] = "BTC",
    since: Annotated[str | None, typer.Option(help="First UTC day, YYYY-MM-DD.")] = None,
    until: Annotated[str | None, typer.Option(help="Last UTC day, YYYY-MM-DD.")] = None,
    window: Annotated[str, typer.Option(help="Trailing estimation window, days or weeks: 180d, 26w.")] = "180d",
    horizon: Annotated[str, typer.Option(help="Horizons, comma-separated: 1d,7d.")] = "1d,7d",
    factors: Annotated[
        str | None, typer.Option(help="Factors of the multi-factor fit (default: BTC,ETH where stored).")
    ] = None,
    nonneg: Annotated[bool, typer.Option("--nonneg", help="Non-negative multi-factor weights.")] = False,
    plot_dir: Annotated[str | None, typer.Option("--plot", help="Write PNG and HTML plots to this directory.")] = None,
    no_funding: Annotated[bool, typer.Option("--no-funding", help="Skip the funding and basis statistics.")] = False,
    store: Annotated[str | None, typer.Option("--store", help="Market store file.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    futures: Annotated[
        bool,
        typer.Option(
            "--futures",
            help="Dated futures instead: basis, annualised basis, term structure, carry to delivery vs the "
            "perpetual's funding (e.g. `perphedge analyze --futures --since 2021-01-01 --until 2021-09-30`).",
        ),
    ] = False,
    min_days: Annotated[
        float, typer.Option("--min-days", help="With --futures: bars with fewer days to delivery are left out.")
    ] = 7.0,
) -> None:
    from perphedge.cli.options import date_range, days, output_dir, write_plots
    from perphedge.usecases.analyze import AnalyzeRequest, run_analyze

    if fmt not in ("table", "json"):
        raise ConfigError(f"invalid `--format`: must be table or json, was {fmt!r}")
    first, last = date_range(since, until)
    if futures:
        # the options of the beta analysis do nothing here: refuse them rather than ignore them silently
        ignored = [
            name
            for name, given in (
                ("--proxy", proxy != "BTC"),
                ("--window", window != "180d"),
                ("--horizon", horizon != "1d,7d"),
                ("--factors", factors is not None),
                ("--nonneg", nonneg),
                ("--no-funding", no_funding),
            )
            if given
        ]
        if ignored:
            raise ConfigError(
                f"invalid `{ignored[0]}`: analyze --futures does not use it (its options: --since, --until, "
                "--min-days, --plot, --store, --format); leave it out"
            )
        _futures_cmd(first, last, min_days, assets, plot_dir, store, fmt)
        return
    if min_days != 7.0:
        raise ConfigError(f"invalid `--min-days`: it applies to analyze --futures only, was {min_days!r}")
    if assets is None:
        raise ConfigError("analyze needs the option --assets (e.g. --assets SOL,AVAX), or --futures")
    horizons = [h.strip() for h in horizon.split(",")]
    if not all(horizons):
        raise ConfigError(f"invalid `--horizon`: {horizon!r} must be days separated by commas, e.g. 1d,7d")
    req = AnalyzeRequest(
        assets=tuple(a.strip() for a in assets.split(",") if a.strip()),
        proxy=proxy,
        since=first,
        until=last,
        window_days=days(window, "--window"),
        horizons=tuple(days(h, "--horizon") for h in horizons),
        factors=None if factors is None else tuple(x.strip() for x in factors.split(",") if x.strip()),
        nonneg=nonneg,
        funding=not no_funding,
        store_path=store,
    )
    plots = output_dir(plot_dir, "--plot", create=False) if plot_dir else None  # checked before the work
    doc = run_analyze(req)
    if plots is not None:
        doc["plots"] = write_plots(plot, doc, output_dir(plots, "--plot"))
    if fmt == "json":
        sys.stdout.write(json.dumps(_clean_json(doc), indent=2, allow_nan=False) + "\n")
    else:
        from perphedge.cli import _console

        render(doc, _console(150))


def _futures_cmd(
    since: str | None,
    until: str | None,
    min_days: float,
    assets: str | None,
    plot_dir: str | None,
    store: str | None,
    fmt: str,
) -> None:
    """``analyze --futures`` (cli/analyze_futures.py renders and plots)."""
    from perphedge.cli import analyze_futures as view
    from perphedge.cli.options import output_dir, write_plots
    from perphedge.usecases.analyze_futures import FuturesAnalyzeRequest, run_analyze_futures

    if assets is not None:
        raise ConfigError("invalid `--assets`: analyze --futures reads the stored dated futures; leave --assets out")
    req = FuturesAnalyzeRequest(since=since, until=until, min_days=min_days, store_path=store)
    plots = output_dir(plot_dir, "--plot", create=False) if plot_dir else None
    doc = run_analyze_futures(req)
    if plots is not None:
        doc["plots"] = write_plots(view.plot, doc, output_dir(plots, "--plot"))
    if fmt == "json":
        sys.stdout.write(json.dumps(_clean_json(doc), indent=2, allow_nan=False) + "\n")
    else:
        from perphedge.cli import _console

        view.render(doc, _console(150))
