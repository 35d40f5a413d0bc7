"""The documents the JSON API serves: each one the result of the use case the matching CLI command calls, built
with the same request object, the same builder and serialised the same way (``json.dumps(..., indent=2)`` and a
newline), so ``POST /api/plan`` answers byte for byte what ``perphedge plan FILE --format json`` prints."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from perphedge.errors import ConfigError
from perphedge.web import params as P
from perphedge.web.settings import WebConfig, safe_relative

__all__ = [
    "backtest_document",
    "backtest_results",
    "book_journal",
    "book_status",
    "book_version",
    "calc_doc",
    "data_check",
    "data_import_sample",
    "data_status",
    "dumps",
    "plan_doc",
    "stress_doc",
    "sweep_results",
]

#: Backtests, stress runs and imports share 2 cores with everything else: one at a time.
HEAVY = threading.Lock()


def dumps(doc: Any) -> str:
    """The CLI's JSON text of a document (``--format json``)."""
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


# ------------------------------------------------------------------------------------------------ plan


def _plan_overrides(q: Mapping[str, Any]) -> dict[str, Any]:
    """``perphedge plan``'s flags, checked in its order, before any file is read."""
    from perphedge.core.parsing import parse_date_or_latest, parse_days
    from perphedge.core.scenarios import parse_moves, parse_scenario
    from perphedge.usecases.plan import HedgeOverrides

    lev_text = P.text(q, "leverage")
    lev: float | None = None
    auto = False
    if lev_text is not None:
        if lev_text.strip().lower() == "auto":
            auto = True
        else:
            try:
                lev = P.number({"leverage": lev_text}, "leverage")
            except ConfigError:
                raise ConfigError(f"invalid `--leverage`: must be a number or auto, was {lev_text!r}") from None
    window = P.text(q, "window")
    window_days = None if window is None else parse_days(window, "--window")
    as_of = P.text(q, "as_of")
    if as_of is not None:
        day = parse_date_or_latest(as_of, "--as-of")
        as_of = "latest" if day is None else day.isoformat()
    scenarios = P.texts(q, "scenario")
    for text in scenarios:
        parse_scenario(text, proxy="", where="--scenario")
    drift = P.text(q, "drift")
    if drift is not None:
        parse_moves(drift, "--drift")
    overrides = HedgeOverrides(
        ratio=P.optional_number(q, "ratio"),
        scope=P.text(q, "scope"),
        method=P.text(q, "method"),
        instrument=P.text(q, "instrument"),
        proxy=P.text(q, "proxy"),
        leverage=lev,
        collateral=P.text(q, "collateral"),
        funding_rate_8h=P.optional_number(q, "funding_rate_8h"),
        window_days=window_days,
    )
    return {
        "overrides": overrides,
        "scenarios": scenarios,
        "compare": P.switch(q, "compare"),
        "drift_moves": drift,
        "as_of": as_of,
        "auto_leverage": auto,
    }


def plan_doc(cfg: WebConfig, q: Mapping[str, Any], *, body: bytes | None = None) -> dict[str, Any]:
    """``perphedge plan FILE [flags] --format json``: the file is ``?file=`` (a served folder) or the YAML body
    (named ``?source=``, default ``portfolio.yaml``, in messages and in the document's ``source``)."""
    from perphedge.config import load_portfolio_file, parse_portfolio
    from perphedge.files import decode_text, load_yaml_text
    from perphedge.specs import default_registry
    from perphedge.usecases.documents import plan_document
    from perphedge.usecases.plan import plan_portfolio

    kwargs = _plan_overrides(q)
    if body is None:
        name = P.text(q, "file", required=True) or ""
        path = cfg.runs.resolve(name, "file")
        source = str(path)
        pfile = load_portfolio_file(path)
    else:
        source = P.text(q, "source", max_len=200) or "portfolio.yaml"
        safe_relative(source, "source")  # a label, but one line of plain text
        text = decode_text(body, source, "a portfolio file")
        pfile = parse_portfolio(load_yaml_text(text, source), source)
    outcome = plan_portfolio(pfile, source=source, registry=default_registry(None), store_path=cfg.store, **kwargs)
    return plan_document(outcome)


# ------------------------------------------------------------------------------------------------ calc


def calc_doc(q: Mapping[str, Any]) -> dict[str, Any]:
    """``perphedge calc --format json``."""
    from perphedge.core.contracts import Side
    from perphedge.specs import default_registry
    from perphedge.usecases.documents import calc_document
    from perphedge.usecases.plan import CalcInput, calc, calc_instrument

    instrument = P.text(q, "instrument")
    if instrument is None:
        raise ConfigError("`perphedge calc` needs the option --instrument")
    side = P.choice(q, "side", ("long", "short"))
    if side is None:
        raise ConfigError("`perphedge calc` needs the option --side")
    contracts = P.optional_number(q, "contracts")
    if contracts is None:
        raise ConfigError("`perphedge calc` needs the option --contracts")
    entry = P.optional_number(q, "entry")
    if entry is None:
        raise ConfigError("`perphedge calc` needs the option --entry")
    inst = calc_instrument(
        default_registry(None),
        instrument,
        mmr=P.optional_number(q, "mmr"),
        maintenance_amount=P.optional_number(q, "maintenance_amount"),
        method=P.text(q, "method"),
        face_value=P.optional_number(q, "face_value"),
    )
    ci = CalcInput(
        instrument=inst,
        side=Side(side),
        contracts=contracts,
        entry=entry,
        exit=P.optional_number(q, "exit"),
        leverage=P.number(q, "leverage", 1.0),
        margin_mode=P.choice(q, "margin_mode", ("isolated", "cross"), "isolated") or "isolated",
        wallet_balance=P.optional_number(q, "wallet_balance"),
        funding_rate=P.number(q, "funding_rate", 0.0001),
        mark=P.optional_number(q, "mark"),
        fee_rate=P.optional_number(q, "fee_rate"),
    )
    return calc_document(calc(ci))


# ------------------------------------------------------------------------------------------------ book


def _book_path(cfg: WebConfig, name: str) -> Path:
    books = cfg.book_paths()
    if name not in books:
        raise LookupError(name)
    return books[name]


def book_status(cfg: WebConfig, name: str) -> dict[str, Any]:
    """``perphedge book status BOOK --format json`` (the document before ``json_safe``)."""
    from perphedge.jsonsafe import json_safe
    from perphedge.usecases import book as B

    s = B.open_session(B.load_book(_book_path(cfg, name)), market_store=cfg.store, writer=False)
    try:
        snap = B.snapshot(s, B._now_ms())
        doc = B.status_document(s, snap, decision=B.plan_rebalance(s, snap))
    finally:
        B.close_session(s)
    return dict(json_safe(doc))


def book_journal(cfg: WebConfig, name: str, limit: int = 100) -> list[dict[str, Any]]:
    """``perphedge book journal BOOK --limit N --format json``."""
    from perphedge.jsonsafe import json_safe
    from perphedge.usecases.book import journal_json, journal_rows, load_book

    if not 1 <= limit <= 10_000:
        raise ConfigError(f"invalid value for --limit: must be 1 to 10000, was {limit}")
    return list(json_safe(journal_json(journal_rows(load_book(_book_path(cfg, name)), limit=limit))))


def book_version(cfg: WebConfig, name: str) -> str:
    """A token that changes whenever the book's file or its state store (SQLite and its WAL) changes."""
    from perphedge.usecases.book import book_store_path, load_book

    path = _book_path(cfg, name)
    parts = []
    try:
        store = book_store_path(load_book(path))
    except ConfigError:
        store = None
    for p in [path] + ([store, Path(f"{store}-wal")] if store else []):
        try:
            st = p.stat()
            parts.append(f"{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            parts.append("-")
    return "/".join(parts)


def book_rebalance(cfg: WebConfig, name: str) -> dict[str, Any]:
    """``perphedge book rebalance BOOK --execute --yes --format json`` (trading servers only): the same steps in
    the same order; a limit, a halt, a stale feed or a read-only account refuses as the CLI does."""
    from perphedge.jsonsafe import json_safe
    from perphedge.usecases import book as B

    s = B.open_session(B.load_book(_book_path(cfg, name)), market_store=cfg.store, writer=True)
    try:
        snap = B.snapshot(s, B._now_ms())
        notes = B.recover(s, snap)
        B.advance(s, snap)
        warnings = [
            f"{c['account']}:{c['instrument']} holds {c['venue']:g} contracts at the venue, the journal explains "
            f"{c['expected']:g}: changed outside the book (the plan starts from the venue's)"
            for c in B.reconcile(s, snap)
        ]
        plan = B.plan_rebalance(s, snap)
        already = B.decided_at(s, snap)
        refused = B.check_plan_limits(s, plan) if plan.items else []
        doc = B.plan_document(s, plan)
        doc["recovered"] = notes
        doc["warnings_outside"] = warnings
        if refused:
            if s.store is not None:
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
            raise ConfigError(f"refused: {refused[0].message}")
        if snap.stale:
            raise ConfigError("the price feed is stale: trading blocked (see `perphedge book status`)")
        if plan.items:
            B.require_trading(s, plan)
        h = B.halted(s)
        if h is not None and plan.items:
            raise ConfigError(f"refused: book halted ({h.get('reason')}): nothing sent; resume the book first")
        if already is not None and plan.items:
            doc["reason"] += f" — not sent: decision {already} was made at this bar already"
        if not plan.items or already is not None:
            doc["results"] = []
        else:
            results = B.execute_plan(s, plan, snap)
            B.finish_tick(s, snap)
            doc = B.plan_document(s, plan, executed=True, results=results)
        doc["dry_run"] = False
    finally:
        B.close_session(s)
    return dict(json_safe(doc))


def book_halt(cfg: WebConfig, name: str, reason: str) -> dict[str, Any]:
    """``perphedge book halt BOOK --reason R --format json``."""
    import unicodedata

    from perphedge.jsonsafe import json_safe
    from perphedge.usecases import book as B

    if reason and (not reason.strip() or len(reason) > 500):
        raise ConfigError("invalid `--reason`: give 1 to 500 characters")
    if any(unicodedata.category(ch) == "Cc" for ch in reason):
        raise ConfigError(
            "invalid `--reason`: must be one line of text without control characters (newlines, tabs, escapes)"
        )
    s = B.open_session(B.load_book(_book_path(cfg, name)), market_store=cfg.store, writer=True)
    try:
        doc = B.halt(s, B._now_ms(), reason=reason.strip())
    finally:
        B.close_session(s)
    return dict(json_safe(doc))


def book_resume(cfg: WebConfig, name: str) -> dict[str, Any]:
    """``perphedge book resume BOOK --format json``."""
    from perphedge.jsonsafe import json_safe
    from perphedge.usecases import book as B

    s = B.open_session(B.load_book(_book_path(cfg, name)), market_store=cfg.store, writer=True)
    try:
        doc = B.resume(s, B._now_ms())
    finally:
        B.close_session(s)
    return dict(json_safe(doc))


# ------------------------------------------------------------------------------------------------ backtest


def _result_dir(cfg: WebConfig, run_name: str) -> Path:
    (part,) = safe_relative(run_name, "name") if "/" not in run_name else (None,)
    if part is None:
        raise ConfigError(f"invalid `name`: {run_name!r} must be one folder name")
    return cfg.out / part


def backtest_document(cfg: WebConfig, run: str, *, report: bool = True) -> dict[str, Any]:
    """``perphedge backtest RUN --out <out>/<run stem> --format json`` for a run file of a served folder."""
    from perphedge.usecases.backtest import BacktestRequest, execute

    path = cfg.runs.resolve(run, "run")
    with HEAVY:
        outcome = execute(
            BacktestRequest(run_file=path, store_path=cfg.store, specs=None, out_dir=cfg.out / path.stem, report=report)
        )
    return dict(outcome.document) | {"files": outcome.files}


def backtest_results(cfg: WebConfig) -> list[dict[str, Any]]:
    """The run folders under the output folder (``result.json`` each), newest first, with their headline."""
    out: list[dict[str, Any]] = []
    if not cfg.out.is_dir():
        return out
    for d in cfg.out.iterdir():
        f = d / "result.json"
        if d.is_symlink() or not f.is_file() or f.is_symlink():
            continue
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(doc, dict) or doc.get("schema") != "perphedge.backtest/1":
            continue
        out.append(
            {
                "name": d.name,
                "modified": f.stat().st_mtime,
                "source": doc.get("source"),
                "start": doc.get("start"),
                "end": doc.get("end"),
                "policy": (doc.get("policy") or {}).get("kind"),
                "config_hash": doc.get("config_hash"),
                "hedged_total_return": (doc.get("hedged") or {}).get("total_return"),
                "unhedged_total_return": (doc.get("unhedged") or {}).get("total_return"),
                "hedged_max_drawdown": (doc.get("hedged") or {}).get("max_drawdown"),
                "hedge_effectiveness": doc.get("hedge_effectiveness"),
                "report": (d / "report.html").is_file(),
            }
        )
    return sorted(out, key=lambda r: -r["modified"])


def backtest_result(cfg: WebConfig, name: str) -> dict[str, Any]:
    """The ``result.json`` of one run folder."""
    f = _result_dir(cfg, name) / "result.json"
    if not f.is_file() or f.is_symlink():
        raise LookupError(name)
    return dict(json.loads(f.read_text(encoding="utf-8")))


def backtest_report(cfg: WebConfig, name: str) -> Path:
    """The ``report.html`` of one run folder."""
    f = _result_dir(cfg, name) / "report.html"
    if not f.is_file() or f.is_symlink():
        raise LookupError(name)
    return f


def sweep_results(cfg: WebConfig) -> list[dict[str, Any]]:
    """``sweep.json`` files (``perphedge sweep --out``) in the output folder and the served folders."""
    found: list[Path] = []
    if cfg.out.is_dir():
        found += [p for p in cfg.out.glob("*.json") if p.name.startswith("sweep")]
        found += [p for p in cfg.out.glob("*/sweep*.json")]
    out = []
    for p in sorted(set(found)):
        if p.is_symlink():
            continue
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and isinstance(doc.get("top"), list):
            out.append({"file": p.relative_to(cfg.out).as_posix(), **doc})
    return out


# ------------------------------------------------------------------------------------------------ stress


def stress_doc(cfg: WebConfig, q: Mapping[str, Any]) -> dict[str, Any]:
    """``perphedge stress FILE [flags] --format json`` (the samples kept under ``_samples`` for the histogram)."""
    from perphedge.usecases.analyze import parse_days
    from perphedge.usecases.stress import StressRequest, run_stress

    name = P.text(q, "file", required=True) or ""
    leverage = P.text(q, "leverage")
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
        file=str(cfg.runs.resolve(name, "file")),
        model=P.text(q, "model") or "bootstrap",
        paths=P.integer(q, "paths", 20_000),
        horizon_days=parse_days(P.text(q, "horizon") or "90d", "--horizon"),
        seed=P.integer(q, "seed", 0),
        leverages=levs,
        sigma=P.optional_number(q, "sigma"),
        drift=P.optional_number(q, "drift"),
        correlation=P.optional_number(q, "correlation"),
        max_liq_prob=P.number(q, "max_liq_prob", 0.01),
        as_of=P.text(q, "as_of"),
        store_path=cfg.store,
        specs=None,
    )
    with HEAVY:
        return dict(run_stress(req))


# ------------------------------------------------------------------------------------------------ data


def data_status(cfg: WebConfig) -> dict[str, Any]:
    """``perphedge data status --format json``."""
    from perphedge.usecases.data import StatusRequest, status

    return status(StatusRequest(store=cfg.store))


def data_check(cfg: WebConfig) -> dict[str, Any]:
    """``perphedge data check --format json``."""
    from perphedge.usecases.data import CheckRequest, check

    return check(CheckRequest(store=cfg.store))


def data_import_sample(cfg: WebConfig) -> dict[str, Any]:
    """``perphedge data import --sample --format json``."""
    from perphedge.usecases.data import ImportRequest, import_data

    with HEAVY:
        return import_data(ImportRequest(sample=True, store=cfg.store))
