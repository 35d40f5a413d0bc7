"""``perphedge backtest`` of a dated-futures hedge: the side-by-side table."""

from __future__ import annotations

from typing import Any


def render(doc: dict[str, Any], files: list[str], console: Any) -> None:
    from rich.table import Table

    d, p = doc["dated"], doc["perpetual_hedge"]
    t = Table(
        title=f"{doc['instrument']} rolled {doc['roll']['days_before_expiry']} days before delivery vs "
        f"{doc['perpetual']} ({doc['start']} → {doc['end']}, ratio {doc['ratio']:g}, {doc['leverage']:g}x)",
        title_justify="left",
    )
    for col in ("", "dated", "perpetual"):
        t.add_column(col, justify="left" if not col else "right")
    t.add_row("hedged PnL USD", f"{d['hedged']['pnl']:,.2f}", f"{p['hedged']['pnl']:,.2f}")
    t.add_row("hedged max drawdown", f"{d['hedged']['max_drawdown']:.2%}", f"{p['hedged']['max_drawdown']:.2%}")
    t.add_row("carry USD (basis / funding after costs)", f"{d['carry_usd']:,.2f}", f"{p['carry_usd']:,.2f}")
    t.add_row("funding received USD", "—", f"{p['funding_received_usd']:,.2f}")
    t.add_row("fees USD", f"{d['fees_usd']:,.2f}", f"{p['fees_usd']:,.2f}")
    t.add_row("slippage USD", f"{d['slippage_usd']:,.2f}", f"{p['slippage_usd']:,.2f}")
    t.add_row("liquidations", str(len(d["liquidations"])), str(len(p["liquidations"])))
    console.print(t)
    console.print(
        f"unhedged PnL {doc['unhedged']['pnl']:,.2f} USD; "
        f"dated minus perpetual {doc['dated_minus_perpetual_usd']:+,.2f} USD"
    )
    r = Table(title="Rolls of the dated leg", title_justify="left")
    for col in ("date", "from", "to", "basis sold", "per year", "days left", "fees USD"):
        r.add_column(col, justify="left" if col in ("date", "from", "to") else "right")
    for roll in d["rolls"]:
        r.add_row(
            roll["date"],
            roll["from"] or "(open)",
            roll["to"],
            f"{roll['far_basis']:+.2%}",
            f"{roll['far_basis_annualized']:+.1%}",
            f"{roll['far_days_to_expiry']:.1f}",
            f"{roll['fees_usd']:,.2f}",
        )
    console.print(r)
    for a in doc["assumptions"]:
        console.print(f"assumption: {a}")
    for f in files:
        console.print(f"wrote {f}")
