"""The fake exchange's private ledger: venue-like averaging, fills, rejections, funding sign."""

from __future__ import annotations

import math

import pytest

from perphedge.exchange.fake_ledger import Contract, LedgerReject, PrivateLedger

LIN = Contract("BTCUSDT", "linear", "BTC", "USDT", 1.0, 0.001, 0.1)
INV = Contract("BTCUSD_PERP", "inverse", "BTC", "BTC", 100.0, 1.0, 0.1)


def make(prices: dict[str, float], **kw: object) -> tuple[PrivateLedger, dict[str, float], list[int]]:
    clock = [1_700_000_000_000]
    led = PrivateLedger(
        {c.symbol: c for c in (LIN, INV)},
        {"USDT": 100_000.0, "BTC": 2.0},
        mark=lambda asset, ms: prices.get(asset),
        now=lambda: clock[0],
        **kw,  # type: ignore[arg-type]
    )
    return led, prices, clock


def test_linear_entry_is_arithmetic_and_fee_is_taker_on_notional() -> None:
    led, prices, _ = make({"BTC": 50_000.0})
    led.place("BTCUSDT", "sell", "market", 0.1, client_id="a")
    prices["BTC"] = 40_000.0
    led.place("BTCUSDT", "sell", "market", 0.3, client_id="b")
    pos = led.positions["BTCUSDT"]
    assert pos.qty == pytest.approx(-0.4)
    assert pos.entry_price == pytest.approx((0.1 * 50_000 + 0.3 * 40_000) / 0.4)
    assert led.wallet["USDT"] == pytest.approx(100_000 - 0.0005 * (5_000 + 12_000))


def test_inverse_entry_is_harmonic_and_short_pnl_in_coin() -> None:
    led, prices, _ = make({"BTC": 50_000.0})
    led.place("BTCUSD_PERP", "sell", "market", 10, client_id="a")
    prices["BTC"] = 40_000.0
    led.place("BTCUSD_PERP", "sell", "market", 30, client_id="b")
    pos = led.positions["BTCUSD_PERP"]
    assert pos.entry_price == pytest.approx(40 / (10 / 50_000 + 30 / 40_000))
    entry = pos.entry_price
    prices["BTC"] = 45_000.0
    o = led.place("BTCUSD_PERP", "buy", "market", 40, reduce_only=True, client_id="c")
    q = 40 * 100.0  # USD
    assert o.fills[0].realized_pnl == pytest.approx(q * (1 / 45_000 - 1 / entry))  # short: Q (1/P_exit - 1/P_entry)
    assert o.fills[0].realized_pnl < 0
    assert led.positions["BTCUSD_PERP"].qty == 0


def test_partial_fill_market_rest_expires_and_reduce_only_refuses_flip() -> None:
    led, _, _ = make({"BTC": 50_000.0})
    led.partial_next = 0.5
    o = led.place("BTCUSDT", "sell", "market", 0.2, client_id="p")
    assert o.status == "expired" and o.filled == pytest.approx(0.1)
    with pytest.raises(LedgerReject) as exc:
        led.place("BTCUSDT", "buy", "market", 0.3, reduce_only=True, client_id="r")
    assert exc.value.kind == "reduce_only"
    with pytest.raises(LedgerReject) as exc:
        led.place("BTCUSDT", "sell", "market", 0.0001, client_id="m")
    assert exc.value.kind == "invalid"  # not a lot multiple
    with pytest.raises(LedgerReject) as exc:
        led.place("BTCUSDT", "sell", "market", 1000.0, client_id="big")
    assert exc.value.kind == "insufficient_margin"


def test_limit_order_rests_and_duplicate_open_client_id_refused() -> None:
    led, _, _ = make({"BTC": 50_000.0})
    o = led.place("BTCUSDT", "sell", "limit", 0.1, price=60_000.0, client_id="L")
    assert o.status == "open" and o.filled == 0
    with pytest.raises(LedgerReject) as exc:
        led.place("BTCUSDT", "sell", "limit", 0.1, price=60_000.0, client_id="L")
    assert exc.value.kind == "duplicate"
    assert led.cancel("BTCUSDT", client_id="L").status == "cancelled"
    with pytest.raises(LedgerReject):
        led.cancel("BTCUSDT", client_id="L")


@pytest.mark.parametrize(("rate", "sign"), [(0.0001, 1.0), (-0.0002, -1.0)])
def test_funding_positive_rate_pays_the_short(rate: float, sign: float) -> None:
    led, _, clock = make({"BTC": 50_000.0})
    led.place("BTCUSDT", "sell", "market", 1.0, client_id="s")
    before = led.wallet["USDT"]
    entry = led.settle_funding("BTCUSDT", rate, clock[0])
    assert entry is not None and math.copysign(1.0, entry.amount) == sign
    assert led.wallet["USDT"] - before == pytest.approx(abs(rate) * 50_000 * sign)


def test_liquidation_price_of_a_short_is_above_entry_and_override_wins() -> None:
    led, _, _ = make({"BTC": 50_000.0})
    led.place("BTCUSDT", "sell", "market", 1.0, client_id="s")
    liq = led.liquidation_price("BTCUSDT")
    assert liq > 50_000
    led.positions["BTCUSDT"].liq_override = 123.0
    assert led.liquidation_price("BTCUSDT") == 123.0
    led.set_position("BTCUSDT", 0)
    assert math.isnan(led.liquidation_price("BTCUSDT"))
