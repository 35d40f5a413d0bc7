"""`perphedge book` on a live exchange account, end to end through the real CLI against the fake exchange's
private Binance USDⓈ-M API (issue 11, items 1–5): read-only by default, orders only with `--execute` and
`read_only: false`, an order whose answer was lost resolved by lookup (never doubled), kill -9 at random moments,
positions changed by hand detected, the venue's liquidation price beside perphedge's, and the kill switch."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from perphedge.exchange.fake import FakeExchange, Fault
from tests.conftest import REPO, run_cli, sample_dir

KEY = "PHTESTKEY0123456789abcdefABCDEF0123456789abcdefABCDEF0123456789ab"
SECRET = "PHTESTSECRET9876543210fedcbaFEDCBA9876543210fedcbaFEDCBA98765432"
PORTFOLIO = REPO / "examples" / "btc-50pct.yaml"  # 100k USD of BTC at 60,000, hedge 50 % on binance:BTCUSDT
TARGET_BTC = 100_000 * 0.5 / 60_000  # the short the policy wants, in BTC (lot 0.001)


@pytest.fixture
def fx() -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir(), api_key=KEY, api_secret=SECRET, balances={"USDT": 100_000.0}) as fake:
        fake.marks["BTC"] = 60_000.0
        yield fake


def _env(fx: FakeExchange) -> dict[str, str]:
    return {
        "PERPHEDGE_EXCHANGE_URL": fx.url,
        "PH_TEST_KEY": KEY,
        "PH_TEST_SECRET": SECRET,
        "PERPHEDGE_LOOKUP_SETTLE_S": "0.2",
        "PERPHEDGE_RATE_LIMIT_MS": "1",
    }


def _book(tmp: Path, *, read_only: bool = False, extra: dict[str, Any] | None = None) -> Path:
    doc: dict[str, Any] = {
        "book": 1,
        "id": "5eed1e55",
        "name": "live test",
        "portfolio": str(PORTFOLIO),
        "step": "1d",
        "policy": {"kind": "drift_band", "ratio": 0.5, "band": 0.1},
        "policy_origin": "2026-11-01",
        "feed": {"kind": "portfolio", "source": "binance"},
        "accounts": [
            {
                "name": "main",
                "kind": "exchange",
                "exchange": "binance_usdm",
                "key_env": "PH_TEST_KEY",
                "secret_env": "PH_TEST_SECRET",
                "read_only": read_only,
            }
        ],
        "limits": {"max_leverage": 3.0, "instruments": ["binance:BTCUSDT"]},
    }
    doc |= extra or {}
    path = tmp / "live.book.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _cli(fx: FakeExchange, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, home=home, env=_env(fx))


def _json(fx: FakeExchange, home: Path, *args: str) -> Any:
    r = _cli(fx, home, *args, "--format", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _ledger(fx: FakeExchange) -> Any:
    return fx.ledgers["binance_usdm"]


def _short_btc(fx: FakeExchange) -> float:
    pos = _ledger(fx).positions.get("BTCUSDT")
    return -pos.qty if pos is not None else 0.0


def test_read_only_by_default_status_shows_the_venue(tmp_path: Path, fx: FakeExchange) -> None:
    home = tmp_path / "home"
    book = _book(tmp_path, read_only=True)
    st = _json(fx, home, "book", "status", str(book))
    (acc,) = st["accounts"]
    assert (acc["kind"], acc["venue"], acc["read_only"]) == ("exchange", "binance_usdm", True)
    assert {b["asset"]: b["wallet"] for b in acc["balances"]}["USDT"] == pytest.approx(100_000.0)
    r = _cli(fx, home, "book", "rebalance", str(book), "--execute", "--yes")
    assert r.returncode == 2 and "read-only" in r.stderr and "read_only: false" in r.stderr
    assert _ledger(fx).orders == []  # nothing was sent
    r = _cli(fx, home, "book", "watch", str(book), "--every", "1s", "--ticks", "1", "--auto-rebalance")
    assert r.returncode == 2 and "read-only" in r.stderr


def test_execute_places_one_order_and_a_second_run_sends_nothing(tmp_path: Path, fx: FakeExchange) -> None:
    home = tmp_path / "home"
    book = _book(tmp_path)
    dry = _json(fx, home, "book", "rebalance", str(book))
    (order,) = dry["orders"]
    assert (order["side"], order["reduce_only"]) == ("sell", False)
    assert order["contracts"] == pytest.approx(round(TARGET_BTC, 3))
    assert dry["transfers"] == []  # a venue sets the margin of its orders itself
    assert _ledger(fx).orders == []
    ex = _json(fx, home, "book", "rebalance", str(book), "--execute", "--yes")
    (res,) = [x for x in ex["results"] if "client_id" in x]
    assert res["status"] == "filled" and res["client_id"].startswith("ph5eed1e55")
    (o,) = _ledger(fx).orders
    assert o.client_id == res["client_id"] and o.status == "filled"
    assert _short_btc(fx) == pytest.approx(round(TARGET_BTC, 3))
    again = _json(fx, home, "book", "rebalance", str(book), "--execute", "--yes")
    assert again["orders"] == [] and again["results"] == []
    assert len(_ledger(fx).orders) == 1
    st = _json(fx, home, "book", "status", str(book))
    (pos,) = st["accounts"][0]["positions"]
    assert pos["side"] == "short" and pos["contracts"] == pytest.approx(round(TARGET_BTC, 3))
    assert pos["venue_liquidation_price"] == pytest.approx(_ledger(fx).liquidation_price("BTCUSDT"))
    assert pos["liquidation_price"] is not None and pos["liquidation_formula_note"]
    rows = _json(fx, home, "book", "journal", str(book))
    kinds = [x["kind"] for x in rows]
    assert kinds.count("fill") == 1 and kinds.count("order_sent") == 1


def test_answer_lost_after_the_venue_accepted_is_resolved_by_lookup(tmp_path: Path, fx: FakeExchange) -> None:
    home = tmp_path / "home"
    book = _book(tmp_path)
    fx.inject(Fault("drop_after_accept", path="/fapi/v1/order", method="POST"))
    r = _cli(fx, home, "book", "rebalance", str(book), "--execute", "--yes", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (res,) = [x for x in doc["results"] if "client_id" in x]
    assert res["status"] == "filled"
    assert len(_ledger(fx).orders) == 1  # exactly one order, found by its client id, never resent
    assert _short_btc(fx) == pytest.approx(round(TARGET_BTC, 3))
    rows = _json(fx, home, "book", "journal", str(book))
    acks = [x for x in rows if x["kind"] == "order_ack"]
    assert len(acks) == 1 and acks[0]["data"]["reconciled"] is True
    assert any(x["kind"] == "error" for x in rows)


def test_venue_unreachable_after_send_leaves_the_order_unknown_then_the_next_run_resolves(
    tmp_path: Path, fx: FakeExchange
) -> None:
    home = tmp_path / "home"
    book = _book(tmp_path)
    # the order is accepted, the answer is lost, and the lookups fail too (5xx): its state is unknown
    fx.inject(Fault("drop_after_accept", path="/fapi/v1/order", method="POST"))
    # (the account looks the id up once before it sends: that lookup passes, every later one fails)
    fx.inject(Fault("500", path="/fapi/v1/order", method="GET", after=1))
    fx.inject(*[Fault("500", path="/fapi/v1/order", method="GET") for _ in range(12)])
    r = _cli(fx, home, "book", "rebalance", str(book), "--execute", "--yes")
    assert r.returncode != 0
    assert "state unknown" in r.stderr and "rerun" in r.stderr and "Traceback" not in r.stderr
    fx.faults.clear()
    assert len(_ledger(fx).orders) == 1, r.stderr
    r = _cli(fx, home, "book", "rebalance", str(book), "--execute", "--yes")
    assert r.returncode == 0, r.stderr
    assert len(_ledger(fx).orders) == 1  # found by lookup, not sent again
    assert _short_btc(fx) == pytest.approx(round(TARGET_BTC, 3))


def test_kill_9_at_random_moments_never_doubles(tmp_path: Path, fx: FakeExchange) -> None:
    """20 trials: `rebalance --execute` killed at a random moment (the fake answers slowly, so kills land before,
    during and after the order); the next run reconciles from the venue and the journal and never doubles."""
    rng = random.Random(11)
    perphedge = str(Path(sys.executable).parent / "perphedge")
    outcomes = {"finished": 0, "killed, order at the venue": 0, "killed, no order": 0}
    for trial in range(20):
        fx.ledgers.clear()
        fx.latency = 0.05
        home = tmp_path / f"home{trial}"
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        book = _book(folder)
        env = dict(os.environ, PERPHEDGE_HOME=str(home), **_env(fx))
        proc = subprocess.Popen(
            [perphedge, "book", "rebalance", str(book), "--execute", "--yes"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # a random moment measured in the venue's requests (a run makes ~14: markets, positions, balances, the
        # lookup before sending, the order, its trades, ...) plus a random delay, so kills land at every stage
        seen = len(fx.requests)
        target = seen + rng.randint(1, 16)
        deadline = time.monotonic() + 120
        while proc.poll() is None and len(fx.requests) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.05))
        if proc.poll() is not None:
            outcomes["finished"] += 1
        else:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            led = fx.ledgers.get("binance_usdm")
            outcomes["killed, order at the venue" if led is not None and led.orders else "killed, no order"] += 1
        fx.latency = 0.0
        r = run_cli("book", "rebalance", str(book), "--execute", "--yes", home=home, env=_env(fx))
        assert r.returncode == 0, f"trial {trial}: {r.stderr}"
        led = fx.ledgers.get("binance_usdm")
        filled = [o for o in (led.orders if led else []) if o.filled > 0]
        assert len(filled) == 1, f"trial {trial}: {len(filled)} filled orders"
        assert _short_btc(fx) == pytest.approx(round(TARGET_BTC, 3)), f"trial {trial}"
        if trial % 5 == 0:  # and once more: within band, nothing is sent
            again = run_cli("book", "rebalance", str(book), "--execute", "--yes", home=home, env=_env(fx))
            assert again.returncode == 0, again.stderr
            assert len([o for o in fx.ledgers["binance_usdm"].orders if o.filled > 0]) == 1
    print(f"kill -9 trials: {outcomes}")
    assert outcomes["killed, order at the venue"] >= 1 and outcomes["killed, no order"] >= 1, outcomes


def test_position_changed_by_hand_at_the_venue_is_detected(tmp_path: Path, fx: FakeExchange) -> None:
    home = tmp_path / "home"
    book = _book(tmp_path)
    _json(fx, home, "book", "rebalance", str(book), "--execute", "--yes")
    _ledger(fx).set_position("BTCUSDT", -0.3, 60_000.0)  # the user cut the short on the website
    r = _cli(fx, home, "book", "watch", str(book), "--every", "1s", "--ticks", "1")
    assert r.returncode == 0, r.stderr
    assert "changed at the venue outside the book" in r.stderr
    rows = _json(fx, home, "book", "journal", str(book))
    (change,) = [x for x in rows if x["kind"] == "manual_change"]
    assert change["data"]["venue"] == pytest.approx(0.3)
    assert change["data"]["expected"] == pytest.approx(round(TARGET_BTC, 3))
    dry = _json(fx, home, "book", "rebalance", str(book))
    (order,) = dry["orders"]  # the target is recomputed from the venue's numbers
    assert order["contracts_before"] == pytest.approx(0.3)
    assert order["contracts"] == pytest.approx(round(TARGET_BTC, 3) - 0.3)


def test_liquidation_price_gap_to_the_venue_is_an_alert(tmp_path: Path, fx: FakeExchange) -> None:
    home = tmp_path / "home"
    book = _book(tmp_path)
    _json(fx, home, "book", "rebalance", str(book), "--execute", "--yes")
    _ledger(fx).positions["BTCUSDT"].liq_override = 80_000.0
    r = _cli(fx, home, "book", "watch", str(book), "--every", "1s", "--ticks", "1")
    assert r.returncode == 0, r.stderr
    assert "liquidation price of main:binance:BTCUSDT differs" in r.stderr
    st = _json(fx, home, "book", "status", str(book))
    (pos,) = st["accounts"][0]["positions"]
    assert pos["venue_liquidation_price"] == 80_000.0
    assert pos["liquidation_gap_ticks"] == pytest.approx(abs(pos["liquidation_price"] - 80_000.0) / 0.1)
    assert "ticks" in pos["liquidation_formula_note"]


def test_halt_cancels_the_books_open_orders_at_the_venue(tmp_path: Path, fx: FakeExchange) -> None:
    home = tmp_path / "home"
    book = _book(tmp_path)
    _json(fx, home, "book", "status", str(book))
    led = fx.ledger("binance_usdm", {})
    mine = led.place("BTCUSDT", "sell", "limit", 0.01, price=90_000.0, client_id="ph5eed1e550000001010")
    other = led.place("BTCUSDT", "sell", "limit", 0.01, price=90_000.0, client_id="someone-elses-order")
    doc = _json(fx, home, "book", "halt", str(book))
    assert [c["client_id"] for c in doc["cancelled"]] == [mine.client_id]
    assert mine.status == "cancelled" and other.status == "open"
    r = _cli(fx, home, "book", "rebalance", str(book), "--execute", "--yes")
    assert r.returncode == 3 and "halted" in r.stderr
    assert all(o.client_id != "" and o.type == "limit" for o in led.orders)


@pytest.mark.parametrize("partial", [None, 0.5])
def test_limit_orders_are_marketable_and_never_left_resting(
    tmp_path: Path, fx: FakeExchange, partial: float | None
) -> None:
    home = tmp_path / "home"
    book = _book(tmp_path, extra={"execution": {"order_type": "limit", "limit_offset_bps": 20}})
    fx.ledgers["binance_usdm"].partial_next = partial
    ex = _json(fx, home, "book", "rebalance", str(book), "--execute", "--yes") if partial is None else None
    if partial is not None:
        r = _cli(fx, home, "book", "rebalance", str(book), "--execute", "--yes", "--format", "json")
        assert r.returncode == 1, r.stderr  # not (wholly) filled: the decision stops there
        ex = json.loads(r.stdout)
    assert ex is not None
    (o,) = fx.ledgers["binance_usdm"].orders
    assert o.type == "limit" and o.price == pytest.approx(60_000 * (1 - 0.002))  # the cap: 20 bps under the price
    assert not o.is_open  # nothing rests at the venue
    (res,) = [x for x in ex["results"] if "client_id" in x]
    if partial is None:
        assert res["status"] == "filled" and o.status == "filled"
    else:
        assert res["status"] == "cancelled" and o.status == "cancelled"
        assert _short_btc(fx) == pytest.approx(round(round(TARGET_BTC, 3) * 0.5, 3), abs=0.0011)
        rows = _json(fx, home, "book", "journal", str(book))
        assert [x["data"]["status"] for x in rows if x["kind"] == "order_final"] == ["cancelled"]
        assert len([x for x in rows if x["kind"] == "fill"]) == 1
        # the next run starts from the partly built position (nothing is resent blindly under the same id)
        dry = _json(fx, home, "book", "rebalance", str(book))
        assert dry["orders"] == [] or dry["orders"][0]["contracts_before"] == pytest.approx(_short_btc(fx))


def test_dry_run_names_the_order_type(tmp_path: Path, fx: FakeExchange) -> None:
    """A live book with `execution.order_type: limit` says so in the plan (JSON and table); the default says market."""
    home = tmp_path / "home"
    book = _book(tmp_path, extra={"execution": {"order_type": "limit", "limit_offset_bps": 20}})
    dry = _json(fx, home, "book", "rebalance", str(book))
    assert [o["order_type"] for o in dry["orders"]] == ["limit"]
    r = _cli(fx, home, "book", "rebalance", str(book))
    assert r.returncode == 0, r.stderr
    assert "Orders (limit)" in r.stdout and "Orders (market)" not in r.stdout
    (tmp_path / "m").mkdir()
    plain = _book(tmp_path / "m")
    assert [o["order_type"] for o in _json(fx, home, "book", "rebalance", str(plain))["orders"]] == ["market"]
    assert fx.ledgers["binance_usdm"].orders == []  # dry runs sent nothing
