"""``perphedge analyze --futures``: table and plots of the dated-futures document."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

NONE = "—"


def _p(x: float | None, spec: str = "+.1%") -> str:
    return NONE if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _dist(s: dict[str, Any] | None) -> str:
    if not s:
        return NONE
    return f"{_p(s['median'])} [{_p(s['p5'])}, {_p(s['p95'])}]"


def render(doc: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    span = f"{doc['since'] or 'start'} → {doc['until'] or 'end'}"
    t = Table(
        title=f"Dated futures of {doc['source']} ({span}): annualised basis vs spot, bars with >= "
        f"{doc['min_days']:g} days left (median \\[p5, p95])",
        title_justify="left",
    )
    for col in ("contract", "delivery", "bars", "first → last", "basis/yr", "last bar basis", "settlement vs spot"):
        t.add_column(col, justify="left" if col in ("contract", "delivery", "first → last") else "right")
    for c in doc["contracts"]:
        lb = c["last_bar"]
        t.add_row(
            c["contract"],
            c["expiry"],
            str(c["bars"]),
            f"{c['first']} → {c['last']}",
            _dist(c["basis_annualized"]),
            f"{_p(lb['basis'], '+.2%')} ({lb['days_to_expiry']:.2f} d left)",
            _p(c["settlement_vs_last_spot"], "+.2%"),
        )
    console.print(t)
    console.print(f"all contracts: annualised basis {_dist(doc['basis_annualized'])}")
    if doc["term_structure"]:
        most = max(len(d["contracts"]) for d in doc["term_structure"])
        last = [d for d in doc["term_structure"] if len(d["contracts"]) == most][-1]
        ts = Table(
            title=f"Term structure on {last['date']} (the last day with {most} listed expiries)", title_justify="left"
        )
        for col in ("contract", "delivery", "days left", "basis", "basis/yr"):
            ts.add_column(col, justify="left" if col in ("contract", "delivery") else "right")
        for r in last["contracts"]:
            ts.add_row(
                r["contract"],
                r["expiry"],
                f"{r['days_to_expiry']:.1f}",
                _p(r["basis"], "+.2%"),
                _p(r["basis_annualized"]),
            )
        console.print(ts)
    cv = doc["carry_vs_funding"]
    ct = Table(
        title="Short hedger: basis locked by a dated future held to delivery vs the perpetual's realised funding "
        "over the same days (per year; median \\[p5, p95])",
        title_justify="left",
    )
    for col in ("contract", "entries", "dated carry", "perp funding", "spread (dated − perp)", "dated better"):
        ct.add_column(col, justify="left" if col == "contract" else "right")
    for row in [*cv["by_contract"], {"contract": "all", **cv}]:
        spread = row["spread_annualized"]
        ct.add_row(
            row["contract"],
            str(spread["n"]) if spread else "0",
            _dist(row["carry_annualized"]),
            _dist(row["funding_annualized"]),
            _dist(spread),
            _p(spread["share_positive"], ".0%") if spread else NONE,
        )
    console.print(ct)
    if cv["carry_annualized"]:
        console.print(
            f"mean over {cv['carry_annualized']['n']} entry days: dated carry {_p(cv['carry_annualized']['mean'])}/yr "
            f"vs perpetual funding {_p(cv['funding_annualized']['mean'])}/yr"
            + (
                f"; {cv['skipped_without_funding']} entry days left out (funding history incomplete)"
                if cv["skipped_without_funding"]
                else ""
            )
        )
    for p in doc.get("plots", []):
        console.print(f"plot: {p}")


def plot(doc: dict[str, Any], out_dir: Path) -> list[str]:
    """Annualised basis by contract over time and the carry-minus-funding spread, PNG and HTML."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    min_days = doc["min_days"]
    fig, ax = plt.subplots(figsize=(11, 5))
    pfig = go.Figure()
    for c in doc["contracts"]:
        rows = [r for r in doc["daily"] if r["contract"] == c["contract"] and r["days_to_expiry"] >= min_days]
        x = [r["date"] for r in rows]
        y = [r["basis_annualized"] for r in rows]
        ax.plot(x, y, label=c["contract"], linewidth=1)
        pfig.add_trace(go.Scatter(x=x, y=y, name=c["contract"], mode="lines"))
    ax.axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_title(f"Annualised basis of each dated future vs spot (>= {min_days:g} days to delivery)")
    ax.set_ylabel("basis per year")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(8))
    ax.legend()
    fig.tight_layout()
    png = out_dir / "futures_basis.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    pfig.update_layout(title="Annualised basis of each dated future vs spot", yaxis_title="basis per year")
    html = out_dir / "futures_basis.html"
    pfig.write_html(html, include_plotlyjs=True, full_html=True)
    files += [str(png), str(html)]

    spread = [e["spread_annualized"] for e in doc["carry_vs_funding"]["entries"]]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.hist(spread, bins=30)
    ax.axvline(0.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_title("Dated carry minus perpetual funding, per entry day (per year)")
    ax.set_xlabel("spread per year (positive: the dated future earned more)")
    fig.tight_layout()
    png = out_dir / "futures_carry_spread.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    hfig = go.Figure(go.Histogram(x=spread, nbinsx=30))
    hfig.update_layout(title="Dated carry minus perpetual funding (per year)", xaxis_title="spread per year")
    html = out_dir / "futures_carry_spread.html"
    hfig.write_html(html, include_plotlyjs=True, full_html=True)
    files += [str(png), str(html)]
    return files
