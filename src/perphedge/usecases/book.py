"""``perphedge book``: hold a hedge — status, rebalance, watch, journal and replay (design docs/design/book.md).

One code path for every command. A :class:`Session` is the opened book: the book file and its portfolio, the
history the policy needs (:func:`perphedge.usecases.backtest.prepare` on the book's equivalent run, so the
sizing, the betas, the legs, the pinned margin tier and the policy are the backtest's own), the feed, the
accounts and the state store. Each tick:

1. :func:`advance` — the feed's snapshot; every account syncs to it (funding settlements, liquidations), and
   the events are journaled once each;
2. :func:`status_document` — the whole book now (``perphedge.book/1``);
3. alerts — once per episode (:mod:`perphedge.core.alerts`), to the terminal, the journal and the webhook;
4. :func:`plan_rebalance` — the policy's target at this bar through :mod:`perphedge.core.legstep`'s band check
   → orders and margin moves, limits checked on the whole plan (:mod:`perphedge.core.limits`);
5. :func:`execute_plan` — the crash-safe protocol of design §4: intent journaled before anything is sent,
   client order ids from (book, decision, leg, attempt), lookup before any resend.

``book replay`` runs the same ticks on a paper account over stored history with a simulated clock, so its
equity, funding, fees, rebalances and liquidations are the backtest's (tested).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from perphedge.core import legstep as L
from perphedge.core.book import (
    Account,
    Feed,
    FeedSnapshot,
    FundingPayment,
    Liquidation,
    OrderRequest,
    OrderResult,
    Position,
    TransferRequest,
)
from perphedge.core.hedge import CollateralSource
from perphedge.core.units import is_stablecoin
from perphedge.errors import ConfigError, DataError, ExchangeError, PerphedgeError
from perphedge.jsonsafe import json_safe

if TYPE_CHECKING:
    from perphedge.config import BookFile, ExchangeAccountModel, PortfolioFile, RunFile
    from perphedge.core.instruments import Instrument
    from perphedge.core.policies import PolicySpec
    from perphedge.data.bookstore import BookStore, JournalRow
    from perphedge.usecases.backtest import LegData, Prepared

__all__ = [
    "BOOK_SCHEMA",
    "REBALANCE_SCHEMA",
    "REPLAY_SCHEMA",
    "LimitRefused",
    "LoadedBook",
    "Plan",
    "Session",
    "book_store_path",
    "book_to_run",
    "init_book",
    "load_book",
]

BOOK_SCHEMA = "perphedge.book/1"
REBALANCE_SCHEMA = "perphedge.book-rebalance/1"
REPLAY_SCHEMA = "perphedge.book-replay/1"
DAY_MS = 86_400_000
#: Decisions use history the policy needs; these kinds need a price history (a market store).
HISTORY_POLICIES = frozenset({"volatility", "trend", "funding_aware", "fear_greed", "beta"})


class LimitRefused(PerphedgeError):
    """A limit of the book refused the whole rebalance (CLI exit 3)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _crash_point(label: str) -> None:
    """Tests: ``PERPHEDGE_TEST_CRASH=<label>`` ends the process at that point, as kill -9 would."""
    if os.environ.get("PERPHEDGE_TEST_CRASH") == label:
        os._exit(137)


# ------------------------------------------------------------------------------------------------ loading


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedBook:
    """A book file with its portfolio, and the hash of both (recorded in every journal row)."""

    book: BookFile
    pfile: PortfolioFile
    path: Path
    config_hash: str
    portfolio_path: Path | None


def load_book(path: str | Path) -> LoadedBook:
    """Read and validate a book file and its portfolio (path relative to the book file, or inline)."""
    from perphedge.config import parse_book, parse_portfolio, read_yaml

    p = Path(path)
    doc, raw = read_yaml(p, "a book file")
    book = parse_book(doc, str(p))
    pf_path: Path | None = None
    if isinstance(book.portfolio, str):
        pf_path = Path(book.portfolio) if Path(book.portfolio).is_absolute() else (p.parent / book.portfolio)
        pdoc, praw = read_yaml(pf_path, "a portfolio file")
        if isinstance(pdoc, dict) and "book" in pdoc and "holdings" not in pdoc:
            raise ConfigError(
                f"{p}: field `portfolio`: {pf_path} is a book file, not a portfolio file (holdings, prices, hedge)"
            )
        pfile = parse_portfolio(pdoc, str(pf_path))
        raw += b"\n--portfolio--\n" + praw
    else:
        pfile = parse_portfolio(book.portfolio, f"{p}: portfolio")
    _check_book(book, pfile, str(p))
    return LoadedBook(
        book=book, pfile=pfile, path=p, config_hash=hashlib.sha256(raw).hexdigest(), portfolio_path=pf_path
    )


def _check_book(book: BookFile, pfile: PortfolioFile, source: str) -> None:
    from perphedge.specs import default_registry

    registry = default_registry()
    for i, acc in enumerate(book.accounts):
        if acc.kind == "paper" and acc.exchange not in registry.exchanges():
            raise ConfigError(
                f"{source}: field `accounts[{i}].exchange`: no bundled instruments of `{acc.exchange}`; choose one of "
                f"{', '.join(sorted(registry.exchanges()))}"
            )
    hb, over = pfile.hedge, book.hedge
    if not (hb.instrument or hb.legs or over.get("instrument") or over.get("legs")):
        raise ConfigError(
            f"{source}: field `hedge.instrument`: is required, in the book's `hedge:` or its portfolio's (e.g. "
            "binance:BTCUSDT or binance:BTCUSD_PERP); or give `hedge.legs`"
        )
    known = {i.lower() for i in registry.ids()}
    for i, ident in enumerate(book.limits.instruments):
        if ident.lower() not in known:
            raise ConfigError(
                f"{source}: field `limits.instruments[{i}]`: unknown instrument {ident!r} (not in the bundled specs)"
            )
    held = {(h.asset.upper(), h.group) for h in pfile.holdings}
    for acc in book.accounts:
        for asset in acc.balances if acc.kind == "paper" else ():
            if (asset, f"paper-{acc.name}") in held:
                raise ConfigError(
                    f"{source}: the portfolio already has a holding of {asset} in group `paper-{acc.name}`, the "
                    "group of that paper account's balances: rename the group"
                )
    if book.decide == "every_tick":
        raise ConfigError(
            f"{source}: field `decide`: `every_tick` is for live exchange accounts, which this version does not "
            "hold yet; use `close` (a decision at each bar close of `step`)"
        )


def book_store_path(lb: LoadedBook) -> Path:
    """The book's state store: ``store:`` (relative to the book file) or ``$PERPHEDGE_HOME/books/<id>.sqlite``."""
    if lb.book.store:
        s = Path(lb.book.store)
        return s if s.is_absolute() else lb.path.parent / s
    home = os.environ.get("PERPHEDGE_HOME")
    root = Path(home) if home else Path.home() / ".perphedge"
    return root / "books" / f"{lb.book.id}.sqlite"


def _paper_holdings(book: BookFile) -> list[dict[str, Any]]:
    """Paper starting balances as holdings of the equivalent run (group ``paper-<account>``)."""
    return [
        {"asset": asset, "quantity": amount, "group": f"paper-{acc.name}"}
        for acc in book.accounts
        if acc.kind == "paper"
        for asset, amount in acc.balances.items()
    ]


def _run_document(lb: LoadedBook, start: date, end: date) -> dict[str, Any]:
    pf = lb.pfile.model_dump(mode="json", exclude_unset=True, by_alias=True)
    pf["holdings"] = [*pf["holdings"], *_paper_holdings(lb.book)]
    b = lb.book
    doc: dict[str, Any] = {
        "name": f"{b.name or lb.path.stem} (book {b.id})",
        "portfolio": pf,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "step": b.step,
        "hedge": dict(b.hedge),
        "policy": b.policy.model_dump(mode="json", exclude_unset=True, by_alias=True),
        "costs": b.costs.model_dump(mode="json", exclude_unset=True),
        "margin": b.margin.model_dump(mode="json", exclude_unset=True),
        "funding": b.funding.model_dump(mode="json", exclude_unset=True),
    }
    if "kind" not in doc["policy"]:
        doc["policy"]["kind"] = b.policy.kind
    return doc


def book_to_run(lb: LoadedBook, start: date, end: date) -> tuple[RunFile, PortfolioFile, dict[str, Any]]:
    """The backtest run equivalent to replaying the book from ``start`` to ``end``: the book's portfolio plus the
    paper accounts' starting balances as holdings, its step, hedge, policy, costs, margin and funding."""
    from perphedge.config import parse_portfolio, parse_run

    doc = _run_document(lb, start, end)
    run_cfg = parse_run(doc, f"{lb.path}: equivalent run")
    pfile = parse_portfolio(doc["portfolio"], f"{lb.path}: equivalent run portfolio")
    return run_cfg, pfile, doc


# ------------------------------------------------------------------------------------------------ init


@dataclass(frozen=True, slots=True, kw_only=True)
class InitOutcome:
    path: Path
    book_id: str
    feed: str
    balances: dict[str, float]
    instruments: list[str]


def init_book(
    path: str | Path,
    *,
    portfolio: str | Path,
    exchange: str | None = None,
    balances: Mapping[str, float] | None = None,
    feed: str | None = None,
    market_store: str | None = None,
    force: bool = False,
    today: date | None = None,
    live: ExchangeAccountModel | None = None,
) -> InitOutcome:
    """Write a new book file holding ``portfolio`` with a paper account on ``exchange``, or with the live exchange
    account ``live`` (its credentials named, never written; never overwrites unless ``force``)."""
    import yaml

    from perphedge.config import load_portfolio_file
    from perphedge.specs import default_registry
    from perphedge.usecases.outputs import write_file_atomic
    from perphedge.usecases.plan import _resolve_legs

    out = Path(path)
    if out.exists() and not force:
        raise ConfigError(f"{out} exists: choose another name, or pass --force to replace it")
    if out.exists() and out.is_dir():
        raise ConfigError(f"{out} is a directory: give the book file's path, e.g. {out}/my.book.yaml")
    pf_path = Path(portfolio)
    pfile = load_portfolio_file(pf_path)
    registry = default_registry()
    if (exchange is None) == (live is None):
        raise ConfigError(
            "give --paper EXCHANGE (a simulated account) or --exchange NAME (a live account)"
            + (", not both" if live is not None else "")
        )
    if live is not None and balances:
        raise ConfigError("invalid `--balance`: a live account's balances are the venue's; --balance is for --paper")
    flag = "--paper" if live is None else "--exchange"
    exchange = live.venue if live is not None else (exchange or "").strip().lower()
    if exchange not in registry.exchanges():
        raise ConfigError(
            f"invalid `{flag}`: no bundled instruments of `{exchange}`; choose one of "
            f"{', '.join(sorted(registry.exchanges()))}"
        )
    from perphedge.usecases.book_positions import legs_portfolio, position_assets

    port = legs_portfolio(pfile)  # holdings and DeFi positions' assets; the legs do not depend on prices
    hb = pfile.hedge
    proxy_legs, direct, _ = _resolve_legs(hb.instrument, hb.legs, hb.proxy, port, registry)
    instruments = sorted({leg.instrument.id for leg in proxy_legs} | {i.id for i in direct.values()})
    foreign = [i for i in instruments if not i.startswith(f"{exchange}:")]
    if live is not None:
        kinds = live.instrument_kinds
        wrong = [i for i in instruments if i not in foreign and registry.get(i).kind.value not in kinds]
        if foreign or wrong:
            bad = (foreign or wrong)[0]
            raise ConfigError(
                f"invalid `--exchange`: the portfolio's hedge trades {bad} ({registry.get(bad).kind.value}), which an "
                f"account on `{live.exchange}` ({' and '.join(kinds)} instruments of {exchange}) does not hold; "
                "choose the exchange account of the hedge's instruments, or change `hedge.instrument`"
            )
    if foreign:
        raise ConfigError(
            f"invalid `--paper`: the portfolio's hedge trades {', '.join(foreign)}, which a paper account on "
            f"`{exchange}` does not list; use --paper {foreign[0].split(':')[0]}, or change `hedge.instrument`"
        )
    prices = {k.upper(): v for k, v in pfile.prices.items()}
    bases = {leg.instrument.base for leg in proxy_legs} | {i.base for i in direct.values()}
    priced = all(is_stablecoin(h.asset) or h.asset.upper() in prices for h in pfile.holdings) and all(
        b.upper() in prices for b in {*bases, *position_assets(pfile)}
    )
    feed_kind = feed or ("portfolio" if priced and live is None else "live")
    if feed_kind not in ("store", "live", "portfolio"):
        raise ConfigError(f"invalid `--feed`: must be store, live or portfolio, was {feed_kind!r}")
    if feed_kind == "portfolio" and not priced:
        missing = [h.asset for h in pfile.holdings if not is_stablecoin(h.asset) and h.asset.upper() not in prices]
        missing += sorted(b for b in {*bases, *position_assets(pfile)} if b.upper() not in prices and b not in missing)
        raise ConfigError(f"invalid `--feed portfolio`: the portfolio gives no price for {', '.join(missing)}")
    if live is not None:
        bal: dict[str, float] = {}
    elif balances:
        bal = {k.upper(): float(v) for k, v in balances.items()}
    else:
        value = sum(
            (h.value_usd if h.value_usd is not None else (h.quantity or 0.0) * prices.get(h.asset.upper(), 0.0))
            for h in pfile.holdings
            if not is_stablecoin(h.asset)
        )
        if pfile.positions and priced:  # positions count by their delta at the file's prices
            from perphedge.usecases.plan import build_positions

            value += sum(
                float(d) for p in build_positions(pfile, prices, str(pf_path)) for d in p.delta_usd(prices).values()
            )
        inverse_buy = any(i.startswith(f"{exchange}:") and registry.get(i).is_inverse for i in instruments) and (
            hb.collateral in (None, "buy")
        )
        lev = max(float(hb.leverage), 1.0)
        notional = value * hb.ratio * (lev / (lev - 1.0) if inverse_buy and lev > 1 else 1.0)
        need = 0.0 if hb.collateral == "holdings" else notional / lev  # the margin at the open
        bal = {"USDT": float(max(1000.0, math.ceil(need * 1.5 / 1000.0) * 1000.0))}  # + 50 % for drift and top-ups
    rel = os.path.relpath(pf_path.resolve(), out.resolve().parent)
    if rel.startswith(".."):
        rel = str(pf_path.resolve())  # outside the book's folder: an absolute path reads better than ../../..
    book_id = secrets.token_hex(4)
    while re.fullmatch(r"[0-9]+(e[0-9]+)?", book_id):  # would read back as a number if a tool re-wrote it unquoted
        book_id = secrets.token_hex(4)
    day = today or datetime.now(UTC).date()
    doc: dict[str, Any] = {
        "book": 1,
        "id": book_id,
        "name": f"{pfile.name} (paper {exchange})"
        if live is None
        else f"{pfile.name} ({live.exchange}{' sandbox' if live.sandbox else ''})",
        "portfolio": rel,
        "step": "1d",
        "policy": {"kind": "drift_band", "ratio": float(hb.ratio), "band": 0.10},
        "policy_origin": day,
        "feed": {"kind": feed_kind, "source": exchange} | ({"store": market_store} if market_store else {}),
        "accounts": [
            {"name": "paper", "kind": "paper", "exchange": exchange, "balances": bal}
            if live is None
            else live.model_dump(mode="json", exclude_none=True)
        ],
        "limits": {
            "max_leverage": max(3.0, float(hb.leverage) * 1.5),
            "min_liquidation_distance": 0.10,
            "instruments": instruments,
        },
        "alerts": {
            "liquidation_distance_below": 0.30,
            "ratio_off_by": 0.15,
            "funding_cost_8h_above": 0.0003,
            "feed_stale_after": "15m" if feed_kind == "live" else ("2d" if feed_kind == "store" else "15m"),
            "order_rejected": True,
        },
    }
    header = (
        "# perphedge book (issue 10): edit the policy, limits and alerts; never edit `id` (it is part of every\n"
        "# client order id). Keys come from the environment, never from this file.\n"
    )
    text = header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110)
    # quoted: an unquoted id such as 1234e567 reads back as a number (YAML 1.2 floats)
    text = text.replace(f"\nid: {book_id}\n", f"\nid: '{book_id}'\n")
    from perphedge.config import parse_book
    from perphedge.files import load_yaml_text

    parse_book(load_yaml_text(text, str(out)), str(out))  # checked before anything is written or replaced
    write_file_atomic(out, text, "BOOK")
    load_book(out)  # what was written must read back
    return InitOutcome(path=out, book_id=book_id, feed=feed_kind, balances=bal, instruments=instruments)


# ------------------------------------------------------------------------------------------------ session


@dataclass(slots=True, kw_only=True)
class LegCtx:
    """One hedge leg of the book: its instrument, the account holding it and the backtest's params vector."""

    index: int
    inst: Instrument
    account: str
    params: np.ndarray
    weights: dict[str, float]
    data: LegData
    collateral: CollateralSource


@dataclass(slots=True, kw_only=True)
class Session:
    """An opened book (see the module docstring)."""

    lb: LoadedBook
    run_cfg: RunFile
    prep: Prepared
    spec: PolicySpec
    betas: dict[str, np.ndarray]
    legs: list[LegCtx]
    bar_ms: int
    bar_open_ms: np.ndarray
    feed: Feed
    accounts: dict[str, Account]
    store: BookStore | None
    replay: bool = False
    stale_after_s: int = 900
    warnings: list[str] = field(default_factory=list)
    alerts_out: Callable[[str], None] | None = None
    last_snapshot: FeedSnapshot | None = None
    pending_observations: list[Any] = field(default_factory=list)  # one-shot alerts found during the tick

    @property
    def book(self) -> BookFile:
        return self.lb.book

    def decision_bar(self, snap: FeedSnapshot) -> int:
        """The history bar a decision at ``snap`` uses: the replay's bar; on stored prices the last bar closed at
        or before ``now``; on constant-price feeds (portfolio, live) the bar containing ``now``."""
        if snap.bar is not None and self.replay:
            return int(snap.bar)
        opens = self.bar_open_ms
        if self.book.feed.kind == "store":
            i = int(np.searchsorted(opens + self.bar_ms, snap.now_ms, side="right")) - 1
        else:
            i = int(np.searchsorted(opens, snap.now_ms, side="right")) - 1
        if i < 0:
            raise DataError(
                f"no {self.book.step} bar of the book's history has closed by {_iso_ms(snap.now_ms)} (the policy "
                f"origin is {self.prep.dates[0].date()}): nothing to decide on yet"
            )
        return min(i, len(opens) - 1)

    def bar_number(self, snap: FeedSnapshot) -> float:
        """Bar count for the reopen rule (only differences matter): the replay's index, else ``now // bar``."""
        return float(snap.bar) if snap.bar is not None else float(snap.now_ms // self.bar_ms)


def _origin(lb: LoadedBook) -> date:
    return lb.book.policy_origin or datetime.now(UTC).date()


def _constant_store(prices: Mapping[str, float], assets: Sequence[str], step: str, start: date, end: date) -> Any:
    """An in-memory market store holding constant candles at ``prices`` (portfolio and live feeds)."""
    import pandas as pd

    from perphedge.data.store import MarketStore

    freq = "1D" if step == "1d" else "8h"
    ts = pd.date_range(pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC") + pd.Timedelta("1D"), freq=freq)
    ts = ts[ts < pd.Timestamp(end, tz="UTC") + pd.Timedelta("1D")]
    rows = []
    for a in assets:
        p = float(prices[a])
        rows.append(
            pd.DataFrame(
                {
                    "source": "binance",
                    "symbol": f"{a}/USDT",
                    "timeframe": step,
                    "ts": ts,
                    "open": p,
                    "high": p,
                    "low": p,
                    "close": p,
                    "volume": 0.0,
                }
            )
        )
    store = MarketStore(":memory:")
    store.upsert("candles", pd.concat(rows, ignore_index=True))
    return store


def _prices_for_constant(lb: LoadedBook, assets: Sequence[str]) -> dict[str, float]:
    prices = {k.upper(): v for k, v in lb.pfile.prices.items()}
    missing = [a for a in assets if a not in prices]
    if missing:
        raise ConfigError(
            f"{lb.path}: feed `{lb.book.feed.kind}` needs the portfolio's `prices:` for {', '.join(missing)} "
            "(to convert value_usd holdings and size the hedge at the policy origin); add them, give quantities, "
            "or use `feed: {kind: store}`"
        )
    return prices


def _market_store_path(lb: LoadedBook, override: str | None) -> Path:
    from perphedge.data.store import default_store_path

    if override:
        return Path(override)
    if lb.book.feed.store:
        s = Path(lb.book.feed.store)
        return s if s.is_absolute() else lb.path.parent / s
    return default_store_path()


def _bar_ms(step: str) -> int:
    return DAY_MS if step == "1d" else 8 * 3_600_000


def _prepare(lb: LoadedBook, start: date, end: date, store: Any) -> tuple[RunFile, Prepared]:
    from perphedge.specs import default_registry
    from perphedge.usecases.backtest import prepare

    run_cfg, pfile, _doc = book_to_run(lb, start, end)
    return run_cfg, prepare(run_cfg, pfile, store, default_registry())


def _legs(
    lb: LoadedBook, run_cfg: RunFile, prep: Prepared, spec: PolicySpec, betas: dict[str, np.ndarray]
) -> list[LegCtx]:
    from perphedge.core.policies import policy_decision_at
    from perphedge.usecases.backtest import _leg_params

    out: list[LegCtx] = []
    for i, leg in enumerate(prep.legs):
        inst = leg.instrument
        names = [acc.name for acc in lb.book.accounts if acc.holds(inst.exchange, inst.kind.value)]
        wrong = [a for a in lb.book.accounts if a.kind == "exchange" and a.venue == inst.exchange]
        if not names and wrong:
            raise ConfigError(
                f"{lb.path}: the hedge trades {inst.id} ({inst.kind.value}), but account `{wrong[0].name}` is "
                f"`exchange: {wrong[0].exchange}`, which holds {' and '.join(wrong[0].instrument_kinds)} "
                f"instruments of {inst.exchange} only: use an account of the leg's kind, or change the hedge"
            )
        if not names:
            raise ConfigError(
                f"{lb.path}: the hedge trades {inst.id} but no account is on `{inst.exchange}`: add a paper account "
                f"with `exchange: {inst.exchange}`"
            )
        if len(names) > 1:
            raise ConfigError(
                f"{lb.path}: accounts {', '.join(names)} are all on `{inst.exchange}`: the book cannot tell which "
                f"holds {inst.id}; keep one account per exchange"
            )
        allowed = set(lb.book.limits.instruments)
        if allowed and inst.id not in allowed:
            raise ConfigError(
                f"{lb.path}: field `limits.instruments`: the hedge trades {inst.id}, which the limits do not allow "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
        d0 = policy_decision_at(
            spec,
            t=0,
            days=prep.days,
            proxy_close=prep.closes[prep.proxy],
            fear_greed=prep.fear_greed,
            funding_daily=leg.funding,
            periods_per_year=prep.periods_per_year,
            bar_hours=prep.bar_hours,
        )
        exposure0 = _exposure_at(prep, betas, leg.weights, 0, {a: prep.closes[a][0] for a in leg.weights})
        coll = prep.collateral if inst.is_inverse else CollateralSource.STABLE
        params = _leg_params(prep, run_cfg, leg, coll, float(d0.target * exposure0), d0.band)
        out.append(
            LegCtx(index=i, inst=inst, account=names[0], params=params, weights=leg.weights, data=leg, collateral=coll)
        )
    return out


def _exposure_at(
    prep: Prepared, betas: Mapping[str, np.ndarray], weights: Mapping[str, float], t: int, prices: Mapping[str, float]
) -> float:
    """The leg's exposure (USD) at bar ``t`` and ``prices``, summed in the backtest's order."""
    from perphedge.usecases.book_positions import add_positions_exposure

    e = 0.0
    for a, w in weights.items():
        if a in prep.quantities:
            e += w * betas[a][t] * prep.quantities[a] * prices[a]
    return add_positions_exposure(e, prep, betas, weights, t, prices)  # DeFi positions' delta at these prices


def open_session(
    lb: LoadedBook,
    *,
    market_store: str | None = None,
    writer: bool,
    replay: tuple[date, date] | None = None,
    replay_store: Path | None = None,
    now_ms: int | None = None,
    feed: Feed | None = None,
) -> Session:
    """Open the book for a command: history, legs, feed, accounts and (``writer``) the store's write lock."""
    from perphedge.config import parse_duration
    from perphedge.data.bookstore import BookStore
    from perphedge.data.store import MarketStore
    from perphedge.usecases.backtest import _betas, _policy_spec

    b = lb.book
    bar_ms = _bar_ms(b.step)
    now = now_ms if now_ms is not None else _now_ms()
    stale_after_s = parse_duration(b.alerts.feed_stale_after)
    if replay is not None:
        start, end = replay
        with MarketStore(_market_store_path(lb, market_store), read_only=True) as ms:
            run_cfg, prep = _prepare(lb, start, end, ms)
    else:
        origin = _origin(lb)
        today = datetime.fromtimestamp(now / 1000, tz=UTC).date()
        if origin > today:
            raise ConfigError(f"{lb.path}: field `policy_origin`: {origin} is in the future (today is {today} UTC)")
        if b.feed.kind == "store":
            path = _market_store_path(lb, market_store)
            with MarketStore(path, read_only=True) as ms:
                last = ms.query(
                    "SELECT max(ts) AS t FROM candles WHERE source = 'binance' AND timeframe = ?", [b.step]
                )["t"].iloc[0]
                if last is None or str(last) == "NaT":
                    raise DataError(f"the market store {path} has no {b.step} candles: import or fetch data first")
                last_day = last.date() if hasattr(last, "date") else date.fromisoformat(str(last)[:10])
                if last_day <= origin:
                    raise DataError(
                        f"the market store {path} ends {last_day}, not after the book's policy origin {origin}: fetch "
                        "newer data (`perphedge data fetch`), or set `policy_origin` earlier"
                    )
                run_cfg, prep = _prepare(lb, origin, last_day, ms)
        else:
            if b.policy.kind in HISTORY_POLICIES:
                raise ConfigError(
                    f"{lb.path}: policy `{b.policy.kind}` decides on price history; feed `{b.feed.kind}` has none: "
                    "use `feed: {kind: store}` with a market store"
                )
            _run_probe, pf_probe, _ = book_to_run(lb, origin, today + timedelta(days=1))
            assets = sorted({h.asset.upper() for h in pf_probe.holdings if not is_stablecoin(h.asset)} | {"BTC"})
            from perphedge.usecases.book_positions import position_assets

            assets = sorted({*assets, *position_assets(pf_probe)})
            prices = _prices_for_constant(lb, [a for a in assets if a != "BTC"])
            hedge_bases = _hedge_bases(lb, pf_probe)
            missing = [a for a in hedge_bases if a not in prices]
            if missing:
                raise ConfigError(
                    f"{lb.path}: feed `{b.feed.kind}` needs the portfolio's `prices:` for the hedge's "
                    f"{', '.join(missing)} too"
                )
            prices.setdefault("BTC", prices.get("BTC", 1.0))
            last_day = max(today, origin + timedelta(days=1))  # a run spans at least two days
            cstore = _constant_store(prices, sorted({*assets, *hedge_bases}), b.step, origin, last_day)
            try:
                run_cfg, prep = _prepare(lb, origin, last_day, cstore)
            finally:
                cstore.close()
    spec = _policy_spec(run_cfg, prep.bars_per_day)
    betas, _why = _betas(prep, run_cfg)
    legs = _legs(lb, run_cfg, prep, spec, betas)
    bar_open_ms = np.array([int(d.value // 1_000_000) for d in prep.dates], dtype=np.int64)
    if feed is None:
        feed = _make_feed(lb, prep, legs, bar_open_ms, bar_ms, stale_after_s, replay is not None, market_store)
    store: BookStore | None = None
    if writer:
        store_path = replay_store if replay_store is not None else book_store_path(lb)
        live = any(a.kind == "exchange" for a in b.accounts)
        # a live book's journal rows survive power loss (design §4: synchronous=FULL), and carry no credential
        sync: Literal["off", "full", "normal"] = "off" if replay is not None else ("full" if live else "normal")
        store = BookStore.open(store_path, book_id=b.id, book_hash=lb.config_hash, sync=sync)
        if live:
            from perphedge.exchange.credentials import redact

            store.scrub = redact
    elif replay is None:
        path = book_store_path(lb)
        if path.exists():
            store = _open_reader(lb, path)
    accounts = _make_accounts(lb, legs, store, overdraft_all=replay is not None)
    return Session(
        lb=lb,
        run_cfg=run_cfg,
        prep=prep,
        spec=spec,
        betas=betas,
        legs=legs,
        bar_ms=bar_ms,
        bar_open_ms=bar_open_ms,
        feed=feed,
        accounts=accounts,
        store=store,
        replay=replay is not None,
        stale_after_s=stale_after_s,
        warnings=_session_warnings(lb, prep) + _idle_accounts(lb, legs),
    )


def _idle_accounts(lb: LoadedBook, legs: Sequence[LegCtx]) -> list[str]:
    """A warning per account that holds none of the hedge's legs (valued, never traded)."""
    used = {leg.account for leg in legs}
    return [
        f"account `{a.name}` ({a.exchange}) holds none of the hedge's instruments "
        f"({', '.join(sorted({leg.inst.id for leg in legs}))}): its balances are counted but it never trades"
        for a in lb.book.accounts
        if a.name not in used
    ]


def _session_warnings(lb: LoadedBook, prep: Prepared) -> list[str]:
    """The history's warnings; on constant-price feeds the funding note says what the book assumes instead."""
    if lb.book.feed.kind == "store":
        return list(prep.warnings)
    rate = lb.book.funding.assumed_rate_8h
    out = [w for w in prep.warnings if "funding assumed" not in w]
    if lb.book.feed.kind == "portfolio":
        out.append(
            f"feed `portfolio`: constant prices from the portfolio file and funding assumed at {rate:.4%} per 8h "
            "(`funding.assumed_rate_8h`), paid at 00:00, 08:00 and 16:00 UTC"
        )
    return out


def _hedge_bases(lb: LoadedBook, pfile: PortfolioFile) -> list[str]:
    from perphedge.specs import default_registry
    from perphedge.usecases.book_positions import legs_portfolio
    from perphedge.usecases.plan import _resolve_legs

    port = legs_portfolio(pfile)  # holdings and DeFi positions' assets; the legs do not depend on prices
    from perphedge.usecases.backtest import _hedge_block

    run_cfg, _, _ = book_to_run(lb, date(2020, 1, 1), date(2020, 1, 2))
    hb = _hedge_block(pfile, run_cfg)
    proxy_legs, direct, _ = _resolve_legs(hb.instrument, hb.legs, hb.proxy, port, default_registry())
    return sorted({leg.instrument.base for leg in proxy_legs} | {i.base for i in direct.values()})


def _make_feed(
    lb: LoadedBook,
    prep: Prepared,
    legs: list[LegCtx],
    bar_open_ms: np.ndarray,
    bar_ms: int,
    stale_after_s: int,
    replay: bool,
    market_store: str | None,
) -> Feed:
    from perphedge.data import bookfeed

    b = lb.book
    if replay:
        # highs matter for the legs' liquidation checks only: the leg's own bar highs, closes elsewhere
        highs = dict(prep.closes) | {leg.inst.base: leg.data.h for leg in legs}
        return bookfeed.HistoryFeed(
            bar_open_ms=bar_open_ms,
            bar_ms=bar_ms,
            closes=prep.closes,
            highs=highs,
            funding={leg.inst.id: leg.data.funding for leg in legs},
        )
    assets = sorted(prep.closes)
    if b.feed.kind == "portfolio":
        prices = {a: float(prep.closes[a][-1]) for a in assets}
        return bookfeed.PortfolioFeed(
            prices, instruments=[leg.inst.id for leg in legs], rate_8h=b.funding.assumed_rate_8h
        )
    if b.feed.kind == "store":
        return bookfeed.StoreFeed(
            _market_store_path(lb, market_store),
            source=b.feed.source,
            assets=assets,
            instruments={leg.inst.id: f"{leg.inst.exchange}:{leg.inst.ccxt_symbol}" for leg in legs},
            step=b.step,
            stale_after_s=stale_after_s,
            assumed_rate_8h=b.funding.assumed_rate_8h,
        )
    from perphedge.exchange.ccxt_feed import LiveTickerFeed

    return LiveTickerFeed(
        b.feed.source,
        instruments=[leg.inst for leg in legs],
        assets=assets,
        stale_after_s=float(stale_after_s),
    )


def _make_accounts(
    lb: LoadedBook, legs: list[LegCtx], store: BookStore | None, *, overdraft_all: bool
) -> dict[str, Account]:
    import sqlite3

    from perphedge.exchange.paper import PaperAccount, PaperLeg

    out: dict[str, Account] = {}
    for acc in lb.book.accounts:
        if acc.kind == "exchange":
            out[acc.name] = _live_account(lb, acc, [leg for leg in legs if leg.account == acc.name], store)
            continue
        mine = {
            leg.inst.id: PaperLeg(instrument=leg.inst, params=leg.params) for leg in legs if leg.account == acc.name
        }
        if store is not None and store.writable:
            db = store.conn
        else:
            # read-only views (status, dry-run rebalance): the stored state copied into memory, so nothing is written
            db = sqlite3.connect(":memory:", isolation_level=None)
            if store is not None:
                store.conn.backup(db)
        out[acc.name] = PaperAccount(
            db,
            name=acc.name,
            venue=acc.exchange,
            legs=mine,
            starting_balances=acc.balances,
            overdraft=acc.overdraft or overdraft_all,
            bar_ms=_bar_ms(lb.book.step),
        )
    return out


def _live_account(lb: LoadedBook, acc: Any, legs: list[LegCtx], store: BookStore | None) -> Account:
    """A live ccxt account (credentials read now, from the environment or the keyring; never stored)."""
    from perphedge.exchange.credentials import resolve_credentials
    from perphedge.exchange.live import open_live_account

    creds = resolve_credentials(acc)
    since = 0
    if store is not None:
        rows = [r for r in store.journal(kinds=["funding"], descending=True) if r.account == acc.name][:1]
        if rows:
            since = int(rows[0].data.get("settlement_ms", 0)) + 1
        else:
            first = store.journal(descending=False, limit=1)
            since = first[0].ts_ms if first else 0
    if since <= 0:
        since = _now_ms()  # a new book counts the funding from now on, not the account's past
    options: dict[str, Any] = {"margin_mode": acc.margin_mode}
    if acc.bybit_account is not None:
        options["bybit_account"] = acc.bybit_account
    if acc.exchange == "okx":
        options["okx_margin_mode"] = acc.margin_mode  # OKX takes the margin mode with every order (`tdMode`)
    return open_live_account(
        name=acc.name,
        venue=acc.exchange,
        credentials={"key": creds.key, "secret": creds.secret, "password": creds.password or ""},
        instruments=[leg.inst for leg in legs],
        sandbox=acc.sandbox,
        read_only=acc.read_only,
        funding_since_ms=since,
        options=options,
    )


def _open_reader(lb: LoadedBook, path: Path) -> BookStore:
    """The store opened for reading, refused when it belongs to another book (an edited `id` or `store:`)."""
    from perphedge.data.bookstore import BookStore

    store = BookStore.open_reader(path)
    if store.book_id and store.book_id != lb.book.id:
        store.close()
        raise DataError(
            f"the book store {path} belongs to book {store.book_id}, not {lb.book.id}; each book has its own store"
        )
    return store


def close_session(s: Session) -> None:
    if s.store is not None:
        s.store.close()
        s.store = None


# ------------------------------------------------------------------------------------------------ tick: advance


def _journal(
    s: Session, kind: str, data: Mapping[str, Any], *, ts_ms: int, once: bool = False, **kw: Any
) -> int | None:
    if s.store is None or not s.store.writable:
        return None
    return s.store.append(kind, data, ts_ms=ts_ms, once=once, **kw)


def _state(s: Session, key: str, default: Any = None) -> Any:
    return s.store.get_state(key, default) if s.store is not None else default


def _set_state(s: Session, key: str, value: Any) -> None:
    if s.store is not None and s.store.writable:
        s.store.set_state(key, value)


def snapshot(s: Session, now_ms: int) -> FeedSnapshot:
    """The feed's snapshot at ``now_ms`` (since the last tick)."""
    last = _state(s, "last_tick_ms")
    since = int(last) if last is not None and int(last) < now_ms else now_ms - s.bar_ms
    snap = s.feed.snapshot(now_ms, since)
    if snap.bar is None:
        snap = replace(snap, bar=None)
    s.last_snapshot = snap
    return snap


def advance(s: Session, snap: FeedSnapshot) -> list[Any]:
    """Every account syncs to ``snap``; funding payments and liquidations are journaled once each."""
    events: list[Any] = []
    bar = s.bar_number(snap)
    for name, acc in s.accounts.items():
        # the account's own rows and the journal's commit together: a kill between them cannot lose a payment
        with _txn(s):
            evs = acc.sync(replace(snap, bar=int(bar)) if snap.bar is None else snap)
            for ev in evs:
                if isinstance(ev, FundingPayment):
                    _journal(
                        s,
                        "funding",
                        {
                            "settlement_ms": ev.settlement_ms,
                            "rate": _finite(ev.rate),  # a venue may not say the rate of a payment (null)
                            "amount": ev.amount_settle,
                            "asset": ev.asset,
                            "amount_usd": _finite(ev.amount_usd),
                        },
                        ts_ms=snap.now_ms,
                        account=name,
                        instrument=ev.instrument,
                        once=True,
                    )
                elif isinstance(ev, Liquidation):
                    _journal(
                        s,
                        "liquidation",
                        {
                            "price": _finite(ev.price),
                            "contracts": ev.contracts,
                            "loss_settle": _finite(ev.loss_settle),
                            "loss_usd": _finite(ev.loss_usd),
                            "asset": ev.asset,
                            "bar": bar,
                        },
                        ts_ms=snap.now_ms,
                        account=name,
                        instrument=ev.instrument,
                    )
        events += evs
    return events


@contextlib.contextmanager
def _txn(s: Session) -> Iterator[None]:
    if s.store is not None and s.store.writable:
        with s.store.transaction():
            yield
    else:
        yield


# ------------------------------------------------------------------------------------------------ status


def _position_rows(s: Session, snap: FeedSnapshot) -> dict[str, list[dict[str, Any]]]:
    from perphedge.core.contracts import bankruptcy_price, liquidation_price

    rows: dict[str, list[dict[str, Any]]] = {}
    by_inst = {leg.inst.id: leg for leg in s.legs}
    proxy = s.prep.proxy
    for name, acc in s.accounts.items():
        out = rows.setdefault(name, [])
        live = _is_live(acc)
        positions = acc.positions()
        wallets = _wallets(acc) if live else {}
        per_settle: dict[str, int] = {}
        for pos in positions:
            if pos.contracts > 0 and pos.instrument in by_inst:
                per_settle[pos.settle_asset] = per_settle.get(pos.settle_asset, 0) + 1
        for pos in positions:
            leg = by_inst.get(pos.instrument)
            if leg is None:
                continue
            inst = leg.inst
            price = snap.price(inst.base)
            if pos.state is not None:
                st = np.asarray(pos.state, dtype=np.float64)
            elif live:
                st = _venue_state(pos, leg, price)
            else:
                st = None
            contracts = pos.contracts
            size = inst.size_of(contracts)
            inverse = inst.is_inverse
            settle = inst.settle
            eq = L.equity(st, leg.params, price) if st is not None else math.nan
            upnl = eq - pos.margin_settle if st is not None else math.nan
            to_usd = price if inverse else 1.0
            notional = inst.notional_usd(contracts, price)
            liq = bk = None
            mmr = pos.mmr
            liq_margin = pos.margin_settle
            cross_shared = False
            if live and pos.margin_mode == "cross":
                # cross margin: the whole wallet of the settle asset backs the position; our single-position formula
                # is the venue's account-level number only while this is the one position on that asset
                liq_margin = wallets.get(pos.settle_asset, math.nan)
                cross_shared = per_settle.get(pos.settle_asset, 0) > 1
            elif live and not (math.isfinite(liq_margin) and liq_margin > 0) and st is not None:
                liq_margin = float(st[L.S_MARGIN])
            if contracts > 0 and math.isfinite(liq_margin):
                try:
                    res = liquidation_price(
                        kind=inst.kind,
                        method=inst.liquidation_method,
                        side="short",
                        size=size,
                        entry=pos.entry_price,
                        margin=liq_margin,
                        schedule=inst.liquidation_schedule,
                    )
                    liq = res.price
                    mmr = getattr(res, "mmr", mmr)
                except PerphedgeError:
                    liq = None
                try:
                    bk = bankruptcy_price(inst.kind, "short", size, pos.entry_price, pos.margin_settle)
                except PerphedgeError:
                    bk = None
            trigger = pos.liquidation_price if contracts > 0 else math.nan
            dist = (trigger / price - 1.0) if contracts > 0 and math.isfinite(trigger) else None
            proxy_move = None
            if dist is not None and inst.base == proxy:
                proxy_move = dist
            rate8 = snap.funding_rate_8h.get(inst.id, s.book.funding.assumed_rate_8h)
            value_settle = (size / price) if inverse else size * price
            note = ""
            gap_ticks: float | None = None
            if live:
                if liq is not None and math.isfinite(trigger) and math.isfinite(liq):
                    gap_ticks = abs(liq - trigger) / float(inst.tick_size)
                note = _live_liquidation_note(inst, pos, gap_ticks, cross_shared, liq_margin)
            elif liq is not None and math.isfinite(trigger) and abs(liq - trigger) > 1e-9 * max(1.0, abs(liq)):
                note = (
                    "liquidation_price is the exchange formula with the tier at the position's value; the paper "
                    "account triggers at the backtest's price (tier pinned at the book's start)"
                )
            out.append(
                {
                    "instrument": inst.id,
                    "kind": inst.kind.value,
                    "side": "short" if contracts > 0 else "flat",
                    "contracts": contracts,
                    "contract_size": inst.contract_size,
                    "contract_size_unit": inst.contract_size_unit,
                    "size": size,
                    "size_unit": "USD" if inverse else inst.base,
                    "notional_usd": notional,
                    "entry_price": pos.entry_price if contracts > 0 else None,
                    "entry_basis": pos.entry_basis,
                    "mark_price": price,
                    "upnl_settle": upnl,
                    "settle_asset": settle,
                    "upnl_usd": upnl * to_usd,
                    "margin_settle": pos.margin_settle,
                    "margin_usd": pos.margin_settle * to_usd,
                    "equity_usd": eq * to_usd,
                    "leverage": (notional / (eq * to_usd)) if contracts > 0 and eq > 0 else None,
                    "liquidation_method": inst.liquidation_method.value,
                    "liquidation_price": liq,
                    "bankruptcy_price": bk,
                    "trigger_price": trigger if contracts > 0 and math.isfinite(trigger) else None,
                    "liquidation_formula_note": note,
                    "distance_to_liquidation": dist,
                    "proxy_asset": proxy,
                    "proxy_move_to_liquidation": proxy_move,
                    "maintenance_margin_rate": mmr,
                    "funding_rate_8h": rate8,
                    "funding_usd_per_day": rate8 * 3.0 * value_settle * to_usd if contracts > 0 else 0.0,
                    "collateral_source": leg.collateral.value,
                    "hedge_delta_usd": L.hedge_delta_usd(st, leg.params, price) + _own_coins_usd(acc, leg, st, price)
                    if st is not None
                    else 0.0,
                    "venue_liquidation_price": _finite(pos.liquidation_price) if live and contracts > 0 else None,
                    "liquidation_gap_ticks": gap_ticks,
                    "venue_mark_price": _finite(pos.mark_price) if live else None,
                    "venue_leverage": _finite(pos.leverage) if live else None,
                    "position_margin_mode": (pos.margin_mode or None) if live else "isolated",
                }
            )
    return rows


def _wallets(acc: Account) -> dict[str, float]:
    out: dict[str, float] = {}
    for b in acc.balances():
        out[b.asset] = out.get(b.asset, 0.0) + b.wallet
    return out


def _live_liquidation_note(inst: Any, pos: Position, gap: float | None, shared: bool, margin: float) -> str:
    """Which formula explains the gap between perphedge's liquidation price and the venue's (live accounts)."""
    method = inst.liquidation_method.value
    if pos.contracts <= 0:
        return ""
    if shared:
        return (
            f"cross margin with several positions on {pos.settle_asset}: the venue's liquidation price is "
            "account-level (every position's PnL moves the shared margin); perphedge's is the single-position "
            f"`{method}` formula on the whole wallet, so they differ by design"
        )
    if pos.margin_mode == "cross":
        head = (
            f"cross margin: perphedge's number is the `{method}` formula with the whole {pos.settle_asset} wallet "
            f"({margin:.8g}) as the position's margin"
        )
    else:
        head = f"isolated margin: perphedge's number is the `{method}` formula on the position's margin ({margin:.8g})"
    if gap is None:
        return head + "; the venue gave no liquidation price"
    if gap <= 1.0:
        return head + f"; it matches the venue's within {gap:.1f} tick(s)"
    return head + (
        f"; the venue's differs by {gap:,.1f} ticks: the venue also counts fees to close, its own maintenance tier "
        "at the mark, unrealised PnL of other positions or margin added by hand, which this formula does not"
    )


def _asset_price(snap: FeedSnapshot, asset: str) -> float:
    a = asset.upper()
    if is_stablecoin(a):
        return 1.0
    return float(snap.prices[a])


def status_document(
    s: Session, snap: FeedSnapshot, *, decision: Plan | None = None, totals: bool = True
) -> dict[str, Any]:
    """The whole book at ``snap`` (``perphedge.book/1``); ``totals=False`` skips the journal sums (replay)."""
    from perphedge.core.alerts import firing

    b = s.book
    btc = snap.prices.get("BTC")
    prep = s.prep
    holdings = []
    paper_assets = {(f"paper-{a.name}", asset) for a in b.accounts if a.kind == "paper" for asset in a.balances}
    for h in _portfolio_holdings(s):
        if (h["group"], h["asset"]) in paper_assets:
            continue
        px = _asset_price(snap, h["asset"])
        holdings.append(
            {
                "asset": h["asset"],
                "group": h["group"],
                "location": "off-exchange",
                "quantity": h["quantity"],
                "price_usd": px,
                "value_usd": h["quantity"] * px,
                "value_btc": h["quantity"] * px / btc if btc else None,
            }
        )
    positions = _position_rows(s, snap)
    accounts: list[dict[str, Any]] = []
    accounts_usd = 0.0
    for name, acc in s.accounts.items():
        bals = []
        for bal in acc.balances():
            px = _asset_price(snap, bal.asset) if (is_stablecoin(bal.asset) or bal.asset in snap.prices) else math.nan
            bals.append(
                {
                    "asset": bal.asset,
                    "wallet": bal.wallet,
                    "free": bal.free,
                    "used": bal.used,
                    "value_usd": bal.wallet * px,
                    "value_btc": bal.wallet * px / btc if btc else None,
                }
            )
            accounts_usd += bal.free * px if math.isfinite(px) else 0.0  # margins count in the positions' equity
        for row in positions.get(name, []):
            accounts_usd += row["equity_usd"] if math.isfinite(row["equity_usd"]) else 0.0
        acc_cfg = next(a for a in b.accounts if a.name == name)
        accounts.append(
            {
                "name": name,
                "kind": acc.kind,
                "venue": acc.venue,
                "read_only": bool(getattr(acc_cfg, "read_only", False)),
                "sandbox": bool(getattr(acc_cfg, "sandbox", False)),
                "halted": bool(_state(s, "halted", False)),
                "margin_mode": getattr(acc_cfg, "margin_mode", "isolated"),
                "overdraft": bool(getattr(acc_cfg, "overdraft", False)),
                "balances": bals,
                "positions": positions.get(name, []),
            }
        )
    holdings_usd = sum(h["value_usd"] for h in holdings)
    t = s.decision_bar(snap)
    exposure = 0.0
    hedge_delta = 0.0
    by_asset: dict[str, float] = {}
    for h in holdings:
        by_asset[h["asset"]] = by_asset.get(h["asset"], 0.0) + (0.0 if is_stablecoin(h["asset"]) else h["value_usd"])
    for leg in s.legs:
        exposure += _exposure_at(prep, s.betas, leg.weights, t, {a: snap.price(a) for a in leg.weights})
    defi: dict[str, Any] = {}
    if prep.defi is not None:  # DeFi positions: valued and counted by their delta at the feed's prices
        from perphedge.usecases.book_positions import positions_delta_usd, positions_section, positions_value_usd

        at = {a: _asset_price(snap, a) for a in prep.closes if a in snap.prices}
        for a, v in positions_delta_usd(prep, at).items():
            by_asset[a] = by_asset.get(a, 0.0) + v
        defi = {"defi_positions": positions_section(prep, at), "defi_positions_usd": positions_value_usd(prep, at)}
        holdings_usd += defi["defi_positions_usd"]
    # the margin of an inverse leg whose collateral was bought is in that leg's delta already ((margin + upnl −
    # Q/P)·P): its coins must not count a second time as a balance of the account
    in_leg: dict[tuple[str, str], float] = {}
    for name, rows in positions.items():
        for row in rows:
            hedge_delta += row["hedge_delta_usd"]
            inst = next(leg.inst for leg in s.legs if leg.inst.id == row["instrument"])
            base = inst.base
            by_asset[base] = by_asset.get(base, 0.0) + row["hedge_delta_usd"]
            if inst.is_inverse and row.get("collateral_source") == CollateralSource.BUY.value:
                key = (name, row["settle_asset"])
                in_leg[key] = in_leg.get(key, 0.0) + float(row["margin_settle"])
    for adoc in accounts:
        for bal in adoc["balances"]:
            if not is_stablecoin(bal["asset"]) and math.isfinite(bal["value_usd"]):
                coins = bal["wallet"] - in_leg.get((adoc["name"], bal["asset"]), 0.0)
                by_asset[bal["asset"]] = by_asset.get(bal["asset"], 0.0) + coins * _asset_price(snap, bal["asset"])
    plan = decision
    target_ratio = plan.target_ratio if plan is not None else _target_now(s, snap)[0]
    achieved = 0.0 - hedge_delta / exposure if exposure > 0 else None
    band = s.spec.band
    funding_rows = s.store.journal(kinds=["funding"]) if s.store is not None and totals else []
    usd = [float(r.data.get("amount_usd") or 0.0) for r in funding_rows]
    received = sum(x for x in usd if x > 0)
    paid = -sum(x for x in usd if x < 0)
    fills = s.store.journal(kinds=["fill"]) if s.store is not None and totals else []
    fees = sum(r.data.get("fee_usd") or 0.0 for r in fills)
    slip = sum(r.data.get("slippage_usd") or 0.0 for r in fills)
    expected = sum(row["funding_usd_per_day"] for rows in positions.values() for row in rows)
    alert_state = _state(s, "alerts", {}) or {}
    age_s = max(0.0, (snap.now_ms - snap.last_price_ms) / 1000.0) if snap.last_price_ms else None
    return {
        "schema": BOOK_SCHEMA,
        "book": {
            "id": b.id,
            "name": b.name,
            "file": str(s.lb.path),
            "config_hash": s.lb.config_hash,
            "store": str(book_store_path(s.lb)) if not s.replay else None,
            "step": b.step,
            "policy": b.policy.model_dump(mode="json", exclude_unset=True, by_alias=True) | {"kind": b.policy.kind},
            "policy_origin": str(_origin(s.lb)) if not s.replay else str(prep.dates[0].date()),
        },
        "as_of": _iso_ms(snap.now_ms),
        "feed": {
            "kind": b.feed.kind if not s.replay else "history",
            "source": snap.source,
            "last_price_ms": snap.last_price_ms,
            "age_s": age_s,
            "stale": snap.stale,
            "price_basis": "spot close" if b.feed.kind in ("store", "portfolio") or s.replay else "mark price",
        },
        "prices": {k: float(v) for k, v in sorted(snap.prices.items())},
        "holdings": holdings,
        **({"defi_positions": defi["defi_positions"]} if defi else {}),
        "accounts": accounts,
        "value": {
            "total_usd": holdings_usd + accounts_usd,
            "total_btc": (holdings_usd + accounts_usd) / btc if btc else None,
            "holdings_usd": holdings_usd,
            "accounts_usd": accounts_usd,
            **({"defi_positions_usd": defi["defi_positions_usd"]} if defi else {}),
        },
        "delta": {
            "by_asset": by_asset,
            "exposure_usd": exposure,
            "hedge_delta_usd": hedge_delta,
            "net_delta_usd": exposure + hedge_delta,
        },
        "hedge": {
            "target_ratio": target_ratio,
            "achieved_ratio": achieved,
            "band": band,
            "off_by": (achieved - target_ratio) if achieved is not None and target_ratio is not None else None,
            "rebalance_due": bool(plan.items) if plan is not None else None,
            "reason": plan.reason if plan is not None else None,
            "policy_fallback": plan.fallback if plan is not None else None,
        },
        "funding": {
            "received_usd": received,
            "paid_usd": paid,
            "net_usd": received - paid,
            "expected_usd_per_day": expected,
        },
        "fees_usd": fees,
        "slippage_usd": slip,
        "alerts": firing(alert_state),
        "journal": {
            "last_seq": s.store.last_seq() if s.store is not None else 0,
            "last_tick_ms": _state(s, "last_tick_ms"),
            "open_decision": _state(s, "open_decision"),
        },
        "warnings": list(s.warnings) + _venue_setting_warnings(s, positions),
    }


def _venue_setting_warnings(s: Session, positions: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    """Live positions whose venue settings differ from the book's: the margin mode the account expects, and (in
    isolated margin, where the venue's leverage sets the position's margin and so its liquidation price) the
    hedge's leverage. perphedge never changes a venue's settings; it uses the venue's numbers and says so."""
    out: list[str] = []
    legs = {(leg.account, leg.inst.id): leg for leg in s.legs}
    for acc_cfg in s.book.accounts:
        if acc_cfg.kind != "exchange":
            continue
        for r in positions.get(acc_cfg.name, []):
            leg = legs.get((acc_cfg.name, r["instrument"]))
            if leg is None or not r["contracts"]:
                continue
            mode = r.get("position_margin_mode")
            where = f"account `{acc_cfg.name}` holds {r['instrument']}"
            if mode and mode != acc_cfg.margin_mode:
                out.append(
                    f"{where} in {mode} margin, the book expects {acc_cfg.margin_mode}: liquidation and margin follow "
                    f"the venue's {mode} mode (set `margin_mode: {mode}` or change it on the venue)"
                )
            lev, want = r.get("venue_leverage"), float(leg.params[L.P_LEV])
            if mode == "isolated" and lev is not None and abs(lev - want) > 0.01 * want:
                out.append(
                    f"{where} at {lev:g}x on the venue, the hedge is planned at {want:g}x: the venue's isolated margin "
                    f"(and liquidation price) follow its {lev:g}x; set the venue's leverage to {want:g}x"
                )
    return out


def _portfolio_holdings(s: Session) -> list[dict[str, Any]]:
    """Holdings of the equivalent run as quantities at the policy origin (value_usd converted there)."""
    prep = s.prep
    out: list[dict[str, Any]] = []
    pf = s.run_cfg.portfolio
    assert isinstance(pf, dict)
    for h in pf["holdings"]:
        code = h["asset"].upper()
        if "quantity" in h and h["quantity"] is not None:
            q = float(h["quantity"])
        else:
            q = float(h["value_usd"]) / (1.0 if is_stablecoin(code) else float(prep.closes[code][0]))
        out.append({"asset": code, "group": h.get("group") or "ungrouped", "quantity": q})
    return out


# ------------------------------------------------------------------------------------------------ decisions


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanItem:
    """One action of a rebalance: an order (``kind == "order"``) or a margin move (``"transfer"``)."""

    kind: str
    leg: int
    account: str
    instrument: str
    side: str | None = None
    contracts: float = 0.0
    contracts_before: float = 0.0
    contracts_after: float = 0.0
    reduce_only: bool = False
    ref_price: float = math.nan
    notional_usd: float = 0.0
    residual_usd: float = 0.0
    fee_usd: float = 0.0
    slippage_usd: float = 0.0
    liquidation_after: float | None = None
    leverage_before: float = 0.0
    leverage_after: float = 0.0
    distance_before: float = math.inf
    distance_after: float = math.inf
    # what the limits judge (design §5.3): the state after the order; for a cut, before the margin it frees
    # is withdrawn (NaN = the same as leverage_after / distance_after)
    limit_leverage_after: float = math.nan
    limit_distance_after: float = math.nan
    amount_settle: float = 0.0
    settle_asset: str = ""
    reset: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A rebalance decision: its items in execution order and why."""

    bar: int
    now_ms: int
    reason: str
    items: tuple[PlanItem, ...]
    target_ratio: float | None
    achieved_ratio: float | None
    exposure_usd: float
    fallback: str
    rebalances: int  # legs the band check decided to rebalance (the backtest's `rebalanced`)
    legs: tuple[dict[str, Any], ...] = ()
    # live accounts never move margin: the moves a person must make on the venue (``manual_transfer`` alerts)
    manual: tuple[dict[str, Any], ...] = ()


def _decision_at(s: Session, leg: LegCtx, t: int) -> Any:
    from perphedge.core.policies import policy_decision_at

    prep = s.prep
    return policy_decision_at(
        s.spec,
        t=t,
        days=prep.days,
        proxy_close=prep.closes[prep.proxy],
        fear_greed=prep.fear_greed,
        funding_daily=leg.data.funding,
        periods_per_year=prep.periods_per_year,
        bar_hours=prep.bar_hours,
    )


def _target_now(s: Session, snap: FeedSnapshot) -> tuple[float | None, str]:
    if not s.legs:
        return None, ""
    d = _decision_at(s, s.legs[-1], s.decision_bar(snap))
    return (float(d.target) if math.isfinite(d.target) else None), d.fallback


def _leverage(st: np.ndarray, leg: LegCtx, price: float) -> float:
    eq = L.equity(st, leg.params, price)
    if st[L.S_N] <= 0:
        return 0.0
    notional = leg.inst.notional_usd(float(st[L.S_N]), price)
    eq_usd = eq * price if leg.inst.is_inverse else eq
    return notional / eq_usd if eq_usd > 0 else math.inf


def _distance(st: np.ndarray, price: float) -> float:
    if st[L.S_N] <= 0 or not math.isfinite(st[L.S_LIQ]):
        return math.inf
    return float(st[L.S_LIQ] / price - 1.0)


def plan_rebalance(s: Session, snap: FeedSnapshot, *, unwind: bool = False) -> Plan:
    """The policy's target at ``snap`` through the band check of every leg → orders and margin moves.

    Each leg's state is the account's (paper: the very legstep vector it keeps); the decision runs on a copy,
    so the plan shows the liquidation price after the trade without touching the account.
    """
    t = s.decision_bar(snap)
    bar = s.bar_number(snap)
    items: list[PlanItem] = []
    reasons: list[str] = []
    legs_out: list[dict[str, Any]] = []
    rebalances = 0
    total_exposure = 0.0
    total_delta = 0.0
    target_ratio: float | None = None
    fallback = ""
    manual: list[dict[str, Any]] = []
    for leg in s.legs:
        acc = s.accounts[leg.account]
        live = _is_live(acc)
        st = _leg_state(acc, leg, snap)
        price = snap.price(leg.inst.base)
        exposure = _exposure_at(s.prep, s.betas, leg.weights, t, {a: snap.price(a) for a in leg.weights})
        dec = _decision_at(s, leg, t)
        target, allowed = float(dec.target), float(dec.allowed)
        if unwind:
            target, allowed = 0.0, 1.0
        target_ratio = target if math.isfinite(target) else None
        fallback = dec.fallback or fallback
        own = _own_coins_usd(acc, leg, st, price)  # inverse margin from the holdings: its own coins, as the backtest
        before_delta = L.hedge_delta_usd(st, leg.params, price) + own
        total_exposure += exposure
        total_delta += before_delta
        d = L.rebalance_target(st, leg.params, bar, price, exposure + own, target, allowed)
        info = {
            "leg": leg.index,
            "instrument": leg.inst.id,
            "exposure_usd": exposure,
            "target_ratio": target,
            "allowed": bool(allowed),
            "hedge_delta_usd": before_delta,
            "achieved_ratio": 0.0 - before_delta / exposure if exposure > 0 else None,
            "contracts": float(st[L.S_N]),
            "action": "hold",
            "rebalance": False,
        }
        if not math.isnan(d):
            rebalances += 1
            info["rebalance"] = True
            n = float(st[L.S_N])
            n_new = L.target_contracts(leg.params, price, d)
            why = "unwind" if unwind else _why(st, leg, d, exposure, before_delta, n)
            reasons.append(f"{leg.inst.id}: {why}")
            work = st.copy()
            row = np.zeros(len(L.OUT_COLUMNS))
            lev_before, dist_before = _leverage(st, leg, price), _distance(st, price)
            if n_new != n:
                L.fill(work, leg.params, price, n_new, row)
                # a cut is judged by the trade itself: the margin it frees then goes back to value/leverage (the
                # book's own move, which only withdraws); judged after that move, a cut of a short in profit
                # would look like "more leverage" and the limits would block de-risking
                risk = work.copy()
                move = L.reset_margin(work, leg.params, price)
                if n_new > n:
                    risk = work
                raw = _raw_contracts(leg, price, d)
                items.append(
                    PlanItem(
                        kind="order",
                        leg=leg.index,
                        account=leg.account,
                        instrument=leg.inst.id,
                        side="sell" if n_new > n else "buy",
                        contracts=abs(n_new - n),
                        contracts_before=n,
                        contracts_after=n_new,
                        reduce_only=n_new < n,
                        ref_price=price,
                        notional_usd=leg.inst.notional_usd(abs(n_new - n), price),
                        residual_usd=leg.inst.notional_usd(raw - n_new, price) if math.isfinite(raw) else 0.0,
                        fee_usd=float(row[L.O_FEE]),
                        slippage_usd=float(row[L.O_SLIP]),
                        liquidation_after=float(work[L.S_LIQ]) if n_new > 0 else None,
                        leverage_before=lev_before,
                        leverage_after=_leverage(work, leg, price),
                        distance_before=dist_before,
                        distance_after=_distance(work, price),
                        limit_leverage_after=_leverage(risk, leg, price),
                        limit_distance_after=_distance(risk, price),
                        reason=why,
                    )
                )
                if not live:  # a venue sets the margin of an order itself (value / the leverage set there)
                    items.append(
                        _transfer_item(leg, price, move, "margin to value/leverage after the trade", reset=True)
                    )
                info["action"] = f"{'sell' if n_new > n else 'buy'} {abs(n_new - n):g}"
            else:
                # the lot rounding keeps the size: no trade; the margin goes back to value/leverage
                move = L.margin_move(st, leg.params, price)
                if move != 0.0 and n > 0 and not live:
                    L.transfer(work, leg.params, move)
                    why_move = "size unchanged after lot rounding: margin back to value/leverage"
                    items.append(_transfer_item(leg, price, move, why_move, states=(st, work)))
                info["action"] = "margin reset (size unchanged by lot rounding)"
            info["contracts_after"] = n_new
        else:
            reopen = float(st[L.S_REOPEN])
            if st[L.S_N] <= 0 and reopen > bar:
                info["action"] = "closed after liquidation"
                when = (
                    "until `margin.reopen_after_days` is set (it stays closed)"
                    if math.isinf(reopen)
                    else f"for {reopen - bar:g} more bar(s) (`margin.reopen_after_days`)"
                )
                reasons.append(f"{leg.inst.id}: liquidated; stays flat {when}")
            add = L.top_up_amount(st, leg.params, price)
            if not math.isnan(add) and live:
                manual.append(
                    {
                        "leg": leg.index,
                        "account": leg.account,
                        "instrument": leg.inst.id,
                        "amount_settle": add,
                        "asset": leg.inst.settle,
                        "amount_usd": add * (price if leg.inst.is_inverse else 1.0),
                        "subject": f"{leg.account}:{leg.inst.id}@{int(bar)}",
                        "reason": "top-up: equity below top_up_level of the margin; move it into the position's "
                        "margin on the venue (live accounts never move margin)",
                    }
                )
                reasons.append(f"{leg.inst.id}: top-up needed by hand")
                info["action"] = "top-up (manual)"
            elif not math.isnan(add):
                work = st.copy()
                L.transfer(work, leg.params, add)
                why_add = "top-up: equity below top_up_level of the margin"
                items.append(_transfer_item(leg, price, add, why_add, states=(st, work)))
                reasons.append(f"{leg.inst.id}: top-up")
                info["action"] = "top-up"
        legs_out.append(info)
    achieved = 0.0 - total_delta / total_exposure if total_exposure > 0 else None
    return Plan(
        bar=t,
        now_ms=snap.now_ms,
        reason="; ".join(reasons) if reasons else "within band: nothing to do",
        items=tuple(items),
        target_ratio=target_ratio,
        achieved_ratio=achieved,
        exposure_usd=total_exposure,
        fallback=fallback,
        rebalances=rebalances,
        legs=tuple(legs_out),
        manual=tuple(manual),
    )


def _transfer_item(
    leg: LegCtx,
    price: float,
    amount: float,
    reason: str,
    *,
    reset: bool = False,
    states: tuple[np.ndarray, np.ndarray] | None = None,
) -> PlanItem:
    """A margin move of ``amount`` (settle units) on ``leg``; with ``states`` (the leg before and after it), the
    leverage and the liquidation distance either side (what the limits judge)."""
    before, after = states if states is not None else (None, None)
    return PlanItem(
        kind="transfer",
        leg=leg.index,
        account=leg.account,
        instrument=leg.inst.id,
        ref_price=price,
        amount_settle=amount,
        settle_asset=leg.inst.settle,
        notional_usd=abs(amount) * (price if leg.inst.is_inverse else 1.0),
        reset=reset,
        reason=reason,
        leverage_before=0.0 if before is None else _leverage(before, leg, price),
        leverage_after=0.0 if after is None else _leverage(after, leg, price),
        distance_before=math.inf if before is None else _distance(before, price),
        distance_after=math.inf if after is None else _distance(after, price),
    )


def _raw_contracts(leg: LegCtx, price: float, d: float) -> float:
    p = leg.params
    if leg.inst.is_inverse:
        lev = p[L.P_LEV]
        q = d * lev / (lev - 1.0) if leg.collateral is CollateralSource.BUY and lev > 1 else d
        return q / leg.inst.contract_size
    return d / price / leg.inst.contract_size


def _why(st: np.ndarray, leg: LegCtx, d: float, exposure: float, delta: float, n: float) -> str:
    if n <= 0:
        return "open: the policy wants a hedge and the leg is flat"
    if d <= 0:
        return "unwind: the policy's target is zero"
    achieved = -delta / exposure if exposure > 0 else 0.0
    target = d / exposure if exposure > 0 else 0.0
    return f"drift beyond band: hedge at {achieved:.1%} of exposure, target {target:.1%}"


def _is_live(acc: Account) -> bool:
    return getattr(acc, "kind", "paper") == "exchange"


def _own_coins_usd(acc: Account, leg: LegCtx, st: np.ndarray, price: float) -> float:
    """Inverse margin taken from the holdings of a paper account: the account's coins beyond those moved in from the
    holdings (PnL, funding, fees in coin) are the book's coins too; they count in the exposure and the delta exactly
    as in the backtest's kernel (``legstep.own_coins_usd``). 0 for other legs and for live accounts (no transfers)."""
    moved = getattr(acc, "coins_moved_in", None)
    if not callable(moved):
        return 0.0
    return float(L.own_coins_usd(st, leg.params, price, float(moved(leg.inst.id))))


def _leg_state(acc: Account, leg: LegCtx, snap: FeedSnapshot | None = None) -> np.ndarray:
    state = getattr(acc, "state", None)
    if callable(state):
        return np.asarray(state(leg.inst.id), dtype=np.float64).copy()
    st = np.zeros(L.N_STATE)
    L.init_state(st, leg.params)
    for pos in acc.positions():
        if pos.instrument == leg.inst.id:
            if pos.state is not None:
                return np.asarray(pos.state, dtype=np.float64).copy()
            price = snap.price(leg.inst.base) if snap is not None else pos.mark_price
            return _venue_state(pos, leg, price)
    return st


def _venue_state(pos: Position, leg: LegCtx, price: float) -> np.ndarray:
    """The legstep state of a position as a venue reports it (live accounts keep no state of ours): its
    contracts, averaged entry, margin (isolated margin; in cross margin the position's initial margin at the
    venue's leverage, what the venue would keep if it were isolated), the venue's liquidation price and tier."""
    st = np.zeros(L.N_STATE)
    L.init_state(st, leg.params)
    if pos.contracts <= 0:
        return st
    st[L.S_N] = pos.contracts
    st[L.S_ENTRY] = pos.entry_price
    margin = pos.margin_settle
    if not (math.isfinite(margin) and margin > 0):
        lev = pos.leverage if math.isfinite(pos.leverage) and pos.leverage > 0 else float(leg.params[L.P_LEV])
        size = leg.inst.size_of(pos.contracts)
        margin = (size / pos.entry_price if leg.inst.is_inverse else size * pos.entry_price) / lev
    st[L.S_MARGIN] = margin
    if math.isfinite(pos.liquidation_price) or math.isinf(pos.liquidation_price):
        st[L.S_LIQ] = pos.liquidation_price
    else:
        st[L.S_LIQ] = L.liq_of(st, leg.params)
    if math.isfinite(pos.mmr) and pos.mmr > 0:
        st[L.S_MMR] = pos.mmr
    if math.isfinite(pos.cum_settle):
        st[L.S_CUM] = pos.cum_settle
    st[L.S_HIGH] = price
    return st


def check_plan_limits(s: Session, plan: Plan) -> list[Any]:
    """The limits of the book on the whole plan; the journal's last 24 h of fills count towards turnover."""
    from perphedge.core.limits import LimitSpec, PlannedOrder, check_limits

    orders = [
        PlannedOrder(
            leg=i.leg,
            account=i.account,
            instrument=i.instrument,
            side=i.side or "",
            contracts=i.contracts,
            notional_usd=i.notional_usd,
            reduce_only=i.reduce_only,
            leverage_before=i.leverage_before,
            leverage_after=i.leverage_after if math.isnan(i.limit_leverage_after) else i.limit_leverage_after,
            liq_distance_before=i.distance_before,
            liq_distance_after=i.distance_after if math.isnan(i.limit_distance_after) else i.limit_distance_after,
        )
        for i in plan.items
        if i.kind == "order"
    ]
    breaches: list[Any] = _funds_breaches(s, plan)
    if not orders:
        return breaches
    turnover = 0.0
    if s.store is not None:
        for r in s.store.journal(kinds=["fill"], since_ms=plan.now_ms - DAY_MS):
            turnover += abs(float(r.data.get("notional_usd", 0.0)))
    spec = LimitSpec.from_model(s.book.limits)
    return breaches + list(check_limits(orders, spec, turnover_24h_usd=turnover))


def _cash_asset(balances: Sequence[Any]) -> str:
    stables = sorted(b.asset for b in balances if is_stablecoin(b.asset))
    return "USDT" if "USDT" in stables or not stables else stables[0]


def _funds_breaches(s: Session, plan: Plan) -> list[Any]:
    """The wallet must pay every margin the plan brings in before anything is sent (a venue checks the margin
    before it accepts the order; the paper account books the fill first, as the backtest): a plan the wallet
    cannot fund is refused whole. Collateral from holdings draws coins off-exchange and is not checked here."""
    from perphedge.core.limits import LimitBreach

    need: dict[tuple[str, str], float] = {}
    for item in plan.items:
        if item.kind == "order" and item.side == "sell" and _is_live(s.accounts[item.account]):
            # a venue holds value / leverage of a new short (plus the fee) out of the settle asset's free balance
            leg = next(x for x in s.legs if x.index == item.leg)
            size = leg.inst.size_of(item.contracts)
            value = size / item.ref_price if leg.inst.is_inverse else size * item.ref_price
            lev = float(leg.params[L.P_LEV])
            key = (item.account, leg.inst.settle)
            need[key] = need.get(key, 0.0) + value / lev + value * float(leg.params[L.P_TAKER])
            continue
        if item.kind != "transfer" or item.amount_settle <= 0:
            continue
        acc_cfg = next(a for a in s.book.accounts if a.name == item.account)
        if getattr(acc_cfg, "overdraft", False) or s.replay:
            continue
        leg = next(x for x in s.legs if x.index == item.leg)
        row = np.zeros(len(L.OUT_COLUMNS))
        L.book_collateral(leg.params, item.ref_price, item.amount_settle, row)
        cash = float(row[L.O_CASH])
        if cash > 0:
            acc = s.accounts[item.account]
            asset = leg.inst.settle if not leg.inst.is_inverse else _cash_asset(acc.balances())
            need[(item.account, asset)] = need.get((item.account, asset), 0.0) + cash
    out = []
    for (name, asset), amount in need.items():
        free = sum(b.free for b in s.accounts[name].balances() if b.asset == asset)
        if amount > free * (1 + 1e-12):
            out.append(
                LimitBreach(
                    limit="funds",
                    subject=f"{name}:{asset}",
                    value=amount,
                    bound=free,
                    message=(
                        f"funds: the rebalance needs {amount:,.2f} {asset} of margin in account `{name}`, which holds "
                        f"{free:,.2f} {asset} free; deposit more (paper: raise `accounts[].balances`), lower the ratio "
                        "or raise the leverage"
                    ),
                )
            )
    return out


def plan_document(
    s: Session, plan: Plan, *, executed: bool = False, results: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """A rebalance (``perphedge.book-rebalance/1``)."""
    return {
        "schema": REBALANCE_SCHEMA,
        "book": {"id": s.book.id, "file": str(s.lb.path), "config_hash": s.lb.config_hash},
        "as_of": _iso_ms(plan.now_ms),
        "dry_run": not executed,
        "reason": plan.reason,
        "target_ratio": plan.target_ratio,
        "achieved_ratio": plan.achieved_ratio,
        "exposure_usd": plan.exposure_usd,
        "policy_fallback": plan.fallback or None,
        "legs": list(plan.legs),
        "orders": [
            {
                "leg": i.leg,
                "account": i.account,
                "instrument": i.instrument,
                "side": i.side,
                "contracts": i.contracts,
                "contracts_before": i.contracts_before,
                "contracts_after": i.contracts_after,
                "reduce_only": i.reduce_only,
                "order_type": "limit"
                if _is_live(s.accounts[i.account]) and s.book.execution.order_type == "limit"
                else "market",
                "ref_price": i.ref_price,
                "notional_usd": i.notional_usd,
                "residual_usd": i.residual_usd,
                "fee_usd": i.fee_usd,
                "slippage_usd": i.slippage_usd,
                "liquidation_price_after": i.liquidation_after,
                "leverage_after": i.leverage_after,
                "reason": i.reason,
            }
            for i in plan.items
            if i.kind == "order"
        ],
        "transfers": [
            {
                "leg": i.leg,
                "account": i.account,
                "instrument": i.instrument,
                "amount_settle": i.amount_settle,
                "asset": i.settle_asset,
                "amount_usd": i.notional_usd,
                "reason": i.reason,
            }
            for i in plan.items
            if i.kind == "transfer"
        ],
        "manual_transfers": list(plan.manual),
        "results": list(results),
        "warnings": list(s.warnings),
    }


# ------------------------------------------------------------------------------------------------ execution


def _next_decision(s: Session) -> int:
    assert s.store is not None
    rows = s.store.journal(kinds=["decision"], descending=True, limit=1)
    return (rows[0].decision or 0) + 1 if rows else 1


def _item_json(i: PlanItem) -> dict[str, Any]:
    return {
        "kind": i.kind,
        "leg": i.leg,
        "account": i.account,
        "instrument": i.instrument,
        "side": i.side,
        "contracts": i.contracts,
        "reduce_only": i.reduce_only,
        "ref_price": i.ref_price,
        "amount_settle": i.amount_settle,
        "reset": i.reset,
        "reason": i.reason,
    }


def execute_plan(s: Session, plan: Plan, snap: FeedSnapshot) -> list[dict[str, Any]]:
    """Send ``plan`` through the crash-safe protocol (design §4); returns one result per item.

    W1 one transaction: the decision, an intent per order and per transfer, ``open_decision``; then per item:
    W2 ``order_sent`` → N1 the account → W3 ack/fills/final (or a reject, which abandons the rest); W4 done.
    """
    from perphedge.core.orders import client_order_id, transfer_id

    assert s.store is not None and s.store.writable
    b = s.book
    bar = s.bar_number(snap)
    decision = _next_decision(s)
    entries: list[dict[str, Any]] = []
    for idx, item in enumerate(plan.items):
        e = _item_json(item) | {"item": idx}
        if item.kind == "order":
            e["client_id"] = client_order_id(b.id, decision, item.leg, 0, s.accounts[item.account].venue)
            e["attempt"] = 0
            if _is_live(s.accounts[item.account]) and b.execution.order_type == "limit":
                e["order_type"] = "limit"
                e["limit_price"] = _limit_price(s, item)
        else:
            e["transfer_id"] = transfer_id(
                b.id, decision, item.leg, "top_up" if item.reason.startswith("top-up") else "rebalance"
            )
        entries.append(e)
    with s.store.transaction():
        s.store.append(
            "decision",
            {
                "plan": entries,
                "reason": plan.reason,
                "target": plan.target_ratio,
                "achieved": plan.achieved_ratio,
                "band": s.spec.band,
                "history_bar": plan.bar,
                "rebalances": plan.rebalances,
            },
            ts_ms=snap.now_ms,
            bar=int(bar),
            decision=decision,
        )
        for e in entries:
            if e["kind"] == "order":
                s.store.append(
                    "order_intent",
                    e,
                    ts_ms=snap.now_ms,
                    bar=int(bar),
                    decision=decision,
                    leg=e["leg"],
                    account=e["account"],
                    instrument=e["instrument"],
                    client_id=e["client_id"],
                )
            else:
                s.store.append(
                    "transfer_intent",
                    e,
                    ts_ms=snap.now_ms,
                    bar=int(bar),
                    decision=decision,
                    leg=e["leg"],
                    account=e["account"],
                    instrument=e["instrument"],
                    client_id=e["transfer_id"],
                )
        s.store.set_state("open_decision", {"decision": decision, "bar": int(bar), "book_hash": s.lb.config_hash})
        s.store.set_state("last_decision", {"decision": decision, "bar": int(bar), "book_hash": s.lb.config_hash})
    _crash_point("after_intent")
    return _run_items(s, decision, entries, snap)


def _run_items(s: Session, decision: int, entries: list[dict[str, Any]], snap: FeedSnapshot) -> list[dict[str, Any]]:
    assert s.store is not None
    results: list[dict[str, Any]] = []
    abandoned = ""
    for e in entries:
        if abandoned:
            results.append({"item": e["item"], "status": "skipped", "reason": abandoned})
            continue
        if e["kind"] == "order":
            res = _send_order(s, decision, e, snap)
            results.append(res)
            if res["status"] != "filled":
                abandoned = f"order {e['client_id']} {res['status']}: {res.get('reason', '')}"
        else:
            res = _send_transfer(s, decision, e, snap)
            results.append(res)
            if not res["applied"] and not res.get("duplicate"):
                abandoned = f"transfer {e['transfer_id']} refused: {res.get('reason', '')}"
    with s.store.transaction():
        if abandoned:
            s.store.append("decision_abandoned", {"why": abandoned}, ts_ms=snap.now_ms, decision=decision)
        else:
            s.store.append("decision_done", {}, ts_ms=snap.now_ms, decision=decision)
        s.store.set_state("open_decision", None)
    return results


def _limit_price(s: Session, item: PlanItem) -> float:
    """A marketable limit price: the decision's price moved ``limit_offset_bps`` against us, rounded to the tick
    towards the decision's price (so the cap is never worse than the offset stated in the book file)."""
    leg = next(x for x in s.legs if x.index == item.leg)
    tick = float(leg.inst.tick_size)
    off = s.book.execution.limit_offset_bps / 10_000.0
    if item.side == "sell":
        raw = item.ref_price * (1.0 - off)
        ticks = math.ceil(raw / tick - 1e-9)
    else:
        raw = item.ref_price * (1.0 + off)
        ticks = math.floor(raw / tick + 1e-9)
    return max(tick, ticks * tick)


def _order_request(e: Mapping[str, Any], decision: int, attempt: int, client_id: str) -> OrderRequest:
    if e.get("order_type") == "limit":
        return OrderRequest(
            client_id=client_id,
            account=e["account"],
            instrument=e["instrument"],
            side=e["side"],
            contracts=float(e["contracts"]),
            reduce_only=bool(e["reduce_only"]),
            ref_price=float(e["ref_price"]),
            decision=decision,
            leg=int(e["leg"]),
            attempt=attempt,
            order_type="limit",
            limit_price=float(e["limit_price"]),
        )
    return OrderRequest(
        client_id=client_id,
        account=e["account"],
        instrument=e["instrument"],
        side=e["side"],
        contracts=float(e["contracts"]),
        reduce_only=bool(e["reduce_only"]),
        ref_price=float(e["ref_price"]),
        decision=decision,
        leg=int(e["leg"]),
        attempt=attempt,
    )


def _journal_result(
    s: Session, decision: int, e: Mapping[str, Any], res: OrderResult, ts_ms: int, *, reconciled: bool
) -> None:
    assert s.store is not None
    cid = res.client_id
    with s.store.transaction():
        s.store.append(
            "order_ack",
            {"status": res.status, "reconciled": reconciled, "attempt": e.get("attempt", 0)},
            ts_ms=ts_ms,
            decision=decision,
            leg=e["leg"],
            account=res.account,
            instrument=res.instrument,
            client_id=cid,
            venue_id=res.venue_id or None,
            once=True,
        )
        for f in res.fills:
            s.store.append(
                "fill",
                {
                    "fill_id": f.fill_id,
                    "side": f.side,
                    "contracts": f.contracts,
                    "price": f.price,
                    "fee": _finite(f.fee_settle),
                    "fee_asset": f.fee_asset if hasattr(f, "fee_asset") else f.settle_asset,
                    "fee_usd": _finite(f.fee_usd),
                    "slippage_usd": _finite(f.slippage_usd),
                    "notional_usd": _fill_notional(s, f.instrument, f.contracts, f.price),
                },
                ts_ms=f.ts_ms,
                decision=decision,
                leg=e["leg"],
                account=f.account,
                instrument=f.instrument,
                client_id=cid,
                once=True,
            )
        if res.terminal:
            s.store.append(
                "order_final",
                {"status": res.status, "reason": res.reason, "attempt": e.get("attempt", 0)},
                ts_ms=ts_ms,
                decision=decision,
                leg=e["leg"],
                account=res.account,
                instrument=res.instrument,
                client_id=cid,
                once=True,
            )


def _fill_notional(s: Session, instrument: str, contracts: float, price: float) -> float:
    for leg in s.legs:
        if leg.inst.id == instrument:
            return leg.inst.notional_usd(contracts, price)
    return 0.0


def _send_order(s: Session, decision: int, e: dict[str, Any], snap: FeedSnapshot) -> dict[str, Any]:
    assert s.store is not None
    acc = s.accounts[e["account"]]
    cid = e["client_id"]
    attempt = int(e.get("attempt", 0))
    s.store.append(
        "order_sent",
        {"attempt": attempt},
        ts_ms=snap.now_ms,
        decision=decision,
        leg=e["leg"],
        account=e["account"],
        instrument=e["instrument"],
        client_id=cid,
        once=True,
    )
    _crash_point("after_sent")
    try:
        res = acc.place_order(_order_request(e, decision, attempt, cid), snap)
    except ExchangeError as exc:
        s.store.append("error", {"message": f"order {cid}: {exc}"}, ts_ms=snap.now_ms, decision=decision, client_id=cid)
        try:
            found = _resolve(s, decision, e)
        except ExchangeError as lookup:
            raise ExchangeError(
                f"order {cid} state unknown: {exc}; the lookup by its client id failed too ({lookup}); nothing was "
                "resent: rerun to resolve"
            ) from None
        if found is None:
            raise ExchangeError(f"order {cid} state unknown: {exc}; rerun to resolve") from None
        res = found
        if res.status == "rejected":
            _order_rejected_alert(s, cid, res.reason, snap.now_ms)
        return {"item": e["item"], "client_id": cid, "status": res.status, "reason": res.reason}
    _crash_point("after_place")
    _journal_result(s, decision, e, res, snap.now_ms, reconciled=False)
    if e.get("order_type") == "limit" and not res.terminal:
        # a marketable limit order: what did not fill at once is cancelled, never left resting at the venue
        try:
            done = acc.cancel_order(e["instrument"], cid)
        except ExchangeError as exc:
            s.store.append(
                "error",
                {"message": f"order {cid}: cancelling the unfilled rest failed: {exc}; `book halt` cancels it"},
                ts_ms=snap.now_ms,
                decision=decision,
                client_id=cid,
            )
            done = None
        if done is not None:
            res = done
            _journal_result(s, decision, e, res, snap.now_ms, reconciled=False)
    if res.status == "rejected":
        _order_rejected_alert(s, cid, res.reason, snap.now_ms)
    return {
        "item": e["item"],
        "client_id": cid,
        "status": res.status,
        "filled_contracts": res.filled_contracts,
        "avg_price": res.avg_price,
        "reason": res.reason,
    }


def _order_rejected_alert(s: Session, cid: str, reason: str, ts_ms: int) -> None:
    """The `order_rejected` alert of ``cid`` (when `alerts.order_rejected` is on): journaled, shown and POSTed
    once per client id, also when the rejection is only learnt by a lookup after a restart."""
    if not s.book.alerts.order_rejected or s.store is None or not s.store.writable:
        return
    if any(r.data.get("alert") == "order_rejected" for r in s.store.journal(kinds=["alert_open"], client_id=cid)):
        return
    message = f"order {cid} rejected: {reason}"
    with _txn(s):
        _journal(
            s,
            "alert_open",
            {"alert": "order_rejected", "subject": cid, "value": 1.0, "threshold": 1.0, "message": message},
            ts_ms=ts_ms,
            client_id=cid,
        )
        _webhook(
            s,
            {
                "event": "open",
                "alert": "order_rejected",
                "subject": cid,
                "value": 1.0,
                "threshold": 1.0,
                "message": message,
            },
            ts_ms,
        )
    _notify(s, message, alert="order_rejected", subject=cid, ts_ms=ts_ms)


#: a webhook payload not delivered after this many ticks is given up (journaled as `error`)
WEBHOOK_MAX_TRIES = 20
#: seconds a tick waits for the webhook receiver's answer (once per tick: the rest of the queue waits)
WEBHOOK_TIMEOUT_S = 5.0


def _webhook(s: Session, payload: Mapping[str, Any], ts_ms: int) -> None:
    """Queue one alert event for `alerts.webhook` (never in replay).

    The queue (`webhook_outbox` in `book_state`) is written with the alert's journal row (call this inside that
    transaction), and :func:`flush_webhooks` POSTs it at the end of the tick, after any orders: a slow or dead
    receiver never delays trading, an event is never lost to a kill, and an undelivered one is retried on the
    next tick instead of being fired again."""
    if not s.book.alerts.webhook or s.replay or s.store is None or not s.store.writable:
        return
    body = {"schema": "perphedge.alert/1", "book_id": s.book.id, **payload, "ts_ms": ts_ms}
    with _txn(s):
        box = list(_state(s, "webhook_outbox", []) or [])
        box.append({"payload": json_safe(body), "tries": 0})
        _set_state(s, "webhook_outbox", box)


def _webhook_retryable(err: str) -> bool:
    """Whether the receiver surely did not take the event: no connection, or it answered 5xx / 429."""
    return "connection refused" in err or "does not resolve" in err or re.search(r"HTTP (5\d\d|429)\b", err) is not None


def flush_webhooks(s: Session, *, timeout_s: float | None = None) -> int:
    """POST the queued alert events in order, one try each; stop at the first failure (the receiver is down or
    slow: the rest waits for the next tick, so a tick waits at most ``timeout_s``). Returns how many were sent."""
    from perphedge.usecases.book_alerts import post_alert

    url = s.book.alerts.webhook
    if not url or s.replay or s.store is None or not s.store.writable:
        return 0
    sent = 0
    while True:
        box = list(_state(s, "webhook_outbox", []) or [])
        if not box:
            return sent
        head = dict(box[0])
        err = post_alert(url, head["payload"], timeout_s=timeout_s or WEBHOOK_TIMEOUT_S, tries=1)
        ts = _ts(s)
        with _txn(s):
            if err is None:
                sent += 1
                _set_state(s, "webhook_outbox", box[1:])
                continue
            head["tries"] = int(head.get("tries", 0)) + 1
            what = f"{head['payload'].get('alert')} {head['payload'].get('subject')}"
            if not _webhook_retryable(err):
                # no answer in time (the receiver may have it: never sent twice), or refused for good (4xx)
                _journal(s, "error", {"message": f"webhook: {err}; {what} not retried"}, ts_ms=ts)
                _set_state(s, "webhook_outbox", box[1:])
            elif head["tries"] >= WEBHOOK_MAX_TRIES:
                _journal(
                    s, "error", {"message": f"webhook: {err}; {what} given up after {head['tries']} tries"}, ts_ms=ts
                )
                _set_state(s, "webhook_outbox", box[1:])
            else:
                _journal(s, "error", {"message": f"webhook: {err}; {what} retried next tick"}, ts_ms=ts)
                _set_state(s, "webhook_outbox", [head, *box[1:]])
        return sent


def _send_transfer(s: Session, decision: int, e: dict[str, Any], snap: FeedSnapshot) -> dict[str, Any]:
    assert s.store is not None
    acc = s.accounts[e["account"]]
    req = TransferRequest(
        transfer_id=e["transfer_id"],
        account=e["account"],
        instrument=e["instrument"],
        amount_settle=float(e["amount_settle"]),
        reason="top_up" if "top-up" in e["reason"] else "rebalance",
        decision=decision,
        leg=int(e["leg"]),
        reset=bool(e["reset"]),
    )
    with s.store.transaction():  # the paper transfer and its journal row commit together
        res = acc.transfer(req, snap)
        _journal_transfer(s, decision, e, res, snap.now_ms)
    _crash_point("after_transfer")
    return {
        "item": e["item"],
        "transfer_id": res.transfer_id,
        "applied": res.applied,
        "duplicate": res.duplicate,
        "amount_settle": res.amount_settle,
        "asset": res.asset,
        "reason": res.reason,
    }


def _journal_transfer(s: Session, decision: int, e: Mapping[str, Any], res: Any, ts_ms: int) -> None:
    assert s.store is not None
    s.store.append(
        "transfer",
        {
            "tid": res.transfer_id,
            "amount": res.amount_settle,
            "asset": res.asset,
            "applied": res.applied,
            "duplicate": res.duplicate,
            "cash_usd": res.cash_usd,
            "coins": res.coins,
            "reason": res.reason or e["reason"],
        },
        ts_ms=ts_ms,
        decision=decision,
        leg=e["leg"],
        account=e["account"],
        instrument=e["instrument"],
        client_id=res.transfer_id,
        once=True,
    )


def _resolve(s: Session, decision: int, e: Mapping[str, Any]) -> OrderResult | None:
    """Look the order up by its client id (design §4 resolve); journal what was found.

    On a live account a first "not found" is not believed: a venue may index an accepted order late, so the
    order is looked up again after ``execution.lookup_settle``, and the open orders are scanned for its id, before
    it is declared never received. A lookup that fails (venue unreachable) raises ExchangeError: the order's state
    stays unknown and nothing is resent."""
    acc = s.accounts[e["account"]]
    cid = e["client_id"]
    found = acc.fetch_order(e["instrument"], cid)
    if found is None and _is_live(acc):
        time.sleep(_lookup_settle_s(s))
        found = acc.fetch_order(e["instrument"], cid)
        if found is None:
            found = next((o for o in acc.open_orders() if o.client_id == cid), None)
    if found is not None:
        _journal_result(s, decision, e, found, _ts(s), reconciled=True)
    return found


def _lookup_settle_s(s: Session) -> float:
    from perphedge.config import parse_duration

    env = os.environ.get("PERPHEDGE_LOOKUP_SETTLE_S")  # tests: the fake exchange indexes orders at once
    if env:
        try:
            value = float(env)
        except ValueError:
            raise ConfigError(f"PERPHEDGE_LOOKUP_SETTLE_S must be a number of seconds, was {env!r}") from None
        if math.isfinite(value) and 0 <= value <= 600:
            return value
        raise ConfigError(f"PERPHEDGE_LOOKUP_SETTLE_S must be 0 to 600 seconds, was {env!r}")
    return float(parse_duration(s.book.execution.lookup_settle))


def _ts(s: Session) -> int:
    return s.last_snapshot.now_ms if s.last_snapshot is not None else _now_ms()


def _cancel_rest(
    s: Session, decision: int, e: Mapping[str, Any], found: OrderResult, snap: FeedSnapshot
) -> OrderResult:
    """An order of ours found still open at a live venue after a restart is cancelled before anything new is
    sent (it could fill later beside the next decision's order and double the hedge); its final state is journaled.
    If the cancel fails, nothing is traded: the run stops with "rerun" (or `book halt`)."""
    acc = s.accounts[e["account"]]
    if found.terminal or not _is_live(acc):
        return found
    cid = e["client_id"]
    try:
        done = acc.cancel_order(e["instrument"], cid)
    except ExchangeError as exc:
        raise ExchangeError(
            f"order {cid} is still open at the account and cancelling it failed ({exc}); nothing new was sent: "
            "rerun, or `book halt` to cancel it"
        ) from None
    if done is None:
        done = acc.fetch_order(e["instrument"], cid)
    if done is None or not done.terminal:
        raise ExchangeError(f"order {cid} is still open at the account after its cancel; nothing new was sent: rerun")
    _journal_result(s, decision, e, done, snap.now_ms, reconciled=True)
    return done


def _settle_stray_orders(s: Session, snap: FeedSnapshot, skip_decision: int | None) -> list[str]:
    """Live orders sent by a closed (done or abandoned) decision without a final state, e.g. the rest of a limit
    order whose cancel failed: looked up, cancelled when still open, and journaled final (design §4)."""
    assert s.store is not None
    if not any(_is_live(a) for a in s.accounts.values()):
        return []
    rows = s.store.journal(kinds=["order_intent", "order_sent", "order_final"])
    final = {r.client_id for r in rows if r.kind == "order_final"}
    sent = {r.client_id for r in rows if r.kind == "order_sent"}
    notes: list[str] = []
    for r in rows:
        if r.kind != "order_intent" or r.decision is None or r.decision == skip_decision:
            continue
        cid = r.client_id
        if cid not in sent or cid in final or r.account not in s.accounts or not _is_live(s.accounts[r.account]):
            continue
        e = dict(r.data)
        try:
            found = _resolve(s, int(r.decision), e)
        except ExchangeError as lookup:
            raise ExchangeError(
                f"order {cid} was sent and its state is unknown: the lookup by its client id failed ({lookup}); "
                "nothing was resent: rerun to resolve"
            ) from None
        if found is None:
            s.store.append(
                "order_final",
                {"status": "not_found", "reason": "sent but unknown to the account", "attempt": e.get("attempt", 0)},
                ts_ms=snap.now_ms,
                decision=int(r.decision),
                leg=e["leg"],
                account=e["account"],
                instrument=e["instrument"],
                client_id=cid,
                once=True,
            )
            notes.append(f"order {cid}: never reached the account")
            continue
        done = _cancel_rest(s, int(r.decision), e, found, snap)
        notes.append(f"order {cid}: {done.status} at the account")
    return notes


def recover(s: Session, snap: FeedSnapshot) -> list[str]:
    """Finish what a killed process left (design §4): unsent intents are released, sent ones are looked up, an
    open decision of this bar is resumed with its original ids, an older one is abandoned. Returns notes."""
    assert s.store is not None
    notes: list[str] = []
    open_dec = s.store.get_state("open_decision")
    notes += _settle_stray_orders(s, snap, int(open_dec["decision"]) if open_dec else None)
    if not open_dec:
        return notes
    decision = int(open_dec["decision"])
    rows = s.store.journal(decision=decision)
    drow = next((r for r in rows if r.kind == "decision"), None)
    if drow is None:  # pragma: no cover - the decision row and open_decision are written in one transaction
        s.store.set_state("open_decision", None)
        return notes
    entries: list[dict[str, Any]] = [dict(e) for e in drow.data["plan"]]
    # an order retried after a restart has a later intent (attempt + 1, a new id): that attempt is the live one,
    # and an earlier attempt's `not_found` must neither abandon the decision nor hide the retry's fill
    latest: dict[int, dict[str, Any]] = {}
    for r in rows:
        if r.kind == "order_intent" and "item" in r.data:
            prev = latest.get(int(r.data["item"]))
            if prev is None or int(r.data.get("attempt", 0)) > int(prev.get("attempt", 0)):
                latest[int(r.data["item"])] = dict(r.data)
    entries = [latest.get(int(e["item"]), e) if e["kind"] == "order" else e for e in entries]
    final = {r.client_id: r.data.get("status") for r in rows if r.kind == "order_final"}
    sent = {r.client_id for r in rows if r.kind == "order_sent"}
    done_transfers = {r.client_id for r in rows if r.kind == "transfer"}
    same_bar = int(open_dec["bar"]) == int(s.bar_number(snap)) and open_dec.get("book_hash") == s.lb.config_hash
    remaining: list[dict[str, Any]] = []
    filled_legs: set[int] = set()
    abandoned = ""
    for e in entries:
        if e["kind"] != "order":
            if e["transfer_id"] not in done_transfers:
                remaining.append(e)
            continue
        cid = e["client_id"]
        status = final.get(cid)
        if status is None and cid in sent:
            try:
                found = _resolve(s, decision, e)
            except ExchangeError as lookup:
                raise ExchangeError(
                    f"order {cid} was sent before a restart and its state is unknown: the lookup by its client id "
                    f"failed ({lookup}); nothing was resent: rerun to resolve"
                ) from None
            if found is not None:
                notes.append(f"order {cid}: found at the account ({found.status}) after a restart")
                found = _cancel_rest(s, decision, e, found, snap)
                if found.status == "rejected":
                    _order_rejected_alert(s, cid, found.reason, snap.now_ms)
                status = found.status if found.terminal else "open"
            else:
                s.store.append(
                    "order_final",
                    {
                        "status": "not_found",
                        "reason": "sent but unknown to the account",
                        "attempt": e.get("attempt", 0),
                    },
                    ts_ms=snap.now_ms,
                    decision=decision,
                    leg=e["leg"],
                    account=e["account"],
                    instrument=e["instrument"],
                    client_id=cid,
                    once=True,
                )
                notes.append(f"order {cid}: never reached the account")
                status = "not_found"
        if status == "filled":
            filled_legs.add(int(e["leg"]))
            continue
        if status is None:  # intent without `order_sent`: it never left; the same id may be sent
            remaining.append(e)
            continue
        if status == "not_found" and same_bar and not abandoned:
            # resumed under the next attempt's id (an id is never sent twice); the intent is written once
            from perphedge.core.orders import client_order_id

            e = e | {"attempt": int(e.get("attempt", 0)) + 1}
            e["client_id"] = client_order_id(
                s.book.id, decision, int(e["leg"]), int(e["attempt"]), s.accounts[e["account"]].venue
            )
            s.store.append(
                "order_intent",
                e,
                ts_ms=snap.now_ms,
                decision=decision,
                leg=e["leg"],
                account=e["account"],
                instrument=e["instrument"],
                client_id=e["client_id"],
                once=True,
            )
            notes.append(f"order {cid}: a new id {e['client_id']} will be used")
            remaining.append(e)
            continue
        abandoned = abandoned or f"order {cid} {status}"
    if not abandoned and halted(s) is not None:
        abandoned = "the book is halted (`book halt`): nothing more is sent"
    if abandoned or not same_bar:
        why = abandoned or "made at an earlier bar (or another book file): a fresh decision replaces it"
        # a leg whose order filled gets its margin reset even so: a filled position must never be left on the
        # margin the fill's fee and realised PnL ate (it could be at or beyond its liquidation price)
        for e in remaining:
            if e["kind"] == "transfer" and e.get("reset") and int(e["leg"]) in filled_legs:
                res = _send_transfer(s, decision, e, snap)
                notes.append(f"transfer {e['transfer_id']}: margin reset after the filled order ({res['applied']})")
        with s.store.transaction():
            s.store.append("decision_abandoned", {"why": why}, ts_ms=snap.now_ms, decision=decision)
            s.store.set_state("open_decision", None)
        notes.append(f"decision {decision} abandoned: {why}")
        return notes
    notes.append(f"decision {decision}: resuming {len(remaining)} remaining item(s) with their original ids")
    _run_items(s, decision, remaining, snap)
    return notes


# ------------------------------------------------------------------------------------------------ alerts


def _finite(x: float) -> float | None:
    """A number for JSON (the journal and webhooks carry no NaN/inf: an unbounded value is null)."""
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def _notify(s: Session, text: str, *, alert: str, subject: str, ts_ms: int) -> None:
    """An alert to the terminal (``alerts_out``) and the book's log file beside its store."""
    if s.alerts_out is not None:
        s.alerts_out(text)
    if s.store is not None and s.store.writable and not s.replay:
        try:
            with open(Path(str(s.store.path) + ".log"), "a", encoding="utf-8") as fh:
                fh.write(f"{_iso_ms(ts_ms)} {alert} {subject}: {text}\n")
        except OSError as exc:
            s.store.append("error", {"message": f"alert log: {exc.strerror or exc}"}, ts_ms=ts_ms)


def _observations(s: Session, doc: Mapping[str, Any], snap: FeedSnapshot) -> list[Any]:
    from perphedge.core.alerts import Observation

    obs: list[Any] = []
    for acc in doc["accounts"]:
        for p in acc["positions"]:
            if p["distance_to_liquidation"] is not None:
                obs.append(
                    Observation(
                        alert="liquidation_distance", subject=p["instrument"], value=p["distance_to_liquidation"]
                    )
                )
            elif p["contracts"] == 0:
                obs.append(Observation(alert="liquidation_distance", subject=p["instrument"], value=math.inf))
            rate = p["funding_rate_8h"]
            obs.append(
                Observation(alert="funding_cost", subject=p["instrument"], value=-rate if p["contracts"] > 0 else 0.0)
            )
            gap = p.get("liquidation_gap_ticks")
            if acc.get("kind") == "exchange" and (gap is not None or p["contracts"] == 0):
                obs.append(
                    Observation(
                        alert="liquidation_mismatch",
                        subject=f"{acc['name']}:{p['instrument']}",
                        value=float(gap) if gap is not None else 0.0,
                    )
                )
    obs += s.pending_observations
    s.pending_observations = []
    h = doc["hedge"]
    if h["off_by"] is not None:
        obs.append(Observation(alert="ratio_off", subject="book", value=abs(h["off_by"])))
    age = doc["feed"]["age_s"]
    obs.append(Observation(alert="feed_stale", subject="feed", value=float(age if age is not None else 0.0)))
    return obs


def run_alerts(s: Session, doc: Mapping[str, Any], snap: FeedSnapshot) -> list[Any]:
    """Evaluate the alerts on a status; journal, print and POST each episode's opening and closing once."""
    from perphedge.core.alerts import AlertSpec, evaluate

    if _state(s, "alerts_ms") == snap.now_ms:
        return []  # this instant was evaluated before a restart (a resumed tick): never twice
    spec = AlertSpec.from_model(s.book.alerts)
    state = _state(s, "alerts", {}) or {}
    new_state, events = evaluate(
        state, _observations(s, doc, snap), spec, now_ms=snap.now_ms, stale_after_s=s.stale_after_s
    )
    with _txn(s):
        for ev in events:
            _journal(
                s,
                "alert_open" if ev.kind == "open" else "alert_close",
                {
                    "alert": ev.alert,
                    "subject": ev.subject,
                    "value": _finite(ev.value),
                    "threshold": _finite(ev.threshold),
                    "message": ev.message,
                },
                ts_ms=snap.now_ms,
            )
            _webhook(
                s,
                {
                    "event": ev.kind,
                    "alert": ev.alert,
                    "subject": ev.subject,
                    "value": _finite(ev.value),
                    "threshold": _finite(ev.threshold),
                    "message": ev.message,
                },
                ev.ts_ms,
            )
        _set_state(s, "alerts", new_state)
        _set_state(s, "alerts_ms", snap.now_ms)
    for ev in events:
        _notify(s, f"alert {ev.kind}: {ev.message}", alert=ev.alert, subject=ev.subject, ts_ms=snap.now_ms)
    return events


# ------------------------------------------------------------------------------------------------ live safety


def read_only_accounts(s: Session, plan: Plan | None = None) -> list[str]:
    """Exchange accounts that may not trade (``read_only: true``, the default): all of them, or those ``plan``
    sends orders to."""
    names = {i.account for i in plan.items if i.kind == "order"} if plan is not None else set(s.accounts)
    out = []
    for acc_cfg in s.book.accounts:
        if (
            acc_cfg.name in names
            and getattr(acc_cfg, "kind", "paper") == "exchange"
            and getattr(acc_cfg, "read_only", True)
        ):
            out.append(acc_cfg.name)
    return out


def require_trading(s: Session, plan: Plan | None = None) -> None:
    """Refuse ``--execute`` / ``--auto`` while an exchange account that would trade is read-only (ConfigError)."""
    blocked = read_only_accounts(s, plan)
    if blocked:
        names = ", ".join(f"`{n}`" for n in blocked)
        raise ConfigError(
            f"{s.lb.path}: account {names} is read-only (`read_only: true`, the default): sending orders needs both "
            "`--execute` and `read_only: false` on the account in the book file (try the venue's testnet first: "
            "`sandbox: true`)"
        )
    if any(_is_live(acc) for acc in s.accounts.values()):
        _lookup_settle_s(s)  # a malformed setting is refused before the first order, not while resolving a lost one


def halted(s: Session) -> dict[str, Any] | None:
    """The halt in force (``{since_ms, reason}``), or None."""
    value = _state(s, "halted")
    if not value:
        return None
    return dict(value) if isinstance(value, Mapping) else {"since_ms": None, "reason": "halted"}


def _ours(s: Session, cid: str) -> bool:
    return cid.startswith("ph" + s.book.id)


def _journaled_ids(s: Session) -> set[str]:
    assert s.store is not None
    return {r.client_id for r in s.store.journal(kinds=["order_intent"]) if r.client_id}


def reconcile(s: Session, snap: FeedSnapshot) -> list[dict[str, Any]]:
    """Positions at the venue vs what the journal explains (design §4 step 4): the positions seen at the end of
    the last tick plus the fills and liquidations journaled since. A difference above half a lot is a
    ``manual_change`` (journaled, alerted); decisions always start from the venue's numbers, so the target is
    recomputed from them. The first tick adopts what the venue holds (journaled as ``positions_adopted``)."""
    if s.store is None or not s.store.writable or s.replay:
        return []
    current = _positions_now(s)
    seen = _state(s, "positions_seen")
    changes: list[dict[str, Any]] = []
    if not seen:
        held = {k: v for k, v in current.items() if v != 0}
        with _txn(s):
            if held:
                _journal(s, "positions_adopted", {"positions": held}, ts_ms=snap.now_ms)
            _set_state(s, "positions_seen", {"seq": s.store.last_seq(), "pos": current})
        return []
    expected = {k: float(v) for k, v in seen["pos"].items()}
    for r in s.store.journal(kinds=["fill", "liquidation"], since_seq=int(seen["seq"])):
        key = f"{r.account}|{r.instrument}"
        qty = float(r.data.get("contracts", 0.0))
        if r.kind == "fill":
            expected[key] = expected.get(key, 0.0) + (qty if r.data.get("side") == "sell" else -qty)
        else:
            expected[key] = expected.get(key, 0.0) - qty
    lots = {(leg.account, leg.inst.id): float(leg.inst.lot_size) for leg in s.legs}
    for key in sorted(set(expected) | set(current)):
        name, inst = key.split("|", 1)
        want, have = expected.get(key, 0.0), current.get(key, 0.0)
        if abs(have - want) > 0.5 * lots.get((name, inst), 0.0) + 1e-12:
            change = {"account": name, "instrument": inst, "expected": want, "venue": have, "difference": have - want}
            changes.append(change)
    with _txn(s):
        for c in changes:
            _journal(s, "manual_change", c, ts_ms=snap.now_ms, account=c["account"], instrument=c["instrument"])
        _set_state(s, "positions_seen", {"seq": s.store.last_seq(), "pos": current})
    from perphedge.core.alerts import Observation

    for c in changes:
        subject = f"{c['account']}:{c['instrument']}@{snap.now_ms}"
        s.pending_observations.append(Observation(alert="manual_change", subject=subject, value=1.0))
    return changes


def _positions_now(s: Session) -> dict[str, float]:
    insts = {(leg.account, leg.inst.id) for leg in s.legs}
    out: dict[str, float] = {f"{a}|{i}": 0.0 for a, i in insts}
    for name, acc in s.accounts.items():
        for pos in acc.positions():
            if (name, pos.instrument) in insts:
                out[f"{name}|{pos.instrument}"] = float(pos.contracts)
    return out


def _remember_positions(s: Session) -> None:
    if s.store is None or not s.store.writable or s.replay:
        return
    with _txn(s):
        _set_state(s, "positions_seen", {"seq": s.store.last_seq(), "pos": _positions_now(s)})


def halt(s: Session, now_ms: int, *, reason: str = "") -> dict[str, Any]:
    """The kill switch: the book is marked halted first (no decision is sent from now on, by any command), then
    every open order of this book is cancelled at every account. A venue that cannot be reached is reported;
    rerunning ``halt`` retries its cancels. ``resume`` lifts the halt. A dead price feed does not stop it (the
    interrupted decision, if any, is then left for the next run to recover)."""
    assert s.store is not None and s.store.writable
    with s.store.transaction():
        s.store.set_state("halted", {"since_ms": now_ms, "reason": reason or "halted by hand"})
        s.store.append("halt", {"reason": reason or "halted by hand"}, ts_ms=now_ms)
    recover_notes: list[str] = []
    try:
        snap = snapshot(s, now_ms)
        recover_notes = recover(s, snap)
    except PerphedgeError as exc:
        recover_notes = [f"recovery skipped: {exc}"]
    known = _journaled_ids(s)
    cancelled: list[dict[str, Any]] = []
    errors: list[str] = []
    for name, acc in s.accounts.items():
        try:
            orders = acc.open_orders()
        except ExchangeError as exc:
            errors.append(f"{name}: open orders unknown: {exc}")
            continue
        if getattr(acc, "read_only", False):
            continue  # a read-only account never sent an order of this book (and may not cancel)
        for o in orders:
            if not (_ours(s, o.client_id) or o.client_id in known):
                continue
            try:
                res = acc.cancel_order(o.instrument, o.client_id)
            except ExchangeError as exc:
                errors.append(f"{name}: cancel {o.client_id}: {exc}")
                continue
            status = res.status if res is not None else "not_found"
            cancelled.append({"account": name, "instrument": o.instrument, "client_id": o.client_id, "status": status})
            s.store.append(
                "order_cancelled",
                {"status": status, "filled_contracts": res.filled_contracts if res is not None else 0.0},
                ts_ms=now_ms,
                account=name,
                instrument=o.instrument,
                client_id=o.client_id,
            )
    s.store.append("halt_done", {"cancelled": len(cancelled), "errors": errors}, ts_ms=now_ms)
    return {
        "schema": "perphedge.book-halt/1",
        "book": {"id": s.book.id, "file": str(s.lb.path)},
        "halted": True,
        "cancelled": cancelled,
        "errors": errors,
        "recovery": recover_notes,
    }


def resume(s: Session, now_ms: int) -> dict[str, Any]:
    """Lift a halt: decisions may be sent again (by ``rebalance --execute`` or ``watch --auto``)."""
    assert s.store is not None and s.store.writable
    was = _state(s, "halted")
    with s.store.transaction():
        s.store.set_state("halted", None)
        s.store.append("resume", {"was_halted": bool(was)}, ts_ms=now_ms)
    return {
        "schema": "perphedge.book-halt/1",
        "book": {"id": s.book.id, "file": str(s.lb.path)},
        "halted": False,
        "was_halted": bool(was),
    }


# ------------------------------------------------------------------------------------------------ ticks


@dataclass(frozen=True, slots=True, kw_only=True)
class TickResult:
    snap: FeedSnapshot
    status: dict[str, Any]
    plan: Plan | None
    refused: list[Any]
    results: list[dict[str, Any]]
    events: list[Any]
    alerts: list[Any]
    blocked: str


def tick(
    s: Session,
    now_ms: int,
    *,
    decide: bool,
    execute: bool,
    confirm: Callable[[Plan], bool] | None = None,
) -> TickResult:
    """One cycle: snapshot → sync → status → alerts → (``decide``) plan → limits → (``execute``) send."""
    snap = snapshot(s, now_ms)
    events: list[Any] = []
    if s.store is not None and s.store.writable:
        recover(s, snap)
        events = advance(s, snap)
        reconcile(s, snap)
    plan = plan_rebalance(s, snap) if decide else None
    if plan is not None and plan.manual and s.store is not None and s.store.writable:
        from perphedge.core.alerts import Observation

        for m in plan.manual:
            s.pending_observations.append(Observation(alert="manual_transfer", subject=m["subject"], value=1.0))
    status = status_document(s, snap, decision=plan, totals=not s.replay)
    alerts = run_alerts(s, status, snap) if (s.store is not None and s.store.writable) else []
    refused: list[Any] = []
    results: list[dict[str, Any]] = []
    blocked = ""
    if plan is not None and plan.items:
        if snap.stale:
            blocked = f"feed stale (last price {status['feed']['age_s']:.0f} s old): trading blocked"
        elif _state(s, "halted", False):
            blocked = "book halted: trading blocked until `perphedge book resume`"
        else:
            refused = check_plan_limits(s, plan)
            # journaled when the plan would have been sent, once per bar (a watch ticking every few minutes
            # on a daily bar would otherwise write the same refusal hundreds of times)
            mark = {"bar": int(s.bar_number(snap)), "book_hash": s.lb.config_hash, "limits": [r.limit for r in refused]}
            if (
                refused
                and execute
                and decided_at(s, snap) is None
                and s.store is not None
                and s.store.writable
                and _state(s, "limit_refused_at") != mark
            ):
                with s.store.transaction():
                    s.store.set_state("limit_refused_at", mark)
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
            if not refused and execute and decided_at(s, snap) is None and read_only_accounts(s, plan):
                blocked = "read-only account: " + ", ".join(read_only_accounts(s, plan)) + " (`read_only: true`)"
            elif not refused and execute and decided_at(s, snap) is None and (confirm is None or confirm(plan)):
                results = execute_plan(s, plan, snap)
                status = status_document(s, snap, decision=plan, totals=not s.replay)  # after the trades
    finish_tick(s, snap, status)
    return TickResult(
        snap=snap,
        status=status,
        plan=plan,
        refused=refused,
        results=results,
        events=events,
        alerts=alerts,
        blocked=blocked,
    )


def finish_tick(s: Session, snap: FeedSnapshot, status: Mapping[str, Any] | None = None) -> None:
    """The journal's ``tick`` row and ``last_tick_ms`` (the next snapshot starts there)."""
    if s.store is None or not s.store.writable:
        return
    data: dict[str, Any] = {"prices": dict(snap.prices), "stale": snap.stale}
    if status is not None:
        data |= {
            "value_usd": status["value"]["total_usd"],
            "exposure_usd": status["delta"]["exposure_usd"],
            "hedge_delta_usd": status["delta"]["hedge_delta_usd"],
        }
    with s.store.transaction():
        s.store.append("tick", data, ts_ms=snap.now_ms, bar=int(s.bar_number(snap)))
        s.store.set_state("last_tick_ms", snap.now_ms)
    _remember_positions(s)
    flush_webhooks(s)  # last: a slow or dead receiver never delays the tick's orders


def decided_at(s: Session, snap: FeedSnapshot) -> int | None:
    """The decision already made at this bar by this book file (one decision per bar), else None. A decision at
    a later bar also blocks: a clock that stepped back must not decide an earlier bar again."""
    last = _state(s, "last_decision")
    if not last:
        return None
    bar, done = int(last["bar"]), int(s.bar_number(snap))
    if bar > done or (bar == done and last.get("book_hash") == s.lb.config_hash):
        return int(last["decision"])
    return None


def watch_tick(s: Session, now_ms: int, *, auto: bool) -> TickResult:
    """One tick of ``book watch``: the plan is computed every tick, sent with ``auto`` once per bar."""
    return tick(s, now_ms, decide=True, execute=auto)


# ------------------------------------------------------------------------------------------------ replay


def replay(
    lb: LoadedBook,
    start: date,
    end: date,
    *,
    store_path: Path,
    market_store: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """The watch loop over stored history on a fresh paper account (``perphedge.book-replay/1``)."""
    if store_path.exists():
        raise ConfigError(f"{store_path} exists: a replay starts from a fresh paper account; remove it or use --out")
    s = open_session(lb, market_store=market_store, writer=True, replay=(start, end), replay_store=store_path)
    try:
        n = len(s.prep.dates)
        closes = s.bar_open_ms + s.bar_ms
        hedged = np.zeros(n)
        legs_rebalances = [0] * len(s.legs)
        for t in range(n):
            r = tick(s, int(closes[t]), decide=True, execute=True)
            if r.plan is not None and not r.refused and not r.blocked:
                for info in r.plan.legs:
                    if info.get("rebalance"):
                        legs_rebalances[int(info["leg"])] += 1
            hedged[t] = r.status["value"]["total_usd"]
            if progress is not None:
                progress(t + 1, n)
        return _replay_document(s, hedged, legs_rebalances, start, end)
    finally:
        close_session(s)


def _replay_document(
    s: Session, hedged: np.ndarray, legs_rebalances: list[int], start: date, end: date
) -> dict[str, Any]:
    from perphedge.usecases.backtest import _hedge_effectiveness

    assert s.store is not None
    prep = s.prep
    unhedged = np.zeros(len(prep.dates))
    for a, q in prep.quantities.items():
        unhedged += q * prep.closes[a]
    unhedged += prep.cash0
    if prep.defi is not None:  # DeFi positions at each close (the backtest's unhedged book, fee income aside)
        unhedged = unhedged + prep.defi.value_usd
    fmt = "%Y-%m-%d" if prep.bar_hours == 24.0 else "%Y-%m-%dT%H:%M"
    funding = s.store.journal(kinds=["funding"])
    fills = s.store.journal(kinds=["fill"])
    liqs = s.store.journal(kinds=["liquidation"])
    top = s.store.journal(kinds=["transfer"])
    by_ms = {int(c): d for c, d in zip(s.bar_open_ms + s.bar_ms, prep.dates, strict=True)}
    return {
        "schema": REPLAY_SCHEMA,
        "book": {"id": s.book.id, "file": str(s.lb.path), "config_hash": s.lb.config_hash},
        "start": str(start),
        "end": str(end),
        "step": s.book.step,
        "bars": len(prep.dates),
        "funding_received_usd": sum(r.data["amount_usd"] for r in funding),
        "fees_usd": sum(r.data["fee_usd"] for r in fills),
        "slippage_usd": sum(r.data["slippage_usd"] for r in fills),
        "rebalances": sum(legs_rebalances),
        "orders": len(fills),
        "top_ups": sum(1 for r in top if "top-up" in str(r.data.get("reason", ""))),
        "liquidations": [
            {
                "date": str(by_ms[r.ts_ms].date()) if r.ts_ms in by_ms else _iso_ms(r.ts_ms)[:10],
                "instrument": r.instrument,
                "price": r.data["price"],
                "loss_usd": r.data["loss_usd"],
            }
            for r in liqs
        ],
        "hedge_effectiveness": _hedge_effectiveness(hedged, unhedged),
        "equity": [
            {"date": d, "hedged_usd": float(h), "unhedged_usd": float(u)}
            for d, h, u in zip(prep.dates.strftime(fmt), hedged, unhedged, strict=True)
        ],
        "journal_rows": s.store.last_seq(),
        "warnings": list(s.warnings),
    }


# ------------------------------------------------------------------------------------------------ journal view


def journal_rows(
    lb: LoadedBook,
    *,
    kinds: Sequence[str] | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    limit: int | None = None,
) -> list[JournalRow]:
    """The book's journal, oldest first (read-only; safe while ``watch`` writes)."""
    path = book_store_path(lb)
    if not path.exists():
        return []
    with _open_reader(lb, path) as st:
        rows = st.journal(kinds=kinds, since_ms=since_ms, until_ms=until_ms, limit=limit, descending=limit is not None)
    return sorted(rows, key=lambda r: r.seq)


def journal_json(rows: Sequence[JournalRow]) -> list[dict[str, Any]]:
    return [
        {
            "seq": r.seq,
            "ts": _iso_ms(r.ts_ms),
            "ts_ms": r.ts_ms,
            "kind": r.kind,
            "bar": r.bar,
            "decision": r.decision,
            "leg": r.leg,
            "account": r.account,
            "instrument": r.instrument,
            "client_id": r.client_id,
            "venue_id": r.venue_id,
            "book_hash": r.book_hash,
            "data": r.data,
        }
        for r in rows
    ]
