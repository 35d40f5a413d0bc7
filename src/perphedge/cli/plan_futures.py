"""``perphedge plan`` with a dated-futures leg: the basis, roll, margin, scenarios and perpetual-vs-dated tables."""

from __future__ import annotations

from typing import Any


def _money(x: float | None) -> str:
    return "—" if x is None else f"{x:,.2f}"


def render_dated(d: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    console.print(
        f"[bold]{d['instrument']}[/bold] delivers {d['expiry']} ({d['days_to_expiry']:.1f} days): future "
        f"{d['future_price']:,.2f} ({d['future_price_source']}) vs spot {d['spot_price']:,.2f}, basis "
        f"{d['basis']:+.2%} = {d['basis_annualized']:+.1%}/yr; horizon {d['horizon_days']:g} days, "
        f"{d['days_covered_by_locked_basis']:.1f} of them on the locked basis"
    )
    for r in d["rolls"]:
        console.print(
            f"roll needed: on {r['date']} ({r['days_before_expiry']} days before delivery) into {r['into']}, "
            f"assumed at {r['assumed_basis_annualized']:+.1%}/yr, fees ≈ {r['fees_usd']:,.2f} USD"
        )
    m = d["margin"]
    lp = "none" if m["liquidation_price"] is None else f"{m['liquidation_price']:,.2f}"
    console.print(
        f"margin at the future's price ({m['method']}, {m['method_of']}): initial {m['initial_margin']:.6g} "
        f"{m['margin_asset']}, liquidation {lp}, bankruptcy {_money(m['bankruptcy_price'])}"
    )
    t = Table(title="Scenarios with the basis (dated leg)", title_justify="left")
    for col in ("scenario", "proxy", "basis", "basis after", "spot PnL", "hedge PnL", "net PnL"):
        t.add_column(col, justify="left" if col in ("scenario", "basis") else "right")
    for s in d["scenarios"]:
        t.add_row(
            s["name"],
            f"{s['proxy_return']:+.0%}",
            s["basis"],
            f"{s['basis_after']:+.2%}",
            _money(s["spot_pnl_usd"]),
            _money(s["hedge_pnl_usd"]),
            _money(s["net_pnl_usd"]),
        )
    console.print(t)
    c = Table(title=f"Perpetual vs dated over {d['horizon_days']:g} days", title_justify="left")
    for col in ("hedge", "carry / yr", "carry USD", "assumption"):
        c.add_column(col, justify="right" if col in ("carry / yr", "carry USD") else "left")
    for row in d["comparison"]:
        c.add_row(row["hedge"], f"{row['carry_annualized']:+.1%}", _money(row["carry_usd"]), row["assumption"])
    console.print(c)
    console.print(f"dated minus perpetual: {d['dated_minus_perpetual_usd']:+,.2f} USD over the horizon")
