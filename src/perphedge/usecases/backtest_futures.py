"""``perphedge backtest`` of a hedge on dated futures with a roll policy, side by side with the same hedge on
the venue's perpetual (``perphedge.backtest-futures/1``).

A run file selects it by naming a dated future as the hedge instrument and giving a ``roll:`` block::

    portfolio: ../examples/btc.yaml
    start: 2021-01-02
    end: 2021-09-20
    hedge: {instrument: "binance:BTCUSD_210326", leverage: 2, collateral: buy}
    roll: {days_before_expiry: 3}
    costs: {taker_fee: 0.0005, slippage_bps: 2}

The leg opens on the named contract (it must deliver more than ``days_before_expiry`` days after the first
close), rolls into the next contract of the same series found in the store, and the perpetual variant uses
the series' perpetual (``margin_from`` in ``specs/futures.json``) with its stored mark closes and funding.
Both variants re-size to the target on the same days (the rolls), pay the same fees and slippage, and hold
collateral of ``notional / leverage`` (see :mod:`perphedge.core.futures_backtest`).

Supported: daily steps, a static ratio (``policy.kind: static``, no band), ``method: notional`` on the
portfolio's non-stable holdings (each counted with beta 1 to the future's coin), ``collateral: buy``
(inverse: coin bought for the hedge, its delta hedged too, so the short is ``L/(L−1)`` of the exposure)
or ``stable`` (linear). Anything else is refused with the field named.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from perphedge.core import futures as F
from perphedge.core.futures_backtest import ContractSeries, LegResult, simulate_dated, simulate_perpetual
from perphedge.core.instruments import Instrument
from perphedge.core.metrics import equity_metrics
from perphedge.core.units import is_stablecoin
from perphedge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from perphedge.config import PortfolioFile, RunFile
    from perphedge.data.store import MarketStore
    from perphedge.specs import InstrumentRegistry
    from perphedge.usecases.backtest import BacktestOutcome, BacktestRequest

__all__ = ["BACKTEST_FUTURES_SCHEMA", "execute_dated", "is_dated_run", "run_dated"]

BACKTEST_FUTURES_SCHEMA = "perphedge.backtest-futures/1"


def is_dated_run(run_cfg: RunFile, pfile: PortfolioFile, registry: InstrumentRegistry) -> bool:
    """True when the run hedges on a dated future (or gives a ``roll:`` block, which only such a run may)."""
    from perphedge.usecases.backtest import _hedge_block

    hb = _hedge_block(pfile, run_cfg)
    idents = [hb.instrument] if hb.instrument else [leg.instrument for leg in hb.legs or ()]
    dated = [i for i in idents if i and registry.get(i).is_dated]
    if dated and hb.legs:
        raise ConfigError(f"`hedge.legs`: a dated future ({dated[0]}) is backtested as the one `hedge.instrument`")
    if run_cfg.roll is not None and not dated:
        raise ConfigError(
            "`roll`: a roll policy is for a dated-futures hedge; name one as `hedge.instrument` "
            "(e.g. binance:BTCUSD_210326) or drop `roll:`"
        )
    return bool(dated)


def _ms(ts: Any) -> int:
    import pandas as pd

    return int(pd.Timestamp(ts).value // 1_000_000)


def _check_supported(run_cfg: RunFile, hb: Any, inst: Instrument) -> None:
    if run_cfg.roll is None:
        raise ConfigError(
            f"`roll`: {inst.id} delivers on {_iso(inst.expiry_ms or 0)[:10]}: a dated-futures backtest needs a roll "
            "policy, e.g. `roll: {days_before_expiry: 3}`"
        )
    if run_cfg.step != "1d":
        raise ConfigError(f"`step`: a dated-futures backtest runs on daily bars (1d), was {run_cfg.step}")
    p = run_cfg.policy
    if p.kind != "static":
        raise ConfigError(f"`policy.kind`: a dated-futures backtest holds a static ratio (static), was {p.kind}")
    if "band" in p.model_fields_set:
        raise ConfigError("`policy.band`: a dated-futures backtest re-sizes the hedge only when it rolls; drop `band`")
    if hb.method != "notional":
        raise ConfigError(f"`hedge.method`: a dated-futures backtest sizes on notional, was {hb.method}")
    if hb.scope != "all":
        raise ConfigError(f"`hedge.scope`: a dated-futures backtest hedges all holdings, was {hb.scope!r}")
    if run_cfg.defi is not None:
        raise ConfigError("`defi`: DeFi positions are not backtested against dated futures")
    collateral = hb.collateral or ("buy" if inst.is_inverse else "stable")
    if inst.is_inverse and collateral != "buy":
        raise ConfigError(
            f"`hedge.collateral`: a dated-futures backtest of an inverse contract buys its coin collateral (buy), "
            f"was {collateral}"
        )
    if not inst.is_inverse and collateral != "stable":
        raise ConfigError(
            f"`hedge.collateral`: a linear contract is margined in {inst.settle} (stable), was {collateral}"
        )
    if inst.is_inverse and hb.leverage <= 1:
        raise ConfigError(
            "`hedge.leverage`: an inverse short on bought collateral at 1x hedges nothing (the collateral is as "
            "long as the short is short); use more than 1x, e.g. 1.5 or 2"
        )
    if hb.leverage > inst.max_leverage:
        raise ConfigError(f"`hedge.leverage`: {inst.id} allows at most {inst.max_leverage:g}x, was {hb.leverage:g}")


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_dated(
    run_cfg: RunFile, pfile: PortfolioFile, store: MarketStore, registry: InstrumentRegistry, *, config_hash: str
) -> dict[str, Any]:
    """Run both variants; the ``perphedge.backtest-futures/1`` document (plus ``_series`` for the report)."""
    import pandas as pd

    from perphedge.data.reader import ohlc
    from perphedge.specs.futures import series_for
    from perphedge.usecases.backtest import _check_listed, _hedge_block, _start_portfolio

    hb = _hedge_block(pfile, run_cfg)
    inst = registry.get(hb.instrument)
    _check_supported(run_cfg, hb, inst)
    assert run_cfg.roll is not None and inst.expiry_ms is not None
    roll_days = run_cfg.roll.days_before_expiry
    found = series_for(inst.exchange, inst.symbol)
    assert found is not None
    series = found[0]
    perp = registry.get(series.margin_from)
    start, end = str(run_cfg.start), str(run_cfg.end)
    first_close = _ms(pd.Timestamp(start)) + F.DAY_MS  # the first daily bar's close
    try:
        life = F.days_to_expiry(first_close, inst.expiry_ms)
    except ConfigError:
        raise ConfigError(
            f"`hedge.instrument`: {inst.id} delivered on {_iso(inst.expiry_ms)}, before the first close of `start` "
            f"{start}: name a contract that is listed then"
        ) from None
    F.check_roll_days(roll_days, life, "roll.days_before_expiry")
    assets = sorted({h.asset.upper() for h in pfile.holdings if not is_stablecoin(h.asset)})
    if not assets:
        raise ConfigError("the portfolio holds only stablecoins: there is nothing to hedge")
    _check_listed(store, assets, "1d", start)
    portfolio, _ = _start_portfolio(pfile, store, assets, "1d", start)
    closes = ohlc(store, sorted({*assets, inst.base}), start, end)["close"]
    if closes.isna().any().any():
        raise DataError(f"spot history between {start} and {end} has gaps: the backtest needs every daily close")
    dates = closes.index
    day_ms = [_ms(d) for d in dates]
    n = len(day_ms)
    spot = [float(x) for x in closes[inst.base]]
    quantities = {h.asset.upper(): h.quantity for h in portfolio.holdings if not h.is_stable}
    cash0 = sum(portfolio.value_of(h) for h in portfolio.holdings if h.is_stable)
    unhedged = [cash0 + sum(q * float(closes[a].iloc[i]) for a, q in quantities.items()) for i in range(n)]
    exposure = [u - cash0 for u in unhedged]
    ratio = run_cfg.policy.ratio
    # inverse on bought coin collateral: the collateral is long too, so the short is L/(L-1) of the exposure
    scale = hb.leverage / (hb.leverage - 1.0) if inst.is_inverse else 1.0
    target = [ratio * e * scale for e in exposure]
    # the contracts of the series stored for the period
    present = store.query("SELECT table_name FROM information_schema.tables WHERE table_name = 'futures_candles'")
    if present.empty:  # a store written before dated futures, opened read-only (not migrated), or tables dropped
        raise DataError(
            f"{getattr(store, 'path', None) or 'the store'} holds no dated-futures table: import the contracts' "
            "candles into it (`perphedge data import --sample` or `perphedge data fetch --futures`)"
        )
    frame = store.query(
        "SELECT symbol, ts, expiry, close, high FROM futures_candles WHERE source = ? AND timeframe = '1d' "
        "AND ts >= CAST(? AS TIMESTAMP) AND ts <= CAST(? AS TIMESTAMP) ORDER BY symbol, ts",
        [inst.exchange, f"{start} 00:00:00", f"{end} 00:00:00"],
    )
    index = {d: i for i, d in enumerate(day_ms)}
    contracts: list[ContractSeries] = []
    for symbol, g in frame.groupby("symbol", sort=False):
        hit = series_for(inst.exchange, str(symbol))
        if hit is None or hit[0] != series:
            continue
        expiry = _ms(g["expiry"].iloc[0])
        if registry.get(f"{inst.exchange}:{symbol}").expiry_ms != expiry:
            raise DataError(
                f"stored contract {inst.exchange}:{symbol}: its stored expiry {_iso(expiry)} is not its delivery"
            )
        c: list[float | None] = [None] * n
        h: list[float | None] = [None] * n
        for r in g.itertuples():
            i = index.get(_ms(r.ts))
            if i is not None:
                c[i], h[i] = float(r.close), float(r.high)
        contracts.append(ContractSeries(symbol=str(symbol), expiry_ms=expiry, close=c, high=h))
    first = next((c for c in contracts if c.symbol == inst.symbol), None)
    if first is None or first.close[0] is None:
        raise DataError(
            f"no {start} close of {inst.id} in the store (dated futures stored: "
            f"{', '.join(sorted(c.symbol for c in contracts)) or 'none'}; import them with `perphedge data import`)"
        )
    # only contracts from the named one on: the leg opens on it
    contracts = [c for c in contracts if c.expiry_ms >= inst.expiry_ms]
    fee = run_cfg.costs.taker_fee if run_cfg.costs.taker_fee is not None else inst.taker_fee
    if run_cfg.costs.fills == "maker":
        fee = run_cfg.costs.maker_fee if run_cfg.costs.maker_fee is not None else inst.maker_fee
        fee = max(fee, 0.0)
    slip = run_cfg.costs.slippage_bps
    dated = simulate_dated(
        kind=inst.kind,
        day_ms=day_ms,
        spot=spot,
        contracts=contracts,
        target_usd=target,
        roll_days=roll_days,
        leverage=hb.leverage,
        fee_rate=fee,
        slippage_bps=slip,
        maintenance_margin=inst.liquidation_schedule.maintenance_margin,
    )
    # the perpetual: stored mark closes/highs and funding over the same days
    marks = store.query(
        "SELECT ts, close, high FROM candles WHERE source = ? AND symbol = ? AND timeframe = '1d' "
        "AND ts >= CAST(? AS TIMESTAMP) AND ts <= CAST(? AS TIMESTAMP) ORDER BY ts",
        [f"{perp.exchange}_mark", perp.ccxt_symbol, f"{start} 00:00:00", f"{end} 00:00:00"],
    )
    mark = {_ms(r.ts): (float(r.close), float(r.high)) for r in marks.itertuples()}
    missing = [d for d in day_ms if d not in mark]
    if missing:
        raise DataError(
            f"no daily mark close of {perp.id} ({perp.exchange}_mark {perp.ccxt_symbol}) on "
            f"{_iso(missing[0])[:10]} ({len(missing)} of {n} days missing): the comparison needs the perpetual's "
            "prices over the whole period"
        )
    fund = store.query(
        "SELECT ts, rate, interval_hours FROM funding WHERE source = ? AND symbol = ? "
        "AND ts > CAST(? AS TIMESTAMP) AND ts <= CAST(? AS TIMESTAMP) ORDER BY ts",
        [
            perp.exchange,
            perp.ccxt_symbol,
            str(pd.Timestamp(dates[0]) + pd.Timedelta(days=1)),
            str(pd.Timestamp(dates[-1]) + pd.Timedelta(days=1)),
        ],
    )
    expected = (n - 1) * round(24 / perp.funding_interval_hours)
    if len(fund) != expected:
        raise DataError(
            f"funding of {perp.id} between {start} and {end}: {len(fund)} settlements stored, {expected} expected "
            "(every one is needed to compare with the dated future)"
        )
    resize_days = [r.day for r in dated.rolls]
    perpetual = simulate_perpetual(
        kind=perp.kind,
        day_ms=day_ms,
        spot=spot,
        close=[mark[d][0] for d in day_ms],
        high=[mark[d][1] for d in day_ms],
        funding_ms=[_ms(t) for t in fund["ts"]],
        funding_rate=[float(x) for x in fund["rate"]],
        resize_days=resize_days,
        target_usd=target,
        leverage=hb.leverage,
        fee_rate=fee,
        slippage_bps=slip,
        maintenance_margin=perp.liquidation_schedule.maintenance_margin,
    )
    hedged_usd = [ratio * e for e in exposure]  # the delta the hedge offsets (the collateral's own is inside target)
    return _document(
        run_cfg, inst, perp, dates, spot, unhedged, hedged_usd, dated, perpetual, fee, ratio, hb.leverage, config_hash
    )


def _carry(book: list[float], spot: list[float], target: list[float], resize: set[int]) -> list[float]:
    """What the hedge earned beyond offsetting the coin: ``book_t + Σ h_(k−1)·(S_k − S_(k−1))`` with ``h`` the coins
    hedged at the last re-size (funding or basis, less fees, slippage and the inverse convexity)."""
    out = []
    offset = 0.0
    h = target[0] / spot[0]
    for i in range(len(book)):
        if i > 0:
            offset += h * (spot[i] - spot[i - 1])
        if i in resize:
            h = target[i] / spot[i]
        out.append(book[i] + offset)
    return out


def _variant(
    name: str, leg: LegResult, unhedged: list[float], spot: list[float], target: list[float], dates: Any
) -> dict[str, Any]:
    hedged = [u + b for u, b in zip(unhedged, leg.book_usd, strict=True)]
    if min(hedged) <= 0:
        raise DataError(f"the {name} hedged book is wiped out: lower the leverage or ratio")
    resize = {r.day for r in leg.rolls} | {0}
    carry = _carry(leg.book_usd, spot, target, resize)
    m = equity_metrics(np.asarray(hedged))
    out: dict[str, Any] = {
        "hedged": {k: m[k] for k in ("start_value", "end_value", "pnl", "total_return", "volatility", "max_drawdown")},
        "hedge_pnl_usd": leg.book_usd[-1],
        "carry_usd": carry[-1],
        "fees_usd": leg.fees_usd,
        "slippage_usd": leg.slippage_usd,
        "funding_received_usd": leg.funding_usd[-1],
        "liquidations": []
        if leg.liquidated_day is None
        else [{"date": str(dates[leg.liquidated_day].date()), "loss_usd": leg.liquidation_loss_usd}],
    }
    return {"summary": out, "hedged": hedged, "carry": carry}


def _document(
    run_cfg: RunFile,
    inst: Instrument,
    perp: Instrument,
    dates: Any,
    spot: list[float],
    unhedged: list[float],
    target: list[float],
    dated: LegResult,
    perpetual: LegResult,
    fee: float,
    ratio: float,
    leverage: float,
    config_hash: str,
) -> dict[str, Any]:
    assert run_cfg.roll is not None
    d = _variant("dated", dated, unhedged, spot, target, dates)
    p = _variant("perpetual", perpetual, unhedged, spot, target, dates)
    u = equity_metrics(np.asarray(unhedged))
    d["summary"]["basis_carry_usd"] = d["summary"]["carry_usd"]
    d["summary"]["rolls"] = [
        {
            "date": str(dates[r.day].date()),
            "from": r.from_contract or None,
            "to": r.to_contract,
            "near_price": r.near_price,
            "far_price": r.far_price,
            "spot": r.spot,
            "near_basis": r.near_basis,
            "far_basis": r.far_basis,
            "far_basis_annualized": F.annualize(r.far_basis, r.far_days_to_expiry),
            "far_days_to_expiry": r.far_days_to_expiry,
            "notional_usd": r.notional_usd,
            "fees_usd": r.fees_usd,
            "slippage_usd": r.slippage_usd,
        }
        for r in dated.rolls
    ]
    doc: dict[str, Any] = {
        "schema": BACKTEST_FUTURES_SCHEMA,
        "config_hash": config_hash,
        "start": str(dates[0].date()),
        "end": str(dates[-1].date()),
        "instrument": inst.id,
        "perpetual": perp.id,
        "kind": inst.kind.value,
        "roll": {"days_before_expiry": run_cfg.roll.days_before_expiry, "into": run_cfg.roll.into},
        "ratio": ratio,
        "leverage": leverage,
        "fee_rate": fee,
        "slippage_bps": run_cfg.costs.slippage_bps,
        "assumptions": [
            "both variants re-size the short to the target on the same days (the rolls) and pay the same fee rate "
            "and slippage",
            f"collateral = notional / {leverage:g} in {inst.settle}"
            + (" (coin bought with cash; the short covers its delta too)" if inst.is_inverse else ""),
            "perpetual funding: the stored settlements of " + perp.id + "; dated future: no funding",
            "carry = hedge account PnL plus the spot move of the coins hedged (funding or basis, less costs)",
        ],
        "unhedged": {
            k: u[k] for k in ("start_value", "end_value", "pnl", "total_return", "volatility", "max_drawdown")
        },
        "dated": d["summary"],
        "perpetual_hedge": p["summary"],
        "dated_minus_perpetual_usd": d["summary"]["hedged"]["pnl"] - p["summary"]["hedged"]["pnl"],
        "equity": [
            {
                "date": str(dates[i].date()),
                "unhedged_usd": unhedged[i],
                "hedged_dated_usd": d["hedged"][i],
                "hedged_perpetual_usd": p["hedged"][i],
                "basis_carry_usd": d["carry"][i],
                "perpetual_carry_usd": p["carry"][i],
                "funding_received_usd": perpetual.funding_usd[i],
            }
            for i in range(len(unhedged))
        ],
    }
    return doc


def _write_png(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eq = doc["equity"]
    x = [r["date"] for r in eq]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    a1.plot(x, [r["unhedged_usd"] for r in eq], label="unhedged", linewidth=1)
    a1.plot(x, [r["hedged_dated_usd"] for r in eq], label=f"hedged: {doc['instrument']} rolled", linewidth=1)
    a1.plot(x, [r["hedged_perpetual_usd"] for r in eq], label=f"hedged: {doc['perpetual']}", linewidth=1)
    a1.set_ylabel("USD")
    a1.legend()
    a2.plot(x, [r["basis_carry_usd"] for r in eq], label="dated: basis carry (cumulative)", linewidth=1)
    a2.plot(x, [r["funding_received_usd"] for r in eq], label="perpetual: funding received (cumulative)", linewidth=1)
    a2.plot(x, [r["perpetual_carry_usd"] for r in eq], label="perpetual: carry incl. basis and costs", linewidth=1)
    for roll in doc["dated"]["rolls"][1:]:
        a2.axvline(roll["date"], color="grey", linewidth=0.6, linestyle="--")
    a2.set_ylabel("USD")
    a2.legend()
    a2.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(8))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_html(doc: dict[str, Any], path: Path) -> None:
    import html

    def row(label: str, key: str, fmt: Callable[[Any], str]) -> str:
        return (
            f"<tr><td>{html.escape(label)}</td><td>{fmt(doc['dated'][key])}</td>"
            f"<td>{fmt(doc['perpetual_hedge'][key])}</td></tr>"
        )

    def usd(x: float) -> str:
        return f"{x:,.2f}"

    rolls = "".join(
        f"<tr><td>{r['date']}</td><td>{html.escape(r['from'] or '(open)')}</td><td>{html.escape(r['to'])}</td>"
        f"<td>{r['far_basis']:+.2%}</td><td>{r['far_basis_annualized']:+.1%}</td><td>{usd(r['fees_usd'])}</td></tr>"
        for r in doc["dated"]["rolls"]
    )
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>perphedge dated vs perpetual</title></head>
<body><h1>{html.escape(doc["instrument"])} rolled {doc["roll"]["days_before_expiry"]} days before delivery vs
{html.escape(doc["perpetual"])}</h1><p>{doc["start"]} → {doc["end"]}, ratio {doc["ratio"]:g}, leverage
{doc["leverage"]:g}x, fee {doc["fee_rate"]:.4%}, slippage {doc["slippage_bps"]:g} bp</p>
<table border="1"><tr><th></th><th>dated</th><th>perpetual</th></tr>
<tr><td>hedged PnL</td><td>{usd(doc["dated"]["hedged"]["pnl"])}</td>
<td>{usd(doc["perpetual_hedge"]["hedged"]["pnl"])}</td></tr>
{row("carry (basis / funding, after costs)", "carry_usd", usd)}{row("funding received", "funding_received_usd", usd)}
{row("fees", "fees_usd", usd)}{row("slippage", "slippage_usd", usd)}</table>
<h2>Rolls</h2><table border="1"><tr><th>date</th><th>from</th><th>to</th><th>basis sold</th><th>per year</th>
<th>fees USD</th></tr>{rolls}</table><img src="report.png" alt="equity and carry">
<ul>{"".join(f"<li>{html.escape(a)}</li>" for a in doc["assumptions"])}</ul></body></html>
"""
    path.write_text(body, encoding="utf-8")


def execute_dated(
    request: BacktestRequest, run_cfg: RunFile, pfile: PortfolioFile, source: str, digest: str
) -> BacktestOutcome:
    """Run a dated-futures backtest and write its run folder (result.json, report.html, report.png)."""
    from perphedge.data.store import MarketStore
    from perphedge.errors import PerphedgeError
    from perphedge.specs import default_registry
    from perphedge.usecases.backtest import BacktestOutcome, default_out_dir
    from perphedge.usecases.outputs import check_output_dir, write_run_folder

    out_dir = check_output_dir(request.out_dir if request.out_dir is not None else default_out_dir(request.run_file))
    try:
        registry = default_registry(request.specs)
        with MarketStore(request.store_path, read_only=True) as store:
            doc = run_dated(run_cfg, pfile, store, registry, config_hash=digest)
    except PerphedgeError as exc:
        msg = str(exc)
        raise type(exc)(msg if msg.startswith(source) else f"{source}: {msg}") from None
    if not all(math.isfinite(r["hedged_dated_usd"]) for r in doc["equity"]):
        raise DataError(f"{source}: the dated-futures backtest produced a non-finite value")
    writers: dict[str, Callable[[Path], Any]] = {
        "result.json": lambda p: p.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    }
    if request.report:
        writers["report.html"] = lambda p: _write_html(doc, p)
        writers["report.png"] = lambda p: _write_png(doc, p)
    files = write_run_folder(out_dir, writers, config_hash=digest)
    return BacktestOutcome(document=doc, files=[str(f) for f in files])
