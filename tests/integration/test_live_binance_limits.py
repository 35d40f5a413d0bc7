"""Rate limits on Binance (design §5c): the account never spends more request weight per window than the venue
publishes, and when the venue says 429 (-1003) a read waits ``Retry-After`` and goes again."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from perphedge.exchange.fake import FakeExchange
from perphedge.exchange.fake_binance import state
from perphedge.exchange.live import CcxtAccount, open_live_account
from perphedge.specs import default_registry
from tests.conftest import sample_dir

KEY = "k" * 64
SECRET = "s" * 64
REG = default_registry()


@pytest.fixture
def fx() -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir(), api_key=KEY, api_secret=SECRET, balances={"USDT": 1e5, "BTC": 2.0}) as fake:
        fake.marks.update({"BTC": 60_000.0})
        yield fake


def account(fx: FakeExchange, venue: str, inst: str, **options: object) -> CcxtAccount:
    return open_live_account(
        name="a",
        venue=venue,
        credentials={"key": KEY, "secret": SECRET},
        instruments=[REG.get(inst)],
        base_url=fx.url,
        options={"rate_limit_ms": 1, **options},
    )


@pytest.mark.parametrize(
    ("venue", "inst", "api"),
    [("binance_usdm", "binance:BTCUSDT", "fapi"), ("binance_coinm", "binance:BTCUSD_PERP", "dapi")],
)
def test_many_reads_never_exceed_the_weight_budget(fx: FakeExchange, venue: str, inst: str, api: str) -> None:
    st = state(fx)
    st.limit, st.window_ms = 60, 2000  # the venue's published budget, scaled down to keep the test short
    acc = account(fx, venue, inst, weight_limit=60, weight_window_ms=2000)
    start = time.monotonic()
    while sum(w for _, w, a in st.log if a == api) <= 150:
        acc.balances()  # weight 5 each
        acc.positions()  # 5 (+5 symbolConfig on USD-M when a position is open) / 1
        acc.open_orders()  # 1
    elapsed = time.monotonic() - start
    spent = sum(w for _, w, a in st.log if a == api)
    assert spent > 2 * st.limit  # enough reads to need the budget
    assert st.max_in_window(api, 2000) <= 60  # never more than the budget in any 2 s window
    assert [r for r in fx.requests if r[3] == 429] == []  # so the venue never had to refuse
    assert elapsed >= (spent - 60) / 60 * 2.0 * 0.9  # the account waited instead
    assert acc.weight_used_last_minute() <= 60


def test_default_budget_is_binances_published_limit(fx: FakeExchange) -> None:
    acc = account(fx, "binance_usdm", "binance:BTCUSDT")
    assert acc._budget is not None and acc._budget.limit == 2400 and acc._budget.window_ms == 60_000
    acc.balances()
    assert acc.weight_used_last_minute() == pytest.approx(1 + 1 + 5)  # time + exchangeInfo + account


def test_venue_429_is_waited_out_and_reads_succeed(fx: FakeExchange) -> None:
    st = state(fx)
    st.limit, st.window_ms = 20, 1500
    acc = account(fx, "binance_usdm", "binance:BTCUSDT", weight_limit=10_000, retries=6)  # our budget too lax
    for _ in range(8):
        assert acc.balances()
    refused = [r for r in fx.requests if r[3] == 429]
    assert refused  # the venue did refuse ...
    # ... and every retry came after the window the venue named in Retry-After
    for ms, _method, path, _status in refused:
        window_end = (ms // 1500 + 1) * 1500
        later = [r for r in fx.requests if r[2] == path and r[0] > ms]
        assert later and later[0][0] >= window_end - 5
    assert st.max_in_window("fapi", 1500) <= 2 * 20  # fixed windows: at most two budgets across a boundary


def test_429_answer_shape(fx: FakeExchange) -> None:
    st = state(fx)
    st.limit = 1
    url = fx.url + "/fapi/v1/exchangeInfo"
    with urllib.request.urlopen(url) as ok:
        assert ok.headers["X-MBX-USED-WEIGHT-1M"] == "1"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url)
    assert err.value.code == 429
    assert float(err.value.headers["Retry-After"]) > 0
    assert err.value.headers["X-MBX-USED-WEIGHT-1M"] == "1"
    assert json.loads(err.value.read())["code"] == -1003


def test_venue_count_is_folded_into_the_budget(fx: FakeExchange) -> None:
    st = state(fx)
    st.window_ms = 3_600_000  # one long window: the test never straddles a boundary
    other = account(fx, "binance_usdm", "binance:BTCUSDT")
    for _ in range(5):
        other.balances()  # another process on the same key spends weight
    acc = account(fx, "binance_usdm", "binance:BTCUSDT")
    before = acc.weight_used_last_minute()
    acc.balances()
    assert acc.weight_used_last_minute() >= sum(w for _, w, _a in st.log) - 1e-9 > before
