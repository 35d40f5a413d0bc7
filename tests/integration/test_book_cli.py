"""`perphedge book` through the real CLI: init → status → rebalance (dry run, execute, again) → watch → journal;
limits refuse the whole plan with exit 3 and journal no order; alerts reach a webhook once per episode, across a
restart (issue 10, items 1–6 and 9)."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from tests.conftest import REPO, run_cli

PORTFOLIO = REPO / "examples" / "altcoins.yaml"


def _init(tmp: Path, home: Path, *extra: str) -> Path:
    book = tmp / "my.book.yaml"
    r = run_cli("book", "init", str(book), "--portfolio", str(PORTFOLIO), "--paper", "binance", *extra, home=home)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout and "feed portfolio" in r.stdout
    return book


def _json(*args: str, home: Path) -> Any:
    r = run_cli(*args, "--format", "json", home=home)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_init_status_rebalance_execute_journal(tmp_path: Path) -> None:
    home = tmp_path / "home"
    book = _init(tmp_path, home)
    doc = yaml.safe_load(book.read_text(encoding="utf-8"))
    assert doc["book"] == 1 and len(doc["id"]) == 8
    assert doc["accounts"][0]["balances"]["USDT"] >= 10_014  # the margin of the 2x inverse hedge and its fees

    st = _json("book", "status", str(book), home=home)
    assert st["schema"] == "perphedge.book/1"
    assert st["value"]["total_usd"] == pytest.approx(10_000 + doc["accounts"][0]["balances"]["USDT"])
    assert st["hedge"]["achieved_ratio"] == 0.0 and st["hedge"]["target_ratio"] == 1.0
    assert st["hedge"]["rebalance_due"] is True

    dry = _json("book", "rebalance", str(book), home=home)
    assert dry["dry_run"] is True
    (order,) = dry["orders"]
    # guide example A: 10k of alts, 100 % with BTCUSD_PERP at 2x on bought BTC → 200 contracts (net delta ~0)
    assert (order["side"], order["contracts"], order["reduce_only"]) == ("sell", 200.0, False)
    assert order["fee_usd"] == pytest.approx(20_000 * 0.0005)
    assert run_cli("book", "journal", str(book), "--format", "json", home=home).stdout.strip() == "[]"

    ex = _json("book", "rebalance", str(book), "--execute", "--yes", home=home)
    assert ex["dry_run"] is False
    assert [r["status"] for r in ex["results"] if "client_id" in r] == ["filled"]
    cid = next(r["client_id"] for r in ex["results"] if "client_id" in r)
    assert cid.startswith(f"ph{doc['id']}") and len(cid) == 20

    again = _json("book", "rebalance", str(book), "--execute", "--yes", home=home)
    assert again["orders"] == [] and again["results"] == []  # within band now: nothing new is sent

    st = _json("book", "status", str(book), home=home)
    (pos,) = st["accounts"][0]["positions"]
    assert (pos["side"], pos["contracts"]) == ("short", 200.0)
    assert st["hedge"]["achieved_ratio"] == pytest.approx(1.0, abs=0.02)
    assert st["delta"]["net_delta_usd"] == pytest.approx(0.0, abs=150)  # collateral counted: net ~0
    assert st["fees_usd"] == pytest.approx(10.0)

    w = run_cli("book", "watch", str(book), "--every", "1s", "--ticks", "2", home=home)
    assert w.returncode == 0, w.stderr
    assert len([x for x in w.stdout.splitlines() if "value" in x]) == 2

    rows = _json("book", "journal", str(book), home=home)
    kinds = [r["kind"] for r in rows]
    for k in ("decision", "order_intent", "order_sent", "order_ack", "fill", "order_final", "transfer", "tick"):
        assert k in kinds, k
    assert kinds.count("fill") == 1 and kinds.count("decision") == 1
    assert all(r["book_hash"] == rows[0]["book_hash"] for r in rows)
    fills = _json("book", "journal", str(book), "--kind", "fill", home=home)
    assert [r["client_id"] for r in fills] == [cid]
    c = run_cli("book", "journal", str(book), "--format", "csv", home=home)
    table = list(csv.DictReader(io.StringIO(c.stdout)))
    assert len(table) == len(rows) and table[0]["seq"] == "1"
    t = run_cli("book", "journal", str(book), home=home)
    assert t.returncode == 0 and "fill" in t.stdout


@pytest.mark.parametrize(
    ("limits", "name"),
    [
        ({"max_order_usd": 5000}, "max_order_usd"),
        ({"max_turnover_usd_per_day": 5000}, "max_turnover_usd_per_day"),
        ({"max_leverage": 1.5}, "max_leverage"),
        ({"min_liquidation_distance": 1.5}, "min_liquidation_distance"),
    ],
)
def test_each_limit_refuses_the_whole_plan(tmp_path: Path, limits: dict[str, Any], name: str) -> None:
    home = tmp_path / "home"
    book = _init(tmp_path, home)
    doc = yaml.safe_load(book.read_text(encoding="utf-8"))
    doc["limits"] = limits
    book.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    r = run_cli("book", "rebalance", str(book), "--execute", "--yes", home=home)
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert f"limit `{name}`" in r.stderr, r.stderr
    kinds = [x["kind"] for x in _json("book", "journal", str(book), home=home)]
    assert "limit_refused" in kinds
    assert not {"decision", "order_intent", "order_sent", "fill"} & set(kinds), kinds
    st = _json("book", "status", str(book), home=home)
    assert st["accounts"][0]["positions"][0]["contracts"] == 0.0


class _Receiver(BaseHTTPRequestHandler):
    posts: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).posts.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    _Receiver.posts = []
    srv = HTTPServer(("127.0.0.1", 0), _Receiver)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/hook", _Receiver.posts
    finally:
        srv.shutdown()


def _watch_book(tmp: Path, url: str) -> Path:
    doc = {
        "book": 1,
        "id": "a1e47000",
        "portfolio": {
            "name": "eth sol",
            "holdings": [{"asset": "ETH", "value_usd": 6000}, {"asset": "SOL", "value_usd": 4000}],
            "hedge": {"instrument": "binance:BTCUSDT", "leverage": 2, "ratio": 1.0},
        },
        "policy": {"kind": "drift_band", "ratio": 0.8, "band": 0.04},
        "policy_origin": "2022-01-01",
        "feed": {"kind": "store"},
        "store": "state.sqlite",
        "accounts": [{"name": "paper", "kind": "paper", "exchange": "binance", "balances": {"USDT": 20000}}],
        "alerts": {"feed_stale_after": "2d", "ratio_off_by": 0.03, "rearm": 0.5, "webhook": url},
    }
    p = tmp / "w.book.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return p


def test_alerts_reach_the_webhook_once_per_episode_across_a_restart(
    tmp_path: Path, store_home: Path, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, posts = receiver
    book = _watch_book(tmp_path, url)
    args = ["book", "watch", str(book), "--clock", "sim", "--every", "1d", "--auto-rebalance", "--format", "json"]
    first = run_cli(*args, "--start", "2022-01-02", "--until", "2022-01-20", home=store_home)
    assert first.returncode == 0, first.stderr
    # the same command again: resumes after the last tick, never re-sends an alert already sent
    second = run_cli(*args, "--start", "2022-01-02", "--until", "2022-02-10", home=store_home)
    assert second.returncode == 0, second.stderr
    rows = _json("book", "journal", str(book), home=store_home)
    alert_rows = [r for r in rows if r["kind"] in ("alert_open", "alert_close")]
    opens = [r for r in alert_rows if r["kind"] == "alert_open"]
    assert len(opens) >= 2, "the path must cross the ratio threshold several times"
    assert len(posts) == len(alert_rows)
    assert [p["event"] for p in posts] == ["open" if r["kind"] == "alert_open" else "close" for r in alert_rows]
    assert all(p["schema"] == "perphedge.alert/1" and p["book_id"] == "a1e47000" for p in posts)
    # once per episode: an open is always followed by its close before the next open (per alert and subject)
    state: dict[tuple[str, str], bool] = {}
    for p in posts:
        key = (p["alert"], p["subject"])
        assert state.get(key, False) == (p["event"] == "close"), p
        state[key] = p["event"] == "open"
    ticks = [r for r in rows if r["kind"] == "tick"]
    assert len(ticks) == len({r["ts_ms"] for r in ticks}) == 40  # 2022-01-02 … 2022-02-10, each once


def test_webhook_down_does_not_stop_the_loop(tmp_path: Path, store_home: Path) -> None:
    book = _watch_book(tmp_path, "http://127.0.0.1:9/unreachable")
    r = run_cli(
        "book", "watch", str(book), "--clock", "sim", "--start", "2022-01-02", "--until", "2022-01-12",
        "--every", "1d", "--auto-rebalance", home=store_home,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = _json("book", "journal", str(book), home=store_home)
    assert any(x["kind"] == "error" and "webhook" in x["data"]["message"] for x in rows)
    assert sum(1 for x in rows if x["kind"] == "tick") == 11
