"""OKX v5 live accounts (linear BTC-USDT-SWAP, inverse BTC-USD-SWAP) through ccxt against the local fake exchange."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from perphedge.core.book import FeedSnapshot, FundingPayment, FundingSettlement, OrderRequest
from perphedge.errors import ConfigError, ExchangeError
from perphedge.exchange import fake_okx
from perphedge.exchange.fake import FakeExchange, Fault
from perphedge.exchange.live import CcxtAccount, open_live_account
from perphedge.specs import bundled_instruments
from tests.conftest import sample_dir

KEY = "PHSENTINELKEYokx0001"
SECRET = "PHSENTINELSECRETokx0002"
PASS = "PHSENTINELPASSokx0003"
INSTS = {i.id: i for i in bundled_instruments()}
LIN = "okx:BTC-USDT-SWAP"
INV = "okx:BTC-USD-SWAP"
SNAP = FeedSnapshot(now_ms=0, source="test", prices={"BTC": 60_000.0}, highs={})


@pytest.fixture
def fx() -> Iterator[FakeExchange]:
    with FakeExchange(
        sample_dir(), api_key=KEY, api_secret=SECRET, password=PASS, balances={"USDT": 100_000.0, "BTC": 2.0}
    ) as f:
        f.marks["BTC"] = 60_000.0
        yield f


def _open(
    fx: FakeExchange, *, read_only: bool = False, creds: dict[str, str] | None = None, **opts: Any
) -> CcxtAccount:
    sleeps: list[float] = opts.pop("sleeps", [])

    def sleep(s: float) -> None:
        sleeps.append(s)
        time.sleep(s)

    return open_live_account(
        name="ok",
        venue="okx",
        credentials=creds or {"key": KEY, "secret": SECRET, "password": PASS},
        instruments=[INSTS[LIN], INSTS[INV]],
        read_only=read_only,
        base_url=fx.url,
        options={"sleep": sleep, **opts},
    )


def _req(cid: str, inst: str, side: str, n: float, **kw: Any) -> OrderRequest:
    return OrderRequest(
        client_id=cid,
        account="ok",
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
    return fake_okx.venue(fx).ledger


def test_markets_match_our_specs(fx: FakeExchange) -> None:
    acct = _open(fx)
    markets = acct._client.markets
    assert markets["BTC/USDT:USDT"]["contractSize"] == 0.01 and markets["BTC/USDT:USDT"]["linear"]
    assert markets["BTC/USD:BTC"]["contractSize"] == 100 and markets["BTC/USD:BTC"]["inverse"]
    paths = {p for _, _, p, _ in fx.requests}
    assert paths == {"/api/v5/public/instruments"}  # swaps only; no currencies or status probes


def test_password_is_required(fx: FakeExchange) -> None:
    with pytest.raises(ConfigError, match="password"):
        _open(fx, creds={"key": KEY, "secret": SECRET})


def test_read_path_balances_and_positions(fx: FakeExchange) -> None:
    acct = _open(fx)
    led = _led(fx)
    led.set_position("BTC-USDT-SWAP", -50.0, 58_000.0)  # 50 x 0.01 BTC
    led.set_position("BTC-USD-SWAP", -300.0, 62_000.0)  # 300 x 100 USD
    led.positions["BTC-USD-SWAP"].margin_mode = "isolated"
    led.positions["BTC-USD-SWAP"].isolated_margin = 0.05
    led.positions["BTC-USD-SWAP"].leverage = 10.0
    led.positions["BTC-USDT-SWAP"].liq_override = 61_000.1
    bal = {b.asset: b for b in acct.balances()}
    assert bal["USDT"].wallet == pytest.approx(100_000.0)
    assert bal["USDT"].used == pytest.approx(0.5 * 60_000 / 20)
    assert bal["USDT"].free == pytest.approx(100_000.0 - 1_500.0)
    assert bal["BTC"].wallet == pytest.approx(2.0) and bal["BTC"].used == pytest.approx(0.05)
    pos = {p.instrument: p for p in acct.positions()}
    lin, inv = pos[LIN], pos[INV]
    assert lin.contracts == pytest.approx(50.0)  # our contracts = OKX contracts (0.01 BTC each)
    assert lin.entry_price == 58_000.0 and lin.mark_price == 60_000.0 and lin.leverage == 20.0
    assert lin.margin_mode == "cross" and lin.liquidation_price == pytest.approx(61_000.1)
    assert lin.unrealized_settle == pytest.approx(-0.5 * 2_000.0)
    assert inv.contracts == pytest.approx(300.0) and inv.settle_asset == "BTC" and inv.entry_basis == "harmonic"
    assert inv.margin_mode == "isolated" and inv.margin_settle == pytest.approx(0.05) and inv.leverage == 10.0
    assert math.isfinite(inv.liquidation_price) and inv.liquidation_price > 60_000


def test_orders_market_limit_reduce_only_lookup_cancel(fx: FakeExchange) -> None:
    acct = _open(fx)
    led = _led(fx)
    r = acct.place_order(_req("phO1", LIN, "sell", 12.345), SNAP)
    assert r.status == "filled" and r.filled_contracts == pytest.approx(12.35)  # lot 0.01 contracts
    assert r.fills and r.fills[0].fee_settle == pytest.approx(12.35 * 0.01 * 60_000 * 0.0005)
    assert led.orders[-1].client_id == "phO1" and led.positions["BTC-USDT-SWAP"].margin_mode == "cross"
    r2 = acct.place_order(_req("phO2", LIN, "buy", 2.349, reduce_only=True), SNAP)
    assert r2.status == "filled" and r2.filled_contracts == pytest.approx(2.34) and led.orders[-1].reduce_only
    r3 = acct.place_order(_req("phO3", INV, "sell", 7.6), SNAP)
    assert r3.status == "filled" and r3.filled_contracts == 8.0 and r3.fills[0].settle_asset == "BTC"
    lim = acct.place_order(_req("phO4", INV, "sell", 3, order_type="limit", limit_price=65_432.16), SNAP)
    assert lim.status == "open" and led.orders[-1].price == pytest.approx(65_432.2)  # tick 0.1
    assert [o.client_id for o in acct.open_orders()] == ["phO4"]
    c = acct.cancel_order(INV, "phO4")
    assert c is not None and c.status == "cancelled" and acct.open_orders() == []
    assert acct.cancel_order(INV, "phNOPE") is None
    found = acct.fetch_order(LIN, "phO1")
    assert found is not None and found.venue_id == r.venue_id and found.status == "filled"
    assert acct.fetch_order(LIN, "phNEVER") is None
    assert led.positions["BTC-USDT-SWAP"].qty == pytest.approx(-10.01)


def test_isolated_margin_mode_goes_in_td_mode(fx: FakeExchange) -> None:
    acct = _open(fx, okx_margin_mode="isolated")
    acct.place_order(_req("phI1", LIN, "sell", 10), SNAP)
    pos = _led(fx).positions["BTC-USDT-SWAP"]
    assert pos.margin_mode == "isolated" and pos.isolated_margin == pytest.approx(0.1 * 60_000 / 20)
    p = next(x for x in acct.positions() if x.instrument == LIN)
    assert p.margin_mode == "isolated" and p.margin_settle == pytest.approx(300.0)
    with pytest.raises(ConfigError, match="okx_margin_mode"):
        _open(fx, okx_margin_mode="portfolio")


def test_partial_fill(fx: FakeExchange) -> None:
    acct = _open(fx)
    _led(fx).partial_next = 0.5
    r = acct.place_order(_req("phP1", LIN, "sell", 10, order_type="limit", limit_price=59_000.0), SNAP)
    assert r.status == "partially_filled" and r.filled_contracts == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("min_notional", "51020"),
        ("insufficient_margin", "51008"),
        ("reduce_only", "51205"),
        ("rate_limited", "50011"),
        ("invalid", "51000"),
    ],
)
def test_each_rejection_is_definitive(fx: FakeExchange, kind: str, code: str) -> None:
    acct = _open(fx)
    _led(fx).reject_next = kind
    r = acct.place_order(_req("phR1", LIN, "sell", 1), SNAP)
    assert r.status == "rejected" and r.reason.startswith(f"{kind}: {code}")
    assert _led(fx).orders == [] and acct.fetch_order(LIN, "phR1") is None


def test_natural_rejections(fx: FakeExchange) -> None:
    acct = _open(fx)
    r = acct.place_order(_req("phN1", LIN, "buy", 1, reduce_only=True), SNAP)
    assert r.status == "rejected" and r.reason.startswith("reduce_only: 51205")
    r = acct.place_order(_req("phN2", LIN, "sell", 100_000), SNAP)  # 1000 BTC at 20x > 100 k USDT
    assert r.status == "rejected" and r.reason.startswith("insufficient_margin: 51008")


@pytest.mark.parametrize("inst", [LIN, INV])
def test_drop_after_accept_then_exactly_one(fx: FakeExchange, inst: str) -> None:
    acct = _open(fx)
    fx.inject(Fault("drop_after_accept", path="/api/v5/trade/order", method="POST"))
    with pytest.raises(ExchangeError, match="unknown"):
        acct.place_order(_req("phX1", inst, "sell", 5), SNAP)
    found = acct.fetch_order(inst, "phX1")
    assert found is not None and found.status == "filled" and found.filled_contracts == 5.0
    again = acct.place_order(_req("phX1", inst, "sell", 5), SNAP)
    assert again.venue_id == found.venue_id
    led = _led(fx)
    assert len(led.orders) == 1 and led.positions[INSTS[inst].symbol].qty == -5.0


@pytest.mark.parametrize(
    ("creds", "code"),
    [
        ({"key": KEY, "secret": "PHSENTINELSECRETbad", "password": PASS}, "50113"),
        ({"key": KEY, "secret": SECRET, "password": "PHSENTINELPASSbad"}, "50105"),
        ({"key": "PHSENTINELKEYbad", "secret": SECRET, "password": PASS}, "50111"),
    ],
)
def test_bad_credentials_are_a_clear_error_without_secrets(fx: FakeExchange, creds: dict[str, str], code: str) -> None:
    acct = _open(fx, creds=creds)  # markets are public
    with pytest.raises(ExchangeError, match=code) as info:
        acct.balances()
    text = str(info.value) + repr(info.value) + repr(acct)
    assert "refused the credentials" in str(info.value)
    for s in (*creds.values(), KEY, SECRET, PASS):
        assert s not in text


def test_429_on_a_read_is_retried(fx: FakeExchange) -> None:
    sleeps: list[float] = []
    acct = _open(fx, sleeps=sleeps)
    fx.inject(Fault("429", path="/api/v5/account/positions", retry_after=0.6))
    assert len(acct.positions()) == 2
    assert sleeps and max(sleeps) >= 0.6


def test_funding_from_bills(fx: FakeExchange) -> None:
    now = int(time.time() * 1000)
    acct = _open(fx)
    acct.funding_since_ms = now - 3 * 86_400_000
    led = _led(fx)
    led.set_position("BTC-USDT-SWAP", -100.0, 60_000.0)  # 1 BTC
    led.set_position("BTC-USD-SWAP", -60.0, 60_000.0)  # 6000 USD
    t1 = now - 86_400_000
    led.settle_funding("BTC-USDT-SWAP", 0.0001, t1)
    led.settle_funding("BTC-USD-SWAP", 0.0002, t1)
    snap = FeedSnapshot(
        now_ms=now,
        source="test",
        prices={"BTC": 60_000.0},
        highs={},
        funding={
            LIN: (FundingSettlement(instrument=LIN, settlement_ms=t1, rate=0.0001),),
            INV: (FundingSettlement(instrument=INV, settlement_ms=t1, rate=0.0002),),
        },
    )
    raw = acct.sync(snap)
    events = [e for e in raw if isinstance(e, FundingPayment)]
    assert len(events) == len(raw)  # funding only: the venue reports no liquidation
    got = sorted((e.instrument, e.settlement_ms, round(e.amount_settle, 10), e.asset, e.rate) for e in events)
    assert got == [
        (INV, t1, round(0.0002 * 6_000 / 60_000, 10), "BTC", 0.0002),
        (LIN, t1, 6.0, "USDT", 0.0001),
    ]
    assert acct.sync(snap) == []


def test_read_only_never_sends(fx: FakeExchange) -> None:
    acct = _open(fx, read_only=True)
    with pytest.raises(ConfigError, match="read-only"):
        acct.place_order(_req("phRO", LIN, "sell", 1), SNAP)
    assert not any(p.startswith("/api/v5/trade/order") and m == "POST" for _, m, p, _ in fx.requests)


def test_signature_on_the_raw_fake() -> None:
    with FakeExchange(sample_dir(), api_key=KEY, api_secret=SECRET, password=PASS, balances={"USDT": 5.0}) as f:

        def call(method: str, path: str, body: str = "", secret: str = SECRET) -> tuple[int, dict[str, Any]]:
            ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            sign = base64.b64encode(
                hmac.new(secret.encode(), (ts + method + path + body).encode(), hashlib.sha256).digest()
            ).decode()
            headers = {
                "OK-ACCESS-KEY": KEY,
                "OK-ACCESS-SIGN": sign,
                "OK-ACCESS-TIMESTAMP": ts,
                "OK-ACCESS-PASSPHRASE": PASS,
                "Content-Type": "application/json",
            }
            req = urllib.request.Request(
                f.url + path, data=body.encode() if body else None, headers=headers, method=method
            )
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return resp.status, dict(json.loads(resp.read()))
            except urllib.error.HTTPError as exc:
                return exc.code, dict(json.loads(exc.read()))

        status, ok = call("GET", "/api/v5/account/balance?ccy=USDT")
        assert status == 200 and ok["data"][0]["details"][0]["cashBal"] == "5"
        status, bad = call("GET", "/api/v5/account/balance?ccy=USDT", secret="nope")
        assert status == 401 and bad["code"] == "50113"
        body = json.dumps({"instId": "BTC-USDT-SWAP", "side": "sell", "ordType": "market", "sz": "1", "tdMode": "x"})
        status, rej = call("POST", "/api/v5/trade/order", body)
        assert rej["code"] == "1" and rej["data"][0]["sCode"] == "51000"


def test_sandbox_sends_the_demo_trading_header(fx: FakeExchange) -> None:
    acct = _open(fx)
    assert "x-simulated-trading" not in (acct._client.headers or {})
    demo = open_live_account(
        name="ok",
        venue="okx",
        credentials={"key": KEY, "secret": SECRET, "password": PASS},
        instruments=[INSTS[LIN]],
        sandbox=True,
        base_url=fx.url,
    )
    assert demo._client.headers.get("x-simulated-trading") == "1" and demo.balances()


def test_weight_budget_counts_okx_requests(fx: FakeExchange) -> None:
    acct = _open(fx, weight_limit=5, weight_window_ms=1_000)
    t0 = time.monotonic()
    for _ in range(3):
        acct.balances()  # 2 each: the third must wait for the window to roll
    assert time.monotonic() - t0 >= 0.9
    assert 0 < acct.weight_used_last_minute() <= 5
