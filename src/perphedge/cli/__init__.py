"""The ``perphedge`` command line (typer)."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from perphedge import __version__
from perphedge.cli.options import number
from perphedge.errors import ConfigError, PerphedgeError

__all__ = ["app", "main", "register_commands"]

app = typer.Typer(
    name="perphedge",
    help="Hedge a crypto portfolio with short perpetual futures: size, margin, liquidation, funding, scenarios.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Fmt(StrEnum):
    table = "table"
    json = "json"


FormatOpt = Annotated[Fmt, typer.Option("--format", "-f", help="Output: table (human) or json (stable schema).")]
SpecsOpt = Annotated[
    str | None,
    typer.Option("--specs", help="Extra instrument spec file (YAML/JSON) that adds or replaces bundled specs."),
]


def _version(value: bool) -> None:
    if value:
        print(f"perphedge {__version__}")
        raise typer.Exit()


#: Set by ``--debug`` (or PERPHEDGE_DEBUG=1): an unexpected error prints its full traceback.
_STATE = {"debug": False}


def _debug_env() -> bool:
    return os.environ.get("PERPHEDGE_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="On an unexpected (internal) error print the full traceback; also PERPHEDGE_DEBUG=1. "
            "Give it before the command: perphedge --debug plan FILE.",
        ),
    ] = False,
) -> None:
    """perphedge: protect spot crypto with short perpetuals, with numbers you can check against the exchange."""
    if debug:
        _STATE["debug"] = True


def _console(piped_width: int = 120) -> Any:
    """A rich console; piped output (no terminal, no COLUMNS) gets ``piped_width`` columns, not 80."""
    from rich.console import Console

    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else piped_width
    return Console(highlight=False, emoji=False, width=width)


def _leverage_opt(text: str | None) -> tuple[float | None, bool]:
    """``--leverage``: a finite number, or ``auto``; returns (leverage, auto)."""
    from perphedge.errors import ConfigError

    if text is None:
        return None, False
    if text.strip().lower() == "auto":
        return None, True
    try:
        return number(text), False
    except ValueError:
        raise ConfigError(f"invalid `--leverage`: must be a number or auto, was {text!r}") from None


def _emit(doc: dict[str, Any], fmt: Fmt, renderer: str, piped_width: int = 120) -> None:
    """Write ``doc`` as JSON, or as tables through ``perphedge.cli.render.<renderer>`` (rich is imported only then)."""
    if fmt is Fmt.json:
        sys.stdout.write(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    else:
        from perphedge.cli import render

        getattr(render, renderer)(doc, _console(piped_width))


@app.command(
    help=(
        "Size the hedge of a portfolio file and show margin, liquidation, funding and scenarios.\n\n"
        "Example:\n\n"
        "  perphedge plan examples/altcoins.yaml\n\n"
        "  perphedge plan examples/altcoins.yaml --ratio 0.5 --instrument bybit:BTCUSD --leverage 2\n\n"
        "  perphedge plan examples/alts-40pct.yaml --scenario 'btc-15/alts-20:BTC=-15%,*=-20%' --format json\n\n"
        "  perphedge plan examples/btc-eth-60pct.yaml --drift BTC=+20% --compare\n\n"
        "  perphedge plan examples/btc-quarterly.yaml --as-of 2021-06-01 --horizon 90d"
    ),
    no_args_is_help=True,
)
def plan(
    file: Annotated[str, typer.Argument(help="Portfolio YAML file (format in the README).")],
    ratio: Annotated[
        float | None, typer.Option(parser=number, help="Fraction of the in-scope exposure to offset, 0-2.")
    ] = None,
    instrument: Annotated[
        str | None, typer.Option(help="exchange:SYMBOL (binance:BTCUSD_PERP), or direct:<exchange>:<linear|inverse>.")
    ] = None,
    proxy: Annotated[
        str | None, typer.Option(help="Proxy instrument in direct mode (default: the exchange's BTC perp).")
    ] = None,
    leverage: Annotated[
        str | None,
        typer.Option(
            help="Leverage of each leg (>= 1, <= the instrument's max), or 'auto': the highest whose "
            "probability of liquidation over 90 days stays <= 1% (bootstrap Monte Carlo on stored history)."
        ),
    ] = None,
    collateral: Annotated[str | None, typer.Option(help="buy | holdings | stable.")] = None,
    method: Annotated[str | None, typer.Option(help="notional | beta | min_variance.")] = None,
    scope: Annotated[str | None, typer.Option(help="all, or a holdings group name.")] = None,
    funding_rate_8h: Annotated[
        float | None,
        typer.Option(
            "--funding-rate-8h",
            parser=number,
            help="Assumed funding rate per 8h (positive: longs pay shorts; the hedge earns).",
        ),
    ] = None,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            help="Extra shock NAME:ASSET=RET,...,*=RET (repeatable), e.g. 'crash:BTC=-15%,*=-20%'; a return is a "
            "signed percentage (-15%) or a fraction with a decimal point (-0.15), above -100% and at most +1000%."
        ),
    ] = None,
    compare: Annotated[
        bool, typer.Option("--compare", help="Also size inverse vs linear and proxy vs direct.")
    ] = False,
    drift: Annotated[
        str | None,
        typer.Option(
            help="Hold the legs through a move (e.g. BTC=+20%, or BTC=0.2) and show the trade that restores the "
            "ratio; 20 alone is refused (write 20% or 0.20)."
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Price what the file does not from the market store: a UTC day YYYY-MM-DD (that day's close) "
            "or 'latest'.",
        ),
    ] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="Market store file for --as-of and estimated betas.")
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            help="Estimation window of betas / hedge ratios from the store (method beta or min_variance): "
            "days or weeks, e.g. 180d or 26w."
        ),
    ] = None,
    specs: SpecsOpt = None,
    plot_dir: Annotated[
        str | None,
        typer.Option("--plot", help="With hedge.margin_mode: cross: write the liquidation-surface heat map here."),
    ] = None,
    fmt: FormatOpt = Fmt.table,
    horizon: Annotated[
        str | None,
        typer.Option(
            help="Dated leg: days the hedge is held (90d; default: to delivery); past delivery needs --roll-days."
        ),
    ] = None,
    roll_days: Annotated[
        int | None, typer.Option("--roll-days", help="Dated leg: roll into the next contract N days before delivery.")
    ] = None,
    future_price: Annotated[
        float | None,
        typer.Option("--future-price", parser=number, help="Dated leg: its price (default: the --as-of close)."),
    ] = None,
    basis_shock: Annotated[
        float, typer.Option("--basis-shock", parser=number, help="Dated leg: basis change of the shock scenarios.")
    ] = -0.02,
) -> None:
    from perphedge.cli.options import as_of_date, days, output_dir
    from perphedge.core.scenarios import parse_moves, parse_scenario
    from perphedge.specs import default_registry
    from perphedge.usecases.documents import plan_document
    from perphedge.usecases.plan import HedgeOverrides, plan_from_file
    from perphedge.usecases.plan_futures import DatedOptions, dated_section

    dated_opts = DatedOptions(
        horizon_days=None if horizon is None else days(horizon, "--horizon"),
        roll_days=roll_days,
        future_price=future_price,
        basis_shock=basis_shock,
    )

    # every flag is checked before any file, store or simulation is touched
    plots = output_dir(plot_dir, "--plot", create=False) if plot_dir is not None else None
    lev, auto = _leverage_opt(leverage)
    window_days = None if window is None else days(window, "--window")
    as_of = as_of_date(as_of, "--as-of")
    for text in scenario or ():
        parse_scenario(text, proxy="", where="--scenario")  # syntax and ranges; assets are checked on the plan
    if drift is not None:
        parse_moves(drift, "--drift")
    overrides = HedgeOverrides(
        ratio=ratio,
        scope=scope,
        method=method,
        instrument=instrument,
        proxy=proxy,
        leverage=lev,
        collateral=collateral,
        funding_rate_8h=funding_rate_8h,
        window_days=window_days,
    )
    outcome = plan_from_file(
        file,
        registry=default_registry(specs),
        overrides=overrides,
        scenarios=scenario or (),
        compare=compare,
        drift_moves=drift,
        as_of=as_of,
        store_path=store,
        auto_leverage=auto,
    )
    from perphedge.cli.account import emit_plan

    doc = dated_section(plan_document(outcome), outcome, dated_opts, as_of=as_of, store_path=store)
    emit_plan(doc, outcome.cross_account, plots, fmt.value, lambda d: _emit(d, fmt, "render_plan"))


class MarginMode(StrEnum):
    isolated = "isolated"
    cross = "cross"


class SideOpt(StrEnum):
    long = "long"
    short = "short"


@app.command(
    help=(
        "Futures calculator for one position on a named instrument: value, margin, liquidation and "
        "bankruptcy price, PnL and ROE at --exit, funding, fees.\n\n"
        "Contracts are in the exchange's own unit (100 USD for binance:BTCUSD_PERP, 1 BTC for binance:BTCUSDT).\n\n"
        "Example:\n\n"
        "  perphedge calc --instrument binance:BTCUSD_PERP --side short --contracts 100 --entry 60000 --leverage 2\n\n"
        "  perphedge calc --instrument bybit:BTCUSD --side short --contracts 60000 --entry 50000 --leverage 10 "
        "--mmr 0.005 --method mm_on_entry_value --exit 45000\n\n"
        "  perphedge calc --account examples/accounts/binance-usdm-cross.yaml --surface --format json"
    ),
    no_args_is_help=True,
)
def calc(
    instrument: Annotated[str | None, typer.Option(help="exchange:SYMBOL, e.g. binance:BTCUSD_PERP.")] = None,
    side: Annotated[SideOpt | None, typer.Option(help="long or short.")] = None,
    contracts: Annotated[
        float | None, typer.Option(parser=number, help="Number of contracts (exchange's unit).")
    ] = None,
    entry: Annotated[float | None, typer.Option(parser=number, help="Average entry price.")] = None,
    exit: Annotated[float | None, typer.Option(parser=number, help="Exit price for PnL and ROE.")] = None,
    leverage: Annotated[
        float, typer.Option(parser=number, help="Leverage (isolated margin = value / leverage).")
    ] = 1.0,
    margin_mode: Annotated[MarginMode, typer.Option(help="isolated or cross.")] = MarginMode.isolated,
    wallet_balance: Annotated[
        float | None, typer.Option(parser=number, help="Cross mode: wallet balance in the settle asset.")
    ] = None,
    funding_rate: Annotated[
        float, typer.Option(parser=number, help="Funding rate per settlement (+: longs pay shorts).")
    ] = 0.0001,
    mark: Annotated[
        float | None,
        typer.Option(parser=number, help="Mark price for maintenance margin and funding (default: entry)."),
    ] = None,
    mmr: Annotated[
        float | None, typer.Option(parser=number, help="Override: maintenance-margin rate (one tier).")
    ] = None,
    maintenance_amount: Annotated[
        float | None,
        typer.Option(parser=number, help="Override: maintenance amount (cum) in the settle asset, with --mmr."),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(help="Override: mm_on_entry_value | mm_at_liquidation_price | binance_usdm | bybit_linear."),
    ] = None,
    face_value: Annotated[
        float | None, typer.Option(parser=number, help="Override: contract size (USD for inverse, coin for linear).")
    ] = None,
    fee_rate: Annotated[
        float | None, typer.Option(parser=number, help="Fee rate (default: the instrument's taker fee).")
    ] = None,
    specs: SpecsOpt = None,
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            help="Cross-margined account YAML (venue, wallet_balance, positions): every position's liquidation "
            "price given the others, instead of the one-position options.",
        ),
    ] = None,
    surface: Annotated[
        bool, typer.Option("--surface", help="With --account: liquidation surface of the first two positions.")
    ] = False,
    plot_dir: Annotated[
        str | None, typer.Option("--plot", help="With --account --surface: write the heat map (PNG/HTML) here.")
    ] = None,
    fmt: FormatOpt = Fmt.table,
) -> None:
    from perphedge.cli.account import refuse_single_options, require_single_options, run_account

    single = {
        "--instrument": instrument,
        "--side": side,
        "--contracts": contracts,
        "--entry": entry,
        "--exit": exit,
        "--leverage": None if leverage == 1.0 else leverage,
        "--margin-mode": None if margin_mode is MarginMode.isolated else margin_mode,
        "--wallet-balance": wallet_balance,
        "--funding-rate": None if funding_rate == 0.0001 else funding_rate,
        "--mark": mark,
        "--mmr": mmr,
        "--maintenance-amount": maintenance_amount,
        "--method": method,
        "--face-value": face_value,
        "--fee-rate": fee_rate,
    }
    if account is not None:
        refuse_single_options(single)
        run_account(account, specs, fmt.value, surface=surface, plot_dir=plot_dir)
        return
    require_single_options(single, surface=surface, plot_dir=plot_dir)
    assert instrument is not None and side is not None and contracts is not None and entry is not None
    from perphedge.core.contracts import Side
    from perphedge.specs import default_registry
    from perphedge.usecases.documents import calc_document
    from perphedge.usecases.plan import CalcInput, calc_instrument
    from perphedge.usecases.plan import calc as run_calc

    inst = calc_instrument(
        default_registry(specs),
        instrument,
        mmr=mmr,
        maintenance_amount=maintenance_amount,
        method=method,
        face_value=face_value,
    )
    ci = CalcInput(
        instrument=inst,
        side=Side(side.value),
        contracts=contracts,
        entry=entry,
        exit=exit,
        leverage=leverage,
        margin_mode=margin_mode.value,
        wallet_balance=wallet_balance,
        funding_rate=funding_rate,
        mark=mark,
        fee_rate=fee_rate,
    )
    _emit(calc_document(run_calc(ci)), fmt, "render_calc")


@app.command(
    help=(
        "List the instrument specs (bundled, plus --specs FILE); with --refresh, read them again from the venues' "
        "public APIs (ccxt: markets and, where public, margin tiers), --diff them against the bundled specs and "
        "--write them to a spec file of yours for --specs.\n\nExample:\n\n  perphedge instruments --format json\n\n"
        "  perphedge instruments --refresh --diff --exchange okx,hyperliquid --write my-specs.yaml"
    )
)
def instruments(
    specs: SpecsOpt = None,
    fmt: FormatOpt = Fmt.table,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Read the specs again from the venues (network, no keys).")
    ] = False,
    diff: Annotated[
        bool, typer.Option("--diff", help="With --refresh: list what differs from the bundled specs.")
    ] = False,
    exchange: Annotated[
        str | None,
        typer.Option(help="With --refresh: venues to read, comma-separated (binance, bybit, okx, hyperliquid)."),
    ] = None,
    write: Annotated[
        str | None, typer.Option(help="With --refresh: write the refreshed specs to this .yaml/.json file.")
    ] = None,
) -> None:
    from perphedge.specs import default_registry

    if refresh:
        if specs is not None:
            raise ConfigError("`--specs` is not read by `--refresh` (it diffs against the bundled specs); drop it")
        from perphedge.usecases.specs_refresh import RefreshRequest, refresh_specs

        names = tuple(x.strip() for x in exchange.split(",")) if exchange is not None else ()
        if exchange is not None and not all(names):
            raise ConfigError(f"invalid `--exchange`: an empty name between commas, was {exchange!r}")
        doc = refresh_specs(RefreshRequest(exchanges=names, write=write, diff=diff))
        _emit(doc, fmt, "render_refresh")
        return
    for flag, given in (("--diff", diff), ("--exchange", exchange is not None), ("--write", write is not None)):
        if given:
            raise ConfigError(f"`{flag}` applies to `--refresh`; add `--refresh` (reads the venues' public APIs)")

    rows = []
    for inst in sorted(default_registry(specs).instruments, key=lambda i: i.id):
        rows.append(
            {
                "id": inst.id,
                "exchange": inst.exchange,
                "symbol": inst.symbol,
                "ccxt_symbol": inst.ccxt_symbol,
                "kind": inst.kind.value,
                "base": inst.base,
                "quote": inst.quote,
                "settle": inst.settle,
                "contract_size": inst.contract_size,
                "contract_size_unit": inst.contract_size_unit,
                "lot_size": inst.lot_size,
                "tick_size": inst.tick_size,
                "max_leverage": inst.max_leverage,
                "tier_style": inst.margin.style.value,
                "slope": inst.margin.slope,
                "tiers": [
                    {
                        "floor": t.floor,
                        "mmr": t.mmr,
                        "max_leverage": t.max_leverage,
                        "maintenance_amount": t.maintenance_amount,
                    }
                    for t in inst.margin.tiers
                ],
                "tier_unit": inst.settle if inst.is_inverse else inst.quote,
                "liquidation_method": inst.liquidation_method.value,
                "funding_interval_hours": inst.funding_interval_hours,
                "maker_fee": inst.maker_fee,
                "taker_fee": inst.taker_fee,
                "source": inst.source,
                "as_of": inst.as_of,
            }
        )
    if fmt is Fmt.json:
        _emit({"schema": "perphedge.instruments/1", "instruments": rows}, fmt, "render_instruments")
    else:
        from perphedge.cli.render import render_instruments

        render_instruments(rows, _console(140))


# Commands whose code lives in other modules are registered on demand: `perphedge plan` does not
# import (or build the options of) analyze, backtest, sweep, stress and data. `main` registers the
# one named on the command line, or all of them for --help and unknown names.


def _register_data() -> None:
    from perphedge.cli.data import data_app

    app.add_typer(data_app, name="data")


def _register_analyze() -> None:
    from perphedge.cli.analyze import analyze_cmd

    app.command(
        "analyze",
        help=(
            "Betas, correlations, minimum-variance and dynamic hedge ratios, hedge effectiveness in and out of "
            "sample (walk-forward), calm vs stress, funding carry and basis, from the market store.\n\n"
            "Example:\n\n  perphedge analyze --assets SOL,AVAX,DOT,LINK --proxy BTC --since 2021-01-01 --plot plots/"
        ),
        no_args_is_help=True,
    )(analyze_cmd)


def _register_backtest() -> None:
    from perphedge.cli.backtest import backtest_cmd

    app.command(
        "backtest",
        help=(
            "Replay a portfolio and its hedge policy over stored history: hedged vs unhedged return, volatility, "
            "drawdown, hedge effectiveness, funding, fees, rebalances, liquidations; writes report.html and "
            "result.json.\n\nExample:\n\n  perphedge backtest runs/altcoins-50pct.yaml"
        ),
        no_args_is_help=True,
    )(backtest_cmd)


def _register_sweep() -> None:
    from perphedge.cli.backtest import sweep_cmd

    app.command(
        "sweep",
        help=(
            "Run every combination of a grid of run-file settings on all cores and rank them.\n\n"
            "Example:\n\n  perphedge sweep runs/grid.yaml"
        ),
        no_args_is_help=True,
    )(sweep_cmd)


def _register_stress() -> None:
    from perphedge.cli.stress import stress_cmd

    app.command(
        "stress",
        help=(
            "Stress the portfolio file's hedge: crash and rally replays, a shock grid, Monte Carlo PnL (VaR, ES) and "
            "the probability each leg is liquidated, and the highest leverage that keeps it under --max-liq-prob.\n\n"
            "Example:\n\n  perphedge stress examples/altcoins.yaml --horizon 90d --leverage 1.5,2,3,5 --plot plots/"
        ),
        no_args_is_help=True,
    )(stress_cmd)


def _register_optimize() -> None:
    from perphedge.cli.optimize import optimize_cmd

    app.command(
        "optimize",
        help=(
            "Choose the whole hedge (instruments, ratio, leverage, collateral, policy) by what it would have done out "
            "of sample: walk-forward search, Pareto front of risk vs carry vs P(liquidation), baselines.\n\n"
            "Example:\n\n  perphedge optimize examples/altcoins.yaml --write plan.yaml --plot plots/"
        ),
        no_args_is_help=True,
    )(optimize_cmd)


def _register_book() -> None:
    from perphedge.cli.book import book_app

    app.add_typer(book_app, name="book")


def _register_web() -> None:
    from perphedge.cli.web import web_cmd

    app.command(
        "web",
        help=(
            "Serve a local dashboard (book, plan, calculator, backtests, stress, data) and a JSON API with the "
            "CLI's documents, on 127.0.0.1 by default.\n\nExample:\n\n"
            "  perphedge web --runs examples --runs runs --book my.book.yaml"
        ),
    )(web_cmd)


#: name -> registration, in the order `perphedge --help` lists them (after plan, calc, instruments)
_LAZY_COMMANDS = {
    "data": _register_data,
    "analyze": _register_analyze,
    "backtest": _register_backtest,
    "sweep": _register_sweep,
    "stress": _register_stress,
    "optimize": _register_optimize,
    "book": _register_book,
    "web": _register_web,
}
_registered: set[str] = set()


def register_commands(names: Any = None) -> typer.Typer:
    """Add the lazily registered commands ``names`` (default: all) to :data:`app`; returns the app."""
    for name in _LAZY_COMMANDS if names is None else names:
        if name in _LAZY_COMMANDS and name not in _registered:
            _registered.add(name)
            _LAZY_COMMANDS[name]()
    return app


def _prepare(argv: list[str]) -> None:
    """Register what the command line needs: the command it names, or every command."""
    for token in argv:
        if token.startswith("-"):
            continue  # root options (--debug, --version, --help) take no value
        if token in _LAZY_COMMANDS:
            register_commands([token])
        elif token not in ("plan", "calc", "instruments"):
            register_commands()
        return
    register_commands()  # no command: the help lists them all


def _one_line(text: str) -> str:
    """A message on one line (a library's multi-line message joined with '; ')."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(lines) or "(no message)"


def _click_exceptions() -> Any:
    try:  # typer >= 0.17 vendors click
        from typer._click import exceptions
    except ImportError:  # pragma: no cover - older typer on plain click
        from click import exceptions  # type: ignore[no-redef]
    return exceptions


def _os_error_line(exc: OSError) -> str:
    """``<path>: <reason>`` for a file-system error on a path the user gave (or the disk being full)."""
    reason = exc.strerror or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    if not paths:
        return f"{reason} ({_one_line(str(exc))})" if str(exc) and str(exc) != reason else reason
    return f"{' -> '.join(paths)}: {reason}"


class _RedactingStream:
    """A text stream that scrubs registered secrets (:mod:`perphedge.exchange.credentials`) from every write: the
    safety net under the command line's own output, whatever prints (rich, typer, logging, tracebacks)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: Any) -> int:
        if isinstance(text, str):
            from perphedge.exchange.credentials import redact

            text = redact(text)
        return int(self._stream.write(text))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    @property
    def buffer(self) -> Any:  # binary writes would bypass the scrubbing: not offered
        raise AttributeError("buffer")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _print_traceback(exc: BaseException | None = None) -> None:
    """The traceback of ``exc`` (default: the one being handled) on stderr, with every secret scrubbed."""
    import traceback

    from perphedge.exchange.credentials import redact

    text = "".join(traceback.format_exception(exc)) if exc is not None else traceback.format_exc()
    sys.stderr.write(redact(text))
    sys.stderr.flush()


def _error(line: str) -> None:
    """``perphedge: error: <line>`` on stderr, scrubbed of secrets."""
    from perphedge.exchange.credentials import redact

    print(f"perphedge: error: {redact(_one_line(line))}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point (see :func:`_main`); everything it prints is scrubbed of registered secrets."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _RedactingStream(out), _RedactingStream(err)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(argv: list[str] | None = None) -> int:
    """Entry point. Returns the exit code.

    * 0 success (also ``--help``, ``--version``, and a command given without its arguments, which prints
      its help);
    * 2 the user's mistake: a :class:`PerphedgeError`, a command-line usage error (bad value, unknown
      option, missing argument), or a file-system error on a path the user gave: one line
      ``perphedge: error: ...`` on stderr;
    * 1 an unexpected exception (our bug): ``perphedge: internal error: <type>: <message>`` and a hint to
      rerun with ``--debug`` (or PERPHEDGE_DEBUG=1), which prints the full traceback;
    * 130 interrupted (Ctrl-C).
    """
    _STATE["debug"] = _debug_env()
    ce = _click_exceptions()
    exits = (typer.Exit, getattr(ce, "Exit", typer.Exit))
    aborts = (KeyboardInterrupt, typer.Abort, getattr(ce, "Abort", typer.Abort))

    def debug() -> bool:
        return bool(_STATE["debug"])

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        _prepare(args)
        code = app(args=args, prog_name="perphedge", standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool):
            if code == 130:  # typer turns Ctrl-C inside a command into Exit(130)
                print("perphedge: interrupted", file=sys.stderr)
            return code  # a typer.Exit(code) inside a command comes back as its code
        return 0
    except PerphedgeError as exc:
        if debug():
            _print_traceback()
        _error(str(exc))
        return int(getattr(exc, "exit_code", 2))
    except exits as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except aborts:
        print("perphedge: interrupted", file=sys.stderr)
        return 130
    except ce.NoArgsIsHelpError as exc:
        # a command given without its arguments: its help, as --help prints it
        sys.stdout.write(exc.format_message().rstrip("\n") + "\n")
        return 0
    except ce.UsageError as exc:
        from perphedge.cli.options import usage_error_line

        _error(usage_error_line(exc))
        return 2
    except typer.TyperException as exc:  # e.g. a file the parser could not open
        _error(exc.format_message())
        return 2
    except BrokenPipeError:
        # the reader of our output went away (`perphedge ... | head`): stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 1
    except OSError as exc:
        if exc.errno is None:  # not a file-system error: treat as ours
            return _internal_error(exc, debug())
        if debug():
            _print_traceback()
        _error(_os_error_line(exc))
        return 2
    except Exception as exc:
        return _internal_error(exc, debug())


def _internal_error(exc: BaseException, debug: bool) -> int:
    """An exception nobody expected: our bug. One line (or the traceback with --debug), exit 1."""
    from perphedge.exchange.credentials import redact

    line = redact(f"perphedge: internal error: {type(exc).__name__}: {_one_line(str(exc))}")
    if debug:
        _print_traceback(exc)
        print(line, file=sys.stderr)
    else:
        print(f"{line} (rerun with --debug for the traceback)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
