"""A paper book on the `live` feed: public tickers and funding from the fake exchange on 127.0.0.1 (no keys), the same
tick as every other feed: the hedge opens at the mark, and each real settlement is paid once (issue 10, item 4)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from perphedge.exchange.fake import FakeExchange
from tests.conftest import sample_dir

H = 3_600_000
T0 = 1_640_995_200_000 + H  # 2022-01-01 01:00 UTC


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir()) as fx:
        yield fx


def _book(tmp: Path) -> Path:
    doc = {
        "book": 1,
        "id": "11fe0001",
        "portfolio": {
            "name": "sol",
            "prices": {"SOL": 170.0, "BTC": 46000.0},  # sizes the holdings at the origin; live prices after
            "holdings": [{"asset": "SOL", "quantity": 60}],
            "hedge": {"instrument": "binance:BTCUSDT", "leverage": 2, "ratio": 1.0},
        },
        "policy": {"kind": "static", "ratio": 0.5},
        "policy_origin": "2021-12-31",
        "feed": {"kind": "live", "source": "binance"},
        "store": "live.sqlite",
        "accounts": [{"name": "paper", "kind": "paper", "exchange": "binance", "balances": {"USDT": 10000}}],
    }
    p = tmp / "live.book.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return p


def test_live_feed_opens_at_the_mark_and_pays_each_settlement_once(
    fake: FakeExchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from perphedge.usecases import book as B

    monkeypatch.setenv("PERPHEDGE_EXCHANGE_URL", fake.url)
    monkeypatch.setenv("PERPHEDGE_RATE_LIMIT_MS", "1")
    fake.now_ms = T0
    lb = B.load_book(_book(tmp_path))
    s = B.open_session(lb, writer=True, now_ms=T0)
    try:
        r = B.tick(s, T0, decide=True, execute=True)
        assert r.status["feed"]["stale"] is False
        btc = r.snap.prices["BTC"]
        sol = r.snap.prices["SOL"]
        (order,) = [i for i in r.plan.items if i.kind == "order"] if r.plan else []
        # static 50 % of 60 SOL at the live SOL price, in BTC at the live mark, on the 0.001 lot grid
        want = round(0.5 * 60 * sol / btc / 0.001) * 0.001
        assert order.contracts == pytest.approx(want, abs=1e-12)
        assert [x["status"] for x in r.results if "client_id" in x] == ["filled"]

        fake.now_ms = T0 + 8 * H  # 2022-01-01 09:00: the 08:00 settlement has happened
        r2 = B.tick(s, T0 + 8 * H, decide=True, execute=True)
        fake.now_ms = T0 + 9 * H
        r3 = B.tick(s, T0 + 9 * H, decide=True, execute=True)  # no new settlement in (09:00, 10:00]
        rows = s.store.journal(kinds=["funding"]) if s.store else []
    finally:
        B.close_session(s)
    assert r2.events and not r3.events
    (pay,) = rows
    settle = 1_640_995_200_000 + 8 * H
    assert pay.data["settlement_ms"] == settle
    rate = dict(fake.data.funding[("binance", "BTCUSDT")])[settle]
    # positive rate: the short receives rate × position value (contracts × mark at the settlement tick)
    mark = r2.snap.prices["BTC"]
    assert pay.data["rate"] == pytest.approx(float(rate))
    assert pay.data["amount"] == pytest.approx(float(rate) * want * mark, rel=1e-12)
    assert (pay.data["amount"] > 0) == (float(rate) > 0)
