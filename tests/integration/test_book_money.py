"""Adversarial tests of what moves (paper) money in `perphedge book`: crashes inside a resumed run, the
margin of a filled order whose decision is abandoned, limits, funding, liquidation and status numbers.

Each test drives the use case in-process on a hand-made feed (fixed prices) and simulates kill -9 by raising
at the use case's crash points (`_crash_point`): what was committed stays, what was not is rolled back, as
after a real kill."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from perphedge.core import legstep as L
from perphedge.core.book import FeedSnapshot, FundingSettlement
from tests.integration.test_book_webhook import Receiver, Script, reply

NOW = 1_790_000_000_000  # inside one daily bar with NOW + 1 h
DAY = 86_400_000


class Kill(BaseException):
    """kill -9 at a crash point (a BaseException: nothing in the use case may catch it)."""


@dataclass
class Feed:
    """A feed at fixed prices, with optional funding settlements per instrument (ms → rate)."""

    prices: dict[str, float]
    funding: dict[str, dict[int, float]] = field(default_factory=dict)
    highs: dict[str, float] = field(default_factory=dict)
    stale: bool = False
    kind: str = "test"

    def snapshot(self, now_ms: int, since_ms: int) -> FeedSnapshot:
        fund = {
            inst: tuple(
                FundingSettlement(instrument=inst, settlement_ms=ms, rate=r)
                for ms, r in sorted(d.items())
                if since_ms < ms <= now_ms
            )
            for inst, d in self.funding.items()
        }
        return FeedSnapshot(
            now_ms=now_ms,
            source="test",
            prices=dict(self.prices),
            highs=dict(self.prices) | self.highs,
            funding=fund,
            last_price_ms=now_ms,
            stale=self.stale,
        )


def write_book(tmp: Path, **over: Any) -> Path:
    doc: dict[str, Any] = {
        "book": 1,
        "id": "60a0b0c0",
        "portfolio": {
            "name": "sol",
            "prices": {"SOL": 100, "BTC": 50000},
            "holdings": [{"asset": "SOL", "quantity": 100}],
            "hedge": {"instrument": "binance:BTCUSDT", "leverage": 2, "ratio": 0.6},
        },
        "policy": {"kind": "drift_band", "ratio": 0.6, "band": 0.1},
        "policy_origin": "2026-01-01",
        "feed": {"kind": "portfolio"},
        "store": "money.sqlite",
        "accounts": [{"name": "paper", "kind": "paper", "exchange": "binance", "balances": {"USDT": 10000}}],
    }
    for k, v in over.items():
        doc[k] = v
    p = tmp / "money.book.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return p


@pytest.fixture
def crash_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """``crash_at["label"] = "after_place"`` makes the next pass through that point raise :class:`Kill`."""
    from perphedge.usecases import book as B

    ctl: dict[str, Any] = {"label": None}

    def point(label: str) -> None:
        if ctl["label"] == label:
            ctl["label"] = None
            raise Kill(label)

    monkeypatch.setattr(B, "_crash_point", point)
    yield ctl


def run_tick(book: Path, feed: Feed, now: int, *, execute: bool = True) -> Any:
    """One writing tick in a fresh session (a fresh process); returns the result, or the Kill raised."""
    from perphedge.usecases import book as B

    lb = B.load_book(book)
    s = B.open_session(lb, writer=True, now_ms=now, feed=feed)
    try:
        return B.tick(s, now, decide=True, execute=execute)
    except Kill as k:
        return k
    finally:
        B.close_session(s)


def journal(store: Path, *kinds: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT kind, client_id, data FROM journal ORDER BY seq").fetchall()
    finally:
        con.close()
    return [(k, c, json.loads(d)) for k, c, d in rows if not kinds or k in kinds]


def paper_state(store: Path, instrument: str = "binance:BTCUSDT") -> np.ndarray:
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        (blob,) = con.execute("SELECT state FROM paper_positions WHERE instrument = ?", (instrument,)).fetchone()
    finally:
        con.close()
    return np.frombuffer(blob, dtype="<f8").copy()


def paper_fills(store: Path) -> list[tuple[str, float]]:
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return [(c, float(q)) for c, q in con.execute("SELECT client_id, qty FROM paper_fills ORDER BY ts_ms, fill_id")]
    finally:
        con.close()


def assert_journal_matches_paper(store: Path) -> None:
    """Every paper fill is journaled exactly once and every journaled fill is at the paper account."""
    fills = [(c, float(d["contracts"])) for k, c, d in journal(store, "fill")]
    assert sorted(fills) == sorted(paper_fills(store))


# ------------------------------------------------------------------------------------------ crash inside a resume


@pytest.mark.parametrize("second", ["after_place", "after_sent", "after_transfer"])
def test_crash_again_while_resuming_a_retried_order_loses_nothing(
    tmp_path: Path, crash_at: dict[str, Any], second: str
) -> None:
    """kill after `order_sent` (the order never reached the account), then kill again inside the resume, after
    the retry (attempt 1) was sent or placed: the third start must find attempt 1, journal its fill once, reset
    the margin and finish the decision; an earlier attempt's `not_found` must not abandon it."""
    book = write_book(tmp_path)
    feed = Feed({"BTC": 50000.0, "SOL": 100.0})
    crash_at["label"] = "after_sent"
    assert isinstance(run_tick(book, feed, NOW), Kill)
    crash_at["label"] = second
    assert isinstance(run_tick(book, feed, NOW), Kill)
    run_tick(book, feed, NOW)
    store = tmp_path / "money.sqlite"
    st = paper_state(store)
    assert st[L.S_N] == pytest.approx(0.12, abs=1e-12)
    assert st[L.S_MARGIN] == pytest.approx(3000.0, rel=1e-12)  # value / leverage after the reset
    assert st[L.S_LIQ] > 50000.0
    assert_journal_matches_paper(store)
    kinds = [k for k, _, _ in journal(store, "decision_done", "decision_abandoned")]
    assert kinds == ["decision_done"]
    assert len(journal(store, "transfer")) == 1
    assert len(paper_fills(store)) == 1  # one order reached the account, once


@pytest.mark.parametrize("label", ["after_place", "after_sent", "after_intent"])
def test_resume_on_a_later_bar_still_resets_the_margin_of_a_filled_order(
    tmp_path: Path, crash_at: dict[str, Any], label: str
) -> None:
    """A decision interrupted after its order filled is abandoned on a later bar, but the filled leg's margin
    is reset: a position must never be left on the margin the fee ate (liquidation price below the mark)."""
    book = write_book(tmp_path)
    feed = Feed({"BTC": 50000.0, "SOL": 100.0})
    crash_at["label"] = label
    assert isinstance(run_tick(book, feed, NOW), Kill)
    run_tick(book, feed, NOW + DAY)
    store = tmp_path / "money.sqlite"
    st = paper_state(store)
    assert_journal_matches_paper(store)
    assert journal(store, "liquidation") == []  # before the fix: liquidated at once, with a *negative* loss
    assert st[L.S_N] == pytest.approx(0.12, abs=1e-12)
    assert st[L.S_MARGIN] == pytest.approx(3000.0, rel=1e-12)
    assert st[L.S_LIQ] > 50000.0 * 1.4
    # one position's worth: the interrupted order, or (never sent) the fresh decision's
    assert sum(q for _, q in paper_fills(store)) == pytest.approx(0.12, abs=1e-12)


# ------------------------------------------------------------------------------------------ limits


ORDER_KINDS = ("decision", "order_intent", "order_sent", "fill", "transfer_intent", "transfer")


@pytest.mark.parametrize(
    ("limits", "name"),
    [
        ({"max_order_usd": 5000}, "max_order_usd"),
        ({"max_turnover_usd_per_day": 5000}, "max_turnover_usd_per_day"),
        ({"max_leverage": 1.5}, "max_leverage"),
        ({"min_liquidation_distance": 0.6}, "min_liquidation_distance"),
    ],
)
def test_each_limit_refuses_the_whole_plan_and_journals_no_order(
    tmp_path: Path, limits: dict[str, Any], name: str
) -> None:
    book = write_book(tmp_path, limits=limits)
    r = run_tick(book, Feed({"BTC": 50000.0, "SOL": 100.0}), NOW)
    assert [b.limit for b in r.refused] == [name]
    assert f"`{name}`" in r.refused[0].message
    assert r.results == []
    store = tmp_path / "money.sqlite"
    assert journal(store, *ORDER_KINDS) == []
    assert [d["limit"] for _, _, d in journal(store, "limit_refused")] == [name]
    assert paper_fills(store) == [] and paper_state(store)[L.S_N] == 0.0


def test_turnover_counts_the_journals_last_24_hours(tmp_path: Path) -> None:
    """6,000 USD traded today; a cut of 600 USD a day later is allowed at 6,500 only once the first fill is
    older than 24 h (the window is the journal's, per fill time)."""
    run_tick(write_book(tmp_path), Feed({"BTC": 50000.0, "SOL": 100.0}), NOW)
    book = write_book(tmp_path, limits={"max_turnover_usd_per_day": 6500})
    feed = Feed({"BTC": 40000.0, "SOL": 70.0})
    r = run_tick(book, feed, NOW + DAY - 60_000)  # the same day's window still holds the 6,000 USD
    assert [b.limit for b in r.refused] == ["max_turnover_usd_per_day"]
    assert r.refused[0].value == pytest.approx(0.12 * 49_990.0 + 600.0)  # the fill at its price, slippage in
    r = run_tick(book, feed, NOW + DAY + 1)
    assert r.refused == [] and [x["status"] for x in r.results if "client_id" in x] == ["filled"]


def test_a_cut_of_a_short_in_profit_is_not_blocked_by_leverage_or_distance(tmp_path: Path) -> None:
    """BTC −20 %, SOL −30 %: the policy cuts the short (buy 0.015, reduce-only). The cut itself lowers the
    leverage (1.14x → 1.0x) and moves the liquidation away; only the margin it frees, withdrawn to value/2,
    brings the leg back to its 2x. Judged after that withdrawal the cut would be refused by max_leverage 1.5
    and min distance 60 %, and the book could not de-risk."""
    run_tick(write_book(tmp_path), Feed({"BTC": 50000.0, "SOL": 100.0}), NOW)
    book = write_book(tmp_path, limits={"max_leverage": 1.5, "min_liquidation_distance": 0.6})
    r = run_tick(book, Feed({"BTC": 40000.0, "SOL": 70.0}), NOW + DAY)
    (order,) = [i for i in r.plan.items if i.kind == "order"]
    assert (order.side, order.reduce_only) == ("buy", True)
    assert order.contracts == pytest.approx(0.015, abs=1e-12)
    assert order.leverage_after == pytest.approx(2.0, rel=1e-9)  # what the plan shows: after the margin move
    assert r.refused == []
    assert paper_state(tmp_path / "money.sqlite")[L.S_N] == pytest.approx(0.105, abs=1e-12)
    # an increase of the same short is still refused
    r = run_tick(book, Feed({"BTC": 40000.0, "SOL": 120.0}), NOW + 2 * DAY)
    (order,) = [i for i in r.plan.items if i.kind == "order"]
    assert order.side == "sell"
    assert {b.limit for b in r.refused} == {"max_leverage", "min_liquidation_distance"}


def test_unwind_is_never_blocked_by_leverage_or_distance(tmp_path: Path) -> None:
    from perphedge.usecases import book as B

    run_tick(write_book(tmp_path), Feed({"BTC": 50000.0, "SOL": 100.0}), NOW)
    book = write_book(tmp_path, limits={"max_leverage": 1.01, "min_liquidation_distance": 5.0})
    s = B.open_session(B.load_book(book), writer=True, now_ms=NOW + DAY, feed=Feed({"BTC": 30000.0, "SOL": 100.0}))
    try:
        snap = B.snapshot(s, NOW + DAY)
        B.advance(s, snap)
        plan = B.plan_rebalance(s, snap, unwind=True)
        assert B.check_plan_limits(s, plan) == []
        B.execute_plan(s, plan, snap)
    finally:
        B.close_session(s)
    assert paper_state(tmp_path / "money.sqlite")[L.S_N] == 0.0


def test_funds_short_refuses_before_anything_is_sent(tmp_path: Path) -> None:
    book = write_book(
        tmp_path, accounts=[{"name": "paper", "kind": "paper", "exchange": "binance", "balances": {"USDT": 1000}}]
    )
    r = run_tick(book, Feed({"BTC": 50000.0, "SOL": 100.0}), NOW)
    assert [b.limit for b in r.refused] == ["funds"]
    assert "3,004.20 USDT" in r.refused[0].message and "1,000.00 USDT" in r.refused[0].message
    store = tmp_path / "money.sqlite"
    assert journal(store, *ORDER_KINDS) == [] and paper_fills(store) == []


def test_stale_feed_blocks_trading(tmp_path: Path) -> None:
    r = run_tick(write_book(tmp_path), Feed({"BTC": 50000.0, "SOL": 100.0}, stale=True), NOW)
    assert "stale" in r.blocked and r.results == []
    assert journal(tmp_path / "money.sqlite", *ORDER_KINDS) == []


def test_a_rejected_order_raises_its_alert_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from perphedge.exchange.paper import PaperAccount

    monkeypatch.setattr(PaperAccount, "_refusal", lambda self, req, snap: "venue says no")
    book = write_book(tmp_path)
    feed = Feed({"BTC": 50000.0, "SOL": 100.0})
    r = run_tick(book, feed, NOW)
    assert [x.get("status") for x in r.results] == ["rejected", "skipped"]
    run_tick(book, feed, NOW + 60_000)  # the same bar: decided, nothing sent again
    store = tmp_path / "money.sqlite"
    opens = [d for k, _, d in journal(store, "alert_open") if d["alert"] == "order_rejected"]
    assert len(opens) == 1 and "venue says no" in opens[0]["message"]
    assert [k for k, _, _ in journal(store, "decision_abandoned", "decision_done")] == ["decision_abandoned"]
    assert journal(store, "transfer") == []  # the margin move after a rejected order is not made
    # switched off: no alert
    book = write_book(tmp_path, alerts={"order_rejected": False})
    run_tick(book, feed, NOW + DAY)
    opens = [d for k, _, d in journal(store, "alert_open") if d["alert"] == "order_rejected"]
    assert len(opens) == 1


# ------------------------------------------------------------------------------------------ alerts and webhooks


@pytest.fixture
def receiver() -> Iterator[Any]:
    """``receiver(script)``: a local HTTP receiver recording each POST (see test_book_webhook.Receiver)."""
    made: list[Receiver] = []

    def make(script: Script | None = None) -> Receiver:
        made.append(Receiver(script))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _episodes_book(tmp: Path, url: str) -> Path:
    return write_book(tmp, alerts={"ratio_off_by": 0.15, "rearm": 0.8, "webhook": url, "feed_stale_after": "1d"})


def _sol_path(book: Path, prices: list[float], start: int) -> None:
    """One tick per hour at SOL = each price (BTC 50,000), each in a fresh session (a restart every tick)."""
    for k, sol in enumerate(prices):
        run_tick(book, Feed({"BTC": 50000.0, "SOL": sol}), start + k * 3_600_000, execute=False)


def test_alerts_fire_once_per_episode_across_restarts_and_post_once(tmp_path: Path, receiver: Any) -> None:
    """The hedge (0.12 BTC, 6,000 USD) is opened at SOL 100 (60 %). SOL 60 puts it at 100 % (40 points off,
    above 15): an episode opens; it closes only under 0.8 × 15 = 12 points (SOL 100), not at SOL 75 (80 %, 20
    off) nor at SOL 80 (75 %, 15 off). Three crossings → three `alert_open`, three open POSTs, each once, with
    a new process at every tick."""
    rec = receiver()
    book = _episodes_book(tmp_path, rec.url)
    run_tick(book, Feed({"BTC": 50000.0, "SOL": 100.0}), NOW)  # opens the hedge; the flat start's episode closes next
    before = len(journal(tmp_path / "money.sqlite", "alert_open"))
    path = [100.0, 60.0, 60.0, 75.0, 80.0, 100.0, 100.0, 55.0, 58.0, 100.0, 60.0, 60.0, 100.0]
    _sol_path(book, path, NOW + 3_600_000)
    store = tmp_path / "money.sqlite"
    opens = [d for k, _, d in journal(store, "alert_open") if d["alert"] == "ratio_off"]
    closes = [d for k, _, d in journal(store, "alert_close") if d["alert"] == "ratio_off"]
    assert len(opens) - before == 3 and len(closes) >= 3
    posted_opens = [b for b in rec.bodies if b["alert"] == "ratio_off" and b["event"] == "open"]
    assert len(posted_opens) == len(opens)  # every episode POSTed exactly once
    assert [b["ts_ms"] for b in rec.bodies] == sorted(b["ts_ms"] for b in rec.bodies)
    assert journal(store, "error") == []


def test_webhook_down_then_up_delivers_each_event_once_in_order(tmp_path: Path, receiver: Any) -> None:
    """The receiver answers 500 three times (and the port is refused before it exists): the events wait in the
    outbox, each tick tries once, and when the receiver is back every event arrives once, in order."""
    rec = receiver(lambda h, n: reply(h, 500 if n < 3 else 200))
    book = _episodes_book(tmp_path, rec.url)
    run_tick(book, Feed({"BTC": 50000.0, "SOL": 100.0}), NOW)
    _sol_path(book, [60.0, 60.0, 100.0, 60.0, 60.0, 60.0, 60.0], NOW + 3_600_000)
    store = tmp_path / "money.sqlite"
    events = [(d["alert"], k) for k, _, d in journal(store, "alert_open", "alert_close")]
    delivered = [(b["alert"], "alert_" + b["event"]) for b in rec.bodies[3:]]
    assert delivered == events  # after the three 500s, every event once and in order
    assert len(rec.bodies) == len(events) + 3
    errors = [d["message"] for _, _, d in journal(store, "error")]
    assert len(errors) == 3 and all("HTTP 500" in m and "retried next tick" in m for m in errors)


def test_connection_refused_webhook_never_blocks_the_tick(tmp_path: Path) -> None:
    import socket
    import time

    with socket.socket() as sk:  # a port nobody listens on
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    book = _episodes_book(tmp_path, f"http://127.0.0.1:{port}/hook")
    t0 = time.monotonic()
    r = run_tick(book, Feed({"BTC": 50000.0, "SOL": 100.0}), NOW)
    assert time.monotonic() - t0 < 5.0
    assert [x.get("status") for x in r.results if "client_id" in x] == ["filled"]  # the order went out anyway
    store = tmp_path / "money.sqlite"
    assert any("connection refused" in d["message"] for _, _, d in journal(store, "error"))


def test_slow_webhook_is_given_up_not_sent_twice(
    tmp_path: Path, receiver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver slower than the timeout may still take the event: it is journaled as an error and not re-sent
    (never twice); the order of the same tick was sent before the POST was tried."""
    import time

    from perphedge.usecases import book as B
    from tests.integration.test_book_webhook import reply

    monkeypatch.setattr(B, "WEBHOOK_TIMEOUT_S", 0.3)
    rec = receiver(lambda h, n: (time.sleep(1.0), reply(h, 200)))
    book = _episodes_book(tmp_path, rec.url)
    r = run_tick(book, Feed({"BTC": 50000.0, "SOL": 100.0}), NOW)
    assert [x.get("status") for x in r.results if "client_id" in x] == ["filled"]
    run_tick(book, Feed({"BTC": 50000.0, "SOL": 100.0}), NOW + 3_600_000)
    time.sleep(1.2)
    store = tmp_path / "money.sqlite"
    errors = [d["message"] for _, _, d in journal(store, "error")]
    assert errors and all("not retried" in m for m in errors)
    subjects = [(b["alert"], b["event"], b["ts_ms"]) for b in rec.bodies]
    assert len(subjects) == len(set(subjects))


# ------------------------------------------------------------------------------------------ status numbers


def _status(book: Path, feed: Feed, now: int) -> dict[str, Any]:
    from perphedge.usecases import book as B

    s = B.open_session(B.load_book(book), writer=False, now_ms=now, feed=feed)
    try:
        snap = B.snapshot(s, now)
        doc = B.status_document(s, snap, decision=B.plan_rebalance(s, snap))
    finally:
        B.close_session(s)
    json.dumps(doc, allow_nan=False, default=float)  # strict JSON: no NaN or infinity anywhere
    return doc


def test_inverse_buy_status_by_hand(tmp_path: Path) -> None:
    """100 SOL at 100 USD, 60 % hedged with Binance COIN-M BTCUSD_PERP (100 USD contracts) at 2x, collateral bought.

    d = 0.6 × 10,000 = 6,000 USD; bought collateral is a long, so the short is d·L/(L−1) = 12,000 USD = 120
    contracts. Margin = value / L = 0.24 BTC / 2 = 0.12 BTC (fee 0.00012 BTC and slippage 0.000048 BTC are topped
    up: 0.120168 BTC bought for 6,008.40 USDT). Delta of the leg = (margin + upnl − Q/P)·P = (0.12 − 0.24)·50,000
    = −6,000 USD: the hedge is at 60 %. Bankruptcy: 0.12 + 12,000 (1/P − 1/50,000) = 0 → P = 100,000.
    Liquidation (maintenance 0.4 % at the liquidation price): 0.12 + 12,000/P − 0.24 = 0.004·12,000/P →
    P = 11,952 / 0.12 = 99,600; distance 99,600 / 50,000 − 1 = 99.2 %. The BTC margin is part of the leg's
    delta: by asset BTC is −6,000, not −6,000 + 6,000 (counted twice as a balance)."""
    pf = {
        "name": "sol",
        "prices": {"SOL": 100, "BTC": 50000},
        "holdings": [{"asset": "SOL", "quantity": 100}],
        "hedge": {"instrument": "binance:BTCUSD_PERP", "leverage": 2, "ratio": 0.6, "collateral": "buy"},
    }
    book = write_book(tmp_path, portfolio=pf)
    feed = Feed({"BTC": 50000.0, "SOL": 100.0})
    run_tick(book, feed, NOW)
    doc = _status(book, feed, NOW + 1000)
    (pos,) = doc["accounts"][0]["positions"]
    assert pos["contracts"] == 120.0 and pos["notional_usd"] == pytest.approx(12_000.0, rel=1e-12)
    assert pos["margin_settle"] == pytest.approx(0.12, rel=1e-12)
    assert pos["leverage"] == pytest.approx(2.0, rel=1e-12)
    assert pos["bankruptcy_price"] == pytest.approx(100_000.0, rel=1e-9)
    assert pos["liquidation_price"] == pytest.approx(99_600.0, rel=1e-9)
    assert pos["distance_to_liquidation"] == pytest.approx(0.992, rel=1e-9)
    assert pos["hedge_delta_usd"] == pytest.approx(-6_000.0, rel=1e-12)
    assert doc["delta"]["by_asset"] == pytest.approx({"SOL": 10_000.0, "BTC": -6_000.0}, rel=1e-12)
    assert doc["delta"]["net_delta_usd"] == pytest.approx(sum(doc["delta"]["by_asset"].values()), rel=1e-12)
    assert doc["hedge"]["achieved_ratio"] == pytest.approx(0.6, rel=1e-12)
    usdt = next(b for b in doc["accounts"][0]["balances"] if b["asset"] == "USDT")
    assert usdt["wallet"] == pytest.approx(10_000.0 - 0.120168 * 50_000.0, rel=1e-12)
    assert doc["value"]["total_usd"] == pytest.approx(10_000.0 + usdt["wallet"] + 0.12 * 50_000.0, rel=1e-12)
    # BTC −20 %: the short gains 12,000 (1/40,000 − 1/50,000) = 0.06 BTC (2,400 USD) in coin; the leg's delta is
    # (0.12 + 0.06 − 12,000/40,000)·40,000 = −4,800 USD; leverage 12,000 / (0.18 × 40,000) = 1.667x
    doc = _status(book, Feed({"BTC": 40000.0, "SOL": 100.0}), NOW + 2000)
    (pos,) = doc["accounts"][0]["positions"]
    assert pos["upnl_settle"] == pytest.approx(0.06, rel=1e-12)
    assert pos["upnl_usd"] == pytest.approx(2_400.0, rel=1e-12)
    assert pos["hedge_delta_usd"] == pytest.approx(-4_800.0, rel=1e-12)
    assert pos["leverage"] == pytest.approx(12_000.0 / 7_200.0, rel=1e-12)
    assert doc["delta"]["by_asset"]["BTC"] == pytest.approx(-4_800.0, rel=1e-12)
    assert doc["hedge"]["achieved_ratio"] == pytest.approx(0.48, rel=1e-12)


def test_funding_sign_once_per_settlement_and_liquidation_loss_by_hand(tmp_path: Path) -> None:
    """Short 0.12 BTC at 50,000 (margin 3,000 USDT). +0.1 % → the short receives 6 USDT; −0.05 % → it pays 3.
    Ticks closer than the settlement interval and restarts (every tick is a new process) never pay twice. A high
    of 80,000 crosses the liquidation price 74,701.19 (computed at the last fill, not after funding, as in the
    backtest): closed there, and the loss is the margin 3,003 USDT (≥ 0). Status then: a flat leg, strict JSON."""
    book = write_book(tmp_path)
    h = 3_600_000
    feed = Feed({"BTC": 50000.0, "SOL": 100.0}, funding={"binance:BTCUSDT": {NOW + h: 0.001, NOW + 2 * h: -0.0005}})
    run_tick(book, feed, NOW)
    for t in (NOW + h // 2, NOW + h, NOW + h + 1, NOW + h + 2, NOW + 3 * h, NOW + 3 * h):
        run_tick(book, feed, t, execute=False)
    store = tmp_path / "money.sqlite"
    got = [(d["settlement_ms"] - NOW, d["amount"]) for _, _, d in journal(store, "funding")]
    assert got == [(h, pytest.approx(6.0, rel=1e-12)), (2 * h, pytest.approx(-3.0, rel=1e-12))]
    assert paper_state(store)[L.S_MARGIN] == pytest.approx(3003.0, rel=1e-12)
    feed.highs = {"BTC": 80000.0}
    run_tick(book, feed, NOW + 4 * h, execute=False)
    ((_, _, liq),) = journal(store, "liquidation")
    assert liq["price"] == pytest.approx(9000.0 / 0.12 / 1.004, rel=1e-12)
    assert liq["loss_usd"] == pytest.approx(3003.0, rel=1e-12) and liq["loss_usd"] >= 0
    assert paper_state(store)[L.S_N] == 0.0
    feed.highs = {}
    doc = _status(book, feed, NOW + 5 * h)
    (pos,) = doc["accounts"][0]["positions"]
    assert pos["side"] == "flat" and pos["liquidation_price"] is None and pos["leverage"] is None
    assert doc["funding"]["received_usd"] == pytest.approx(6.0) and doc["funding"]["paid_usd"] == pytest.approx(3.0)
    assert doc["hedge"]["achieved_ratio"] == 0.0


# ------------------------------------------------------------------------------------------ doubling


def test_a_second_execute_on_the_same_bar_sends_nothing_even_after_editing_the_book(tmp_path: Path) -> None:
    """Twice on the same bar, then with an edited book file (its hash changes: a new decision may be made), at the
    same prices: the band check finds the leg on target and nothing new reaches the account."""
    book = write_book(tmp_path)
    feed = Feed({"BTC": 50000.0, "SOL": 100.0})
    run_tick(book, feed, NOW)
    r = run_tick(book, feed, NOW + 60_000)
    assert r.results == []
    book.write_text(book.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    r = run_tick(book, feed, NOW + 120_000)
    assert r.results == []
    store = tmp_path / "money.sqlite"
    assert len(paper_fills(store)) == 1 and len(journal(store, "decision")) == 1
    assert_journal_matches_paper(store)


def test_static_policy_with_band_zero_on_an_edited_book_does_not_trade_again(tmp_path: Path) -> None:
    """A band of 0 rebalances at every decision; a new decision on the same bar (edited book) recomputes the same
    lot-rounded size at the same price: no order, and the margin already at value/leverage: no transfer."""
    book = write_book(tmp_path, policy={"kind": "static", "ratio": 0.6})
    feed = Feed({"BTC": 50000.0, "SOL": 100.0})
    run_tick(book, feed, NOW)
    book.write_text(book.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    r = run_tick(book, feed, NOW + 60_000)
    assert [x for x in r.results if "client_id" in x] == []
    store = tmp_path / "money.sqlite"
    assert len(paper_fills(store)) == 1
    assert_journal_matches_paper(store)


def test_a_binding_limit_is_journaled_once_per_bar_by_a_watch(tmp_path: Path) -> None:
    book = write_book(tmp_path, limits={"max_order_usd": 5000})
    feed = Feed({"BTC": 50000.0, "SOL": 100.0})
    for k in range(3):  # watch without --auto-rebalance: nothing would be sent, nothing refused in the journal
        assert run_tick(book, feed, NOW + k * 300_000, execute=False).refused
    store = tmp_path / "money.sqlite"
    assert journal(store, "limit_refused") == []
    for k in range(3, 8):  # --auto-rebalance every 5 minutes on one daily bar
        assert run_tick(book, feed, NOW + k * 300_000).refused
    assert len(journal(store, "limit_refused")) == 1
    run_tick(book, feed, NOW + DAY)  # the next bar: refused again, journaled again
    assert len(journal(store, "limit_refused")) == 2
    assert journal(store, *ORDER_KINDS) == []


def test_ctrl_c_inside_a_store_query_is_a_keyboard_interrupt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """DuckDB turns SIGINT during a query into RuntimeError("Query interrupted") (seen as `perphedge: internal
    error` from `book watch`); the store feed raises KeyboardInterrupt instead, so watch says "stopped (Ctrl-C)"."""
    import duckdb

    from perphedge.data import bookfeed
    from perphedge.errors import DataError

    feed = bookfeed.StoreFeed(
        tmp_path / "none.duckdb",
        source="binance",
        assets=["BTC"],
        instruments={},
        step="1d",
        stale_after_s=60,
        assumed_rate_8h=0.0001,
    )
    wrapped = DataError("market store query failed: INTERRUPT Error: Interrupted!")
    wrapped.__cause__ = duckdb.InterruptException("INTERRUPT Error: Interrupted!")
    for exc in (RuntimeError("Query interrupted"), wrapped):

        def boom(now_ms: int, since_ms: int, exc: BaseException = exc) -> Any:
            raise exc

        monkeypatch.setattr(feed, "_snapshot", boom)
        with pytest.raises(KeyboardInterrupt):
            feed.snapshot(NOW, NOW - DAY)
    monkeypatch.setattr(feed, "_snapshot", lambda now_ms, since_ms: (_ for _ in ()).throw(DataError("no candle")))
    with pytest.raises(DataError, match="no candle"):
        feed.snapshot(NOW, NOW - DAY)


def test_a_clock_stepping_back_does_not_decide_an_earlier_bar_again(tmp_path: Path) -> None:
    """A wall clock set back across a bar boundary (NTP, a VM resumed) must not make a second decision."""
    from perphedge.usecases import book as B

    lb = B.load_book(_clock_book(tmp_path))
    day = 86_400_000
    t1 = 1_790_000_000_000
    s = B.open_session(lb, writer=True, now_ms=t1)
    try:
        first = B.tick(s, t1, decide=True, execute=True)
        assert [x for x in first.results if "client_id" in x]
        back = B.tick(s, t1 - day, decide=True, execute=True)
        assert back.results == []
        assert B.decided_at(s, back.snap) is not None
    finally:
        B.close_session(s)


def _clock_book(tmp: Path) -> Path:
    import yaml

    doc = {
        "book": 1,
        "id": "c10c0001",
        "portfolio": {
            "name": "sol",
            "prices": {"SOL": 100, "BTC": 50000},
            "holdings": [{"asset": "SOL", "quantity": 100}],
            "hedge": {"instrument": "binance:BTCUSDT", "leverage": 2, "ratio": 0.6},
        },
        "policy": {"kind": "calendar", "ratio": 0.6, "every_days": 1},  # band 0: wants a trade every bar
        "policy_origin": "2026-01-01",
        "feed": {"kind": "portfolio"},
        "store": "clock.sqlite",
        "accounts": [{"name": "paper", "kind": "paper", "exchange": "binance", "balances": {"USDT": 10000}}],
    }
    p = tmp / "clock.book.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return p
