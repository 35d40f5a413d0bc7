"""``perphedge calc --account FILE``: one cross-margined account → table, JSON, surface heat map."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from perphedge.errors import ConfigError

__all__ = [
    "SURFACE_MOVES",
    "emit_plan",
    "plot_surface",
    "refuse_single_options",
    "render_account",
    "require_single_options",
    "run_account",
]

#: Relative moves of each leg on the liquidation surface: -50 % … +50 % in steps of 5 %.
SURFACE_MOVES: tuple[float, ...] = tuple(round(-0.5 + 0.05 * i, 2) for i in range(21))

NONE = "—"


def _price(x: float | None) -> str:
    if x is None:
        return "none"
    return f"{x:,.2f}" if abs(x) >= 100 else f"{x:,.6g}"


def _amount(x: float | None) -> str:
    if x is None:
        return NONE
    return f"{x:,.2f}" if abs(x) >= 100 else f"{x:,.8g}"


def _pct(x: float | None) -> str:
    return NONE if x is None else f"{x * 100:+.2f}%"


def refuse_single_options(single: dict[str, Any]) -> None:
    """``--account`` describes every position itself: a one-position option next to it is refused."""
    given = [flag for flag, value in single.items() if value is not None]
    if given:
        raise ConfigError(
            f"invalid `{given[0]}`: `--account FILE` takes every position from the file; "
            "leave out the one-position options (--instrument, --side, ...)"
        )


def require_single_options(single: dict[str, Any], *, surface: bool, plot_dir: str | None) -> None:
    """Without ``--account`` the one position needs --instrument, --side, --contracts and --entry."""
    if surface or plot_dir is not None:
        flag = "--surface" if surface else "--plot"
        raise ConfigError(f"invalid `{flag}`: it is for a cross account: give `--account FILE` with it")
    missing = [flag for flag in ("--instrument", "--side", "--contracts", "--entry") if single[flag] is None]
    if not missing:
        return
    try:  # typer >= 0.17 vendors click
        from typer._click import exceptions, globals
    except ImportError:  # pragma: no cover - older typer on plain click
        from click import exceptions, globals  # type: ignore[no-redef]
    ctx = globals.get_current_context(silent=True)
    param = next((p for p in ctx.command.params if missing[0] in getattr(p, "opts", ())), None) if ctx else None
    if ctx is None or param is None:
        raise ConfigError(f"missing option `{missing[0]}` (or give `--account FILE` for a cross account)")
    # the usage-error line every command gives: "`perphedge calc` needs the option --entry; see ..."
    raise exceptions.MissingParameter(ctx=ctx, param=param)  # type: ignore[arg-type]


def run_account(path: str, specs: str | None, fmt: str, *, surface: bool = False, plot_dir: str | None = None) -> None:
    """Load the account file, compute every position's liquidation price, print it (and the surface)."""
    from perphedge.core.cross import cross_liquidation, liquidation_surface
    from perphedge.specs import default_registry
    from perphedge.usecases.account import account_document, load_account, surface_document

    plots = None
    if plot_dir is not None:
        if not surface:
            raise ConfigError("invalid `--plot`: it draws the liquidation surface: give `--surface` with it")
        from perphedge.cli.options import output_dir

        plots = output_dir(plot_dir, "--plot", create=False)
    account = load_account(path, default_registry(specs))
    doc = account_document(account, cross_liquidation(account))
    if surface:
        if len(account.positions) < 2:
            raise ConfigError(f"invalid `--surface`: {path} holds one position; the surface needs two legs")
        doc["surface"] = surface_document(liquidation_surface(account, 0, 1, SURFACE_MOVES, SURFACE_MOVES))
    if plots is not None:
        from perphedge.cli.options import output_dir, write_plots

        doc["plots"] = write_plots(plot_surface, doc, output_dir(plots, "--plot"))
    if fmt == "json":
        sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    else:
        from perphedge.cli import _console

        render_account(doc, _console(170))


def render_account(doc: dict[str, Any], console: Any) -> None:
    """Print an account document: the account line, one row per position, the surface if present."""
    from rich.table import Table

    settle = doc["settle"]
    ratio = doc["margin_ratio"]
    head = Table(
        title=f"cross account: {doc['venue']}, settle {settle}",
        title_justify="left",
        show_header=False,
    )
    head.add_column("field")
    head.add_column("value", justify="right")
    head.add_row("wallet balance", f"{_amount(doc['wallet_balance'])} {settle}")
    head.add_row("account equity (wallet + UPNL)", f"{_amount(doc['account_equity'])} {settle}")
    head.add_row("total maintenance margin", f"{_amount(doc['total_maintenance_margin'])} {settle}")
    head.add_row(
        "margin ratio (MM / equity)",
        ("equity <= 0" if ratio is None else f"{ratio * 100:.2f}%") + (" LIQUIDATED" if doc["liquidated"] else ""),
    )
    console.print(head)
    t = Table(title="positions (each liquidation price holds the others at their marks)", title_justify="left")
    for col in (
        "instrument",
        "side",
        "contracts",
        "entry",
        "mark",
        "UPNL",
        "MM",
        "MMR",
        "liquidation",
        "on tick",
        "distance",
        "bankruptcy",
    ):
        t.add_column(col, justify="left" if col in ("instrument", "side") else "right")
    for p in doc["positions"]:
        t.add_row(
            p["instrument"],
            p["side"],
            f"{p['contracts']:,.10g}",
            _price(p["entry"]),
            _price(p["mark"]),
            _amount(p["unrealized_pnl"]),
            _amount(p["maintenance_margin"]),
            f"{p['mmr'] * 100:.3f}%" + (f" +{p['closing_fee_rate'] * 100:.3f}% fee" if p["closing_fee_rate"] else ""),
            _price(p["liquidation_price"]) if p["liquidation_status"] != "always" else "any price",
            _price(p["liquidation_price_on_tick"]),
            _pct(p["distance_to_liquidation"]),
            _price(p["bankruptcy_price"]),
        )
    console.print(t)
    surf = doc.get("surface")
    if surf:
        s = Table(
            title=f"liquidation surface: rows {surf['leg_a']} move, columns {surf['leg_b']} move "
            "(X = liquidated, . = not)",
            title_justify="left",
        )
        s.add_column(f"{surf['leg_a']} \\ {surf['leg_b']}", justify="right")
        cols = surf["moves_b"][::2]
        for m in cols:
            s.add_column(f"{m * 100:+.0f}%", justify="center")
        for m, row in zip(surf["moves_a"], surf["liquidated"], strict=True):
            if round(m * 100) % 10:
                continue
            s.add_row(f"{m * 100:+.0f}%", *("X" if v else "." for v in row[::2]))
        console.print(s)
    for p in doc.get("plots", []):
        console.print(f"plot: {p}")
    for w in doc.get("warnings", []):
        console.print(f"[yellow]warning[/yellow]: {w}")


def plot_surface(doc: dict[str, Any], out_dir: Path) -> list[str]:
    """Heat map of the margin ratio over the surface (PNG and interactive HTML); liquidated cells at >= 100 %."""
    import io

    import matplotlib
    import numpy as np

    from perphedge.usecases.outputs import write_file_atomic

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    surf = doc["surface"]
    out_dir.mkdir(parents=True, exist_ok=True)
    # margin ratio in %, capped at 200 % so the colour scale stays readable; equity <= 0 shows as the cap
    z = np.array([[200.0 if r is None else min(r * 100, 200.0) for r in row] for row in surf["margin_ratio"]])
    xs = [f"{m * 100:+.0f}%" for m in surf["moves_b"]]
    ys = [f"{m * 100:+.0f}%" for m in surf["moves_a"]]
    fig, ax = plt.subplots(figsize=(11, 8))
    im = ax.imshow(z, cmap="RdYlGn_r", origin="lower", aspect="auto", vmin=0, vmax=200)
    ax.contour(z, levels=[100.0], colors="black", linewidths=1.5)
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels(xs, rotation=90, fontsize=7)
    ax.set_yticks(range(len(ys)))
    ax.set_yticklabels(ys, fontsize=7)
    ax.set_xlabel(f"{surf['leg_b']} price move")
    ax.set_ylabel(f"{surf['leg_a']} price move")
    fig.colorbar(im, ax=ax, label="margin ratio (MM / equity), %; >= 100 % liquidated")
    ax.set_title(f"Cross account liquidation surface ({doc['venue']}); black line = liquidation")
    fig.tight_layout()
    png = out_dir / "liquidation_surface.png"
    buf = io.BytesIO()  # rendered in memory and renamed into place: a kill midway leaves no half-written plot
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_file_atomic(png, buf.getvalue(), "--plot")
    hm = go.Figure(
        go.Heatmap(
            z=z,
            x=xs,
            y=ys,
            colorscale="RdYlGn",
            reversescale=True,
            zmin=0,
            zmax=200,
            colorbar={"title": "MM / equity, %"},
        )
    )
    hm.update_layout(
        title=f"Cross account liquidation surface ({doc['venue']}): >= 100 % is liquidated",
        xaxis_title=f"{surf['leg_b']} move",
        yaxis_title=f"{surf['leg_a']} move",
    )
    html = out_dir / "liquidation_surface.html"
    write_file_atomic(html, hm.to_html(include_plotlyjs=True, full_html=True), "--plot")
    return [str(png), str(html)]


def emit_plan(
    doc: dict[str, Any],
    cross: dict[str, Any] | None,
    plots: Path | None,
    fmt: str,
    emit: Callable[[dict[str, Any]], None],
) -> None:
    """Print a plan document (``emit``); with ``hedge.margin_mode: cross`` add its ``cross_account`` block to the
    JSON, or print its tables (the account, each leg's cross vs isolated liquidation, the surface), and with
    ``--plot`` write the surface's heat map."""
    if cross is None:
        if plots is not None:
            raise ConfigError(
                "invalid `--plot`: plan draws the liquidation surface of a cross account: "
                "set `hedge.margin_mode: cross` in the portfolio file"
            )
        emit(doc)
        return
    if plots is not None:
        from perphedge.cli.options import output_dir, write_plots

        if cross.get("surface") is None:
            raise ConfigError("invalid `--plot`: the liquidation surface needs two hedge legs; this plan has one")
        cross["plots"] = write_plots(plot_surface, cross, output_dir(plots, "--plot"))
    doc["cross_account"] = cross
    emit(doc)
    if fmt != "json":
        from perphedge.cli import _console

        render_plan_cross(cross, _console(170))


def render_plan_cross(cross: dict[str, Any], console: Any) -> None:
    """The plan's cross account: each leg's liquidation given the others next to isolated, the surface."""
    from rich.table import Table

    settle = cross["settle"]
    ratio = cross["margin_ratio"]
    t = Table(
        title=f"cross account ({cross['venue']}): wallet {_amount(cross['wallet_balance'])} {settle}, "
        f"equity {_amount(cross['account_equity'])}, maintenance {_amount(cross['total_maintenance_margin'])}, "
        f"margin ratio {'equity <= 0' if ratio is None else f'{ratio * 100:.2f}%'}",
        title_justify="left",
    )
    for col in ("leg", "side", "contracts", "entry", "isolated liquidation", "cross liquidation", "cross − isolated"):
        t.add_column(col, justify="left" if col in ("leg", "side") else "right")
    for leg in cross["legs"]:
        diff = leg["cross_minus_isolated"]
        t.add_row(
            leg["instrument"],
            leg["side"],
            f"{leg['contracts']:,.10g}",
            _price(leg["entry_price"]),
            _price(leg["isolated_liquidation_price"]),
            _price(leg["cross_liquidation_price"]) if leg["cross_liquidation_status"] != "always" else "any price",
            NONE if diff is None else f"{diff:+,.2f}",
        )
    console.print(t)
    surf = cross.get("surface")
    if surf:
        s = Table(
            title=f"liquidation surface: rows {surf['leg_a']} move, columns {surf['leg_b']} move "
            "(X = cross account liquidated, i = only an isolated leg would be, . = neither)",
            title_justify="left",
        )
        s.add_column(f"{surf['leg_a']} \\ {surf['leg_b']}", justify="right")
        for m in surf["moves_b"]:
            s.add_column(f"{m * 100:+.0f}%", justify="center")
        for m, row, iso in zip(surf["moves_a"], surf["liquidated"], surf["isolated_any_leg_liquidated"], strict=True):
            s.add_row(f"{m * 100:+.0f}%", *("X" if c else ("i" if i else ".") for c, i in zip(row, iso, strict=True)))
        console.print(s)
    for p in cross.get("plots", []):
        console.print(f"plot: {p}")
