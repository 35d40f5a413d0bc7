"""Bybit v5 live accounts (unified and classic; linear and inverse) through ccxt against the local fake exchange."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from perphedge.core.book import FeedSnapshot, FundingPayment, OrderRequest
from perphedge.errors import ConfigError, ExchangeError
from perphedge.exchange import fake_bybit
from perphedge.exchange.fake import FakeExchange, Fault
from perphedge.exchange.live import CcxtAccount, open_live_account
from perphedge.specs import bundled_instruments
from tests.conftest import sample_dir

KEY = "PHSENTINELKEYbybit0001"
SECRET = "PHSENTINELSECRETbybit0002"
INSTS = {i.id: i for i in bundled_instruments()}
LIN = "bybit:BTCUSDT"
INV = "bybit:BTCUSD"
SOL = "bybit:SOLUSDT"
SNAP = FeedSnapshot(now_ms=0, source="test", prices={"BTC": 60_000.0, "SOL": 150.0}, highs={})


@pytest.fixture
def fx() -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir(), api_key=KEY, api_secret=SECRET, balances={"USDT": 100_000.0, "BTC": 2.0}) as f:
        f.marks.update({"BTC": 60_000.0, "SOL": 150.0})
        yield f


def _open(
    fx: FakeExchange, account: str = "unified", *, secret: str = SECRET, read_only: bool = False, **opts: Any
) -> CcxtAccount:
    fake_bybit.venue(fx).account = account  # type: ignore[assignment]
    sleeps: list[float] = opts.pop("sleeps", [])

    def sleep(s: float) -> None:
        sleeps.append(s)
        time.sleep(s)

    return open_live_account(
        name="by",
        venue="bybit",
        credentials={"key": KEY, "secret": secret},
        instruments=[INSTS[LIN], INSTS[INV], INSTS[SOL]],
        read_only=read_only,
        base_url=fx.url,
        options={"bybit_account": account, "sleep": sleep, **opts},
    )


def _req(cid: str, inst: str, side: str, n: float, **kw: Any) -> OrderRequest:
    return OrderRequest(
        client_id=cid,
        account="by",
        instrument=inst,
        side=side,  # type: ignore[arg-type]
        contracts=n,
        reduce_only=kw.pop("reduce_only", False),
        ref_price=60_000.0,
        decision=1,
        leg=0,
        **kw,
    )


def _led(fx: FakeExchange) -> Any:
    return fake_bybit.venue(fx).ledger


ACCOUNTS = ["unified", "classic"]


@pytest.mark.parametrize("account", ACCOUNTS)
def test_read_path_balances_positions_linear_and_inverse(fx: FakeExchange, account: str) -> None:
    acct = _open(fx, account)
    led = _led(fx)
    led.set_position("BTCUSDT", -0.5, 58_000.0)
    led.set_position("BTCUSD", -30_000.0, 62_000.0)
    led.positions["BTCUSD"].margin_mode = "isolated"
    led.positions["BTCUSD"].isolated_margin = 0.05
    led.positions["BTCUSD"].leverage = 10.0
    led.positions["BTCUSDT"].liq_override = 61_234.5
    bal = {b.asset: b for b in acct.balances()}
    assert bal["USDT"].wallet == pytest.approx(100_000.0)
    assert bal["USDT"].used == pytest.approx(0.5 * 60_000 / 20)  # cross IM at the mark, leverage 20
    assert bal["USDT"].free == pytest.approx(100_000.0 - 1_500.0)
    assert bal["BTC"].wallet == pytest.approx(2.0) and bal["BTC"].used == pytest.approx(0.05)
    pos = {p.instrument: p for p in acct.positions()}
    lin, inv, sol = pos[LIN], pos[INV], pos[SOL]
    assert lin.contracts == pytest.approx(0.5)  # short positive, in our contracts (1 BTC each)
    assert lin.entry_price == 58_000.0 and lin.mark_price == 60_000.0 and lin.leverage == 20.0
    assert lin.margin_mode == "cross" and lin.entry_basis == "arithmetic" and lin.settle_asset == "USDT"
    assert lin.liquidation_price == pytest.approx(61_234.5)  # the venue's own number, passed through
    assert lin.unrealized_settle == pytest.approx(-0.5 * (60_000 - 58_000))
    assert inv.contracts == pytest.approx(30_000.0)  # 1 USD contracts
    assert inv.margin_mode == "isolated" and inv.margin_settle == pytest.approx(0.05) and inv.leverage == 10.0
    assert inv.entry_basis == "harmonic" and inv.settle_asset == "BTC"
    assert math.isfinite(inv.liquidation_price) and inv.liquidation_price > 60_000  # short liquidates above
    assert sol.contracts == 0.0
    # the probes ccxt would make to learn the account type are skipped (options set by the dialect)
    paths = {p for _, _, p, _ in fx.requests}
    assert "/v5/user/query-api" not in paths and "/v5/account/info" not in paths
    assert "/v5/account/wallet-balance" in paths


def test_account_type_mismatch_is_one_clear_error(fx: FakeExchange) -> None:
    acct = _open(fx, "classic")
    fake_bybit.venue(fx).account = "unified"
    with pytest.raises(ExchangeError, match="accountType only support UNIFIED"):
        acct.balances()


def test_bybit_account_option_is_checked(fx: FakeExchange) -> None:
    with pytest.raises(ConfigError, match="bybit_account"):
        _open(fx, "portfolio")


@pytest.mark.parametrize("account", ACCOUNTS)
def test_market_orders_round_to_lot_and_carry_our_id(fx: FakeExchange, account: str) -> None:
    acct = _open(fx, account)
    r = acct.place_order(_req("phA1", LIN, "sell", 0.0517), SNAP)
    assert r.status == "filled" and r.filled_contracts == pytest.approx(0.052) and r.avg_price == 60_000.0
    assert len(r.fills) == 1 and r.fills[0].fee_settle == pytest.approx(0.052 * 60_000 * 0.00055)
    led = _led(fx)
    assert led.orders[-1].client_id == "phA1" and not led.orders[-1].reduce_only
    # reduce-only rounds down (never past the request)
    r2 = acct.place_order(_req("phA2", LIN, "buy", 0.0219, reduce_only=True), SNAP)
    assert r2.status == "filled" and r2.filled_contracts == pytest.approx(0.021)
    assert led.orders[-1].reduce_only
    assert led.positions["BTCUSDT"].qty == pytest.approx(-0.031)
    # inverse: whole 1 USD contracts, fee in BTC
    r3 = acct.place_order(_req("phA3", INV, "sell", 1234.4), SNAP)
    assert r3.status == "filled" and r3.filled_contracts == 1234.0
    assert r3.fills[0].settle_asset == "BTC" and r3.fills[0].fee_settle == pytest.approx(1234 / 60_000 * 0.00055)
    # the same client id again: the existing order is returned, nothing new is sent
    again = acct.place_order(_req("phA3", INV, "sell", 1234.4), SNAP)
    assert again.venue_id == r3.venue_id and len(led.orders) == 3
    found = acct.fetch_order(INV, "phA3")
    assert found is not None and found.status == "filled" and found.venue_id == r3.venue_id
    assert acct.fetch_order(INV, "phNEVER") is None


@pytest.mark.parametrize("account", ACCOUNTS)
def test_limit_order_rests_lists_and_cancels(fx: FakeExchange, account: str) -> None:
    acct = _open(fx, account)
    r = acct.place_order(_req("phL1", SOL, "sell", 2.04, order_type="limit", limit_price=163.456), SNAP)
    assert r.status == "open" and r.filled_contracts == 0.0
    o = _led(fx).orders[-1]
    assert o.price == pytest.approx(163.46) and o.qty == pytest.approx(2.0)  # tick 0.01, lot 0.1
    opened = acct.open_orders()
    assert [x.client_id for x in opened] == ["phL1"] and opened[0].status == "open"
    c = acct.cancel_order(SOL, "phL1")
    assert c is not None and c.status == "cancelled"
    assert acct.open_orders() == []
    # cancelling again: the venue holds no open order; its final state is returned
    again = acct.cancel_order(SOL, "phL1")
    assert again is not None and again.status == "cancelled"
    assert acct.cancel_order(SOL, "phNOPE") is None


def test_partial_fill_of_a_limit_order(fx: FakeExchange) -> None:
    acct = _open(fx)
    _led(fx).partial_next = 0.4
    r = acct.place_order(_req("phP1", LIN, "sell", 0.1, order_type="limit", limit_price=59_000.0), SNAP)
    assert r.status == "partially_filled" and r.filled_contracts == pytest.approx(0.04)
    assert len(r.fills) == 1 and r.fills[0].contracts == pytest.approx(0.04)
    assert [x.client_id for x in acct.open_orders()] == ["phP1"]


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("min_notional", "110094"),
        ("insufficient_margin", "110007"),
        ("reduce_only", "110017"),
        ("rate_limited", "10006"),
        ("invalid", "10001"),
    ],
)
def test_each_rejection_is_definitive_with_the_neutral_kind(fx: FakeExchange, kind: str, code: str) -> None:
    acct = _open(fx)
    _led(fx).reject_next = kind
    r = acct.place_order(_req("phR1", LIN, "sell", 0.01), SNAP)
    assert r.status == "rejected" and r.reason.startswith(f"{kind}: {code}")
    assert _led(fx).orders == [] and acct.fetch_order(LIN, "phR1") is None


def test_natural_rejections_reduce_only_and_margin(fx: FakeExchange) -> None:
    acct = _open(fx)
    r = acct.place_order(_req("phN1", LIN, "buy", 0.01, reduce_only=True), SNAP)
    assert r.status == "rejected" and r.reason.startswith("reduce_only: 110017")
    r = acct.place_order(_req("phN2", LIN, "sell", 500.0), SNAP)  # 30 M USDT at 20x > 100 k
    assert r.status == "rejected" and r.reason.startswith("insufficient_margin: 110007")
    assert _led(fx).orders == []


def test_duplicate_link_id_is_rejected_as_duplicate(fx: FakeExchange) -> None:
    """Bybit refuses an orderLinkId it saw before (even on a finished order): a definitive ``duplicate``."""
    import ccxt

    acct = _open(fx)
    _led(fx).place("BTCUSDT", "sell", "market", 0.01, client_id="phD1")
    with pytest.raises(ccxt.InvalidOrder) as info:
        acct._client.create_order("BTC/USDT:USDT", "market", "sell", 0.01, None, {"clientOrderId": "phD1"})
    c = acct.dialect.classify(info.value)
    assert c.outcome == "reject" and c.kind == "duplicate"


@pytest.mark.parametrize("inst", [LIN, INV])
def test_drop_after_accept_then_lookup_finds_exactly_one(fx: FakeExchange, inst: str) -> None:
    acct = _open(fx)
    n = 0.02 if inst == LIN else 500.0
    fx.inject(Fault("drop_after_accept", path="/v5/order/create", method="POST"))
    with pytest.raises(ExchangeError, match="unknown") as info:
        acct.place_order(_req("phX1", inst, "sell", n), SNAP)
    assert KEY not in str(info.value) and SECRET not in str(info.value)
    found = acct.fetch_order(inst, "phX1")
    assert found is not None and found.status == "filled" and found.filled_contracts == pytest.approx(n)
    # the resend after recovery returns the same order: still exactly one order and one position
    again = acct.place_order(_req("phX1", inst, "sell", n), SNAP)
    assert again.venue_id == found.venue_id
    led = _led(fx)
    assert len(led.orders) == 1
    sym = INSTS[inst].symbol
    assert led.positions[sym].qty == pytest.approx(-n)


def test_maintenance_and_500_on_create_are_unknown(fx: FakeExchange) -> None:
    acct = _open(fx)
    for kind in ("maintenance", "500"):
        fx.inject(Fault(kind, path="/v5/order/create", method="POST"))
        with pytest.raises(ExchangeError, match="outcome unknown"):
            acct.place_order(_req(f"phM{kind}", LIN, "sell", 0.01), SNAP)
    assert _led(fx).orders == []


def test_bad_secret_is_a_clear_error_without_secrets(fx: FakeExchange) -> None:
    with pytest.raises(ExchangeError) as info:
        acct = _open(fx, secret="PHSENTINELSECRETwrong99")
        acct.balances()
    text = str(info.value)
    assert "refused the credentials" in text and "10004" in text
    for s in (KEY, SECRET, "PHSENTINELSECRETwrong99"):
        assert s not in text and s not in repr(info.value)


def test_bad_key_is_refused_with_10003(fx: FakeExchange) -> None:
    fake_bybit.venue(fx)
    acct = open_live_account(
        name="by",
        venue="bybit",
        credentials={"key": "PHSENTINELKEYother", "secret": SECRET},
        instruments=[INSTS[LIN]],
        base_url=fx.url,
    )
    with pytest.raises(ExchangeError, match="10003") as info:
        acct.positions()
    assert "PHSENTINELKEYother" not in str(info.value) and SECRET not in str(info.value)


def test_429_on_a_read_is_retried_after_retry_after(fx: FakeExchange) -> None:
    sleeps: list[float] = []
    acct = _open(fx, sleeps=sleeps)
    fx.inject(Fault("429", path="/v5/position/list", retry_after=0.7))
    assert len(acct.positions()) == 3
    assert sleeps and max(sleeps) >= 0.7
    statuses = [s for _, _, p, s in fx.requests if p == "/v5/position/list"]
    assert statuses[0] == 429 and statuses[-1] == 200


def test_venue_rate_limit_10006_on_a_read_is_retried(fx: FakeExchange) -> None:
    sleeps: list[float] = []
    acct = _open(fx, sleeps=sleeps)
    fake_bybit.venue(fx).throttle_next("/v5/account/wallet-balance", 2)
    bal = acct.balances()  # the fake answers 10006 twice; the account waits and retries
    assert {b.asset for b in bal} >= {"USDT", "BTC"}
    assert len(sleeps) == 2
    codes = [s for _, _, p, s in fx.requests if p == "/v5/account/wallet-balance"]
    assert len(codes) == 3  # Bybit answers 200 with retCode 10006; both refusals were sent again


def test_the_fake_enforces_its_per_second_limit(fx: FakeExchange) -> None:
    import ccxt

    acct = _open(fx)
    fake_bybit.venue(fx).limits["/v5/position/list"] = 2
    with pytest.raises(ccxt.RateLimitExceeded, match="10006"):
        for _ in range(10):  # far more than 2 in a second
            acct._client.fetch_positions(["BTC/USDT:USDT"])
    headers = {k.lower(): v for k, v in acct._client.last_response_headers.items()}
    assert headers["x-bapi-limit"] == "2" and headers["x-bapi-limit-status"] == "0"


def test_rate_limit_on_create_is_a_definitive_rejection(fx: FakeExchange) -> None:
    acct = _open(fx)
    fake_bybit.venue(fx).limits["/v5/order/create"] = 0
    r = acct.place_order(_req("phRL", LIN, "sell", 0.01), SNAP)
    assert r.status == "rejected" and r.reason.startswith("rate_limited: 10006")
    assert _led(fx).orders == []


def test_funding_payments_from_the_execution_ledger(fx: FakeExchange) -> None:
    now = int(time.time() * 1000)
    acct = _open(fx)
    acct.funding_since_ms = now - 3 * 86_400_000
    led = _led(fx)
    led.set_position("BTCUSDT", -1.0, 60_000.0)
    led.set_position("BTCUSD", -6_000.0, 60_000.0)
    t1 = (now // 28_800_000) * 28_800_000 - 28_800_000
    led.settle_funding("BTCUSDT", 0.0001, t1)
    led.settle_funding("BTCUSD", -0.0002, t1)
    led.settle_funding("BTCUSDT", 0.0003, t1 + 28_800_000)
    raw = acct.sync(SNAP)
    events = [e for e in raw if isinstance(e, FundingPayment)]
    assert len(events) == len(raw)  # funding only: the venue reports no liquidation
    got = sorted((e.instrument, e.settlement_ms, round(e.amount_settle, 10), e.asset, e.rate) for e in events)
    assert got == [
        (INV, t1, round(-0.0002 * 6_000 / 60_000, 10), "BTC", -0.0002),  # short pays a negative rate
        (LIN, t1, 6.0, "USDT", 0.0001),  # positive rate pays the short
        (LIN, t1 + 28_800_000, 18.0, "USDT", 0.0003),
    ]
    inv = next(e for e in events if e.instrument == INV)
    assert inv.amount_usd == pytest.approx(inv.amount_settle * 60_000)
    assert acct.sync(SNAP) == []  # each once


def test_funding_older_than_a_week_is_paged_in_7_day_windows(fx: FakeExchange) -> None:
    now = int(time.time() * 1000)
    acct = _open(fx)
    acct.funding_since_ms = now - 20 * 86_400_000
    led = _led(fx)
    led.set_position("BTCUSDT", -1.0, 60_000.0)
    stamps = [now - d * 86_400_000 for d in (19, 12, 5, 1)]
    for ms in stamps:
        led.settle_funding("BTCUSDT", 0.0001, ms)
    raw = acct.sync(SNAP)
    events = [e for e in raw if isinstance(e, FundingPayment)]
    assert len(events) == len(raw)  # funding only: the venue reports no liquidation
    assert sorted(e.settlement_ms for e in events) == stamps
    windows = [p for _, _, p, _ in fx.requests if p == "/v5/execution/list"]
    assert len(windows) >= 3 * 3  # three instruments, at least three 7-day windows each


def test_sandbox_uses_the_testnet_urls_then_the_mirror(fx: FakeExchange) -> None:
    fake_bybit.venue(fx)
    acct = open_live_account(
        name="by",
        venue="bybit",
        credentials={"key": KEY, "secret": SECRET},
        instruments=[INSTS[LIN]],
        sandbox=True,
        base_url=fx.url,
    )
    assert acct._client.isSandboxModeEnabled and acct.balances()


def test_read_only_never_sends(fx: FakeExchange) -> None:
    acct = _open(fx, read_only=True)
    with pytest.raises(ConfigError, match="read-only"):
        acct.place_order(_req("phRO", LIN, "sell", 0.01), SNAP)
    assert not any(p == "/v5/order/create" for _, _, p, _ in fx.requests)


def test_signature_checks_on_the_raw_fake() -> None:
    """The fake verifies X-BAPI-SIGN over ts+key+recvWindow+query (GET) or body (POST)."""
    import hashlib
    import hmac
    import json
    import urllib.request

    with FakeExchange(sample_dir(), api_key=KEY, api_secret=SECRET, balances={"USDT": 1000.0}) as f:
        ts, recv = str(int(time.time() * 1000)), "5000"

        def call(method: str, path: str, payload: str, secret: str = SECRET) -> dict[str, Any]:
            sign = hmac.new(secret.encode(), (ts + KEY + recv + payload).encode(), hashlib.sha256).hexdigest()
            url = f.url + path + ("?" + payload if method == "GET" else "")
            headers = {"X-BAPI-API-KEY": KEY, "X-BAPI-TIMESTAMP": ts, "X-BAPI-RECV-WINDOW": recv, "X-BAPI-SIGN": sign}
            data = payload.encode() if method == "POST" else None
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            with urllib.request.urlopen(req, timeout=5) as resp:
                assert "X-Bapi-Limit-Status" in resp.headers
                return dict(json.loads(resp.read()))

        ok = call("GET", "/v5/account/wallet-balance", "accountType=UNIFIED")
        assert ok["retCode"] == 0 and ok["result"]["list"][0]["coin"][0]["coin"] == "USDT"
        assert call("GET", "/v5/account/wallet-balance", "accountType=UNIFIED", "bad")["retCode"] == 10004
        body = json.dumps({"category": "linear", "symbol": "BTCUSDT", "side": "Sell", "orderType": "Market"})
        assert call("POST", "/v5/order/create", body, "bad")["retCode"] == 10004
        bad_qty = call("POST", "/v5/order/create", body)
        assert bad_qty["retCode"] == 10001
        wrong = call("GET", "/v5/position/list", "category=linear&symbol=BTCUSD")
        assert wrong["retCode"] == 10001  # an inverse symbol under the linear category
        probe = call("GET", "/v5/user/query-api", "")
        assert probe["result"]["uta"] == 1 and probe["result"]["apiKey"] == ""
        fake_bybit.venue(f).account = "classic"
        assert call("GET", "/v5/account/info", "")["result"]["unifiedMarginStatus"] == 1
        assert call("GET", "/v5/user/query-api", "")["result"]["unified"] == 0


def test_sentinels_never_in_repr_or_errors(fx: FakeExchange) -> None:
    acct = _open(fx)
    texts = [repr(acct), str(acct)]
    for fault in ("500", "drop", "maintenance"):
        fx.inject(Fault(fault, path="/v5/order/create"))
        try:
            acct.place_order(_req(f"phS{fault}", LIN, "sell", 0.01), SNAP)
        except ExchangeError as exc:
            texts += [str(exc), repr(exc)]
    assert len(texts) >= 5
    for t in texts:
        assert KEY not in t and SECRET not in t and "PHSENTINEL" not in t
