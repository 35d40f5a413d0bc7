"""``perphedge book``: init, status, rebalance, watch, journal, replay (a hedge held on a paper account)."""

from __future__ import annotations

import csv
import io
import json
import math
import signal
import sys
import time
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from perphedge.errors import ConfigError

book_app = typer.Typer(
    help=(
        "Hold a hedge: the whole book now, the orders that bring it to target, a watch loop with alerts and "
        "rebalancing within limits, the journal of every decision, and a replay over history.\n\n"
        "Example:\n\n  perphedge book init my.book.yaml --portfolio examples/altcoins.yaml --paper binance\n\n"
        "  perphedge book status my.book.yaml"
    ),
    no_args_is_help=True,
    add_completion=False,
)

BookArg = Annotated[Path, typer.Argument(help="The book file (YAML), as written by `perphedge book init`.")]
FormatOpt = Annotated[str, typer.Option("--format", help="table or json.")]
StoreOpt = Annotated[
    str | None, typer.Option("--store", help="Market store (DuckDB) for `feed: store` and replays; default the book's.")
]


def _console() -> Any:
    from perphedge.cli import _console as console

    return console(140)


def _fmt_choice(value: str, allowed: tuple[str, ...], flag: str = "--format") -> str:
    v = value.strip().lower()
    if v not in allowed:
        raise ConfigError(f"invalid `{flag}`: must be one of {', '.join(allowed)}, was {value!r}")
    return v


#: Largest ``--ticks`` / ``--limit`` (a billion: beyond any journal, and within SQLite's integers).
_MAX_COUNT = 1_000_000_000


def _count(text: str, flag: str) -> int:
    """A whole number >= 1 for ``flag`` (``--ticks``, ``--limit``); anything else is one ConfigError line."""
    from perphedge.cli.options import positive_whole

    try:
        n = positive_whole(text)
    except ValueError as exc:
        raise ConfigError(f"invalid `{flag}`: {exc}") from None
    if n > _MAX_COUNT:
        raise ConfigError(f"invalid `{flag}`: must be <= {_MAX_COUNT:,}, was {text.strip()}")
    return n


def _market_store_opt(store: str | None) -> str | None:
    """``--store``: None (the book's) or a non-empty path."""
    if store is not None and not store.strip():
        raise ConfigError("invalid `--store`: must be a market store (DuckDB) file path, was ''")
    return store


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (resolved; an absent path is compared by its resolved name)."""
    try:
        if a.exists() and b.exists():
            return a.samefile(b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _refuse_overwriting_non_book(path: Path) -> None:
    """``--force`` replaces a book file, never another file (a portfolio, a run file) given by mistake."""
    from perphedge.files import read_yaml

    try:
        doc, _ = read_yaml(path, "a book file")
    except ConfigError:
        doc = None
    if not (isinstance(doc, dict) and "book" in doc and "accounts" in doc):
        raise ConfigError(
            f"invalid `--force`: {path} exists and is not a book file (no `book:` and `accounts:`); --force only "
            "replaces a book file: choose another name"
        )


def _init_balances(items: list[str]) -> dict[str, float]:
    """``--balance ASSET=AMOUNT`` (repeatable) → {ASSET: amount}, by the book file's own rules (an asset code of
    1 to 20 letters or digits, 0 < amount <= MAX_VALUE_USD, each asset once), so nothing invalid is written."""
    from perphedge.cli.options import positive
    from perphedge.config import MAX_VALUE_USD, book_asset_code

    balances: dict[str, float] = {}
    for item in items:
        asset, sep, amount = item.partition("=")
        if not sep or not asset.strip():
            raise ConfigError(f"invalid `--balance`: must be ASSET=AMOUNT, e.g. USDT=20000, was {item!r}")
        try:
            code = book_asset_code(asset)
        except ValueError as exc:
            raise ConfigError(f"invalid `--balance` {item!r}: {exc}") from None
        if code in balances:
            raise ConfigError(f"invalid `--balance`: {code} given twice")
        try:
            value = positive(amount)
        except ValueError as exc:
            raise ConfigError(f"invalid `--balance` {item!r}: {exc}") from None
        if value > MAX_VALUE_USD:
            raise ConfigError(f"invalid `--balance` {item!r}: must be <= {MAX_VALUE_USD:g}, was {amount.strip()}")
        balances[code] = value
    return balances


def _print_json(doc: Any) -> None:
    from perphedge.jsonsafe import json_safe

    sys.stdout.write(json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n")


def _usd(x: float | None, nd: int = 0) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:,.{nd}f}"


def _pct(x: float | None, nd: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}%}"


def _num(x: float | None, spec: str = ",.6g") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


# ------------------------------------------------------------------------------------------------ rendering


def render_status(doc: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    b = doc["book"]
    f = doc["feed"]
    stale = " [bold red]STALE[/bold red]" if f["stale"] else ""
    console.print(
        f"[bold]{b['name'] or b['id']}[/bold] (book {b['id']}) as of {doc['as_of']} · feed {f['kind']} "
        f"({f['source']}, {f['price_basis']}){stale} · step {b['step']} · policy {b['policy']['kind']}"
    )
    v = doc["value"]
    console.print(
        f"value {_usd(v['total_usd'])} USD ({_num(v['total_btc'], '.4f')} BTC): holdings {_usd(v['holdings_usd'])}, "
        f"accounts {_usd(v['accounts_usd'])}"
    )
    h = Table(title="Holdings", title_justify="left")
    for col in ("asset", "group", "quantity", "price USD", "value USD", "value BTC"):
        h.add_column(col, justify="left" if col in ("asset", "group") else "right")
    for r in doc["holdings"]:
        h.add_row(
            r["asset"],
            r["group"],
            _num(r["quantity"]),
            _num(r["price_usd"]),
            _usd(r["value_usd"]),
            _num(r["value_btc"], ".4f"),
        )
    console.print(h)
    for acc in doc["accounts"]:
        flags = [acc.get("margin_mode") or "isolated"]
        if acc["kind"] == "exchange":
            flags.append("read-only" if acc.get("read_only") else "trading")
            if acc.get("sandbox"):
                flags.append("testnet")
        if acc.get("halted"):
            flags.append("HALTED")
        t = Table(
            title=f"Account {acc['name']} ({acc['kind']} {acc['venue']}, {', '.join(flags)})", title_justify="left"
        )
        for col in ("asset", "wallet", "used", "value USD"):
            t.add_column(col, justify="left" if col == "asset" else "right")
        for bal in acc["balances"]:
            t.add_row(bal["asset"], _num(bal["wallet"]), _num(bal["used"]), _usd(bal["value_usd"]))
        console.print(t)
        for r in acc["positions"]:
            p = Table(title=f"Position {r['instrument']} ({r['kind']})", title_justify="left", show_header=False)
            p.add_column("field")
            p.add_column("value", justify="right")
            p.add_column("field")
            p.add_column("value", justify="right")
            sa = r["settle_asset"]
            live = acc["kind"] == "exchange"
            trigger = (
                ("liquidation (venue)", _num(r.get("venue_liquidation_price"), ",.2f"))
                if live
                else ("liquidation (paper trigger)", _num(r["trigger_price"], ",.2f"))
            )
            cells = [
                ("side", f"{r['side']} {_num(r['contracts'])} contracts"),
                ("size", f"{_num(r['size'])} {r['size_unit']} ({_usd(r['notional_usd'])} USD)"),
                ("entry (averaged)" if live else "entry (settled)", _num(r["entry_price"], ",.2f")),
                ("mark", _num(r["mark_price"], ",.2f")),
                ("unrealised PnL", f"{_num(r['upnl_settle'], ',.6g')} {sa} ({_usd(r['upnl_usd'], 2)} USD)"),
                ("margin", f"{_num(r['margin_settle'], ',.6g')} {sa} ({_usd(r['margin_usd'], 2)} USD)"),
                ("leverage", _num(r["leverage"], ".2f")),
                ("maintenance rate", _pct(r["maintenance_margin_rate"], 2)),
                trigger,
                ("liquidation (perphedge formula)", _num(r["liquidation_price"], ",.2f")),
                ("bankruptcy", _num(r["bankruptcy_price"], ",.2f")),
                ("to liquidation", _pct(r["distance_to_liquidation"])),
                (f"{r['proxy_asset']} move to liquidation", _pct(r["proxy_move_to_liquidation"])),
                ("funding rate / 8h", _pct(r["funding_rate_8h"], 4)),
                ("funding / day", f"{_usd(r['funding_usd_per_day'], 2)} USD"),
                ("collateral", r["collateral_source"]),
            ]
            if live:
                cells += [
                    (
                        "gap to the venue's",
                        "" if r.get("liquidation_gap_ticks") is None else f"{r['liquidation_gap_ticks']:,.1f} ticks",
                    ),
                    (
                        "venue leverage / mode",
                        f"{_num(r.get('venue_leverage'), '.4g')} {r.get('position_margin_mode') or ''}",
                    ),
                ]
            for i in range(0, len(cells), 2):
                a, b = cells[i], cells[i + 1] if i + 1 < len(cells) else ("", "")
                p.add_row(a[0], a[1], b[0], b[1])
            console.print(p)
            if r["liquidation_formula_note"]:
                console.print(f"  [dim]{r['liquidation_formula_note']}[/dim]")
    d = doc["delta"]
    hg = doc["hedge"]
    console.print(
        f"delta: exposure {_usd(d['exposure_usd'])} USD, hedge {_usd(d['hedge_delta_usd'])}, net "
        f"{_usd(d['net_delta_usd'])} · hedge ratio {_pct(hg['achieved_ratio'])} of target {_pct(hg['target_ratio'])} "
        f"(band {_pct(hg['band'])})" + (f" · rebalance due: {hg['reason']}" if hg.get("rebalance_due") else "")
    )
    fu = doc["funding"]
    console.print(
        f"funding: received {_usd(fu['received_usd'], 2)} USD, paid {_usd(fu['paid_usd'], 2)}, expected "
        f"{_usd(fu['expected_usd_per_day'], 2)} USD/day · fees {_usd(doc['fees_usd'], 2)} · slippage "
        f"{_usd(doc['slippage_usd'], 2)}"
    )
    if doc["alerts"]:
        for a in doc["alerts"]:
            console.print(f"[bold red]ALERT[/bold red] {a.get('message', a)}")
    else:
        console.print("alerts: none firing")
    for w in doc["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")
    console.print(f"journal: {doc['journal']['last_seq']} rows · store {doc['book']['store']}")


def _result_line(r: dict[str, Any]) -> str:
    """One executed item, readably: an order's outcome, a margin move, or why an item was skipped."""
    if r.get("status") == "skipped":
        return f"skipped: {r.get('reason', '')}"
    if "client_id" in r:
        text = f"order {r['client_id']}: {r.get('status')}"
        if r.get("status") == "filled":
            text += f" {_num(r.get('filled_contracts'))} contracts at {_num(r.get('avg_price'), ',.2f')}"
        return text + (f" — {r['reason']}" if r.get("reason") else "")
    if "transfer_id" in r:
        if r.get("applied"):
            return f"margin {r['transfer_id']}: {_num(r.get('amount_settle'), '+,.8g')} {r.get('asset', '')} moved"
        if r.get("duplicate"):
            return f"margin {r['transfer_id']}: already booked earlier"
        return f"margin {r['transfer_id']}: refused — {r.get('reason', '')}"
    return json.dumps(r, default=str)


def render_plan(doc: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    console.print(
        f"{'DRY RUN — nothing sent' if doc['dry_run'] else 'EXECUTED'} · as of {doc['as_of']} · hedge ratio "
        f"{_pct(doc['achieved_ratio'])} of target {_pct(doc['target_ratio'])} · exposure "
        f"{_usd(doc['exposure_usd'])} USD"
    )
    console.print(f"reason: {doc['reason']}")
    if doc["orders"]:
        kinds = sorted({str(o.get("order_type", "market")) for o in doc["orders"]})
        t = Table(title=f"Orders ({', '.join(kinds)})", title_justify="left")
        for col in (
            "instrument",
            "side",
            "contracts",
            "before → after",
            "reduce-only",
            "notional USD",
            "residual USD",
            "fee USD",
            "slippage USD",
            "liq. after",
        ):
            t.add_column(col, justify="left" if col in ("instrument", "side") else "right")
        for o in doc["orders"]:
            t.add_row(
                o["instrument"],
                o["side"],
                _num(o["contracts"]),
                f"{_num(o['contracts_before'])} → {_num(o['contracts_after'])}",
                "yes" if o["reduce_only"] else "no",
                _usd(o["notional_usd"], 2),
                _usd(o["residual_usd"], 2),
                _usd(o["fee_usd"], 2),
                _usd(o["slippage_usd"], 2),
                _num(o["liquidation_price_after"], ",.2f"),
            )
        console.print(t)
    for tr in doc["transfers"]:
        console.print(
            f"margin move {tr['instrument']}: {_num(tr['amount_settle'], '+,.8g')} {tr['asset']} "
            f"({_usd(tr['amount_usd'], 2)} USD) — {tr['reason']}"
        )
    if not doc["orders"] and not doc["transfers"]:
        console.print("nothing to do")
    for r in doc["results"]:
        console.print(f"  {_result_line(r)}")
    for w in doc["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")


# ------------------------------------------------------------------------------------------------ commands


@book_app.command("init")
def init_cmd(
    book: BookArg,
    portfolio: Annotated[Path, typer.Option("--portfolio", help="Portfolio file the book holds.")],
    paper: Annotated[
        str | None, typer.Option("--paper", help="Exchange whose instruments a paper (simulated) account trades.")
    ] = None,
    exchange: Annotated[
        str | None,
        typer.Option(
            "--exchange",
            help="A live account instead: binance_usdm, binance_coinm, bybit, okx or hyperliquid (read-only unless "
            "--trading).",
        ),
    ] = None,
    key_env: Annotated[
        str | None, typer.Option("--key-env", help="Live: NAME of the environment variable holding the API key.")
    ] = None,
    secret_env: Annotated[
        str | None, typer.Option("--secret-env", help="Live: NAME of the environment variable holding the secret.")
    ] = None,
    password_env: Annotated[
        str | None,
        typer.Option("--password-env", help="Live, okx only: NAME of the variable holding the API passphrase."),
    ] = None,
    keyring: Annotated[
        str | None,
        typer.Option("--keyring", help="Live: OS keyring service holding entries key, secret (and password)."),
    ] = None,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Live: the venue's testnet/demo endpoints.")] = False,
    trading: Annotated[
        bool, typer.Option("--trading", help="Live: allow orders (read_only: false); default read-only.")
    ] = False,
    balance: Annotated[
        list[str] | None,
        typer.Option("--balance", help="Starting balance ASSET=AMOUNT (repeat); default USDT, 2x the margin."),
    ] = None,
    feed: Annotated[
        str | None,
        typer.Option("--feed", help="store, live or portfolio (default: portfolio when it prices every holding)."),
    ] = None,
    store: StoreOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing book file.")] = False,
) -> None:
    """Write a book file: the portfolio, its hedge, a paper account, limits and alerts."""
    from perphedge.config import parse_portfolio, read_yaml
    from perphedge.core.units import is_stablecoin
    from perphedge.usecases.book import init_book

    if book.is_dir():
        raise ConfigError(f"invalid BOOK: {book} is a directory: give the book file's path, e.g. {book}/my.book.yaml")
    balances = _init_balances(balance or [])
    live = _live_account(
        paper,
        exchange,
        key_env=key_env,
        secret_env=secret_env,
        password_env=password_env,
        keyring=keyring,
        sandbox=sandbox,
        trading=trading,
        balances=bool(balances),
    )
    if feed is not None:
        feed = _fmt_choice(feed, ("store", "live", "portfolio"), "--feed")
    store = _market_store_opt(store)
    if store is not None and not Path(store).expanduser().is_absolute():
        # the book reads `feed.store` relative to its own folder; the option is relative to where it is typed
        import os

        full = Path(store).expanduser().resolve()
        rel = os.path.relpath(full, book.resolve().parent)
        store = str(full) if rel.startswith("..") else rel
    if _same_file(book, portfolio):
        raise ConfigError(
            f"invalid BOOK: {book} is the portfolio file given with --portfolio; the book file needs its own name, "
            "e.g. my.book.yaml"
        )
    if book.exists() and not book.is_dir() and force:
        _refuse_overwriting_non_book(book)
    pdoc, _raw = read_yaml(portfolio, "a portfolio file")
    if isinstance(pdoc, dict) and "book" in pdoc and "holdings" not in pdoc:
        raise ConfigError(f"invalid `--portfolio`: {portfolio} is a book file, not a portfolio file")
    pfile = parse_portfolio(pdoc, str(portfolio))
    if not (pfile.hedge.instrument or pfile.hedge.legs):
        raise ConfigError(
            f"invalid `--portfolio`: {portfolio} has no `hedge.instrument` (or `hedge.legs`): the book hedges with "
            "the portfolio's hedge; add e.g. `hedge: {instrument: binance:BTCUSDT}`"
        )
    if not pfile.positions and all(is_stablecoin(h.asset) for h in pfile.holdings):
        raise ConfigError(
            f"invalid `--portfolio`: {portfolio} holds only stablecoins "
            f"({', '.join(sorted({h.asset.upper() for h in pfile.holdings}))}): there is nothing to hedge"
        )
    out = init_book(
        book,
        portfolio=portfolio,
        exchange=paper,
        balances=balances or None,
        feed=feed,
        market_store=store,
        force=force,
        live=live,
    )
    if live is None:
        bal = ", ".join(f"{v:,.8g} {k}" for k, v in out.balances.items())
        what = f"paper account on {paper} with {bal}"
    else:
        where = f"keyring service {live.keyring.service}" if live.keyring else f"${live.key_env}, ${live.secret_env}"
        mode = "TRADING (read_only: false)" if not live.read_only else "read-only"
        venue = f"{live.exchange}{' (sandbox)' if live.sandbox else ''}"
        what = f"live account on {venue}, {mode}, credentials from {where}"
    typer.echo(f"wrote {out.path} (book {out.book_id}): {what}; feed {out.feed}; hedge {', '.join(out.instruments)}")
    typer.echo(f"next: perphedge book status {out.path}")


#: `book init` flags of a live account → the account's fields.
_LIVE_FLAGS = {
    "exchange": "--exchange",
    "key_env": "--key-env",
    "secret_env": "--secret-env",
    "password_env": "--password-env",
    "keyring": "--keyring",
    "service": "--keyring",
    "sandbox": "--sandbox",
    "read_only": "--trading",
    "bybit_account": "--exchange",
}


def _live_account(
    paper: str | None,
    exchange: str | None,
    *,
    key_env: str | None,
    secret_env: str | None,
    password_env: str | None,
    keyring: str | None,
    sandbox: bool,
    trading: bool,
    balances: bool,
) -> Any:
    """The live account of ``book init --exchange`` (an ExchangeAccountModel), or None for ``--paper``; an impossible
    combination of flags is one ConfigError line naming the flag."""
    from pydantic import ValidationError

    from perphedge.config import ExchangeAccountModel

    given = {
        "--key-env": key_env is not None,
        "--secret-env": secret_env is not None,
        "--password-env": password_env is not None,
        "--keyring": keyring is not None,
        "--sandbox": sandbox,
        "--trading": trading,
    }
    if paper is not None and exchange is not None:
        raise ConfigError("give --paper EXCHANGE (a simulated account) or --exchange NAME (a live account), not both")
    if exchange is None:
        if paper is None:
            raise ConfigError(
                "missing account: give --paper EXCHANGE (a simulated account, e.g. --paper binance) or --exchange "
                "NAME with --key-env and --secret-env (a live account, e.g. --exchange binance_usdm)"
            )
        live_only = [flag for flag, on in given.items() if on]
        if live_only:
            raise ConfigError(f"invalid `{live_only[0]}`: it is for a live account (--exchange NAME), not --paper")
        return None
    if balances:
        raise ConfigError("invalid `--balance`: a live account's balances are the venue's; --balance is for --paper")
    from perphedge.config import EXCHANGE_ACCOUNT_VENUES

    name = exchange.strip().lower() if exchange.strip().lower() in EXCHANGE_ACCOUNT_VENUES else "live"
    doc: dict[str, Any] = {"name": name, "kind": "exchange", "exchange": exchange}
    for field, value in (("key_env", key_env), ("secret_env", secret_env), ("password_env", password_env)):
        if value is not None:
            doc[field] = value
    if keyring is not None:
        doc["keyring"] = {"service": keyring}
    doc |= {"sandbox": sandbox, "read_only": not trading}
    try:
        return ExchangeAccountModel.model_validate(doc)
    except ValidationError as exc:
        from perphedge.config import _message

        err = exc.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        loc = [str(p) for p in err.get("loc", ())]
        field = getattr(cause, "loc", (None,))[0] or (loc[-1] if loc else "exchange")
        flag = _LIVE_FLAGS.get(str(field), "--exchange")
        text = _message(err)
        for name, opt in _LIVE_FLAGS.items():  # the model's field names, as the flags the user typed
            text = text.replace(f"`{name}`", f"`{opt}`")
        raise ConfigError(f"invalid `{flag}`: {text}") from None


def _open(book: Path, *, writer: bool, store: str | None) -> Any:
    from perphedge.usecases.book import load_book, open_session

    return open_session(load_book(book), market_store=_market_store_opt(store), writer=writer)


@book_app.command("status")
def status_cmd(book: BookArg, fmt: FormatOpt = "table", store: StoreOpt = None) -> None:
    """The whole book now: holdings, balances, positions, liquidation, delta, hedge ratio, funding, alerts."""
    from perphedge.usecases.book import _now_ms, close_session, plan_rebalance, snapshot, status_document

    fmt = _fmt_choice(fmt, ("table", "json"))
    s = _open(book, writer=False, store=store)
    try:
        snap = snapshot(s, _now_ms())
        doc = status_document(s, snap, decision=plan_rebalance(s, snap))
    finally:
        close_session(s)
    if fmt == "json":
        _print_json(doc)
    else:
        render_status(doc, _console())


@book_app.command("rebalance")
def rebalance_cmd(
    book: BookArg,
    execute: Annotated[bool, typer.Option("--execute", help="Send the orders (default: dry run).")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="With --execute: no confirmation prompt.")] = False,
    unwind: Annotated[bool, typer.Option("--unwind", help="Close every hedge leg (target 0).")] = False,
    fmt: FormatOpt = "table",
    store: StoreOpt = None,
) -> None:
    """The orders that bring the book to its policy's target now; limits checked; --execute sends them."""
    from perphedge.usecases import book as B

    fmt = _fmt_choice(fmt, ("table", "json"))
    if yes and not execute:
        raise ConfigError("invalid `--yes`: it confirms --execute; add --execute, or drop --yes for a dry run")
    if execute and not yes and not sys.stdin.isatty():
        raise ConfigError("--execute without --yes needs a terminal to confirm; add --yes to send without a prompt")
    s = _open(book, writer=execute, store=store)
    try:
        snap = B.snapshot(s, B._now_ms())
        if execute:
            notes = B.recover(s, snap)
            for n in notes:
                typer.echo(f"recovered: {n}", err=True)
            B.advance(s, snap)
            for c in B.reconcile(s, snap):
                typer.echo(
                    f"warning: {c['account']}:{c['instrument']} holds {c['venue']:g} contracts at the venue, the "
                    f"journal explains {c['expected']:g}: changed outside the book (the plan starts from the venue's)",
                    err=True,
                )
        plan = B.plan_rebalance(s, snap, unwind=unwind)
        already = B.decided_at(s, snap) if not unwind else None
        refused = B.check_plan_limits(s, plan) if plan.items else []
        doc = B.plan_document(s, plan)
        if refused:
            doc["refused"] = [{"limit": r.limit, "message": r.message} for r in refused]
        if execute and already is not None and plan.items:
            doc["reason"] += f" — not sent: decision {already} was made at this bar already"
        if fmt == "json" and not execute:
            _print_json(doc)
        elif not execute:
            render_plan(doc, _console())
        if refused:
            if execute and s.store is not None:
                with s.store.transaction():
                    for r in refused:
                        s.store.append(
                            "limit_refused",
                            {
                                "limit": r.limit,
                                "subject": r.subject,
                                "value": r.value,
                                "bound": r.bound,
                                "message": r.message,
                            },
                            ts_ms=snap.now_ms,
                        )
            typer.echo(f"perphedge: refused: {refused[0].message}", err=True)
            raise typer.Exit(3)
        for m in plan.manual:
            typer.echo(
                f"manual: move {m['amount_settle']:.8g} {m['asset']} into the margin of {m['instrument']} on account "
                f"`{m['account']}` ({m['reason']})",
                err=True,
            )
        if not execute:
            return
        if snap.stale:
            raise ConfigError("the price feed is stale: trading blocked (see `perphedge book status`)")
        if plan.items:
            B.require_trading(s, plan)
        h = B.halted(s)
        if h is not None and plan.items:
            typer.echo(
                f"perphedge: refused: book halted ({h.get('reason')}): nothing sent; `perphedge book resume "
                f"{book}` lifts the halt",
                err=True,
            )
            raise typer.Exit(3)
        if not plan.items or already is not None:
            doc["results"] = []
            _emit_plan(doc, fmt, executed=True)
            return
        if not yes:
            render_plan(doc, _console())
            if not typer.confirm(f"send {sum(1 for i in plan.items if i.kind == 'order')} order(s)?", default=False):
                typer.echo("nothing sent")
                raise typer.Exit(1)
        results = B.execute_plan(s, plan, snap)
        B.finish_tick(s, snap)
        doc = B.plan_document(s, plan, executed=True, results=results)
        _emit_plan(doc, fmt, executed=True)
        if any(r.get("status") not in (None, "filled") for r in results):
            raise typer.Exit(1)
    finally:
        B.close_session(s)


def _emit_plan(doc: dict[str, Any], fmt: str, *, executed: bool) -> None:
    doc["dry_run"] = not executed
    if fmt == "json":
        _print_json(doc)
    else:
        render_plan(doc, _console())


@book_app.command("watch")
def watch_cmd(
    book: BookArg,
    every: Annotated[str, typer.Option("--every", help="Interval between ticks, e.g. 30s, 5m, 1h.")] = "5m",
    auto_rebalance: Annotated[
        bool, typer.Option("--auto-rebalance", help="Send the policy's orders at each bar close, within limits.")
    ] = False,
    ticks: Annotated[str | None, typer.Option("--ticks", help="Stop after this many ticks (default: run on).")] = None,
    clock: Annotated[
        str, typer.Option("--clock", help="wall (real time) or sim (no sleeping; tests, drills).")
    ] = "wall",
    start: Annotated[
        str | None, typer.Option("--start", help="sim clock: first tick (ISO date or date-time, UTC); default resume.")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="sim clock: last tick (ISO date or date-time, UTC).")
    ] = None,
    fmt: FormatOpt = "table",
    store: StoreOpt = None,
) -> None:
    """Every interval: prices and positions, alerts (once per episode), the policy, and with --auto-rebalance the
    orders. Ctrl-C or kill -9 and the same command resumes from the journal."""
    from perphedge.config import parse_duration
    from perphedge.usecases import book as B

    fmt = _fmt_choice(fmt, ("table", "json"))
    clock = _fmt_choice(clock, ("wall", "sim"), "--clock")
    try:
        every_s = parse_duration(every)
    except ValueError as exc:
        raise ConfigError(f"invalid `--every`: {exc}") from None
    n_ticks = _count(ticks, "--ticks") if ticks is not None else None
    if start is not None and clock != "sim":
        raise ConfigError("invalid `--start`: it sets the sim clock; add --clock sim")
    start_ms = _parse_instant(start, "--start") if start is not None else None
    if until is not None and clock != "sim":
        raise ConfigError("invalid `--until`: it ends the sim clock; add --clock sim (a wall clock stops with --ticks)")
    until_ms = _parse_instant(until, "--until") if until is not None else None
    if until_ms is not None and start_ms is not None and until_ms < start_ms:
        raise ConfigError(f"invalid `--until`: {until} is before --start {start}")
    wall_ms = int(time.time() * 1000)
    for flag, text, ms in (("--start", start, start_ms), ("--until", until, until_ms)):
        if ms is not None and ms > wall_ms:
            raise ConfigError(
                f"invalid `{flag}`: {text} is in the future (now {_stamp()}): the sim clock replays time that has "
                "passed; the wall clock runs on from now"
            )
    s = _open(book, writer=True, store=store)
    if auto_rebalance:
        try:
            B.require_trading(s)
        except ConfigError:
            B.close_session(s)
            raise
    stop = {"now": False}

    def _stop(signum: int, frame: Any) -> None:
        stop["now"] = True

    previous = signal.signal(signal.SIGTERM, _stop)
    s.alerts_out = lambda text: typer.echo(f"{_stamp()} {text}", err=True)
    try:
        last = B._state(s, "last_tick_ms")
        now = 0
        if clock == "sim":
            first = start_ms if start_ms is not None else (int(last) + every_s * 1000 if last is not None else None)
            if first is None:
                raise ConfigError("--clock sim needs --start the first time (nothing to resume from)")
            now = first
            if last is not None and now <= int(last):
                now = int(last) + every_s * 1000
        done = 0
        while not stop["now"]:
            t_now = now if clock == "sim" else B._now_ms()
            if until_ms is not None and t_now > until_ms:
                break
            if clock == "sim" and t_now > B._now_ms():
                typer.echo(f"sim clock reached the present ({_stamp()}): stopped", err=True)
                break
            r = B.watch_tick(s, t_now, auto=auto_rebalance)
            _print_tick(r, fmt)
            done += 1
            if n_ticks is not None and done >= n_ticks:
                break
            if clock == "sim":
                now += every_s * 1000
            else:
                _sleep(every_s, stop)
    except KeyboardInterrupt:
        typer.echo("stopped (Ctrl-C); run the same command to resume", err=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        B.close_session(s)


def _sleep(seconds: int, stop: dict[str, bool]) -> None:
    end = time.monotonic() + seconds
    while not stop["now"] and time.monotonic() < end:
        time.sleep(min(1.0, end - time.monotonic()))


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: Instants a book command accepts (``--start``, ``--until``, ``--since``): 2009-01-03 ≤ t < 2100-01-01 UTC.
_FIRST_INSTANT_MS = int(datetime(2009, 1, 3, tzinfo=UTC).timestamp() * 1000)
_LAST_INSTANT_MS = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1000)


def _parse_instant(text: str, flag: str) -> int:
    from perphedge.core.parsing import parse_date

    t = text.strip()
    try:
        if "T" in t:
            dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            ms = int(dt.timestamp() * 1000)
        else:
            d = parse_date(t, flag)
            ms = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)
    except (ValueError, OverflowError):
        raise ConfigError(
            f"invalid `{flag}`: must be an ISO date (2026-01-31) or date-time (2026-01-31T08:00Z), was {text!r}"
        ) from None
    if not _FIRST_INSTANT_MS <= ms < _LAST_INSTANT_MS:
        raise ConfigError(f"invalid `{flag}`: must be from 2009-01-03 (the first bitcoin block) to 2099, was {text!r}")
    return ms


def _print_tick(r: Any, fmt: str) -> None:
    st = r.status
    if fmt == "json":
        line = {
            "as_of": st["as_of"],
            "value_usd": st["value"]["total_usd"],
            "achieved_ratio": st["hedge"]["achieved_ratio"],
            "target_ratio": st["hedge"]["target_ratio"],
            "stale": st["feed"]["stale"],
            "decided": r.plan is not None,
            "orders": [x for x in r.results if "client_id" in x],
            "refused": [x.message for x in r.refused],
            "blocked": r.blocked or None,
            "alerts": [f"{a.kind} {a.alert} {a.subject}" for a in r.alerts],
            "events": len(r.events),
        }
        from perphedge.jsonsafe import json_safe

        sys.stdout.write(json.dumps(json_safe(line), allow_nan=False) + "\n")
        sys.stdout.flush()
        return
    parts = [
        st["as_of"],
        f"value {_usd(st['value']['total_usd'])} USD",
        f"hedge {_pct(st['hedge']['achieved_ratio'])}/{_pct(st['hedge']['target_ratio'])}",
    ]
    if st["feed"]["stale"]:
        parts.append("FEED STALE")
    if r.results:
        parts.append(f"sent {sum(1 for x in r.results if 'client_id' in x)} order(s)")
    elif r.plan is not None and r.plan.items:
        parts.append(f"rebalance due ({r.plan.reason})")
    if r.refused:
        parts.append(f"refused: {r.refused[0].message}")
    if r.blocked:
        parts.append(r.blocked)
    typer.echo(" · ".join(parts))
    sys.stdout.flush()


@book_app.command("halt")
def halt_cmd(
    book: BookArg,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (journaled).")] = None,
    fmt: FormatOpt = "table",
    store: StoreOpt = None,
) -> None:
    """Kill switch: stop all trading by this book (rebalance --execute and watch --auto-rebalance refuse) and
    cancel its open orders at every account. `book resume` lifts it."""
    from perphedge.usecases import book as B

    fmt = _fmt_choice(fmt, ("table", "json"))
    if reason is not None and (not reason.strip() or len(reason) > 500):
        raise ConfigError("invalid `--reason`: give 1 to 500 characters")
    if reason is not None and any(unicodedata.category(ch) == "Cc" for ch in reason):
        # the reason is printed back in every refusal and in `book status`: one line, no terminal escapes
        raise ConfigError(
            "invalid `--reason`: must be one line of text without control characters (newlines, tabs, escapes)"
        )
    s = _open(book, writer=True, store=store)
    try:
        doc = B.halt(s, B._now_ms(), reason=(reason or "").strip())
    finally:
        B.close_session(s)
    if fmt == "json":
        _print_json(doc)
    else:
        typer.echo(f"book {doc['book']['id']} halted: trading stops until `perphedge book resume {book}`")
        for c in doc["cancelled"]:
            typer.echo(f"  cancelled {c['client_id']} on {c['account']}:{c['instrument']} ({c['status']})")
        if not doc["cancelled"]:
            typer.echo("  no open orders of this book")
        for n in doc["recovery"]:
            typer.echo(f"  recovery: {n}")
    for e in doc["errors"]:
        typer.echo(f"perphedge: error: {e}; rerun `book halt` to retry the cancels", err=True)
    if doc["errors"]:
        raise typer.Exit(1)


@book_app.command("resume")
def resume_cmd(book: BookArg, fmt: FormatOpt = "table", store: StoreOpt = None) -> None:
    """Lift a halt: rebalance --execute and watch --auto-rebalance may send orders again."""
    from perphedge.usecases import book as B

    fmt = _fmt_choice(fmt, ("table", "json"))
    s = _open(book, writer=True, store=store)
    try:
        doc = B.resume(s, B._now_ms())
    finally:
        B.close_session(s)
    if fmt == "json":
        _print_json(doc)
    else:
        was = "was halted" if doc["was_halted"] else "was not halted"
        typer.echo(f"book {doc['book']['id']} resumed ({was}): trading allowed within the limits")


@book_app.command("journal")
def journal_cmd(
    book: BookArg,
    kind: Annotated[list[str] | None, typer.Option("--kind", help="Only these kinds (repeat), e.g. fill.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="From this ISO date or date-time (UTC).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Up to this ISO date or date-time (UTC).")] = None,
    limit: Annotated[str | None, typer.Option("--limit", help="Only the last N rows.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
) -> None:
    """Every decision, order, fill, funding payment, liquidation, alert and error of the book."""
    from perphedge.data.bookstore import JOURNAL_KINDS
    from perphedge.usecases.book import journal_json, journal_rows, load_book

    fmt = _fmt_choice(fmt, ("table", "json", "csv"))
    kinds = [k.strip().lower() for k in kind or []]
    unknown = [k for k in kinds if k not in JOURNAL_KINDS]
    if unknown:
        raise ConfigError(f"invalid `--kind` {unknown[0]!r}: must be one of {', '.join(sorted(JOURNAL_KINDS))}")
    since_ms = _parse_instant(since, "--since") if since is not None else None
    until_ms = _parse_instant(until, "--until") if until is not None else None
    if since_ms is not None and until_ms is not None and until_ms < since_ms:
        raise ConfigError(f"invalid `--until`: {until} is before --since {since}")
    n = _count(limit, "--limit") if limit is not None else None
    rows = journal_json(
        journal_rows(load_book(book), kinds=kinds or None, since_ms=since_ms, until_ms=until_ms, limit=n)
    )
    if fmt == "json":
        _print_json(rows)
        return
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        cols = [
            "seq",
            "ts",
            "kind",
            "bar",
            "decision",
            "leg",
            "account",
            "instrument",
            "client_id",
            "venue_id",
            "book_hash",
            "data",
        ]
        w.writerow(cols)
        for r in rows:
            w.writerow([r[c] if c != "data" else json.dumps(r["data"], sort_keys=True) for c in cols])
        sys.stdout.write(buf.getvalue())
        return
    from rich.table import Table

    t = Table(title=f"journal of {book} ({len(rows)} rows)", title_justify="left")
    for col in ("seq", "time (UTC)", "kind", "decision", "instrument", "client id", "details"):
        t.add_column(col, justify="right" if col in ("seq", "decision") else "left")
    for r in rows:
        t.add_row(
            str(r["seq"]),
            r["ts"],
            r["kind"],
            "" if r["decision"] is None else str(r["decision"]),
            r["instrument"] or "",
            r["client_id"] or "",
            _details(r["kind"], r["data"]),
        )
    _console().print(t)


def _check_replay_journal(journal: Path, lb: Any, book_store: Path) -> None:
    """The replay replaces ``journal.sqlite`` in ``--out``: never the book's own store, nor a file that is not an
    earlier replay journal of this book (another book's store, any other file)."""
    from perphedge.data.bookstore import BookStore
    from perphedge.errors import PerphedgeError

    if _same_file(journal, book_store):
        raise ConfigError(
            f"invalid `--out`: {journal} is the book's own store (its positions and journal); the replay writes a "
            "fresh journal.sqlite into --out: choose another folder"
        )
    if not journal.exists():
        return
    owner: str | None = None
    try:
        with BookStore.open_reader(journal) as st:
            owner = st.book_id
    except (PerphedgeError, OSError):
        owner = None
    if owner != lb.book.id:
        what = f"book {owner}'s store" if owner else "not a replay journal of this book"
        raise ConfigError(
            f"invalid `--out`: {journal} exists and is {what}; the replay would replace it: choose another folder"
        )


def _details(kind: str, data: dict[str, Any]) -> str:
    if kind == "fill":
        return (
            f"{data.get('side')} {_num(data.get('contracts'))} @ {_num(data.get('price'), ',.2f')} fee "
            f"{_usd(data.get('fee_usd'), 2)} USD"
        )
    if kind == "funding":
        return f"rate {_num(data.get('rate'), '.4%')} → {_num(data.get('amount_usd'), '+,.2f')} USD"
    if kind in ("alert_open", "alert_close", "error", "limit_refused"):
        return str(data.get("message", ""))[:100]
    if kind == "decision":
        return str(data.get("reason", ""))[:100]
    if kind == "tick":
        return f"value {_usd(data.get('value_usd'))} USD"
    if kind == "liquidation":
        return f"at {_num(data.get('price'), ',.2f')}, loss {_usd(data.get('loss_usd'), 2)} USD"
    text = json.dumps(data, sort_keys=True, default=str)
    return text[:100]


@book_app.command("replay")
def replay_cmd(
    book: BookArg,
    start: Annotated[str, typer.Option("--from", help="First day (ISO date).")],
    end: Annotated[str, typer.Option("--to", help="Last day (ISO date).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for replay.json and journal.sqlite (default out/<book>-replay)."),
    ] = None,
    emit_run: Annotated[
        Path | None, typer.Option("--emit-run", help="Also write the equivalent backtest run file here.")
    ] = None,
    fmt: FormatOpt = "table",
    store: StoreOpt = None,
) -> None:
    """The watch loop over stored history on a fresh paper account: equal to `perphedge backtest` of the book."""
    import yaml

    from perphedge.cli.options import date_range, output_dir, write_text
    from perphedge.usecases import book as B
    from perphedge.usecases.outputs import write_file_atomic

    fmt = _fmt_choice(fmt, ("table", "json"))
    first, last = date_range(start, end, "--from", "--to")
    if first is None or last is None:  # pragma: no cover - both are required options
        raise ConfigError("--from and --to are required")
    from datetime import date

    d0, d1 = date.fromisoformat(first), date.fromisoformat(last)
    store = _market_store_opt(store)
    lb = B.load_book(book)
    if emit_run is not None:
        for what, path in (("the book file", lb.path), ("the book's portfolio file", lb.portfolio_path)):
            if path is not None and _same_file(emit_run, path):
                raise ConfigError(f"invalid `--emit-run`: {emit_run} is {what}; write the run file elsewhere")
    folder = output_dir(out or Path("out") / f"{book.name.split('.')[0]}-replay", "--out")
    journal = folder / "journal.sqlite"
    _check_replay_journal(journal, lb, B.book_store_path(lb))
    for suffix in ("", "-wal", "-shm", ".lock"):
        p = Path(str(journal) + suffix)
        if p.exists():
            p.unlink()
    if emit_run is not None:
        _run, _pf, doc = B.book_to_run(lb, d0, d1)
        write_text(emit_run, yaml.safe_dump(doc, sort_keys=False), "--emit-run")
    progress = None
    if fmt == "table" and sys.stderr.isatty():

        def progress(i: int, n: int) -> None:
            if i == n or i % 50 == 0:
                sys.stderr.write(f"\rreplay {i}/{n} bars")
                if i == n:
                    sys.stderr.write("\n")

    doc = B.replay(lb, d0, d1, store_path=journal, market_store=store, progress=progress)
    from perphedge.jsonsafe import json_safe

    write_file_atomic(folder / "replay.json", json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n", "--out")
    if fmt == "json":
        _print_json(doc)
        return
    eq = doc["equity"]
    typer.echo(
        f"replay {doc['start']} → {doc['end']} ({doc['bars']} bars, step {doc['step']}): hedged "
        f"{_usd(eq[0]['hedged_usd'])} → {_usd(eq[-1]['hedged_usd'])} USD, unhedged {_usd(eq[-1]['unhedged_usd'])}; "
        f"hedge effectiveness {_pct(doc['hedge_effectiveness'])}"
    )
    typer.echo(
        f"funding {_usd(doc['funding_received_usd'], 2)} USD, fees {_usd(doc['fees_usd'], 2)}, slippage "
        f"{_usd(doc['slippage_usd'], 2)}, rebalances {doc['rebalances']} ({doc['orders']} orders), liquidations "
        f"{len(doc['liquidations'])}"
    )
    for liq in doc["liquidations"]:
        typer.echo(
            f"  liquidated {liq['date']} {liq['instrument']} at {liq['price']:,.2f}, loss {liq['loss_usd']:,.2f} USD"
        )
    typer.echo(f"wrote {folder / 'replay.json'} and {journal}")
