"""``perphedge stress`` command: tables, JSON, plots."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from perphedge.cli.options import positive_whole
from perphedge.errors import ConfigError


def _clean(obj: Any) -> Any:
    from perphedge.jsonsafe import json_safe

    return json_safe(obj)


def _commit(lev: float | None, notional: float | None, collateral: float | None) -> str:
    if lev is None or notional is None or collateral is None:
        return "none"
    return f"{lev:g}x ({notional:,.0f} USD short, {collateral:,.0f} USD collateral)"


NONE = "—"


def _usd(x: float | None) -> str:
    return NONE if x is None else f"{x:+,.0f}"


def _fmt(x: float | None, spec: str) -> str:
    """``x`` formatted with ``spec``, or an em dash when it is undefined (None)."""
    return NONE if x is None else format(x, spec)


def _lev(x: float | None) -> str:
    return "none" if x is None else f"{x:g}x"


def render(doc: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    console.print(
        f"[bold]perphedge stress[/bold] — {doc['source']}: portfolio {doc['portfolio_value_usd']:,.0f} USD, "
        f"hedge at {doc['leverage']:g}x"
    )
    if doc["replays"]:
        t = Table(title="Replays of the plan's hedge through history (unrebalanced, daily highs)", title_justify="left")
        for col in (
            "window",
            "proxy",
            "portfolio",
            "spot PnL",
            "hedge PnL",
            "net PnL",
            "max DD hedged / unhedged",
            "liquidated",
        ):
            t.add_column(col, justify="left" if col in ("window", "liquidated") else "right")
        for r in doc["replays"]:
            if "skipped" in r:
                t.add_row(
                    f"{r['name']} ({r['start']} → {r['end']})",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    f"[dim]skipped: {r['skipped'][:60]}[/dim]",
                )
                continue
            t.add_row(
                f"{r['name']} ({r['start']} → {r['end']})",
                _fmt(r["proxy_return"], "+.0%"),
                _fmt(r["portfolio_return"], "+.0%"),
                _usd(r["spot_pnl_usd"]),
                _usd(r["hedge_pnl_usd"]),
                _usd(r["net_pnl_usd"]),
                f"{_fmt(r['max_drawdown'], '.0%')} / {_fmt(r['unhedged_max_drawdown'], '.0%')}",
                f"YES {r['liquidation_day']}" if r["liquidated"] else "",
            )
        console.print(t)
    grid = [r for r in doc["shock_grid"] if "error" not in r and r["funding_regime"] == "normal"]
    scenarios = list(dict.fromkeys(r["scenario"] for r in grid))
    g = Table(
        title="Shock grid: net PnL (USD) by leverage (normal funding; 'L' = a leg liquidated)", title_justify="left"
    )
    g.add_column("scenario")
    levs = list(dict.fromkeys(r["leverage"] for r in grid))
    for lev in levs:
        g.add_column(f"{lev:g}x", justify="right")
    cell = {(r["scenario"], r["leverage"]): r for r in grid}
    for sc in scenarios:
        g.add_row(
            sc,
            *[(_usd(cell[(sc, lev)]["net_pnl_usd"]) + (" L" if cell[(sc, lev)]["liquidated"] else "")) for lev in levs],
        )
    console.print(g)
    mc = doc["monte_carlo"]
    hist = f", history {mc['history']['first']} → {mc['history']['last']}" if mc.get("history") else ""
    console.print(
        f"Monte Carlo: {mc['model']}, {mc['paths']:,} paths × {mc['horizon_days']} days, seed {mc['seed']}{hist}"
    )
    a = mc.get("assumptions")
    if a:
        at = Table(title="Monte Carlo assumptions (annual)", title_justify="left")
        for col in ("asset", "volatility", "drift"):
            at.add_column(col, justify="left" if col == "asset" else "right")
        for asset, vol in a["volatility_annual"].items():
            at.add_row(asset, _fmt(vol, ".1%"), _fmt(a["drift_annual"].get(asset), "+.1%"))
        console.print(at)
        corr = ", ".join(f"{k} {_fmt(v, '.2f')}" for k, v in a["correlation"].items()) or NONE
        console.print(f"  volatility: {a['volatility_source']}")
        console.print(f"  drift: {a['drift_source']}")
        console.print(f"  correlation: {corr} ({a['correlation_source']})")
    if doc.get("leverages_dropped"):
        console.print(
            "leverages not tested: " + "; ".join(f"{d['leverage']:g}x {d['reason']}" for d in doc["leverages_dropped"])
        )
    r = Table(title="PnL over the horizon (USD)", title_justify="left")
    for col in ("book", "mean", "5%", "median", "95%", "VaR 95%", "ES 95%"):
        r.add_column(col, justify="left" if col == "book" else "right")
    for label in ("unhedged", "hedged"):
        x = mc[label]
        if x:
            r.add_row(
                label,
                _usd(x["mean_usd"]),
                _usd(x["p5_usd"]),
                _usd(x["p50_usd"]),
                _usd(x["p95_usd"]),
                _fmt(x["var_95_usd"], ",.0f"),
                _fmt(x["es_95_usd"], ",.0f"),
            )
    console.print(r)
    lt = Table(title=f"Probability of liquidation within {mc['horizon_days']} days", title_justify="left")
    for col in (
        "instrument",
        "leverage",
        "LP / entry",
        "P(liq.)",
        "± s.e.",
        "P(liq.) with daily top-ups",
        "top-ups added 95% USD",
        "top-up reserve 95% USD",
    ):
        lt.add_column(col, justify="left" if col == "instrument" else "right")
    for row in mc["liquidation"]:
        lt.add_row(
            row["instrument"],
            f"{row['leverage']:g}x",
            "none" if row["liquidation_price_ratio"] is None else f"{row['liquidation_price_ratio']:.3f}",
            _fmt(row["liquidation_probability"], ".2%"),
            _fmt(row["standard_error"], ".2%"),
            _fmt(row["liquidation_probability_with_top_up"], ".2%"),
            _fmt(row.get("top_up_added_usd_p95"), ",.0f"),
            _fmt(row["top_up_reserve_usd_p95"], ",.0f"),
        )
    console.print(lt)
    rec = mc["recommended"]
    console.print(
        f"recommended leverage (P(liquidation) <= {_fmt(rec['max_liquidation_probability'], '.1%')} over "
        f"{mc['horizon_days']} days): [bold]"
        + _commit(rec["without_top_up"], rec["without_top_up_notional_usd"], rec["without_top_up_collateral_usd"])
        + "[/bold] without top-ups, [bold]"
        + _commit(rec["with_top_up"], rec["with_top_up_notional_usd"], rec["with_top_up_collateral_usd"])
        + "[/bold] with daily top-ups; by model: "
        + ", ".join(
            f"{m} {_lev(v['without_top_up'])} / {_lev(v['with_top_up'])}"
            for m, v in doc["recommended_by_model"].items()
        )
    )
    for p in doc.get("plots", []):
        console.print(f"plot: {p}")


def plot(doc: dict[str, Any], out_dir: Path) -> list[str]:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    grid = [r for r in doc["shock_grid"] if "error" not in r and r["funding_regime"] == "normal"]
    scenarios = list(dict.fromkeys(r["scenario"] for r in grid))
    levs = list(dict.fromkeys(r["leverage"] for r in grid))
    z = (
        np.array(
            [
                [
                    next(r["net_pnl_pct"] for r in grid if r["scenario"] == sc and r["leverage"] == lev)
                    for sc in scenarios
                ]
                for lev in levs
            ]
        )
        * 100
    )
    fig, ax = plt.subplots(figsize=(12, 0.5 * len(levs) + 2.5))
    im = ax.imshow(z, cmap="RdYlGn", aspect="auto", vmin=-np.nanmax(np.abs(z)), vmax=np.nanmax(np.abs(z)))
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels(scenarios, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(levs)))
    ax.set_yticklabels([f"{lev:g}x" for lev in levs])
    for i in range(len(levs)):
        for j in range(len(scenarios)):
            ax.text(j, i, f"{z[i, j]:+.0f}%", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="net PnL, % of portfolio")
    ax.set_title("Shock grid: net PnL of portfolio + hedge by leverage (normal funding)")
    fig.tight_layout()
    png = out_dir / "shock_grid.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    hm = go.Figure(
        go.Heatmap(
            z=z,
            x=scenarios,
            y=[f"{lev:g}x" for lev in levs],
            colorscale="RdYlGn",
            zmid=0,
            text=[[f"{v:+.1f}%" for v in row] for row in z],
            texttemplate="%{text}",
        )
    )
    hm.update_layout(title="Shock grid: net PnL, % of portfolio")
    html = out_dir / "shock_grid.html"
    hm.write_html(html, include_plotlyjs=True, full_html=True)
    files += [str(png), str(html)]
    mc = doc["monte_carlo"]
    hists = mc.get("_histograms", {})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    if hists.get("hedged") is not None:
        uv, uc = hists["unhedged"]
        hv, hc = hists["hedged"]
        values = np.concatenate([uv, hv])
        counts = np.concatenate([uc, hc]).astype(float)
        order = np.argsort(values)
        cum = np.cumsum(counts[order]) / counts.sum()
        lo = float(values[order][min(int(np.searchsorted(cum, 0.005)), len(cum) - 1)])
        hi = float(values[order][min(int(np.searchsorted(cum, 0.995)), len(cum) - 1)])
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 80)
        axes[0].hist(uv, bins=bins, weights=uc, alpha=0.5, label="unhedged", color="#999999")
        axes[0].hist(hv, bins=bins, weights=hc, alpha=0.6, label="hedged", color="#1f77b4")
        axes[0].legend()
        axes[0].set_title(f"PnL over {mc['horizon_days']} days ({mc['model']}, {mc['paths']:,} paths)")
        axes[0].set_xlabel("USD")
    for inst in dict.fromkeys(r["instrument"] for r in mc["liquidation"]):
        rows = [r for r in mc["liquidation"] if r["instrument"] == inst]
        axes[1].plot([r["leverage"] for r in rows], [r["liquidation_probability"] for r in rows], "o-", label=inst)
        axes[1].plot(
            [r["leverage"] for r in rows],
            [r["liquidation_probability_with_top_up"] for r in rows],
            "o--",
            label=f"{inst} (daily top-ups)",
        )
    axes[1].axhline(mc["recommended"]["max_liquidation_probability"], color="red", linewidth=0.8)
    axes[1].set_xlabel("leverage")
    axes[1].set_ylabel("P(liquidation)")
    axes[1].set_title("Probability of liquidation over the horizon")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    png = out_dir / "monte_carlo.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    files.append(str(png))
    return files


def stress_cmd(
    file: Annotated[str, typer.Argument(help="Portfolio YAML file (its hedge block is the plan to stress).")],
    horizon: Annotated[str, typer.Option(help="Monte Carlo horizon, e.g. 90d.")] = "90d",
    model: Annotated[str, typer.Option(help="bootstrap | gbm | student_t.")] = "bootstrap",
    sigma: Annotated[
        float | None, typer.Option(help="Annual volatility of the proxy, a fraction: 0.6 = 60% (gbm, student_t).")
    ] = None,
    drift: Annotated[
        float | None, typer.Option(help="Annual drift of every asset, a fraction (gbm, student_t).")
    ] = None,
    correlation: Annotated[
        float | None, typer.Option(help="Correlation between every pair of assets, in [-1, 1] (gbm, student_t).")
    ] = None,
    paths: Annotated[int, typer.Option(help="Monte Carlo paths (100 … 100,000,000).")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed (>= 0).")] = 0,
    leverage: Annotated[str | None, typer.Option(help="Leverages to test, e.g. 1,2,3,5 (default: a grid).")] = None,
    max_liq_prob: Annotated[float, typer.Option("--max-liq-prob", help="Target P(liquidation), in (0, 1).")] = 0.01,
    max_memory: Annotated[
        str | None, typer.Option("--max-memory", help="Refuse a Monte Carlo needing more, e.g. 4GB (default: RAM/2).")
    ] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Prices from the store: a date or latest.")] = None,
    plot_dir: Annotated[str | None, typer.Option("--plot", help="Write PNG/HTML plots here.")] = None,
    store: Annotated[str | None, typer.Option("--store", help="Market store file.")] = None,
    specs: Annotated[str | None, typer.Option("--specs", help="Extra instrument spec file.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Run the Monte Carlo chunks on Dask: local (a local cluster of --workers processes) or "
            "tcp://scheduler:8786 (an existing cluster).",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            parser=positive_whole,
            help="Worker processes, >= 1 (default: 1 without --cluster; the machine's cores with --cluster local).",
        ),
    ] = None,
) -> None:
    from perphedge.usecases.analyze import parse_days
    from perphedge.usecases.montecarlo import parse_bytes
    from perphedge.usecases.stress import StressRequest, run_stress

    if fmt not in ("table", "json"):
        raise ConfigError(f"invalid `--format`: must be table or json, was {fmt!r}")
    levs = None
    if leverage is not None:
        items = [x.strip() for x in leverage.split(",")]
        if "" in items:
            raise ConfigError(
                f"invalid `--leverage`: {leverage!r} has an empty item between commas; write numbers such as 1,2,3,5"
            )
        try:
            levs = tuple(float(x) for x in items)
        except ValueError:
            raise ConfigError(f"invalid `--leverage`: {leverage!r} must be numbers such as 1,2,3,5") from None
    req = StressRequest(
        file=file,
        model=model,
        paths=paths,
        horizon_days=parse_days(horizon, "--horizon"),
        seed=seed,
        leverages=levs,
        sigma=sigma,
        drift=drift,
        correlation=correlation,
        max_liq_prob=max_liq_prob,
        max_memory=parse_bytes(max_memory) if max_memory is not None else None,
        as_of=as_of,
        store_path=store,
        specs=specs,
        cluster=cluster,
        workers=workers,
    )
    from perphedge.cli.options import output_dir, write_plots

    plots = output_dir(plot_dir, "--plot", create=False) if plot_dir else None  # checked before the work
    doc = run_stress(req)
    if plots is not None:
        doc["plots"] = write_plots(plot, doc, output_dir(plots, "--plot"))
    if fmt == "json":
        sys.stdout.write(json.dumps(_clean(doc), indent=2, allow_nan=False) + "\n")
    else:
        from perphedge.cli import _console

        render(_clean(doc) | {"plots": doc.get("plots", [])}, _console(140))
