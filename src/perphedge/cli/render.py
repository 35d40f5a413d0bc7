"""Rich tables for the CLI (the table format of ``plan`` and ``calc``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["render_calc", "render_instruments", "render_plan"]


def _usd(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:,.{nd}f}"


def _signed(x: float | None, nd: int = 2) -> str:
    if x is None:
        return "-"
    if abs(x) < 0.5 * 10**-nd:
        x = 0.0
    return f"{x:+,.{nd}f}"


def _pct(x: float | None, nd: int = 1) -> str:
    return "-" if x is None else f"{x * 100:+.{nd}f}%"


def _coin(x: float | None) -> str:
    return "-" if x is None else f"{x:,.8f}".rstrip("0").rstrip(".") if abs(x) < 1e6 else f"{x:,.2f}"


def _position_flags(outcomes: list[dict[str, Any]]) -> str:
    """What happened to the DeFi positions in one scenario: out of range, liquidated, depegged."""
    flags = []
    for o in outcomes:
        if o["range"] in ("below", "above"):
            flags.append(f"#{o['index']} {o['range']} range")
        if o["liquidated"]:
            flags.append(f"#{o['index']} LIQUIDATED (−{_usd(o['liquidation_loss_usd'])} bonus)")
        elif o["health_factor"] is not None:
            flags.append(f"#{o['index']} HF {o['health_factor']:.2f}")
        if o["depeg"] is not None:
            flags.append(f"#{o['index']} depeg {-o['depeg'] * 100:+.0f}%")
    return ", ".join(flags)


def _render_positions(pf: dict[str, Any], console: Console) -> None:
    """The DeFi positions: value, amounts and delta per asset, and what is particular to each kind."""
    t = Table(title="DeFi positions (hedged by their delta, not their value)", title_justify="left")
    for col, just in (
        ("#", "right"),
        ("position", "left"),
        ("value USD", "right"),
        ("amounts", "left"),
        ("delta", "left"),
        ("delta USD", "right"),
        ("state", "left"),
    ):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for p in pf["positions"]:
        state = ""
        if p["kind"] == "lp_v3":
            state = f"range {p['range'][0]:g}-{p['range'][1]:g}: {p['range_status']}"
        elif p["kind"] == "lp_v2":
            state = f"pool price {p['pool_price']:,.6g}"
        elif p["kind"] == "staked":
            state = f"rate {p['rate']:g} {p['underlying']}" + (
                f", depeg scenario {-p['depeg'] * 100:+.0f}%" if p["depeg"] is not None else ""
            )
        elif p["kind"] == "lending":
            hf = "none (no debt)" if p["health_factor"] is None else f"{p['health_factor']:.3f}"
            liq = ", ".join(f"{a} {_usd(v)}" for a, v in p["liquidation_prices_usd"].items() if v is not None)
            state = f"HF {hf}" + (f"; liquidated at {liq}" if liq else "")
        if "gamma" in p:
            gp = p.get("hedged_pnl_usd_1pct_move")
            state += f"; gamma {p['gamma']:.4g}" + (
                f"; hedged -1%/+1% move {_signed(gp['down'])}/{_signed(gp['up'])} USD" if gp else ""
            )
        t.add_row(
            str(p["index"]),
            p["label"] + (f" [{p['group']}]" if p["group"] else ""),
            _usd(p["value_usd"]),
            ", ".join(f"{_coin(q)} {a}" for a, q in p["amounts"].items()),
            ", ".join(f"{_coin(q)} {a}" for a, q in p["delta"].items()) or "-",
            _signed(sum(p["delta_usd"].values())),
            state,
        )
    console.print(t)
    console.print(
        "exposure by asset (holdings' value + positions' delta): "
        + ", ".join(f"{a} {_signed(v)} USD" for a, v in pf["exposure_by_asset_usd"].items())
    )


def render_plan(doc: dict[str, Any], console: Console) -> None:
    """Print a plan document as tables."""
    pf = doc["portfolio"]
    hedge = doc["hedge"]
    console.print(f"[bold]perphedge plan[/bold] — {pf['name']}  ({doc['source']})")

    t = Table(title="Portfolio", title_justify="left")
    for col, just in (
        ("asset", "left"),
        ("group", "left"),
        ("quantity", "right"),
        ("price USD", "right"),
        ("value USD", "right"),
        ("weight", "right"),
    ):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for h in pf["holdings"]:
        t.add_row(
            h["asset"] + (" (cash)" if h["stable"] else ""),
            h["group"] or "",
            _coin(h["quantity"]),
            _usd(h["price_usd"], 4 if h["price_usd"] < 10 else 2),
            _usd(h["value_usd"]),
            f"{h['weight'] * 100:.1f}%",
        )
    if pf["holdings"] or "positions" not in pf:
        console.print(t)
    if "positions" in pf:
        _render_positions(pf, console)
    btc = f"  = {_coin(pf['value_btc'])} BTC" if pf["value_btc"] is not None else ""
    console.print(
        f"value {_usd(pf['value_usd'])} USD{btc}   exposure {_usd(pf['exposure_usd'])} USD   "
        f"cash {_usd(pf['cash_usd'])} USD"
    )

    rec = hedge.get("leverage_recommendation")
    if rec:
        console.print(
            f"leverage auto: {rec['leverage']:g}x — the highest with P(liquidation) <= "
            f"{rec['max_liquidation_probability']:.1%} over {rec['horizon_days']} days ({rec['model']} Monte Carlo, "
            f"{rec['paths']:,} paths, P = {rec['liquidation_probability']:.2%}); with daily top-ups: "
            + ("none" if rec["with_top_up"] is None else f"{rec['with_top_up']:g}x")
        )
    est = hedge.get("beta_estimation")
    if est:
        console.print(
            f"hedge ratios estimated from the store ({est['method']}, daily returns against {est['proxy']}, "
            f"{est['window_days']} days {est['start']} → {est['end']}): "
            + ", ".join(f"{a} {b:.2f}" for a, b in sorted(est["betas"].items()))
        )
    stored = {a: src for a, src in pf.get("price_sources", {}).items() if src.startswith("store")}
    if stored:
        console.print(
            "prices from the market store: "
            + "; ".join(f"{a} {src[len('store: ') :]}" for a, src in sorted(stored.items()))
        )
    console.print(
        f"\n[bold]Hedge[/bold]: {hedge['ratio'] * 100:g}% of scope '{hedge['scope']}' "
        f"({_usd(hedge['scope_exposure_usd'])} USD), method {hedge['method']}, proxy {hedge['proxy']}, "
        f"{hedge['leverage']:g}x, collateral {hedge['collateral_source']}  [{doc['instrument_spec']}]"
    )
    console.print(
        f"target {_usd(hedge['target_usd'])} USD   hedged {_usd(hedge['hedged_usd'])} USD   "
        f"residual {_signed(hedge['residual_usd'])} USD   [bold]net delta {_signed(hedge['net_delta_usd'])} USD[/bold]"
        " (whole book, +100% proxy move)"
    )
    for n, leg in enumerate(hedge["legs"], 1):
        lt = Table(
            title=f"Leg {n}: {leg['instrument']} — {leg['kind']} {leg['side']}", title_justify="left", show_header=False
        )
        lt.add_column("field")
        lt.add_column("value", justify="right")
        a = leg["collateral_asset"]
        covers = ", ".join(f"{k} {_usd(v, 0)}" for k, v in leg["covers_usd"].items())
        liq = (
            "none (cannot be liquidated)"
            if leg["liquidation_price"] is None
            else f"{_usd(leg['liquidation_price'])} ({_pct(leg['liquidation_distance'])} from entry)"
        )
        rows = [
            (
                "contracts",
                f"{leg['contracts']:g} × {leg['contract_size']:g} {leg['contract_size_unit']}"
                f" (exact {leg['contracts_exact']:g})",
            ),
            ("notional", f"{_usd(leg['notional_usd'])} USD"),
            ("entry price (spot)", f"{_usd(leg['entry_price'])} USD"),
            ("offsets (USD delta)", f"{_usd(leg['target_delta_usd'])}: {covers}"),
            ("leverage", f"{leg['leverage']:g}x isolated"),
            (
                "collateral",
                f"{_coin(leg['collateral_amount'])} {a} = {_usd(leg['collateral_usd'])} USD "
                f"({leg['collateral_source']})",
            ),
            ("initial margin", f"{_coin(leg['initial_margin'])} {a}"),
            (
                "maintenance margin",
                f"{_coin(leg['maintenance_margin'])} {a} "
                f"(MMR {leg['maintenance_margin_rate'] * 100:.3f}%, tier {leg['margin_tier']})",
            ),
            ("liquidation price (mark)", liq),
            ("  method", leg["liquidation_method"]),
            ("bankruptcy price", "none" if leg["bankruptcy_price"] is None else f"{_usd(leg['bankruptcy_price'])}"),
            (
                "funding per settlement",
                f"{_coin(leg['funding_per_settlement'])} {leg['funding_asset']} "
                f"every {leg['funding_interval_hours']:g}h",
            ),
            (
                "funding per day / 30d / year",
                f"{_signed(leg['funding_usd_per_day'])} / "
                f"{_signed(leg['funding_usd_per_30d'])} / "
                f"{_signed(leg['funding_usd_per_year'])} USD "
                f"({_pct(leg['funding_annual_rate'], 2)} a year)",
            ),
            ("taker fee to open", f"{_coin(leg['taker_fee_open'])} {a}"),
        ]
        for k, v in rows:
            lt.add_row(k, v)
        console.print(lt)
    console.print(
        f"funding assumed at {hedge['funding_rate_8h'] * 100:.4f}% per 8h: positive means longs pay "
        "shorts, so the short hedge receives it"
    )

    st = Table(title="Scenarios (instant move; altcoins move beta × proxy unless named)", title_justify="left")
    defi = "positions" in pf
    cols = ["scenario", "proxy", "spot PnL USD", "hedge PnL USD", "net PnL USD", "offset", "liq."]
    pools = defi and any(p["kind"] in ("lp_v2", "lp_v3") for p in pf["positions"])
    if defi:
        cols[2] = "spot+DeFi USD"
        cols += ["LP IL USD", "DeFi"] if pools else ["DeFi"]
    for col in cols:
        st.add_column(col, justify="left" if col in ("scenario", "DeFi") else "right")
    for s in doc["scenarios"]:
        row = [
            s["name"],
            _pct(s["proxy_return"], 0),
            _signed(s["spot_pnl_usd"]),
            _signed(s["hedge_pnl_usd"]),
            _signed(s["net_pnl_usd"]),
            "-" if s["offset_fraction"] is None else f"{s['offset_fraction'] * 100:.0f}%",
            "YES" if s["liquidated"] else "",
        ]
        if pools:
            row.append(_signed(s["impermanent_loss_usd"]))
        if defi:
            row.append(_position_flags(s["positions"]))
        st.add_row(*row)
    console.print(st)

    if "compare" in doc:
        ct = Table(title="Compare", title_justify="left")
        for col in (
            "variant",
            "legs",
            "notional USD",
            "collateral USD",
            "min liq. dist.",
            "funding USD/day",
            "net delta USD",
            "net at -20%",
            "net at +20%",
        ):
            ct.add_column(col, justify="left" if col in ("variant", "legs") else "right", no_wrap=col == "legs")
        for row in doc["compare"]:
            if row["error"]:
                ct.add_row(row["variant"], row["instrument"], f"[dim]{row['error']}[/dim]", "", "", "", "", "", "")
                continue
            sc = {s["name"].split()[-1]: s["net_pnl_usd"] for s in row["scenarios"]}
            ct.add_row(
                row["variant"],
                "\n".join(row["legs"]),
                _usd(row["notional_usd"]),
                _usd(row["collateral_usd"]),
                _pct(row["min_liquidation_distance"]),
                _signed(row["funding_usd_per_day"]),
                _signed(row["net_delta_usd"]),
                _signed(sc.get("-20%")),
                _signed(sc.get("+20%")),
            )
        console.print(ct)

    if "drift" in doc:
        dt = Table(
            title="Drift: legs held through " + ", ".join(f"{k} {_pct(v)}" for k, v in doc["drift"]["moves"].items()),
            title_justify="left",
        )
        for col in (
            "instrument",
            "price",
            "hedge delta USD",
            "target USD",
            "ratio now",
            "contracts to short",
            "unrealised PnL",
            "liq. dist. now",
        ):
            dt.add_column(col, justify="left" if col == "instrument" else "right")
        for d in doc["drift"]["legs"]:
            dt.add_row(
                d["instrument"],
                _usd(d["price"]),
                _signed(d["delta_usd"]),
                _usd(d["target_delta_usd"]),
                f"{d['hedge_ratio_now'] * 100:.1f}%",
                f"{d['contracts_to_trade']:+g}",
                _coin(d["unrealised_pnl"]),
                "LIQUIDATED" if d["liquidated"] else _pct(d["liquidation_distance_now"]),
            )
        console.print(dt)

    if doc.get("dated"):  # a dated-futures leg (cli/plan_futures.py)
        from perphedge.cli.plan_futures import render_dated

        render_dated(doc["dated"], console)
    for note in doc["notes"]:
        console.print(f"[cyan]note:[/cyan] {note}")
    for w in doc["warnings"]:
        console.print(f"[yellow]warning ({w['code']}):[/yellow] {w['message']}")


def render_calc(doc: dict[str, Any], console: Console) -> None:
    """Print a calc document as a two-column table."""
    t = Table(
        title=f"perphedge calc — {doc['instrument']} {doc['kind']} {doc['side']} {doc['contracts']:g} contracts",
        title_justify="left",
        show_header=False,
    )
    t.add_column("field")
    t.add_column("value", justify="right")

    def amt(key: str) -> str:
        v = doc.get(key)
        if v is None:
            return "-"
        if v["value"] is None:
            return "none"
        if key.endswith("_price"):
            x = v["value"]
            return f"{x:,.2f} {v['unit']}" if abs(x) >= 100 else f"{x:,.6g} {v['unit']}"
        return f"{_coin(v['value'])} {v['unit']}"

    rows = [
        ("contract size", amt("contract_size")),
        ("size", amt("size")),
        ("notional", amt("notional")),
        ("position value at entry", amt("position_value")),
        ("entry price", amt("entry_price")),
        ("leverage / mode", f"{doc['leverage']:g}x {doc['margin_mode']}"),
        ("margin backing the position", amt("margin")),
        ("initial margin", amt("initial_margin")),
        ("maintenance margin (at mark)", amt("maintenance_margin")),
        ("maintenance rate / tier", f"{doc['maintenance_margin_rate'] * 100:.3f}% / tier {doc['margin_tier']}"),
        ("liquidation price", amt("liquidation_price")),
        ("  method / MM basis", f"{doc['liquidation_method']} / {doc['liquidation_mm_basis']}"),
        ("  MMR / tier at liquidation", f"{doc['liquidation_mmr'] * 100:.3f}% / tier {doc['liquidation_tier']}"),
        ("bankruptcy price", amt("bankruptcy_price")),
    ]
    if doc["exit_price"] is not None:
        rows += [
            ("exit price", amt("exit_price")),
            ("PnL", amt("pnl")),
            ("PnL in USD at exit", amt("pnl_usd")),
            ("ROE (PnL / initial margin)", _pct(doc["roe"], 2)),
            ("fees open + close", f"{amt('fee_open')} + {amt('fee_close')}"),
            ("net PnL after fees", amt("net_pnl")),
        ]
    else:
        rows += [("fee to open", amt("fee_open"))]
    if doc.get("expiry"):
        rows += [("funding", f"none: a dated future, delivered {doc['expiry']} at the delivery price")]
        for k, v in rows:
            t.add_row(k, v)
        console.print(t)
        return
    rows += [
        ("funding rate per settlement", f"{doc['funding_rate'] * 100:.4f}% every {doc['funding_interval_hours']:g}h"),
        ("funding per settlement (+ = received)", amt("funding")),
        ("  in USD at mark", amt("funding_usd")),
        ("funding per day", amt("funding_per_day")),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)


def render_instruments(rows: list[dict[str, Any]], console: Console) -> None:
    """Print the instrument registry."""
    from rich import box

    t = Table(
        title="Instruments (bundled specs; override with --specs FILE)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in (
        "id",
        "kind",
        "contract",
        "lot",
        "tick",
        "max lev",
        "MMR t1 (tiers)",
        "liquidation method",
        "fund",
        "fees % m/t",
    ):
        t.add_column(col, no_wrap=True)
    for r in rows:
        t.add_row(
            r["id"],
            r["kind"],
            f"{r['contract_size']:g} {r['contract_size_unit']}",
            f"{r['lot_size']:g}",
            f"{r['tick_size']:g}",
            f"{r['max_leverage']:g}x",
            f"{r['tiers'][0]['mmr'] * 100:.2f}% ({len(r['tiers'])})",
            r["liquidation_method"],
            f"{r['funding_interval_hours']:g}h",
            f"{r['maker_fee'] * 100:.3g}/{r['taker_fee'] * 100:.3g}",
        )
    console.print(t)


def render_refresh(doc: dict[str, Any], console: Console) -> None:
    """Print an ``instruments --refresh``: what was read, the notes, and (``--diff``) what differs from the bundle."""
    from rich import box

    console.print(
        f"Refreshed {len(doc['refreshed'])} instrument specs from {', '.join(doc['exchanges'])} on {doc['as_of']}"
        + (f"; written to {doc['written']} (use it with --specs)" if doc["written"] else "")
    )
    for note in doc["notes"]:
        console.print(f"note: {note}")
    if "differences" not in doc:
        return
    if not doc["differences"]:
        console.print("no differences from the bundled specs")
        return
    t = Table(title="Differences from the bundled specs", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("instrument", "field", "bundled", "venue"):
        t.add_column(col, no_wrap=True)
    for r in doc["differences"]:
        t.add_row(r["instrument"], r["field"], f"{r['bundled']}", f"{r['venue']}")
    console.print(t)
