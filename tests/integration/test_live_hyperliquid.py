"""Live Hyperliquid accounts through ccxt against the fake exchange's Hyperliquid routes.

Every test drives :class:`perphedge.exchange.live.CcxtAccount` with the Hyperliquid dialect (the real ccxt 4.5.90
``hyperliquid`` client, EIP-712 signed actions) against :mod:`perphedge.exchange.fake_hyperliquid` on loopback.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from perphedge.core.book import FeedSnapshot, FundingPayment, Liquidation, OrderRequest
from perphedge.core.contracts import liquidation_price
from perphedge.core.orders import client_order_id
from perphedge.errors import ConfigError, ExchangeError
from perphedge.exchange.fake import FakeExchange, Fault
from perphedge.exchange.fake_hyperliquid import HyperliquidState, _address_of, hyperliquid_state
from perphedge.exchange.live import CcxtAccount, open_live_account
from perphedge.exchange.live_hyperliquid import INFO_WEIGHTS, Hyperliquid, venue_message
from perphedge.specs import default_registry
from tests.conftest import sample_dir

PK = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ADDRESS = _address_of(PK)
WRONG_PK = "0x" + "8f2a55949038a9610f50fb23b5883af3b4ecb3c3bb792cbcefbd1542c692be63"
T0 = 1_700_000_000_000 + 600_000  # 2023-11-14 22:23:20 UTC
HOUR = 3_600_000
MARKS = {"BTC": 91_234.5, "ETH": 3_012.3, "SOL": 150.25}
BOOK = "3f9a1c2e"

REG = default_registry()
BTC = REG.get("hyperliquid:BTC")
ETH = REG.get("hyperliquid:ETH")
SOL = REG.get("hyperliquid:SOL")


@pytest.fixture
def fx() -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir(), private_key=PK, balances={"USDC": 10_000.0}) as fake:
        fake.now_ms = T0
        fake.marks.update(MARKS)
        yield fake


def account(fx: FakeExchange, *, read_only: bool = False, secret: str = PK, **options: Any) -> CcxtAccount:
    return open_live_account(
        name="hl",
        venue="hyperliquid",
        credentials={"key": ADDRESS, "secret": secret},
        instruments=[BTC, ETH, SOL],
        base_url=fx.url,
        read_only=read_only,
        options={"rate_limit_ms": 1, **options},
    )


def snap(now: int = T0) -> FeedSnapshot:
    return FeedSnapshot(now_ms=now, source="test", prices=dict(MARKS), highs={})


def cid(leg: int, attempt: int = 0, decision: int = 1) -> str:
    return client_order_id(BOOK, decision, leg, attempt, "hyperliquid")


def order(
    client_id: str,
    inst: str,
    side: str,
    contracts: float,
    *,
    reduce_only: bool = False,
    order_type: str = "market",
    limit_price: float = math.nan,
) -> OrderRequest:
    return OrderRequest(
        client_id=client_id,
        account="hl",
        instrument=inst,
        side=side,  # type: ignore[arg-type]
        contracts=contracts,
        reduce_only=reduce_only,
        ref_price=MARKS[inst.split(":")[1]],
        decision=1,
        leg=0,
        order_type=order_type,  # type: ignore[arg-type]
        limit_price=limit_price,
    )


def state(fx: FakeExchange) -> HyperliquidState:
    return hyperliquid_state(fx)


def exchange_posts(fx: FakeExchange) -> list[tuple[int, str, str, int]]:
    return [r for r in fx.requests if r[1] == "POST" and r[2] == "/exchange"]


# ------------------------------------------------------------------------------------------------ read path


def test_balances_perp_margin_account_and_spot_tokens(fx: FakeExchange) -> None:
    state(fx).spot_balances.update({"USDC": 250.0, "HYPE": 3.5})
    acc = account(fx)
    acc.place_order(order(cid(0), BTC.id, "sell", 0.01), snap())
    fx.marks["BTC"] = 95_000.0  # the short loses: wallet excludes the unrealised PnL
    rows = {b.asset: b for b in acc.balances()}
    led = state(fx).ledger
    fee = 0.00045 * 0.01 * MARKS["BTC"]
    assert rows["USDC"].wallet == pytest.approx(10_000 - fee)
    assert rows["USDC"].wallet == pytest.approx(led.wallet["USDC"])
    assert rows["USDC"].used == pytest.approx(0.01 * 95_000 / 20)  # cross 20x on the mark
    assert rows["USDC"].free + rows["USDC"].used == pytest.approx(rows["USDC"].wallet)
    assert (rows["SPOT:USDC"].wallet, rows["SPOT:HYPE"].wallet, rows["SPOT:HYPE"].used) == (250.0, 3.5, 0.0)


def test_positions_cross_short_and_the_liquidation_price_beside_ours(fx: FakeExchange) -> None:
    acc = account(fx)
    acc.place_order(order(cid(0), BTC.id, "sell", 0.02), snap())
    fx.marks["BTC"] = 93_000.0
    pos = {p.instrument: p for p in acc.positions()}
    btc = pos[BTC.id]
    assert btc.contracts == pytest.approx(0.02) and btc.entry_price == MARKS["BTC"]
    assert (btc.mark_price, btc.leverage, btc.margin_mode) == (93_000.0, 20.0, "cross")
    assert btc.unrealized_settle == pytest.approx(-0.02 * (93_000 - MARKS["BTC"]))
    assert btc.mmr == pytest.approx(0.0125) and btc.entry_basis == "arithmetic"
    assert pos[ETH.id].contracts == 0 and math.isnan(pos[ETH.id].liquidation_price)
    # ours: one position, margin = the cross wallet (without PnL), binance_usdm on the bundled tiers
    wallet = {b.asset: b for b in acc.balances()}["USDC"].wallet
    ours = liquidation_price(
        kind=BTC.kind,
        method=BTC.liquidation_method,
        side="short",
        size=0.02,
        entry=btc.entry_price,
        margin=wallet,
        schedule=BTC.margin,
    ).price
    assert ours is not None
    assert abs(ours - btc.liquidation_price) < BTC.tick_size  # the same number on a one-position account


def test_cross_account_level_liquidation_differs_from_single_position_formula(fx: FakeExchange) -> None:
    """Two cross positions share the account value: the venue's BTC liquidation price is not our one-position one."""
    acc = account(fx)
    acc.place_order(order(cid(0), BTC.id, "sell", 0.02), snap())
    acc.place_order(order(cid(1), ETH.id, "sell", 1.0), snap())
    pos = {p.instrument: p for p in acc.positions()}
    wallet = {b.asset: b for b in acc.balances()}["USDC"].wallet
    ours = liquidation_price(
        kind=BTC.kind,
        method=BTC.liquidation_method,
        side="short",
        size=0.02,
        entry=MARKS["BTC"],
        margin=wallet,
        schedule=BTC.margin,
    ).price
    assert ours is not None
    venue = pos[BTC.id].liquidation_price
    # the ETH short's maintenance margin (3012.3 · 2%) is taken from the shared account value
    assert venue == pytest.approx(ours - 3_012.3 * 0.02 / 0.02 / 1.0125, rel=1e-9)
    assert ours - venue > 100 * BTC.tick_size


def test_positions_isolated_with_the_venue_liquidation_price(fx: FakeExchange) -> None:
    eth = state(fx).ledger.position("ETH")
    eth.margin_mode, eth.leverage = "isolated", 10.0  # as set on the venue's website
    acc = account(fx)
    acc.place_order(order(cid(0), ETH.id, "sell", 1.5), snap())
    fx.marks["ETH"] = 3_100.0
    p = {x.instrument: x for x in acc.positions()}[ETH.id]
    assert (p.contracts, p.entry_price, p.mark_price, p.leverage, p.margin_mode) == (
        1.5,
        3_012.3,
        3_100.0,
        10.0,
        "isolated",
    )
    assert p.margin_settle == pytest.approx(1.5 * 3_012.3 / 10)  # margin posted, without the PnL
    assert p.unrealized_settle == pytest.approx(-1.5 * (3_100 - 3_012.3))
    ours = liquidation_price(
        kind=ETH.kind,
        method=ETH.liquidation_method,
        side="short",
        size=p.contracts,
        entry=p.entry_price,
        margin=p.margin_settle,
        schedule=ETH.margin,
    ).price
    assert ours is not None and abs(ours - p.liquidation_price) < ETH.tick_size
    assert p.liquidation_price == pytest.approx(1.5 * 3_012.3 * 1.1 / 1.5 / 1.02, rel=1e-9)


def test_open_orders_show_our_resting_limit(fx: FakeExchange) -> None:
    acc = account(fx)
    acc.place_order(order(cid(0), ETH.id, "sell", 0.5, order_type="limit", limit_price=3_500.0), snap())
    rows = acc.open_orders()
    assert [(o.client_id, o.instrument, o.status, o.filled_contracts) for o in rows] == [(cid(0), ETH.id, "open", 0.0)]


def test_funding_payments_sign_once_and_hourly(fx: FakeExchange) -> None:
    acc = account(fx)
    st = state(fx)
    st.funding_rates["BTC"] = 0.0001
    acc.place_order(order(cid(0), BTC.id, "sell", 0.1), snap())
    assert acc.sync(snap()) == []
    fx.now_ms = T0 + 3 * HOUR
    events = acc.sync(snap(fx.now_ms))
    assert all(isinstance(e, FundingPayment) for e in events)
    pays = [e for e in events if isinstance(e, FundingPayment)]
    assert [e.settlement_ms for e in pays] == [(T0 // HOUR + k) * HOUR for k in (1, 2, 3)]
    assert all(e.amount_settle == pytest.approx(0.1 * MARKS["BTC"] * 0.0001) for e in pays)  # the short receives
    assert all((e.asset, e.rate, e.instrument) == ("USDC", 0.0001, BTC.id) for e in pays)
    assert acc.sync(snap(fx.now_ms)) == []  # each settlement once
    st.funding_rates["BTC"] = -0.0003
    fx.now_ms += HOUR
    (paid,) = acc.sync(snap(fx.now_ms))
    assert isinstance(paid, FundingPayment) and paid.amount_settle == pytest.approx(-0.1 * MARKS["BTC"] * 0.0003)


def test_funding_since_skips_older_entries(fx: FakeExchange) -> None:
    acc = account(fx)
    acc.place_order(order(cid(0), BTC.id, "sell", 0.1), snap())
    fx.now_ms = T0 + 5 * HOUR
    late = account(fx, funding_since_ms=(T0 // HOUR + 4) * HOUR)
    late.funding_since_ms = (T0 // HOUR + 4) * HOUR
    got = [e.settlement_ms for e in late.sync(snap(fx.now_ms)) if isinstance(e, FundingPayment)]
    assert got == [(T0 // HOUR + 4) * HOUR, (T0 // HOUR + 5) * HOUR]


def test_liquidation_reported_when_the_venue_says_so(fx: FakeExchange) -> None:
    acc = account(fx)
    acc.place_order(order(cid(0), SOL.id, "sell", 2.0), snap())
    fx.marks["SOL"] = 170.0
    state(fx).liquidate("SOL")
    liqs = [e for e in acc.sync(snap()) if isinstance(e, Liquidation)]
    assert [(x.instrument, x.price, x.contracts, x.asset) for x in liqs] == [(SOL.id, 170.0, 2.0, "USDC")]
    # the loss the liquidation fill realised: 2·(170 − 150.25) plus the taker fee on 2·170
    assert liqs[0].loss_settle == pytest.approx(2 * (170 - 150.25) + 0.00045 * 2 * 170)
    assert liqs[0].loss_usd == pytest.approx(liqs[0].loss_settle)
    assert [e for e in acc.sync(snap()) if isinstance(e, Liquidation)] == []  # once


# ------------------------------------------------------------------------------------------------ order path


def test_market_order_is_an_ioc_at_mark_less_slippage_with_our_cloid(fx: FakeExchange) -> None:
    acc = account(fx)
    r = acc.place_order(order(cid(0), BTC.id, "sell", 0.012345678), snap())
    assert r.status == "filled" and r.filled_contracts == pytest.approx(0.01235)  # lot 0.00001, nearest
    assert r.avg_price == MARKS["BTC"] and r.venue_id
    (fill,) = r.fills
    assert fill.fee_settle == pytest.approx(0.00045 * 0.01235 * MARKS["BTC"]) and fill.settle_asset == "USDC"
    st = state(fx)
    (led,) = st.ledger.orders
    assert led.client_id == cid(0) and len(cid(0)) == 34
    meta = st.meta[led.venue_id]
    assert meta.tif == "Ioc"
    # the venue's mark 91,234 (5 significant figures) · (1 − 5 %) = 86,672.3 → 86,672
    assert meta.limit_px == "86672"
    buy = acc.place_order(order(cid(1), BTC.id, "buy", 0.00235, reduce_only=True), snap())
    assert buy.status == "filled"
    assert st.meta[buy.venue_id].limit_px == "95796"  # 91,234 · 1.05 = 95,795.7
    assert st.ledger.orders[-1].reduce_only
    assert st.actions == ["order", "order"]  # no builder-fee approval, no referrer


def test_known_client_id_returns_the_existing_order(fx: FakeExchange) -> None:
    acc = account(fx)
    first = acc.place_order(order(cid(0), BTC.id, "sell", 0.01), snap())
    again = acc.place_order(order(cid(0), BTC.id, "sell", 0.01), snap())
    assert again.venue_id == first.venue_id and again.status == "filled"
    assert len(state(fx).ledger.orders) == 1 and len(exchange_posts(fx)) == 1


def test_limit_price_on_the_venue_grid_lookup_and_cancel(fx: FakeExchange) -> None:
    acc = account(fx)
    r = acc.place_order(order(cid(0), ETH.id, "sell", 0.5, order_type="limit", limit_price=3_333.337), snap())
    assert r.status == "open" and r.filled_contracts == 0
    st = state(fx)
    assert st.meta[r.venue_id].tif == "Gtc" and st.meta[r.venue_id].limit_px == "3333.3"  # 5 significant figures
    found = acc.fetch_order(ETH.id, cid(0))
    assert found is not None and (found.status, found.venue_id) == ("open", r.venue_id)
    assert acc.fetch_order(ETH.id, cid(5)) is None
    cancelled = acc.cancel_order(ETH.id, cid(0))
    assert cancelled is not None and cancelled.status == "cancelled"
    assert acc.open_orders() == []
    assert acc.cancel_order(ETH.id, cid(6)) is None  # never seen
    filled = acc.place_order(order(cid(1), ETH.id, "sell", 0.5), snap())
    after = acc.cancel_order(ETH.id, cid(1))
    assert after is not None and after.status == "filled" and after.venue_id == filled.venue_id


def test_reduce_only_rounds_down_never_past_the_request(fx: FakeExchange) -> None:
    acc = account(fx)
    acc.place_order(order(cid(0), SOL.id, "sell", 3.0), snap())
    r = acc.place_order(order(cid(1), SOL.id, "buy", 1.239, reduce_only=True), snap())
    assert r.filled_contracts == pytest.approx(1.23)
    tiny = acc.place_order(order(cid(2), SOL.id, "buy", 0.009, reduce_only=True), snap())
    assert tiny.status == "rejected" and tiny.reason.startswith("invalid:") and "not sent" in tiny.reason
    assert len(exchange_posts(fx)) == 2


def test_partial_fills(fx: FakeExchange) -> None:
    acc = account(fx)
    st = state(fx)
    st.ledger.partial_next = 0.5
    ioc = acc.place_order(order(cid(0), BTC.id, "sell", 0.02), snap())
    assert ioc.status == "cancelled" and ioc.filled_contracts == pytest.approx(0.01)  # the IOC's rest is cancelled
    assert sum(f.contracts for f in ioc.fills) == pytest.approx(0.01)
    st.ledger.partial_next = 0.5
    lim = acc.place_order(order(cid(1), ETH.id, "sell", 1.0, order_type="limit", limit_price=2_900.0), snap())
    assert lim.status == "partially_filled" and lim.filled_contracts == pytest.approx(0.5)
    assert [o.status for o in acc.open_orders()] == ["partially_filled"]
    looked = acc.fetch_order(ETH.id, cid(1))
    assert looked is not None and looked.filled_contracts == pytest.approx(0.5) and len(looked.fills) == 1


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("min_notional", "minimum value of $10"),
        ("insufficient_margin", "Insufficient margin"),
        ("reduce_only", "Reduce only order would increase position"),
        ("rate_limited", "Too many cumulative requests"),
        ("invalid", "Order has invalid size"),
        ("duplicate", "Duplicate cloid"),
    ],
)
def test_each_rejection_kind(fx: FakeExchange, kind: str, message: str) -> None:
    acc = account(fx)
    state(fx).ledger.reject_next = kind  # type: ignore[assignment]
    r = acc.place_order(order(cid(0), BTC.id, "sell", 0.01), snap())
    assert r.status == "rejected" and r.reason.startswith(f"{kind}: ") and message in r.reason
    assert state(fx).ledger.fills == []


def test_natural_rejections(fx: FakeExchange) -> None:
    acc = account(fx)
    small = acc.place_order(order(cid(0), BTC.id, "sell", 0.0001), snap())  # 9.12 USDC
    assert small.status == "rejected" and small.reason.startswith("min_notional: ")
    big = acc.place_order(order(cid(1), BTC.id, "sell", 5.0), snap())
    assert big.status == "rejected" and big.reason.startswith("insufficient_margin: ")
    ro = acc.place_order(order(cid(2), BTC.id, "buy", 0.01, reduce_only=True), snap())
    assert ro.status == "rejected" and ro.reason.startswith("reduce_only: ")
    far = acc.place_order(order(cid(3), BTC.id, "sell", 0.01, order_type="limit", limit_price=500_000), snap())
    assert far.status == "rejected" and far.reason.startswith("invalid: ") and "80%" in far.reason


def test_read_only_never_sends(fx: FakeExchange) -> None:
    acc = account(fx, read_only=True)
    with pytest.raises(ConfigError, match="read-only"):
        acc.place_order(order(cid(0), BTC.id, "sell", 0.01), snap())
    with pytest.raises(ConfigError, match="read-only"):
        acc.cancel_order(BTC.id, cid(0))
    assert exchange_posts(fx) == []


def test_drop_after_accept_then_lookup_finds_exactly_one(fx: FakeExchange) -> None:
    acc = account(fx)
    fx.inject(Fault("drop_after_accept", path="/exchange", method="POST"))
    with pytest.raises(ExchangeError, match="look it up by client id"):
        acc.place_order(order(cid(0), BTC.id, "sell", 0.03), snap())
    assert len(exchange_posts(fx)) == 1  # never retried
    found = acc.fetch_order(BTC.id, cid(0))
    assert found is not None and found.status == "filled" and found.filled_contracts == pytest.approx(0.03)
    led = state(fx).ledger
    assert len(led.orders) == 1 and led.positions["BTC"].qty == pytest.approx(-0.03)
    again = acc.place_order(order(cid(0), BTC.id, "sell", 0.03), snap())
    assert again.venue_id == found.venue_id and len(led.orders) == 1 and len(exchange_posts(fx)) == 1
    assert {p.instrument: p.contracts for p in acc.positions()}[BTC.id] == pytest.approx(0.03)


@pytest.mark.parametrize("kind", ["500", "drop", "maintenance", "429"])
def test_create_order_is_never_retried(fx: FakeExchange, kind: str) -> None:
    acc = account(fx)
    fx.inject(Fault(kind, path="/exchange", method="POST", retry_after=0.01))
    with pytest.raises(ExchangeError, match="outcome unknown"):
        acc.place_order(order(cid(0), BTC.id, "sell", 0.01), snap())
    assert len(exchange_posts(fx)) == 1
    assert state(fx).ledger.orders == []
    assert acc.fetch_order(BTC.id, cid(0)) is None


def test_read_429_retry_after_is_honoured(fx: FakeExchange) -> None:
    acc = account(fx)
    fx.inject(Fault("429", path="/info", retry_after=0.6))
    assert acc.positions()
    rows = [r for r in fx.requests if r[2] == "/info"][-2:]
    assert [r[3] for r in rows] == [429, 200]
    assert rows[1][0] - rows[0][0] >= 600


def test_wrong_private_key_is_a_clear_config_error_without_the_key(fx: FakeExchange) -> None:
    reader = account(fx, secret=WRONG_PK, read_only=True)  # reads are by address: they work
    assert reader.positions()
    with pytest.raises(ConfigError) as exc:
        account(fx, secret=WRONG_PK)  # a trading account is checked when it opens
    text = "".join(traceback.format_exception(exc.value))
    assert "signs as neither the wallet" in text and "'missing'" in text
    assert WRONG_PK[2:] not in text.lower() and PK[2:] not in text.lower()
    assert exchange_posts(fx) == [] and state(fx).ledger.orders == []


def test_an_api_wallet_approved_for_the_account_trades_for_it() -> None:
    master = "0x" + "ab" * 20
    with FakeExchange(sample_dir(), api_key=master, private_key=WRONG_PK, balances={"USDC": 5_000.0}) as fake:
        fake.now_ms = T0
        fake.marks.update(MARKS)
        st = state(fake)
        assert (st.address, st.signer) == (master, _address_of(WRONG_PK))
        acc = open_live_account(
            name="hl",
            venue="hyperliquid",
            credentials={"key": master, "secret": WRONG_PK},
            instruments=[BTC],
            read_only=False,
            base_url=fake.url,
            options={"rate_limit_ms": 1},
        )
        assert acc.place_order(order(cid(0), BTC.id, "sell", 0.01), snap()).status == "filled"
        assert {p.instrument: p.contracts for p in acc.positions()}[BTC.id] == pytest.approx(0.01)
        with pytest.raises(ConfigError, match="signs as neither"):  # the master's address with another key
            open_live_account(
                name="hl",
                venue="hyperliquid",
                credentials={"key": master, "secret": PK},
                instruments=[BTC],
                read_only=False,
                base_url=fake.url,
                options={"rate_limit_ms": 1},
            )


@pytest.mark.parametrize(
    ("key", "secret", "field"),
    [
        ("PHSENTINELKEY" + "k" * 29, PK, "`key`"),
        (ADDRESS, "PHSENTINELSECRET" + "s" * 50, "`secret`"),
        (ADDRESS, PK[:-2], "`secret`"),
    ],
)
def test_malformed_credentials_refused_without_echo(key: str, secret: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field) as exc:
        open_live_account(name="hl", venue="hyperliquid", credentials={"key": key, "secret": secret}, instruments=[BTC])
    text = "".join(traceback.format_exception(exc.value))
    assert "PHSENTINEL" not in text and PK[2:] not in text and PK[2:-2] not in text


def test_the_private_key_never_appears(fx: FakeExchange, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    texts: list[str] = []
    acc = account(fx)
    texts += [repr(acc), str(acc), repr(acc.dialect), repr(acc.__dict__)]
    for i, fault in enumerate(("drop_after_accept", "500", "drop", "maintenance")):
        fx.inject(Fault(fault, path="/exchange", method="POST"))
        try:
            acc.place_order(order(cid(i), BTC.id, "sell", 0.01), snap())
        except ExchangeError as exc:
            texts.append("".join(traceback.format_exception(exc)))
    texts += [repr(acc.positions()), repr(acc.balances()), repr(acc.open_orders()), repr(acc.sync(snap()))]
    try:
        account(fx, secret=WRONG_PK)
    except ConfigError as exc:
        texts.append("".join(traceback.format_exception(exc)))
    bad = account(fx, secret=WRONG_PK, read_only=True)
    texts += [repr(bad), repr(bad.positions())]
    texts += [r.getMessage() for r in caplog.records]
    assert len(texts) > 10
    for text in texts:
        for secret in (PK, WRONG_PK):
            assert secret[2:].lower() not in text.lower()


def test_weights_follow_the_request_type(fx: FakeExchange) -> None:
    acc = account(fx)
    used0 = acc.weight_used_last_minute()
    assert used0 == 20  # load markets: metaAndAssetCtxs
    acc.positions()
    assert acc.weight_used_last_minute() == used0 + INFO_WEIGHTS["clearinghouseState"]
    acc.place_order(order(cid(0), BTC.id, "sell", 0.01), snap())
    # positions (2), then the order: orderStatus lookup (2), metaAndAssetCtxs for the mark (20), the action (1),
    # ccxt's userAbstraction probe (20), its fills from userFills (20)
    assert acc.weight_used_last_minute() == used0 + 2 + 2 + 20 + 1 + 20 + 20
    assert acc.weight_used_last_minute() <= Hyperliquid.weight_limit


def test_classify_and_venue_message() -> None:
    import ccxt

    d = Hyperliquid()
    body = (
        '{"status":"ok","response":{"type":"order","data":{"statuses":'
        '[{"error":"Order must have minimum value of $10. asset=0"}]}}}'
    )
    c = d.classify(ccxt.InvalidOrder("hyperliquid " + body))
    assert (c.outcome, c.kind, c.detail) == ("reject", "min_notional", "Order must have minimum value of $10. asset=0")
    wallet = '{"status": "err", "response": "User or API Wallet 0xabc does not exist."}'
    assert d.classify(ccxt.InvalidOrder("hyperliquid " + wallet)).outcome == "auth"
    assert d.classify(ccxt.OrderNotFound('hyperliquid {"status": "unknownOid"}')).outcome == "not_found"
    assert d.classify(ccxt.RequestTimeout("timed out")).outcome == "retry"
    assert venue_message("no json here") == "no json here"


def test_sandbox_signs_for_the_testnet(fx: FakeExchange) -> None:
    st = state(fx)
    st.testnet = True
    acc = account(fx)  # mainnet signature ("a"): the testnet fake does not know the signer
    with pytest.raises(ConfigError, match="does not accept this private key"):
        acc.place_order(order(cid(0), BTC.id, "sell", 0.01), snap())
    test_acc = open_live_account(
        name="hl",
        venue="hyperliquid",
        credentials={"key": ADDRESS, "secret": PK},
        instruments=[BTC],
        sandbox=True,
        read_only=False,
        base_url=fx.url,
        options={"rate_limit_ms": 1},
    )
    assert test_acc.place_order(order(cid(1), BTC.id, "sell", 0.01), snap()).status == "filled"


def test_slippage_option_is_checked(fx: FakeExchange) -> None:
    with pytest.raises(ConfigError, match="slippage"):
        account(fx, slippage=0.7)
    acc = account(fx, slippage=0.01)
    r = acc.place_order(order(cid(0), BTC.id, "sell", 0.01), snap())
    assert state(fx).meta[r.venue_id].limit_px == "90322"  # 91,234 · 0.99 = 90,321.66


def test_funding_pages_of_500_rows_lose_nothing(fx: FakeExchange) -> None:
    """Three positions for 200 hours: 600 userFunding rows, more than one page; every BTC hour once."""
    acc = account(fx)
    for i, (inst, qty) in enumerate(((BTC, 0.01), (ETH, 0.5), (SOL, 5.0))):
        acc.place_order(order(cid(i), inst.id, "sell", qty), snap())
    fx.now_ms = T0 + 200 * HOUR
    events = [e for e in acc.sync(snap(fx.now_ms)) if isinstance(e, FundingPayment)]
    by_inst = {inst.id: sorted(e.settlement_ms for e in events if e.instrument == inst.id) for inst in (BTC, ETH, SOL)}
    hours = [(T0 // HOUR + k) * HOUR for k in range(1, 201)]
    # the fake answers at most 500 rows a call, so the last hours are only on a later page
    assert by_inst == {BTC.id: hours, ETH.id: hours, SOL.id: hours}
