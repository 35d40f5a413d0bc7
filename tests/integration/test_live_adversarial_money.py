"""Adversarial money paths of a live book (issue 11), through the real CLI against the fake exchange's private APIs
of Binance USDⓈ-M, Binance COIN-M and Bybit v5: answers lost after the venue accepted (on create, on the lookup, on the
trades fetch), 5xx and 429 storms, slow answers beyond the client timeout, partial fills, every reject kind, venue
maintenance, positions changed by hand or liquidated, a limit order left resting, halt with a decision open, kill -9
of ``watch --auto-rebalance``, two processes at once, funding across restarts, a fake restarted (state lost) and clock
jumps.

Invariants checked after every scenario (``_invariants``): never two fills for one client id; after a clean run the
venue holds exactly the target; every ``order_sent`` in the journal has an ``order_final`` or the run said "state
unknown ... rerun"; funding rows unique; no traceback; no key or secret in any output or in the journal.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from perphedge.exchange.fake import FakeExchange, Fault
from tests.conftest import REPO, run_cli, sample_dir

KEY = "PHADVKEY" + "0123456789abcdef" * 3 + "K" * 8
SECRET = "PHADVSECRET" + "fedcba9876543210" * 3 + "S" * 5
PERPHEDGE = str(Path(sys.executable).parent / "perphedge")


@dataclass(frozen=True)
class Venue:
    name: str  # book file `exchange`
    instrument: str  # perphedge id
    symbol: str  # the fake ledger's symbol
    create: str  # create-order path
    lookup: str  # path of the lookup by client id (GET)
    trades: str  # path of the fills fetch (GET)
    target: float  # the short the policy wants, in the venue's contracts


USDM = Venue(
    "binance_usdm",
    "binance:BTCUSDT",
    "BTCUSDT",
    "/fapi/v1/order",
    "/fapi/v1/order",
    "/fapi/v1/userTrades",
    round(100_000 * 0.5 / 60_000, 3),
)
COINM = Venue(
    "binance_coinm",
    "binance:BTCUSD_PERP",
    "BTCUSD_PERP",
    "/dapi/v1/order",
    "/dapi/v1/order",
    "/dapi/v1/userTrades",
    500.0,
)
BYBIT = Venue(
    "bybit",
    "bybit:BTCUSDT",
    "BTCUSDT",
    "/v5/order/create",
    "/v5/order/realtime",
    "/v5/execution/list",
    round(100_000 * 0.5 / 60_000, 3),
)


@pytest.fixture
def fx() -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir(), api_key=KEY, api_secret=SECRET, balances={"USDT": 100_000.0, "BTC": 2.0}) as fake:
        fake.marks["BTC"] = 60_000.0
        yield fake


def _env(fx: FakeExchange) -> dict[str, str]:
    return {
        "PERPHEDGE_EXCHANGE_URL": fx.url,
        "PH_ADV_KEY": KEY,
        "PH_ADV_SECRET": SECRET,
        "PERPHEDGE_LOOKUP_SETTLE_S": "0.2",
        # ccxt's own throttle off for speed; Bybit's per-second limits (which the fake enforces) need it on
        **({} if _BOOK_VENUE and _BOOK_VENUE[-1] is BYBIT else {"PERPHEDGE_RATE_LIMIT_MS": "1"}),
    }


_BOOK_VENUE: list[Venue] = []  # the venue of the book the running test wrote last


def _book(tmp: Path, v: Venue, *, extra: dict[str, Any] | None = None, account: dict[str, Any] | None = None) -> Path:
    _BOOK_VENUE.append(v)
    port = yaml.safe_load((REPO / "examples" / "btc-50pct.yaml").read_text(encoding="utf-8"))
    port["hedge"]["instrument"] = v.instrument
    if v is COINM:  # an inverse contract's margin is the coin
        port["hedge"]["collateral"] = "holdings"
    (tmp / "port.yaml").write_text(yaml.safe_dump(port, sort_keys=False), encoding="utf-8")
    doc: dict[str, Any] = {
        "book": 1,
        "id": "adf00d11",
        "name": "adversarial",
        "portfolio": str(tmp / "port.yaml"),
        "step": "1d",
        "policy": {"kind": "drift_band", "ratio": 0.5, "band": 0.1},
        "policy_origin": "2026-11-01",
        "feed": {"kind": "portfolio", "source": v.instrument.split(":")[0]},
        "accounts": [
            {
                "name": "main",
                "kind": "exchange",
                "exchange": v.name,
                "key_env": "PH_ADV_KEY",
                "secret_env": "PH_ADV_SECRET",
                "read_only": False,
            }
            | (account or {})
        ],
        "limits": {"max_leverage": 3.0, "instruments": [v.instrument]},
    }
    doc |= extra or {}
    path = tmp / "adv.book.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


OUTPUTS: list[str] = []


def _cli(fx: FakeExchange, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    r = run_cli(*args, home=home, env=_env(fx))
    OUTPUTS.append(r.stdout + r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert KEY not in r.stdout + r.stderr and SECRET not in r.stdout + r.stderr
    return r


def _json(fx: FakeExchange, home: Path, *args: str) -> Any:
    r = _cli(fx, home, *args, "--format", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _exec(fx: FakeExchange, home: Path, book: Path) -> subprocess.CompletedProcess[str]:
    return _cli(fx, home, "book", "rebalance", str(book), "--execute", "--yes")


def _short(fx: FakeExchange, v: Venue) -> float:
    led = fx.ledgers.get(v.name)
    pos = led.positions.get(v.symbol) if led is not None else None
    return -pos.qty if pos is not None else 0.0


def _orders(fx: FakeExchange, v: Venue) -> list[Any]:
    led = fx.ledgers.get(v.name)
    return list(led.orders) if led is not None else []


def _invariants(
    fx: FakeExchange, home: Path, book: Path, v: Venue, *, settled: bool = True, at_target: bool = True
) -> list[dict[str, Any]]:
    """The money invariants; ``settled``: the last run ended clean, so every sent order has a final state, and
    (``at_target``) the venue holds exactly the target."""
    by_cid = Counter(o.client_id for o in _orders(fx, v) if o.filled > 0)
    assert all(n == 1 for n in by_cid.values()), f"two fills for one intent: {by_cid}"
    rows = _json(fx, home, "book", "journal", str(book))
    text = json.dumps(rows)
    assert KEY not in text and SECRET not in text
    sent = {r["client_id"] for r in rows if r["kind"] == "order_sent"}
    final = {r["client_id"] for r in rows if r["kind"] == "order_final"}
    fills = [r["data"].get("fill_id") for r in rows if r["kind"] == "fill"]
    assert len(fills) == len(set(fills)), "a fill journaled twice"
    funding = [(r["account"], r["instrument"], r["data"].get("settlement_ms")) for r in rows if r["kind"] == "funding"]
    assert len(funding) == len(set(funding)), "a funding payment counted twice"
    if settled:
        assert sent <= final, f"sent without a final state: {sent - final}"
    if settled and at_target:
        assert _short(fx, v) == pytest.approx(v.target, abs=1e-9), "not at the target"
    for store in home.rglob("*"):
        if store.is_file():
            blob = store.read_bytes()
            assert KEY.encode() not in blob and SECRET.encode() not in blob, store
    return list(rows)


# ------------------------------------------------------------------------------------------------ answers lost


@pytest.mark.parametrize(
    ("where", "v"),
    [("create", USDM), ("create", COINM), ("create", BYBIT), ("lookup", USDM), ("lookup", BYBIT), ("trades", COINM)],
    ids=["create-usdm", "create-coinm", "create-bybit", "lookup-usdm", "lookup-bybit", "trades-coinm"],
)
def test_answer_dropped_after_accept_never_doubles(tmp_path: Path, fx: FakeExchange, v: Venue, where: str) -> None:
    home = tmp_path / "home"
    book = _book(tmp_path, v)
    fx.inject(Fault("drop_after_accept", path=v.create, method="POST"))
    if where == "lookup":  # the pre-send lookup passes, the lookup after the lost answer is dropped too
        fx.inject(Fault("drop_after_accept", path=v.lookup, method="GET", after=1))
    if where == "trades":
        fx.inject(Fault("drop_after_accept", path=v.trades, method="GET"))
    r = _exec(fx, home, book)
    if r.returncode != 0:  # an honest "unknown, rerun", then the rerun resolves
        assert "state unknown" in r.stderr and "rerun" in r.stderr, r.stderr
        r = _exec(fx, home, book)
    assert r.returncode == 0, r.stderr
    assert len(_orders(fx, v)) == 1
    _invariants(fx, home, book, v)
    assert _json(fx, home, "book", "rebalance", str(book), "--execute", "--yes")["results"] == []
    assert len(_orders(fx, v)) == 1


# ------------------------------------------------------------------------------------------------ resting, rejects


@pytest.mark.parametrize("v", [USDM, BYBIT], ids=["binance_usdm", "bybit"])
def test_limit_rest_whose_cancel_failed_is_cancelled_before_a_new_decision(
    tmp_path: Path, fx: FakeExchange, v: Venue
) -> None:
    """A marketable limit order fills half; cancelling the rest fails (5xx): the rest rests at the venue. The next
    run must not trade beside it (it could fill later and double the hedge): it cancels it first."""
    home = tmp_path / "home"
    book = _book(tmp_path, v, extra={"execution": {"order_type": "limit", "limit_offset_bps": 20}})
    _cli(fx, home, "book", "status", str(book))
    fx.ledgers[v.name].partial_next = 0.5
    cancel_path = "/v5/order/cancel" if v is BYBIT else v.create
    cancel_method = "POST" if v is BYBIT else "DELETE"
    fx.inject(*[Fault("500", path=cancel_path, method=cancel_method) for _ in range(8)])
    r = _exec(fx, home, book)
    assert r.returncode != 0
    fx.faults.clear()
    r = _exec(fx, home, book)
    assert r.returncode == 0, r.stderr
    assert [o.client_id for o in _orders(fx, v) if o.is_open] == [], "an order of the book left resting"
    assert "cancelled at the account" in r.stdout + r.stderr
    # one decision per bar: the rest of the hedge is the next bar's; what is held is exactly what filled once
    _invariants(fx, home, book, v, at_target=False)
    (o,) = _orders(fx, v)
    assert o.status == "cancelled" and _short(fx, v) == pytest.approx(o.filled)


@pytest.mark.parametrize(
    ("v", "kind"),
    [
        (COINM, "min_notional"),
        (BYBIT, "insufficient_margin"),
        (USDM, "reduce_only"),
        (USDM, "duplicate"),
    ],
    ids=["coinm-min_notional", "bybit-margin", "usdm-reduce_only", "usdm-dup"],
)
def test_each_reject_kind_is_final_and_never_retried_blindly(
    tmp_path: Path, fx: FakeExchange, v: Venue, kind: str
) -> None:
    home = tmp_path / "home"
    book = _book(tmp_path, v)
    _cli(fx, home, "book", "status", str(book))
    fx.ledgers[v.name].reject_next = kind  # type: ignore[assignment]
    r = _exec(fx, home, book)
    assert r.returncode != 0 and "reject" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    assert [o for o in _orders(fx, v) if o.filled > 0] == []
    rows = _invariants(fx, home, book, v, settled=False)
    assert [x["data"]["status"] for x in rows if x["kind"] == "order_final"] == ["rejected"]
    assert sum(1 for x in rows if x["kind"] == "order_sent") == 1  # sent once, not retried
    r = _exec(fx, home, book)  # the same bar: no second decision, nothing resent
    assert r.returncode == 0, r.stderr
    assert len(_orders(fx, v)) <= 1 and _short(fx, v) == 0.0
    _invariants(fx, home, book, v, at_target=False)


# ------------------------------------------------------------------------------------------------ halt, storms


@pytest.mark.parametrize("crash", ["after_intent", "after_sent"])
def test_halt_with_a_decision_open_sends_nothing(tmp_path: Path, fx: FakeExchange, crash: str) -> None:
    """The process died with a decision open (intent written; or sent, but the venue never saw it); `book halt`
    recovers the journal but must not resume the decision: a halted book sends no order."""
    v = USDM
    home = tmp_path / "home"
    book = _book(tmp_path, v)
    env = dict(_env(fx), PERPHEDGE_TEST_CRASH=crash)
    r = run_cli("book", "rebalance", str(book), "--execute", "--yes", home=home, env=env)
    assert r.returncode == 137, r.stderr
    assert _orders(fx, v) == []
    h = _cli(fx, home, "book", "halt", str(book))
    assert h.returncode == 0, h.stderr
    assert _orders(fx, v) == [], "halt resumed the open decision and sent an order"
    r = _exec(fx, home, book)
    assert r.returncode == 3 and "halted" in r.stderr
    assert _orders(fx, v) == []
    assert _cli(fx, home, "book", "resume", str(book)).returncode == 0
    r = _exec(fx, home, book)
    assert r.returncode == 0, r.stderr
    _invariants(fx, home, book, v, at_target=False)
    assert len([o for o in _orders(fx, v) if o.filled > 0]) <= 1


@pytest.mark.parametrize(
    ("v", "storm"),
    [(COINM, "429"), (BYBIT, "500"), (USDM, "maintenance"), (BYBIT, "maintenance")],
    ids=["coinm-429", "bybit-500", "usdm-maintenance", "bybit-maintenance"],
)
def test_error_storm_on_create_never_doubles(tmp_path: Path, fx: FakeExchange, v: Venue, storm: str) -> None:
    """The create answers 5xx / 429 / maintenance (the venue did not take it), then every lookup fails the same way
    for a while: the run stops with "unknown, rerun" or resolves it; the rerun never sends twice."""
    home = tmp_path / "home"
    book = _book(tmp_path, v)
    fx.inject(Fault(storm, path=v.create, method="POST", retry_after=0.05))
    fx.inject(*[Fault(storm, path=v.lookup, method="GET", after=1, retry_after=0.05) for _ in range(1)])
    fx.inject(*[Fault(storm, path=v.lookup, method="GET", retry_after=0.05) for _ in range(10)])
    r = _exec(fx, home, book)
    assert r.returncode in (0, 2), r.stderr
    if r.returncode == 2:
        assert "state unknown" in r.stderr and "rerun" in r.stderr, r.stderr
    fx.faults.clear()
    assert [o for o in _orders(fx, v) if o.filled > 0] == []  # the venue never took it
    r = _exec(fx, home, book)
    assert r.returncode == 0, r.stderr
    _invariants(fx, home, book, v, at_target=False)
    assert len(_orders(fx, v)) <= 1


def test_slow_answer_beyond_the_client_timeout_is_resolved_by_lookup(tmp_path: Path, fx: FakeExchange) -> None:
    """The venue takes the order but answers after the client gave up (timeout): found by its id, never resent."""
    v = BYBIT
    home = tmp_path / "home"
    book = _book(tmp_path, v)
    fx.inject(Fault("slow", path=v.create, method="POST", delay=2.5))
    env = dict(_env(fx), PERPHEDGE_EXCHANGE_TIMEOUT_MS="800")
    r = run_cli("book", "rebalance", str(book), "--execute", "--yes", home=home, env=env)
    assert "Traceback" not in r.stderr
    if r.returncode != 0:
        assert "state unknown" in r.stderr and "rerun" in r.stderr, r.stderr
        time.sleep(2.0)
        r = _exec(fx, home, book)
    assert r.returncode == 0, r.stderr
    time.sleep(2.0)  # the slow request has surely been applied by now
    assert len(_orders(fx, v)) == 1
    _invariants(fx, home, book, v)


# ------------------------------------------------------------------------------------------------ watch, funding

T0 = 1_709_254_800_000  # 2024-03-01T01:00Z: the sample data's funding rates drive the fake's settlements
DAY = 86_400_000


def _funding_matches_the_venue(fx: FakeExchange, rows: list[dict[str, Any]], v: Venue) -> None:
    """Every settlement the venue booked is journaled exactly once, with the venue's amount."""
    venue = {e.ts_ms: e.amount for e in fx.ledgers[v.name].funding}
    book = [(int(r["data"]["settlement_ms"]), float(r["data"]["amount"])) for r in rows if r["kind"] == "funding"]
    assert len(book) == len({ms for ms, _ in book}), "a settlement counted twice"
    assert {ms for ms, _ in book} <= set(venue), "a settlement the venue never booked"
    for ms, amount in book:
        assert amount == pytest.approx(venue[ms], rel=1e-6, abs=1e-8)  # the venue answers 8 decimals


@pytest.mark.parametrize("v", [USDM, COINM], ids=["binance_usdm", "binance_coinm"])
def test_kill_9_of_watch_auto_rebalance_with_funding_and_clock_jumps(
    tmp_path: Path, fx: FakeExchange, v: Venue
) -> None:
    """`watch --auto-rebalance --clock sim` killed at random moments while the venue's clock moves on (and once
    jumps back): after each clean rerun, one filled order for the one decision that needed it, the venue at the
    target, every funding settlement journaled once."""
    rng = random.Random(1111 if v is USDM else 2222)
    fx.now_ms = T0
    home = tmp_path / "home"
    book = _book(tmp_path, v, extra={"policy_origin": "2024-02-01"})
    fx.latency = 0.02
    base = ["book", "watch", str(book), "--clock", "sim", "--every", "8h", "--auto-rebalance"]
    env = dict(os.environ, PERPHEDGE_HOME=str(home), **_env(fx))
    killed = 0
    for trial in range(3):
        args = [*base, "--ticks", "3"] + (["--start", "2024-03-01T01:00"] if trial == 0 else [])
        proc = subprocess.Popen([PERPHEDGE, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        target = len(fx.requests) + rng.randint(2, 25)
        deadline = time.monotonic() + 60
        while proc.poll() is None and len(fx.requests) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        _, err = proc.communicate(timeout=60)
        assert b"Traceback" not in err and KEY.encode() not in err and SECRET.encode() not in err
        # the venue's clock moves on a random stretch (settlements accrue), once it jumps back an hour
        fx.now_ms += -3_600_000 if trial == 2 else rng.randint(1, 3) * DAY // 3
        again = ["--start", "2024-03-01T01:00"] if trial == 0 else []  # the kill may have come before any tick
        r = _cli(fx, home, *base, "--ticks", "1", *again)
        assert r.returncode == 0, r.stderr
        rows = _invariants(fx, home, book, v)
        _funding_matches_the_venue(fx, rows, v)
        assert len([o for o in _orders(fx, v) if o.filled > 0]) == 1
    fx.latency = 0.0
    assert killed >= 2
    rows = _json(fx, home, "book", "journal", str(book))
    assert any(r["kind"] == "funding" for r in rows)


def test_two_processes_at_once_send_one_order(tmp_path: Path, fx: FakeExchange) -> None:
    """Two `rebalance --execute` started together on one book: one holds the lock, the other is refused with one
    line (exit 2; design §4 says 4, the CLI maps every refusal to 2) or finds nothing left; one order at the venue."""
    v = COINM
    home = tmp_path / "home"
    book = _book(tmp_path, v)
    fx.latency = 0.05
    env = dict(os.environ, PERPHEDGE_HOME=str(home), **_env(fx))
    procs = [
        subprocess.Popen(
            [PERPHEDGE, "book", "rebalance", str(book), "--execute", "--yes"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    fx.latency = 0.0
    codes = sorted(p.returncode for p in procs)
    for _, err in outs:
        assert "Traceback" not in err
    assert codes[0] == 0 and codes[1] in (0, 4), outs
    if codes[1] == 4:
        assert any("being written by pid" in err for _, err in outs), outs
    assert len(_orders(fx, v)) == 1
    _invariants(fx, home, book, v)


@pytest.mark.parametrize("v", [USDM, COINM], ids=["binance_usdm", "binance_coinm"])
def test_position_changed_by_hand_and_liquidated_between_and_during_cycles(
    tmp_path: Path, fx: FakeExchange, v: Venue
) -> None:
    """A short cut by hand, then liquidated (the venue closes it) between watch cycles: each is a `manual_change`
    (never a fill of ours), the target is recomputed from the venue's numbers, nothing is doubled."""
    fx.now_ms = T0
    home = tmp_path / "home"
    book = _book(tmp_path, v, extra={"policy_origin": "2024-02-01"})
    w = ["book", "watch", str(book), "--clock", "sim", "--every", "1d", "--auto-rebalance"]
    assert _cli(fx, home, *w, "--ticks", "1", "--start", "2024-03-01T01:00").returncode == 0
    assert _short(fx, v) == pytest.approx(v.target)
    led = fx.ledgers[v.name]
    led.set_position(v.symbol, -round(v.target / 2, 3), 60_000.0)  # cut by hand on the website
    fx.now_ms += DAY
    r = _cli(fx, home, *w, "--ticks", "1")
    assert r.returncode == 0, r.stderr
    assert "changed at the venue outside the book" in r.stderr
    assert _short(fx, v) == pytest.approx(v.target)  # the next bar brings it back, once
    led.set_position(v.symbol, 0.0)  # liquidated: the venue closed it
    fx.now_ms += DAY
    r = _cli(fx, home, *w, "--ticks", "1")
    assert r.returncode == 0, r.stderr
    rows = _invariants(fx, home, book, v)
    assert len([x for x in rows if x["kind"] == "manual_change"]) == 2
    assert len([o for o in _orders(fx, v) if o.filled > 0]) == 3  # open, top up after the cut, reopen


def test_fake_restarted_with_its_state_lost_between_runs(tmp_path: Path, fx: FakeExchange) -> None:
    """The venue forgets everything between two runs (a fresh fake on another port): the book reports the vanished
    position as changed outside the book, never resends an old id, and the next bar rebuilds the target once."""
    v = USDM
    fx.now_ms = T0
    home = tmp_path / "home"
    book = _book(tmp_path, v, extra={"policy_origin": "2024-02-01"})
    w = ["book", "watch", str(book), "--clock", "sim", "--every", "1d", "--auto-rebalance", "--ticks", "1"]
    assert _cli(fx, home, *w, "--start", "2024-03-01T01:00").returncode == 0
    old_ids = {o.client_id for o in _orders(fx, v)}
    with FakeExchange(sample_dir(), api_key=KEY, api_secret=SECRET, balances={"USDT": 100_000.0}) as fresh:
        fresh.marks["BTC"] = 60_000.0
        fresh.now_ms = T0 + DAY
        r = _cli(fresh, home, *w)
        assert r.returncode == 0, r.stderr
        assert "changed at the venue outside the book" in r.stderr
        assert not old_ids & {o.client_id for o in _orders(fresh, v)}  # no id sent twice
        rows = _invariants(fresh, home, book, v)  # the next bar rebuilt the target at the fresh venue, once
        assert any(x["kind"] == "manual_change" for x in rows)
        assert len([o for o in _orders(fresh, v) if o.filled > 0]) == 1


@pytest.mark.parametrize("v", [COINM, BYBIT], ids=["binance_coinm", "bybit"])
def test_partial_fill_of_a_market_order_is_final_and_not_topped_up_blindly(
    tmp_path: Path, fx: FakeExchange, v: Venue
) -> None:
    home = tmp_path / "home"
    book = _book(tmp_path, v)
    _cli(fx, home, "book", "status", str(book))
    fx.ledgers[v.name].partial_next = 0.5
    r = _exec(fx, home, book)
    assert r.returncode == 1, r.stderr  # not wholly filled: the decision stops there
    (o,) = _orders(fx, v)
    assert not o.is_open and 0 < o.filled < o.qty
    rows = _invariants(fx, home, book, v, at_target=False)
    assert [x["data"]["status"] for x in rows if x["kind"] == "order_final"] in (["expired"], ["cancelled"])
    assert _short(fx, v) == pytest.approx(o.filled)
    assert _exec(fx, home, book).returncode == 0  # the same bar: nothing more is sent
    assert len(_orders(fx, v)) == 1
