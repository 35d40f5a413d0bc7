"""The fake exchange's Hyperliquid routes (POST /info, POST /exchange) driven by a plain ccxt 4.5.90 client.

Signatures are checked by recomputing them with ccxt's own functions from the fake's private key; a wrong key,
a changed nonce or vault, or a replayed nonce is refused in the venue's error shape.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import ccxt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.exchange.ccxt_source import _reroute
from perphedge.exchange.fake import PRIVATE_VENUES, FakeExchange
from perphedge.exchange.fake_hyperliquid import HyperliquidState, _address_of, hyperliquid_state, valid_price
from tests.conftest import sample_dir

PK = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
OTHER_PK = "0x" + "8f2a55949038a9610f50fb23b5883af3b4ecb3c3bb792cbcefbd1542c692be63"
T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
H = 3_600_000
MARKS = {"BTC": 91_234.5, "ETH": 3_012.3, "SOL": 150.25}


@pytest.fixture
def fx() -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir(), private_key=PK, balances={"USDC": 10_000.0}) as fake:
        fake.marks.update(MARKS)
        fake.now_ms = T0
        yield fake


def client(fake: FakeExchange, pk: str = PK, **options: Any) -> Any:
    st = hyperliquid_state(fake)
    c = ccxt.hyperliquid({"walletAddress": st.address, "privateKey": pk, "options": options})
    c.enableRateLimit = False  # ccxt's throttle waits 0.5 s per /info request; the fake needs none
    c.urls["api"] = _reroute(c.urls["api"], fake.url)
    c.load_markets()
    return c


def post(fake: FakeExchange, path: str, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(
        fake.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_registered_as_a_private_venue() -> None:
    assert "fake_hyperliquid" in PRIVATE_VENUES


def test_account_is_the_address_of_the_private_key(fx: FakeExchange) -> None:
    st = hyperliquid_state(fx)
    # the well-known example key of the Ethereum docs (web3.js accounts.privateKeyToAccount)
    assert st.address == "0x2c7536e3605d9c16a7a3d7b1898e529396a65c23"
    assert st.signer == st.address


def test_load_markets_perps_as_ccxt_parses_them(fx: FakeExchange) -> None:
    c = client(fx)
    btc, eth, sol = (c.market(f"{x}/USDC:USDC") for x in ("BTC", "ETH", "SOL"))
    assert [m["id"] for m in (btc, eth, sol)] == ["0", "1", "2"]
    assert all(m["linear"] and m["swap"] and m["contractSize"] == 1 and m["settle"] == "USDC" for m in (btc, eth, sol))
    assert [m["precision"]["amount"] for m in (btc, eth, sol)] == [1e-05, 0.0001, 0.01]
    assert [m["limits"]["leverage"]["max"] for m in (btc, eth, sol)] == [40, 25, 20]
    # ccxt derives the price step from the mark: 5 significant figures (91234.5 -> 1, 3012.3 -> 0.1, 150.25 -> 0.01)
    assert [m["precision"]["price"] for m in (btc, eth, sol)] == [1.0, 0.1, 0.01]
    rates = c.fetch_funding_rates(["BTC/USDC:USDC"])
    assert rates["BTC/USDC:USDC"]["markPrice"] == 91_234.0  # 5 significant figures
    assert rates["BTC/USDC:USDC"]["interval"] == "1h"


def test_unknown_info_type_is_422(fx: FakeExchange) -> None:
    status, body = post(fx, "/info", {"type": "noSuchThing"})
    assert status == 422 and "unknown variant" in body
    status, body = post(fx, "/info", {"user": "0x0"})
    assert status == 422


def test_ccxt_default_client_approves_builder_fee_and_referrer_and_both_verify(fx: FakeExchange) -> None:
    c = client(fx)
    c.create_order("BTC/USDC:USDC", "market", "sell", 0.01, MARKS["BTC"])
    st = hyperliquid_state(fx)
    # the user-signed approveBuilderFee and the L1 setReferrer were verified like the order
    assert st.actions == ["approveBuilderFee", "setReferrer", "order"]
    assert st.referrer == "CCXT1"
    assert st.approved_builders == {"0x6530512a6c89c7cfcebc3ba7fcd9ada5f30827a6": "0.01%"}


def test_wrong_key_is_refused_naming_the_recovered_address(fx: FakeExchange) -> None:
    c = client(fx, OTHER_PK, refSet=True, approvedBuilderFee=True)
    with pytest.raises(ccxt.InvalidOrder) as exc:
        c.create_order("BTC/USDC:USDC", "market", "sell", 0.01, MARKS["BTC"])
    assert f"User or API Wallet {_address_of(OTHER_PK)} does not exist." in str(exc.value)
    assert hyperliquid_state(fx).ledger.fills == []


def signed_order(c: Any, nonce: int, vault: str | None = None) -> dict[str, Any]:
    action = {
        "type": "order",
        "orders": [{"a": 0, "b": False, "p": "86000", "s": "0.01", "r": False, "t": {"limit": {"tif": "Ioc"}}}],
        "grouping": "na",
    }
    body: dict[str, Any] = {"action": action, "nonce": nonce, "signature": c.sign_l1_action(action, nonce, vault)}
    if vault is not None:
        body["vaultAddress"] = vault
    return body


def test_nonce_and_vault_are_part_of_the_signature_and_a_nonce_is_used_once(fx: FakeExchange) -> None:
    c = client(fx)
    nonce = int(time.time() * 1000)
    body = signed_order(c, nonce)
    tampered = dict(body, nonce=nonce + 1)
    status, answer = post(fx, "/exchange", tampered)
    assert status == 200 and answer["status"] == "err" and "does not exist" in answer["response"]
    vaulted = dict(body, vaultAddress="0x" + "12" * 20)
    assert "does not exist" in post(fx, "/exchange", vaulted)[1]["response"]
    ok = post(fx, "/exchange", body)[1]
    assert ok["status"] == "ok" and "filled" in ok["response"]["data"]["statuses"][0]
    replay = post(fx, "/exchange", body)[1]
    assert replay == {"status": "err", "response": f"Invalid nonce: duplicate nonce {nonce}"}
    old = signed_order(c, nonce - 3 * 86_400_000)
    assert post(fx, "/exchange", old)[1]["response"].startswith("Invalid nonce")
    # a correctly signed vault action: the fake account has no vault
    vault = "12" * 20
    assert post(fx, "/exchange", signed_order(c, nonce + 5, vault))[1]["response"] == f"Vault not registered: 0x{vault}"
    assert len(hyperliquid_state(fx).ledger.fills) == 1


def test_orders_lookup_by_oid_and_cloid_cancel_fills(fx: FakeExchange) -> None:
    c = client(fx, refSet=True, approvedBuilderFee=True)
    cid_m, cid_l = "0x" + "ab" * 16, "0x" + "cd" * 16
    m = c.create_order("BTC/USDC:USDC", "market", "sell", 0.01, MARKS["BTC"], {"clientOrderId": cid_m})
    assert m["filled"] == 0.01 and m["clientOrderId"] == cid_m
    st = hyperliquid_state(fx)
    # IOC at mark·(1 − 5%), rounded to 5 significant figures by ccxt
    assert st.meta[m["id"]].tif == "Ioc" and st.meta[m["id"]].limit_px == "86673"
    lim = c.create_order("ETH/USDC:USDC", "limit", "sell", 0.5, 3_500, {"clientOrderId": cid_l})
    assert lim["id"] and lim["filled"] is None
    opened = c.fetch_open_orders("ETH/USDC:USDC")
    assert [(o["clientOrderId"], o["amount"], o["price"], o["side"]) for o in opened] == [(cid_l, 0.5, 3500.0, "sell")]
    by_cloid = c.fetch_order(None, "BTC/USDC:USDC", {"clientOrderId": cid_m})
    by_oid = c.fetch_order(m["id"], "BTC/USDC:USDC")
    assert by_cloid["id"] == by_oid["id"] == m["id"]
    assert by_cloid["status"] == "closed" and by_cloid["filled"] == 0.01
    with pytest.raises(ccxt.OrderNotFound):
        c.fetch_order(None, "BTC/USDC:USDC", {"clientOrderId": "0x" + "00" * 16})
    assert c.cancel_order(None, "ETH/USDC:USDC", {"clientOrderId": cid_l})["status"] == "success"
    assert c.fetch_order(None, "ETH/USDC:USDC", {"clientOrderId": cid_l})["status"] == "canceled"
    with pytest.raises(ccxt.OrderNotFound):  # cancelled already
        c.cancel_order(lim["id"], "ETH/USDC:USDC")
    trades = c.fetch_my_trades("BTC/USDC:USDC", T0)
    assert [(t["order"], t["side"], t["amount"], t["price"]) for t in trades] == [(m["id"], "sell", 0.01, 91_234.5)]
    assert trades[0]["fee"]["cost"] == pytest.approx(0.00045 * 0.01 * 91_234.5)
    assert trades[0]["info"]["dir"] == "Open Short" and trades[0]["info"]["cloid"] == cid_m


def test_venue_refusals_in_its_words(fx: FakeExchange) -> None:
    c = client(fx, refSet=True, approvedBuilderFee=True)
    sym = "BTC/USDC:USDC"
    with pytest.raises(ccxt.InvalidOrder, match=r"minimum value of \$10"):
        c.create_order(sym, "limit", "sell", 0.0001, 95_000)
    with pytest.raises(ccxt.InsufficientFunds, match="Insufficient margin"):
        c.create_order(sym, "market", "sell", 5.0, MARKS["BTC"])
    with pytest.raises(ccxt.InvalidOrder, match="Reduce only order would increase position"):
        c.create_order(sym, "market", "buy", 0.01, MARKS["BTC"], {"reduceOnly": True})
    with pytest.raises(ccxt.InvalidOrder, match="could not immediately match"):
        c.create_order(sym, "limit", "sell", 0.01, 95_000, {"timeInForce": "Ioc"})
    with pytest.raises(ccxt.InvalidOrder, match="Post only order would have immediately matched"):
        c.create_order(sym, "limit", "sell", 0.01, 90_000, {"postOnly": True})
    st = hyperliquid_state(fx)
    st.ledger.reject_next = "rate_limited"
    with pytest.raises(ccxt.RateLimitExceeded):
        c.create_order(sym, "market", "sell", 0.01, MARKS["BTC"])
    assert st.ledger.fills == []


def test_price_and_size_grids(fx: FakeExchange) -> None:
    c = client(fx)
    nonce = int(time.time() * 1000)
    for p, s, message in (
        ("91234.5", "0.01", "Price must be divisible by tick size. asset=0"),  # 6 significant figures
        ("95000", "0.000001", "Order has invalid size. asset=0"),  # 6 decimals, szDecimals 5
        ("95000", "0", "Order has zero size. asset=0"),
        ("500000", "0.01", "Order price cannot be more than 80% away from the reference price. asset=0"),
    ):
        action = {
            "type": "order",
            "orders": [{"a": 0, "b": False, "p": p, "s": s, "r": False, "t": {"limit": {"tif": "Gtc"}}}],
            "grouping": "na",
        }
        nonce += 1
        body = {"action": action, "nonce": nonce, "signature": c.sign_l1_action(action, nonce)}
        answer = post(fx, "/exchange", body)[1]
        assert answer["response"]["data"]["statuses"] == [{"error": message}]
    assert valid_price("123456", 5) and not valid_price("12345.6", 5)
    assert valid_price("0.001234", 0) and not valid_price("0.0012345", 0)
    assert valid_price("0.01234", 1) and not valid_price("0.012345", 1)


def test_positions_cross_and_isolated_with_the_venue_liquidation_formula(fx: FakeExchange) -> None:
    c = client(fx, refSet=True, approvedBuilderFee=True)
    c.set_margin_mode("isolated", "ETH/USDC:USDC", {"leverage": 10})
    c.create_order("ETH/USDC:USDC", "market", "sell", 1.0, MARKS["ETH"])
    c.create_order("BTC/USDC:USDC", "market", "sell", 0.01, MARKS["BTC"])
    st = hyperliquid_state(fx)
    with pytest.raises(ccxt.ExchangeError, match="Cannot switch leverage type with open position"):
        c.set_margin_mode("cross", "ETH/USDC:USDC", {"leverage": 10})
    fx.marks["ETH"] = 3_100.0
    pos = {p["symbol"]: p for p in c.fetch_positions()}
    eth, btc = pos["ETH/USDC:USDC"], pos["BTC/USDC:USDC"]
    assert (eth["marginMode"], eth["side"], eth["contracts"], eth["leverage"]) == ("isolated", "short", 1.0, 10)
    assert eth["entryPrice"] == 3_012.3 and eth["markPrice"] == 3_100.0
    assert eth["unrealizedPnl"] == pytest.approx(-87.7)
    assert eth["initialMargin"] == pytest.approx(301.23)  # margin posted, without PnL
    # isolated: margin + PnL − maintenance (ETH max 25x: 2%) at the mark; liq = mark + available/(1 + 0.02)
    available = 301.23 - 87.7 - 3_100 * 0.02
    assert eth["liquidationPrice"] == pytest.approx(3_100 + available / 1.02, rel=1e-9)
    assert (btc["marginMode"], btc["leverage"]) == ("cross", 20)
    value, _, mm, _ = st.cross_figures()
    assert btc["liquidationPrice"] == pytest.approx(MARKS["BTC"] + (value - mm) / 0.01 / 1.0125, rel=1e-9)
    state = c.publicPostInfo({"type": "clearinghouseState", "user": st.address})
    assert float(state["crossMaintenanceMarginUsed"]) == pytest.approx(0.01 * MARKS["BTC"] * 0.0125)
    assert float(state["marginSummary"]["accountValue"]) == pytest.approx(st.ledger.wallet["USDC"] - 87.7)
    c.add_margin("ETH/USDC:USDC", 100)
    eth2 = {p["symbol"]: p for p in c.fetch_positions()}["ETH/USDC:USDC"]
    assert eth2["initialMargin"] == pytest.approx(401.23)
    assert eth2["liquidationPrice"] > eth["liquidationPrice"]


def test_hourly_funding_pays_the_short_and_reads_as_userfunding(fx: FakeExchange) -> None:
    c = client(fx, refSet=True, approvedBuilderFee=True)
    st = hyperliquid_state(fx)
    st.funding_rates["BTC"] = 0.0001
    c.create_order("BTC/USDC:USDC", "market", "sell", 0.1, MARKS["BTC"])
    wallet = st.ledger.wallet["USDC"]
    fx.now_ms = T0 + 3 * H + 5
    rows = c.fetch_funding_history("BTC/USDC:USDC", T0)
    assert [r["timestamp"] for r in rows] == [(T0 // H + k) * H for k in (1, 2, 3)]
    assert all(r["amount"] == pytest.approx(0.1 * MARKS["BTC"] * 0.0001) for r in rows)  # a short receives
    assert all(r["info"]["delta"]["szi"] == "-0.1" for r in rows)
    assert st.ledger.wallet["USDC"] == pytest.approx(wallet + 3 * 0.1 * MARKS["BTC"] * 0.0001)
    st.funding_rates["BTC"] = -0.0002
    fx.now_ms += H
    last = c.fetch_funding_history("BTC/USDC:USDC", T0 + 3 * H + 1)
    assert len(last) == 1 and last[0]["amount"] == pytest.approx(-0.1 * MARKS["BTC"] * 0.0002)


def test_spot_balances_and_unified_flag(fx: FakeExchange) -> None:
    st: HyperliquidState = hyperliquid_state(fx)
    st.spot_balances.update({"USDC": 250.0, "HYPE": 3.5})
    c = client(fx)
    spot = c.fetch_balance({"type": "spot"})
    assert spot["USDC"]["total"] == 250.0 and spot["HYPE"]["total"] == 3.5
    perp = c.fetch_balance()
    assert perp["USDC"]["total"] == 10_000.0
    st.abstraction = "unifiedAccount"
    c2 = client(fx)
    assert c2.fetch_balance()["USDC"]["total"] == 250.0  # ccxt reads the spot wallet of a unified account


def test_liquidation_fills_name_the_user(fx: FakeExchange) -> None:
    c = client(fx, refSet=True, approvedBuilderFee=True)
    c.create_order("SOL/USDC:USDC", "market", "sell", 2.0, MARKS["SOL"])
    st = hyperliquid_state(fx)
    fx.marks["SOL"] = 160.0
    st.liquidate("SOL")
    liq = c.fetch_my_liquidations("SOL/USDC:USDC", T0)
    assert [(x["contracts"], x["price"], x["side"]) for x in liq] == [(2.0, 160.0, "buy")]
    assert st.ledger.positions["SOL"].qty == 0
    with pytest.raises(ValueError, match="no SOL position"):
        st.liquidate("SOL")


def test_other_addresses_read_as_empty_accounts(fx: FakeExchange) -> None:
    c = client(fx, refSet=True, approvedBuilderFee=True)
    c.create_order("BTC/USDC:USDC", "market", "sell", 0.01, MARKS["BTC"])
    other = "0x" + "99" * 20
    assert c.fetch_positions(None, {"user": other}) == []
    with pytest.raises(ccxt.OrderNotFound):  # {"status": "unknownOid"}
        c.publicPostInfo({"type": "orderStatus", "user": other, "oid": 100000001})
    assert c.fetch_order("100000001", "BTC/USDC:USDC")["filled"] == 0.01
    assert c.fetch_balance({"user": other})["USDC"]["total"] == 0.0


@pytest.fixture(scope="module")
def markets_client() -> Iterator[Any]:
    with FakeExchange(sample_dir(), private_key=PK, balances={"USDC": 1.0}) as fake:
        fake.marks.update(MARKS)
        fake.now_ms = T0
        yield client(fake)


@settings(max_examples=300, deadline=None)
@given(coin=st.sampled_from(["BTC", "ETH", "SOL"]), price=st.floats(min_value=1e-3, max_value=5e6))
def test_every_price_ccxt_rounds_is_on_the_fakes_grid(markets_client: Any, coin: str, price: float) -> None:
    """ccxt's price_to_precision (what the dialect sends) always yields a price the venue's rule accepts."""
    text = markets_client.price_to_precision(f"{coin}/USDC:USDC", price)
    szd = {"BTC": 5, "ETH": 4, "SOL": 2}[coin]
    if float(text) > 0:
        assert valid_price(text, szd), text
