"""``perphedge stress`` command: tables, JSON, plots."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from perphedge.errors import ConfigError


def _clean(obj: Any) -> Any:
    from perphedge.jsonsafe import json_safe

    return json_safe(obj)


def _commit(lev: float | None, notional: float | None, collateral: float | None) -> str:
    if lev is None or notional is None or collateral is None:
        return "none"
    return f"{lev:g}x ({notional:,.0f} USD short, {collateral:,.0f} USD collateral)"


def _usd(x: float | None) -> str:
    return "-" if x is None else f"{x:+,.0f}"


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
                f"{r['proxy_return']:+.0%}",
                f"{r['portfolio_return']:+.0%}",
                _usd(r["spot_pnl_usd"]),
                _usd(r["hedge_pnl_usd"]),
                _usd(r["net_pnl_usd"]),
                f"{r['max_drawdown']:.0%} / {r['unhedged_max_drawdown']:.0%}",
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
                f"{x['var_95_usd']:,.0f}",
                f"{x['es_95_usd']:,.0f}",
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
        "top-up reserve 95% USD",
    ):
        lt.add_column(col, justify="left" if col == "instrument" else "right")
    for row in mc["liquidation"]:
        lt.add_row(
            row["instrument"],
            f"{row['leverage']:g}x",
            "none" if row["liquidation_price_ratio"] is None else f"{row['liquidation_price_ratio']:.3f}",
            f"{row['liquidation_probability']:.2%}",
            f"{row['standard_error']:.2%}",
            f"{row['liquidation_probability_with_top_up']:.2%}",
            f"{row['top_up_reserve_usd_p95']:,.0f}",
        )
    console.print(lt)
    rec = mc["recommended"]
    console.print(
        f"recommended leverage (P(liquidation) <= {rec['max_liquidation_probability']:.1%} over "
        f"{mc['horizon_days']} days): [bold]"
        + _commit(rec["without_top_up"], rec["without_top_up_notional_usd"], rec["without_top_up_collateral_usd"])
        + "[/bold] without top-ups, [bold]"
        + _commit(rec["with_top_up"], rec["with_top_up_notional_usd"], rec["with_top_up_collateral_usd"])
        + "[/bold] with daily top-ups; by model: "
        + ", ".join(
            f"{m} {v['without_top_up'] or 'none'}x / {v['with_top_up'] or 'none'}x"
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
    samples = mc.get("_samples", {})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    if samples.get("hedged") is not None:
        lo, hi = np.quantile(np.concatenate([samples["unhedged"], samples["hedged"]]), [0.005, 0.995])
        bins = np.linspace(lo, hi, 80)
        axes[0].hist(samples["unhedged"], bins=bins, alpha=0.5, label="unhedged", color="#999999")
        axes[0].hist(samples["hedged"], bins=bins, alpha=0.6, label="hedged", color="#1f77b4")
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
    sigma: Annotated[float | None, typer.Option(help="Annual volatility of the proxy (gbm, student_t).")] = None,
    drift: Annotated[float | None, typer.Option(help="Annual drift of every asset (gbm, student_t).")] = None,
    paths: Annotated[int, typer.Option(help="Monte Carlo paths.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    leverage: Annotated[str | None, typer.Option(help="Leverages to test, e.g. 1,2,3,5 (default: a grid).")] = None,
    max_liq_prob: Annotated[float, typer.Option("--max-liq-prob", help="Target P(liquidation).")] = 0.01,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Prices from the store: a date or latest.")] = None,
    plot_dir: Annotated[str | None, typer.Option("--plot", help="Write PNG/HTML plots here.")] = None,
    store: Annotated[str | None, typer.Option("--store", help="Market store file.")] = None,
    specs: Annotated[str | None, typer.Option("--specs", help="Extra instrument spec file.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    from perphedge.config import load_portfolio_file
    from perphedge.data.store import MarketStore, default_store_path
    from perphedge.errors import PerphedgeError
    from perphedge.specs import default_registry
    from perphedge.usecases.analyze import parse_days
    from perphedge.usecases.plan import plan_portfolio
    from perphedge.usecases.stress import stress

    if fmt not in ("table", "json"):
        raise ConfigError(f"invalid `--format`: must be table or json, was {fmt!r}")
    if not 0 < max_liq_prob < 1:
        raise ConfigError(f"invalid `--max-liq-prob`: must be in (0, 1), was {max_liq_prob}")
    if paths < 100 or paths > 2_000_000:
        raise ConfigError(f"invalid `--paths`: 100 … 2,000,000, was {paths}")
    levs = None
    if leverage:
        try:
            levs = [float(x) for x in leverage.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"invalid `--leverage`: {leverage!r} must be numbers such as 1,2,3,5") from None
        if any(x < 1 for x in levs):
            raise ConfigError(f"invalid `--leverage`: every leverage must be >= 1, were {levs}")
    days = parse_days(horizon, "--horizon")
    registry = default_registry(specs)
    pfile = load_portfolio_file(file)
    outcome = plan_portfolio(pfile, source=file, registry=registry, as_of=as_of, store_path=store)
    path = Path(store) if store else default_store_path()
    try:
        # no store: the parametric models still run (replays and the bootstrap need history)
        with MarketStore(path, read_only=True) if path.exists() else contextlib.nullcontext() as st:
            doc = stress(
                pfile,
                outcome.plan,
                outcome.instrument_spec,
                store=st,
                registry=registry,
                model=model,
                paths=paths,
                horizon=days,
                seed=seed,
                leverages=levs,
                sigma=sigma,
                drift=drift,
                max_liq_prob=max_liq_prob,
            )
    except PerphedgeError as exc:
        msg = str(exc)
        raise type(exc)(msg if msg.startswith(file) else f"{file}: {msg}") from None
    doc["source"] = file
    if plot_dir:
        doc["plots"] = plot(doc, Path(plot_dir))
    if fmt == "json":
        sys.stdout.write(json.dumps(_clean(doc), indent=2, allow_nan=False) + "\n")
    else:
        from perphedge.cli import _console

        render(_clean(doc) | {"plots": doc.get("plots", [])}, _console(140))
