"""Live Binance accounts (USDⓈ-M and COIN-M) through ccxt against the fake exchange's private routes.

Every test drives :class:`perphedge.exchange.live.CcxtAccount` (the real ccxt 4.5.90 ``binanceusdm`` /
``binancecoinm`` clients, signed requests) against :mod:`perphedge.exchange.fake_binance` on loopback.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from perphedge.core.book import FeedSnapshot, FundingPayment, Liquidation, OrderRequest, TransferRequest
from perphedge.core.instruments import Instrument
from perphedge.errors import ConfigError, ExchangeError
from perphedge.exchange.fake import FakeExchange, Fault
from perphedge.exchange.fake_binance import liquidate, state
from perphedge.exchange.live import CcxtAccount, open_live_account
from perphedge.specs import default_registry
from tests.conftest import sample_dir

KEY = "PHSENTINELKEY" + "k" * 51
SECRET = "PHSENTINELSECRET" + "s" * 48
T0 = int(datetime(2024, 3, 1, 1, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000

REG = default_registry()
BTCUSDT = REG.get("binance:BTCUSDT")
SOLUSDT = REG.get("binance:SOLUSDT")
BTCUSD = REG.get("binance:BTCUSD_PERP")


@pytest.fixture
def fx() -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir(), api_key=KEY, api_secret=SECRET, balances={"USDT": 100_000.0, "BTC": 2.0}) as fake:
        fake.now_ms = T0
        fake.marks.update({"BTC": 60_000.0, "SOL": 100.0})
        yield fake


def usdm(fx: FakeExchange, *, read_only: bool = False, **options: Any) -> CcxtAccount:
    return open_live_account(
        name="bn",
        venue="binance_usdm",
        credentials={"key": KEY, "secret": SECRET},
        instruments=[BTCUSDT, SOLUSDT],
        base_url=fx.url,
        read_only=read_only,
        options={"rate_limit_ms": 1, **options},
    )


def coinm(fx: FakeExchange, *, read_only: bool = False, **options: Any) -> CcxtAccount:
    return open_live_account(
        name="cm",
        venue="binance_coinm",
        credentials={"key": KEY, "secret": SECRET},
        instruments=[BTCUSD],
        base_url=fx.url,
        read_only=read_only,
        options={"rate_limit_ms": 1, **options},
    )


def snap(now: int = T0, btc: float = 60_000.0) -> FeedSnapshot:
    return FeedSnapshot(now_ms=now, source="test", prices={"BTC": btc, "SOL": 100.0}, highs={})


def order(
    cid: str,
    inst: str,
    side: str,
    contracts: float,
    *,
    account: str = "bn",
    reduce_only: bool = False,
    order_type: str = "market",
    limit_price: float = math.nan,
) -> OrderRequest:
    return OrderRequest(
        client_id=cid,
        account=account,
        instrument=inst,
        side=side,  # type: ignore[arg-type]
        contracts=contracts,
        reduce_only=reduce_only,
        ref_price=60_000.0,
        decision=1,
        leg=0,
        order_type=order_type,  # type: ignore[arg-type]
        limit_price=limit_price,
    )


def posts(fx: FakeExchange, path: str) -> list[tuple[int, str, str, int]]:
    return [r for r in fx.requests if r[1] == "POST" and r[2] == path]


# ------------------------------------------------------------------------------------------------ read path


def test_balances_usdm_and_coinm(fx: FakeExchange) -> None:
    bal = {b.asset: b for b in usdm(fx).balances()}
    assert bal["USDT"].wallet == pytest.approx(100_000.0)
    assert bal["USDT"].free == pytest.approx(100_000.0) and bal["USDT"].used == 0.0
    cbal = {b.asset: b for b in coinm(fx).balances()}
    assert cbal["BTC"].wallet == pytest.approx(2.0)
    assert "USDT" not in cbal  # the COIN-M wallet holds coins only


def test_positions_usdm_short_cross(fx: FakeExchange) -> None:
    led = fx.ledger("binance_usdm", {})
    led.set_position("BTCUSDT", -0.5, 58_000.0)
    acc = usdm(fx)
    pos = {p.instrument: p for p in acc.positions()}
    p = pos["binance:BTCUSDT"]
    assert p.contracts == pytest.approx(0.5)  # short positive, in our contracts (1 BTC each)
    assert p.entry_price == pytest.approx(58_000.0)
    assert p.mark_price == pytest.approx(60_000.0)
    assert p.leverage == 20.0 and p.margin_mode == "cross"
    assert p.liquidation_price == pytest.approx(led.liquidation_price("BTCUSDT"), rel=1e-8)
    assert p.unrealized_settle == pytest.approx(-0.5 * (60_000 - 58_000))
    assert p.entry_basis == "arithmetic" and p.settle_asset == "USDT"
    assert pos["binance:SOLUSDT"].contracts == 0.0  # flat legs are reported too


def test_positions_usdm_isolated_with_venue_liquidation_price(fx: FakeExchange) -> None:
    led = fx.ledger("binance_usdm", {})
    led.set_position("SOLUSDT", -40, 110.0)
    pos = led.position("SOLUSDT")
    pos.margin_mode, pos.leverage, pos.isolated_margin, pos.liq_override = "isolated", 5.0, 880.0, 131.25
    p = {q.instrument: q for q in usdm(fx).positions()}["binance:SOLUSDT"]
    assert p.contracts == 40 and p.entry_price == pytest.approx(110.0)
    assert p.margin_mode == "isolated" and p.leverage == 5.0
    assert p.margin_settle == pytest.approx(880.0)  # the isolated wallet, without unrealised PnL
    assert p.liquidation_price == pytest.approx(131.25)  # the venue's own number, not ours


def test_positions_coinm_contracts_and_harmonic(fx: FakeExchange) -> None:
    led = fx.ledger("binance_coinm", {})
    led.set_position("BTCUSD_PERP", -30, 50_000.0)  # 30 contracts of 100 USD
    p = coinm(fx).positions()[0]
    assert p.instrument == "binance:BTCUSD_PERP"
    assert p.contracts == 30 and p.entry_basis == "harmonic" and p.settle_asset == "BTC"
    assert p.unrealized_settle == pytest.approx(-3000 * (1 / 50_000 - 1 / 60_000), rel=1e-6)  # in BTC
    # 2 BTC behind a 3000 USD short cannot be liquidated: Binance says "0", we say inf
    assert p.liquidation_price == math.inf


def test_long_on_hedge_instrument_shows_negative(fx: FakeExchange) -> None:
    fx.ledger("binance_usdm", {}).set_position("BTCUSDT", 0.2, 60_000.0)
    p = {q.instrument: q for q in usdm(fx).positions()}["binance:BTCUSDT"]
    assert p.contracts == pytest.approx(-0.2)


def test_open_orders_show_resting_limit(fx: FakeExchange) -> None:
    acc = usdm(fx)
    r = acc.place_order(
        order("ph00000001000000a010", BTCUSDT.id, "sell", 0.01, order_type="limit", limit_price=65_000), snap()
    )
    assert r.status == "open" and r.filled_contracts == 0
    rows = acc.open_orders()
    assert [(o.client_id, o.status, o.instrument) for o in rows] == [("ph00000001000000a010", "open", BTCUSDT.id)]


def test_funding_payments_sign_and_once(fx: FakeExchange) -> None:
    acc = usdm(fx)
    acc.place_order(order("ph00000001000000a011", BTCUSDT.id, "sell", 0.5), snap())
    fx.now_ms = T0 + 24 * HOUR
    events = acc.sync(snap(T0 + 24 * HOUR))
    pays = [e for e in events if isinstance(e, FundingPayment)]
    rates = {T0 + 7 * HOUR: 0.00064824, T0 + 15 * HOUR: 0.0004601, T0 + 23 * HOUR: 0.00033426}
    assert [p.settlement_ms for p in pays] == sorted(rates)
    for p in pays:  # positive rate: the short receives rate x value
        assert p.amount_settle == pytest.approx(rates[p.settlement_ms] * 0.5 * 60_000, rel=1e-6)
        assert p.amount_settle > 0 and p.asset == "USDT" and p.amount_usd == pytest.approx(p.amount_settle)
        assert p.rate == rates[p.settlement_ms]  # from the venue's public funding history
    assert acc.sync(snap(T0 + 24 * HOUR)) == []  # each settlement once


def test_funding_coinm_in_coin(fx: FakeExchange) -> None:
    acc = coinm(fx)
    acc.place_order(order("ph00000001000000b011", BTCUSD.id, "sell", 10, account="cm"), snap())
    fx.now_ms = T0 + 24 * HOUR
    pays = [e for e in acc.sync(snap(T0 + 24 * HOUR)) if isinstance(e, FundingPayment)]
    rates = {T0 + 7 * HOUR: 0.00059611, T0 + 15 * HOUR: 0.00047263, T0 + 23 * HOUR: 0.0001}
    assert {p.settlement_ms for p in pays} == set(rates)
    for p in pays:
        assert p.asset == "BTC"
        assert p.amount_settle == pytest.approx(rates[p.settlement_ms] * 1000 / 60_000, abs=1e-8)  # 8 decimals
        assert p.amount_usd == pytest.approx(p.amount_settle * 60_000)
        assert p.rate == rates[p.settlement_ms]


def test_funding_since_skips_older_entries(fx: FakeExchange) -> None:
    acc = usdm(fx)
    acc.place_order(order("ph00000001000000a012", BTCUSDT.id, "sell", 0.5), snap())
    fx.now_ms = T0 + 24 * HOUR
    later = open_live_account(
        name="bn",
        venue="binance_usdm",
        credentials={"key": KEY, "secret": SECRET},
        instruments=[BTCUSDT],
        base_url=fx.url,
        funding_since_ms=T0 + 10 * HOUR,
        options={"rate_limit_ms": 1},
    )
    pays = [e for e in later.sync(snap(T0 + 24 * HOUR)) if isinstance(e, FundingPayment)]
    assert [p.settlement_ms for p in pays] == [T0 + 15 * HOUR, T0 + 23 * HOUR]


# ------------------------------------------------------------------------------------------------ order path


def test_market_sell_fills_with_our_client_id(fx: FakeExchange) -> None:
    acc = usdm(fx)
    r = acc.place_order(order("ph00000001000000a020", BTCUSDT.id, "sell", 0.25), snap())
    assert r.status == "filled" and r.filled_contracts == pytest.approx(0.25)
    assert r.avg_price == pytest.approx(60_000.0)
    assert len(r.fills) == 1 and r.fills[0].fee_settle == pytest.approx(0.0005 * 0.25 * 60_000)
    led = fx.ledger("binance_usdm", {})
    assert [o.client_id for o in led.orders] == ["ph00000001000000a020"]  # sent as newClientOrderId
    assert led.positions["BTCUSDT"].qty == pytest.approx(-0.25)
    again = acc.fetch_order(BTCUSDT.id, "ph00000001000000a020")
    assert again is not None and again.venue_id == r.venue_id and len(again.fills) == 1


def test_place_order_with_known_client_id_returns_existing(fx: FakeExchange) -> None:
    acc = usdm(fx)
    first = acc.place_order(order("ph00000001000000a021", BTCUSDT.id, "sell", 0.1), snap())
    second = acc.place_order(order("ph00000001000000a021", BTCUSDT.id, "sell", 0.1), snap())
    assert second.venue_id == first.venue_id
    assert len(fx.ledger("binance_usdm", {}).orders) == 1
    assert len(posts(fx, "/fapi/v1/order")) == 1


def test_coinm_market_order_in_contracts(fx: FakeExchange) -> None:
    acc = coinm(fx)
    r = acc.place_order(order("ph00000001000000b020", BTCUSD.id, "sell", 7, account="cm"), snap())
    assert r.status == "filled" and r.filled_contracts == 7
    assert r.fills[0].settle_asset == "BTC"
    assert r.fills[0].fee_settle == pytest.approx(0.0005 * 700 / 60_000, abs=1e-8)
    assert fx.ledger("binance_coinm", {}).positions["BTCUSD_PERP"].qty == -7
    assert coinm(fx).positions()[0].contracts == 7


def test_limit_lookup_cancel(fx: FakeExchange) -> None:
    acc = usdm(fx)
    req = order("ph00000001000000a030", BTCUSDT.id, "sell", 0.01, order_type="limit", limit_price=61_234.56)
    r = acc.place_order(req, snap())
    assert r.status == "open"
    led = fx.ledger("binance_usdm", {})
    assert led.orders[0].price == pytest.approx(61_234.6)  # rounded to the 0.1 tick
    found = acc.fetch_order(BTCUSDT.id, "ph00000001000000a030")
    assert found is not None and found.status == "open"
    done = acc.cancel_order(BTCUSDT.id, "ph00000001000000a030")
    assert done is not None and done.status == "cancelled"
    assert acc.open_orders() == []
    again = acc.cancel_order(BTCUSDT.id, "ph00000001000000a030")  # already cancelled: its final state
    assert again is not None and again.status == "cancelled"
    assert acc.fetch_order(BTCUSDT.id, "ph0000000100000zzzzz") is None
    assert acc.cancel_order(BTCUSDT.id, "ph0000000100000zzzzz") is None


def test_cancel_of_filled_order_reports_filled(fx: FakeExchange) -> None:
    acc = usdm(fx)
    acc.place_order(order("ph00000001000000a031", BTCUSDT.id, "sell", 0.01), snap())
    done = acc.cancel_order(BTCUSDT.id, "ph00000001000000a031")
    assert done is not None and done.status == "filled" and len(done.fills) == 1


def test_reduce_only_rounds_down_never_past_request(fx: FakeExchange) -> None:
    acc = usdm(fx)
    acc.place_order(order("ph00000001000000a040", BTCUSDT.id, "sell", 0.02), snap())
    r = acc.place_order(order("ph00000001000000a041", BTCUSDT.id, "buy", 0.0129, reduce_only=True), snap())
    assert r.status == "filled" and r.filled_contracts == pytest.approx(0.012)
    led = fx.ledger("binance_usdm", {})
    assert led.orders[-1].reduce_only is True
    assert led.positions["BTCUSDT"].qty == pytest.approx(-0.008)


def test_lot_rounding_to_our_lot(fx: FakeExchange) -> None:
    acc = usdm(fx)
    r = acc.place_order(order("ph00000001000000a042", SOLUSDT.id, "sell", 2.4), snap())
    assert r.filled_contracts == 2  # SOLUSDT lot is 1 SOL in our spec (venue step 0.001)
    tiny = acc.place_order(order("ph00000001000000a043", SOLUSDT.id, "sell", 0.3), snap())
    assert tiny.status == "rejected" and tiny.reason.startswith("invalid:")
    assert len(posts(fx, "/fapi/v1/order")) == 1  # the tiny one was never sent


def test_partial_fills(fx: FakeExchange) -> None:
    acc = usdm(fx)
    led = fx.ledger("binance_usdm", {})
    led.partial_next = 0.5
    r = acc.place_order(order("ph00000001000000a050", BTCUSDT.id, "sell", 0.2), snap())
    assert r.status == "expired" and r.filled_contracts == pytest.approx(0.1)  # market rest expires
    led.partial_next = 0.5
    r2 = acc.place_order(
        order("ph00000001000000a051", BTCUSDT.id, "sell", 0.2, order_type="limit", limit_price=59_000), snap()
    )
    assert r2.status == "partially_filled" and r2.filled_contracts == pytest.approx(0.1)
    assert not r2.terminal


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("min_notional", "-4164"),
        ("insufficient_margin", "-2019"),
        ("reduce_only", "-2022"),
        ("invalid", "-1013"),
        ("duplicate", "-4116"),
        ("rate_limited", "-1015"),
    ],
)
def test_each_rejection_kind(fx: FakeExchange, kind: str, code: str) -> None:
    acc = usdm(fx)
    fx.ledger("binance_usdm", {}).reject_next = kind  # type: ignore[assignment]
    r = acc.place_order(order("ph00000001000000a060", BTCUSDT.id, "sell", 0.01), snap())
    assert r.status == "rejected"
    assert r.reason.startswith(f"{kind}: {code} ")
    assert fx.ledger("binance_usdm", {}).orders == []


def test_natural_rejections(fx: FakeExchange) -> None:
    acc = usdm(fx)
    r = acc.place_order(order("ph00000001000000a070", BTCUSDT.id, "sell", 50), snap())  # 3M USD at 20x
    assert r.status == "rejected" and r.reason.startswith("insufficient_margin: -2019")
    r = acc.place_order(order("ph00000001000000a071", BTCUSDT.id, "buy", 0.01, reduce_only=True), snap())
    assert r.status == "rejected" and r.reason.startswith("reduce_only: -2022")
    c = coinm(fx)
    fx.ledger("binance_coinm", {}).reject_next = "min_notional"
    r = c.place_order(order("ph00000001000000b071", BTCUSD.id, "sell", 1, account="cm"), snap())
    assert r.reason.startswith("min_notional: -4164")


def test_coinm_rejections(fx: FakeExchange) -> None:
    acc = coinm(fx)
    r = acc.place_order(order("ph00000001000000b072", BTCUSD.id, "sell", 100_000, account="cm"), snap())
    assert r.status == "rejected" and r.reason.startswith("insufficient_margin: -2019")


def test_read_only_never_sends(fx: FakeExchange) -> None:
    acc = usdm(fx, read_only=True)
    with pytest.raises(ConfigError, match="read-only"):
        acc.place_order(order("ph00000001000000a080", BTCUSDT.id, "sell", 0.01), snap())
    with pytest.raises(ConfigError, match="read-only"):
        acc.cancel_order(BTCUSDT.id, "ph00000001000000a080")
    assert [r for r in fx.requests if r[1] in ("POST", "DELETE")] == []
    assert "read-only" in repr(acc)


def test_transfer_is_manual(fx: FakeExchange) -> None:
    acc = usdm(fx)
    req = TransferRequest(
        transfer_id="t1", account="bn", instrument=BTCUSDT.id, amount_settle=250.0, reason="top_up", decision=1, leg=0
    )
    res = acc.transfer(req, snap())
    assert res.applied is False and res.asset == "USDT"
    assert res.reason == "manual_transfer: move 250 USDT into binance:BTCUSDT's margin on the venue"


# ------------------------------------------------------------------------------------------------ faults


def test_drop_after_accept_then_lookup_finds_exactly_one(fx: FakeExchange) -> None:
    acc = usdm(fx)
    fx.inject(Fault("drop_after_accept", path="/fapi/v1/order", method="POST"))
    with pytest.raises(ExchangeError, match="look it up by client id"):
        acc.place_order(order("ph00000001000000a090", BTCUSDT.id, "sell", 0.3), snap())
    assert len(posts(fx, "/fapi/v1/order")) == 1  # never retried
    found = acc.fetch_order(BTCUSDT.id, "ph00000001000000a090")
    assert found is not None and found.status == "filled" and found.filled_contracts == pytest.approx(0.3)
    led = fx.ledger("binance_usdm", {})
    assert len(led.orders) == 1 and led.positions["BTCUSDT"].qty == pytest.approx(-0.3)
    # resending the same id after recovery does not trade again
    again = acc.place_order(order("ph00000001000000a090", BTCUSDT.id, "sell", 0.3), snap())
    assert again.venue_id == found.venue_id
    assert len(led.orders) == 1 and len(posts(fx, "/fapi/v1/order")) == 1
    assert [p.contracts for p in acc.positions() if p.instrument == BTCUSDT.id] == [pytest.approx(0.3)]


def test_drop_after_accept_coinm(fx: FakeExchange) -> None:
    acc = coinm(fx)
    fx.inject(Fault("drop_after_accept", path="/dapi/v1/order", method="POST"))
    with pytest.raises(ExchangeError):
        acc.place_order(order("ph00000001000000b090", BTCUSD.id, "sell", 5, account="cm"), snap())
    found = acc.fetch_order(BTCUSD.id, "ph00000001000000b090")
    assert found is not None and found.filled_contracts == 5
    assert len(fx.ledger("binance_coinm", {}).orders) == 1


@pytest.mark.parametrize("kind", ["500", "drop", "maintenance", "429"])
def test_create_order_is_never_retried(fx: FakeExchange, kind: str) -> None:
    acc = usdm(fx)
    fx.inject(Fault(kind, path="/fapi/v1/order", method="POST", retry_after=0.01))
    with pytest.raises(ExchangeError, match="outcome unknown"):
        acc.place_order(order("ph00000001000000a091", BTCUSDT.id, "sell", 0.3), snap())
    assert len(posts(fx, "/fapi/v1/order")) == 1
    assert fx.ledger("binance_usdm", {}).orders == []
    assert acc.fetch_order(BTCUSDT.id, "ph00000001000000a091") is None


def test_slow_answer_times_out_as_unknown(fx: FakeExchange) -> None:
    acc = usdm(fx, timeout_ms=400)
    fx.inject(Fault("slow", path="/fapi/v1/order", method="POST", delay=1.0))
    with pytest.raises(ExchangeError, match="outcome unknown"):
        acc.place_order(order("ph00000001000000a092", BTCUSDT.id, "sell", 0.3), snap())
    assert len(posts(fx, "/fapi/v1/order")) <= 1
    time.sleep(1.0)  # the use case waits lookup_settle_s before it concludes "not found"
    found = acc.fetch_order(BTCUSDT.id, "ph00000001000000a092")  # the slow request was still processed
    assert found is not None and found.status == "filled"
    assert len(fx.ledger("binance_usdm", {}).orders) == 1


def test_read_429_retry_after_is_honoured(fx: FakeExchange) -> None:
    acc = usdm(fx)
    fx.inject(Fault("429", path="/fapi/v3/account", retry_after=0.6))
    assert acc.balances()
    rows = [r for r in fx.requests if r[2] == "/fapi/v3/account"]
    assert [r[3] for r in rows] == [429, 200]
    assert rows[1][0] - rows[0][0] >= 600


def test_read_5xx_and_drop_are_retried(fx: FakeExchange) -> None:
    acc = usdm(fx)
    fx.inject(Fault("500", path="/fapi/v3/positionRisk"), Fault("drop", path="/fapi/v3/positionRisk"))
    assert len(acc.positions()) == 2
    assert [r[3] for r in fx.requests if r[2] == "/fapi/v3/positionRisk"] == [500, 0, 200]


def test_maintenance_on_reads_gives_up_with_one_line(fx: FakeExchange) -> None:
    acc = usdm(fx, retries=1)
    fx.inject(*[Fault("maintenance", path="/fapi/v3/account") for _ in range(3)])
    with pytest.raises(ExchangeError, match="fetch balances failed") as err:
        acc.balances()
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------ credentials


def test_bad_secret_is_a_clear_error_without_secret(fx: FakeExchange) -> None:
    wrong = "PHSENTINELSECRETwrong" + "x" * 40
    acc = open_live_account(
        name="bn",
        venue="binance_usdm",
        credentials={"key": KEY, "secret": wrong},
        instruments=[BTCUSDT],
        base_url=fx.url,
        options={"rate_limit_ms": 1},
    )
    with pytest.raises(ExchangeError, match="refused the credentials") as err:
        acc.balances()
    text = "".join(traceback.format_exception(err.value))
    assert "-1022" in str(err.value)
    assert wrong not in text and KEY not in text and "PHSENTINEL" not in text


def test_bad_key_is_refused(fx: FakeExchange) -> None:
    acc = open_live_account(
        name="bn",
        venue="binance_coinm",
        credentials={"key": "PHSENTINELKEYother", "secret": SECRET},
        instruments=[BTCUSD],
        base_url=fx.url,
        options={"rate_limit_ms": 1},
    )
    with pytest.raises(ExchangeError, match="refused the credentials") as err:
        acc.positions()
    assert "-2015" in str(err.value) and "PHSENTINEL" not in str(err.value)


def test_sentinel_secrets_never_appear(fx: FakeExchange, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    texts: list[str] = []
    acc = usdm(fx)
    texts += [repr(acc), str(acc), repr(acc.dialect), repr(acc.__dict__)]
    for fault in ("drop_after_accept", "500", "drop", "maintenance"):
        fx.inject(Fault(fault, path="/fapi/v1/order", method="POST"))
        try:
            acc.place_order(order(f"ph0000000100000{fault[:3]}01", BTCUSDT.id, "sell", 0.01), snap())
        except ExchangeError as exc:
            texts.append("".join(traceback.format_exception(exc)))
    texts += [repr(acc.positions()), repr(acc.balances()), repr(acc.open_orders())]
    bad = open_live_account(
        name="x",
        venue="binance_usdm",
        credentials={"key": KEY, "secret": SECRET + "z"},
        instruments=[BTCUSDT],
        base_url=fx.url,
        options={"rate_limit_ms": 1},
    )
    for call in (bad.balances, bad.positions, bad.open_orders):
        try:
            call()
        except ExchangeError as exc:
            texts.append("".join(traceback.format_exception(exc)))
    texts += [r.getMessage() for r in caplog.records]
    assert len(texts) > 10
    for text in texts:
        assert "PHSENTINEL" not in text


# ------------------------------------------------------------------------------------------------ opening


def test_contract_size_mismatch_is_refused(fx: FakeExchange) -> None:
    wrong = BTCUSD.with_overrides(contract_size=10.0)
    with pytest.raises(ConfigError, match=r"contract size .* is 100 USD, ours is 10 USD"):
        open_live_account(
            name="cm",
            venue="binance_coinm",
            credentials={"key": KEY, "secret": SECRET},
            instruments=[wrong],
            base_url=fx.url,
        )


def test_wrong_kind_and_venue_refused(fx: FakeExchange) -> None:
    with pytest.raises(ConfigError, match="inverse contracts only"):
        open_live_account(
            name="cm",
            venue="binance_coinm",
            credentials={"key": KEY, "secret": SECRET},
            instruments=[BTCUSDT],
            base_url=fx.url,
        )
    with pytest.raises(ConfigError, match="is on bybit, not binance"):
        open_live_account(
            name="bn",
            venue="binance_usdm",
            credentials={"key": KEY, "secret": SECRET},
            instruments=[REG.get("bybit:BTCUSDT")],
            base_url=fx.url,
        )


def test_missing_credentials_refused_before_network() -> None:
    with pytest.raises(ConfigError, match="missing credential") as err:
        open_live_account(
            name="bn",
            venue="binance_usdm",
            credentials={"key": KEY, "secret": ""},
            instruments=[BTCUSDT],
            base_url="http://127.0.0.1:9",
        )
    assert "PHSENTINEL" not in str(err.value)


def test_sandbox_uses_demo_endpoints(fx: FakeExchange) -> None:
    acc = open_live_account(
        name="bn",
        venue="binance_usdm",
        credentials={"key": KEY, "secret": SECRET},
        instruments=[BTCUSDT],
        sandbox=True,
        base_url=fx.url,
        options={"rate_limit_ms": 1},
    )
    assert acc._client.options.get("enableDemoTrading") is True
    assert acc.balances()  # rerouted to the fake: paths are kept


# ------------------------------------------------------------------------------------------------ venue events


@pytest.mark.parametrize(
    ("venue", "symbol", "inst", "qty"),
    [("binance_usdm", "BTCUSDT", BTCUSDT, 0.5), ("binance_coinm", "BTCUSD_PERP", BTCUSD, 30)],
)
def test_venue_liquidation_is_reported_once(
    fx: FakeExchange, venue: str, symbol: str, inst: Instrument, qty: float
) -> None:
    acc = usdm(fx) if venue == "binance_usdm" else coinm(fx)
    acc.place_order(order("ph00000001000000c001", inst.id, "sell", qty, account=acc.name), snap())
    assert acc.sync(snap()) == []
    fx.now_ms = T0 + HOUR
    fx.marks["BTC"] = 90_000.0
    liquidate(fx, venue, symbol)
    events = acc.sync(snap(T0 + HOUR, 90_000.0))
    liqs = [e for e in events if isinstance(e, Liquidation)]
    assert len(liqs) == 1
    assert liqs[0].ts_ms == T0 + HOUR and liqs[0].price == pytest.approx(90_000.0) and liqs[0].contracts == qty
    assert liqs[0].instrument == inst.id and liqs[0].asset == inst.settle
    led = fx.ledgers[venue]
    trade = led.fills[-1]
    assert liqs[0].loss_settle == pytest.approx(trade.fee - trade.realized_pnl, abs=1e-8)
    assert liqs[0].loss_settle > 0  # the short lost money on the rise to 90 000
    want_usd = liqs[0].loss_settle * 90_000 if inst.is_inverse else liqs[0].loss_settle
    assert liqs[0].loss_usd == pytest.approx(want_usd)
    assert [e for e in acc.sync(snap(T0 + HOUR, 90_000.0)) if isinstance(e, Liquidation)] == []
    assert next(p for p in acc.positions() if p.instrument == inst.id).contracts == 0


def test_hedge_mode_account_is_refused_for_trading(fx: FakeExchange) -> None:
    state(fx).dual_side = True
    with pytest.raises(ConfigError, match="hedge mode"):
        usdm(fx)
    with pytest.raises(ConfigError, match="hedge mode"):
        coinm(fx)
    assert usdm(fx, read_only=True).balances()  # reading is fine


# ------------------------------------------------------------------------------------------------ the fake's checks


def _raw(
    fx: FakeExchange, path: str, params: dict[str, str], *, key: str | None = KEY, secret: str = SECRET
) -> tuple[int, dict[str, Any]]:
    """A hand-signed GET to the fake (Binance's scheme: HMAC-SHA256 of the query string)."""
    import hashlib
    import hmac
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode(params)
    sig = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(f"{fx.url}{path}?{query}&signature={sig}")
    if key is not None:
        req.add_header("X-MBX-APIKEY", key)
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_fake_checks_key_signature_and_timestamp(fx: FakeExchange) -> None:
    now = str(int(time.time() * 1000))
    assert _raw(fx, "/fapi/v3/account", {"timestamp": now})[0] == 200
    assert _raw(fx, "/fapi/v3/account", {"timestamp": now}, key=None) == (
        401,
        {"code": -2014, "msg": "API-key format invalid."},
    )
    assert _raw(fx, "/dapi/v1/account", {"timestamp": now}, key="other")[1]["code"] == -2015
    assert _raw(fx, "/fapi/v3/account", {"timestamp": now}, secret="wrong")[1]["code"] == -1022
    old = str(int(time.time() * 1000) - 10_000)
    assert _raw(fx, "/fapi/v3/account", {"timestamp": old})[1]["code"] == -1021  # outside the 5 s recvWindow
    assert _raw(fx, "/fapi/v3/account", {"timestamp": old, "recvWindow": "20000"})[0] == 200
    assert _raw(fx, "/fapi/v3/account", {"timestamp": now, "recvWindow": "70000"})[1]["code"] == -1131
    assert _raw(fx, "/fapi/v3/account", {})[1]["code"] == -1102


def test_fake_order_lookups_by_client_id(fx: FakeExchange) -> None:
    now = str(int(time.time() * 1000))
    status, body = _raw(fx, "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "nope", "timestamp": now})
    assert (status, body["code"]) == (400, -2013)
    status, body = _raw(fx, "/dapi/v1/order", {"symbol": "BTCUSD_PERP", "timestamp": now})
    assert body["code"] == -1102


def test_leverage_and_margin_type_through_ccxt(fx: FakeExchange) -> None:
    acc = usdm(fx)
    client = acc._client
    client.set_leverage(7, "BTC/USDT:USDT")
    client.set_margin_mode("isolated", "BTC/USDT:USDT")
    assert client.fetch_margin_mode("BTC/USDT:USDT")["marginMode"] == "isolated"
    assert client.fetch_leverage("BTC/USDT:USDT")["longLeverage"] == 7
    acc.place_order(order("ph00000001000000d001", BTCUSDT.id, "sell", 0.1), snap())
    p = next(q for q in acc.positions() if q.instrument == BTCUSDT.id)
    assert p.leverage == 7 and p.margin_mode == "isolated"
    assert p.margin_settle == pytest.approx(0.1 * 60_000 / 7)  # the isolated wallet the fill put up
    cm = coinm(fx)
    cm._client.set_leverage(3, "BTC/USD:BTC")
    cm.place_order(order("ph00000001000000d002", BTCUSD.id, "sell", 4, account="cm"), snap())
    q = cm.positions()[0]
    assert q.leverage == 3 and q.margin_mode == "cross"
