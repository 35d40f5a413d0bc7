"""Units of the Bybit/OKX fakes and dialects: number formatting, error-code classification, client options."""

from __future__ import annotations

import math

import ccxt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perphedge.errors import ConfigError
from perphedge.exchange import fake_bybit, fake_okx, live_bybit, live_okx


@given(st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_numbers_are_written_without_exponent_and_round_trip(x: float) -> None:
    for fn in (fake_bybit._num, fake_okx._num):
        text = fn(x)
        assert "e" not in text.lower()
        assert float(text) == x or (x == 0 and float(text) == 0)


def test_non_finite_numbers_are_empty() -> None:
    assert fake_bybit._num(math.nan) == "" and fake_okx._num(math.inf) == ""


def test_contracts_come_from_our_specs() -> None:
    by = fake_bybit.bybit_contracts()
    assert by["BTCUSD"].kind == "inverse" and by["BTCUSD"].contract_size == 1 and by["BTCUSD"].settle == "BTC"
    assert by["SOLUSDT"].lot == 0.1 and by["BTCUSDT"].tick == 0.1
    ok = fake_okx.okx_contracts()
    assert ok["BTC-USDT-SWAP"].contract_size == 0.01 and ok["BTC-USD-SWAP"].contract_size == 100
    assert ok["BTC-USD-SWAP"].funding_key == ("okx", "BTC-USD-SWAP")


@pytest.mark.parametrize(("code", "kind"), sorted(live_bybit.REJECT_CODES.items()))
def test_bybit_reject_codes_are_definitive(code: int, kind: str) -> None:
    exc = ccxt.InvalidOrder(f'bybit {{"retCode":{code},"retMsg":"some text","result":{{}}}}')
    c = live_bybit.Bybit().classify(exc)
    assert c.outcome == "reject" and c.kind == kind and c.detail == f"{code} some text"


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (110001, "not_found"),
        (170213, "not_found"),
        (10003, "auth"),
        (10004, "auth"),
        (10006, "retry"),
        (10016, "retry"),
    ],
)
def test_bybit_other_codes(code: int, outcome: str) -> None:
    exc = ccxt.ExchangeError(f'bybit {{"retCode": {code}, "retMsg": "x"}}')
    assert live_bybit.Bybit().classify(exc).outcome == outcome


def test_bybit_fake_and_dialect_agree_on_every_neutral_kind() -> None:
    d = live_bybit.Bybit()
    for kind, (code, msg) in fake_bybit.REJECT_CODES.items():
        c = d.classify(ccxt.InvalidOrder(f'bybit {{"retCode": {code}, "retMsg": "{msg}"}}'))
        if kind == "rate_limited":  # a read is retried; create_order turns it into a rejection itself
            assert c.outcome == "retry"
        else:
            assert (c.outcome, c.kind) == ("reject", kind)


def test_okx_fake_and_dialect_agree_on_every_neutral_kind() -> None:
    d = live_okx.Okx()
    for kind, (code, msg) in fake_okx.REJECT_CODES.items():
        body = f'okx {{"code":"1","msg":"All operations failed","data":[{{"sCode":"{code}","sMsg":"{msg}"}}]}}'
        c = d.classify(ccxt.InvalidOrder(body))
        assert (c.outcome, c.kind) == ("reject", kind), kind


def test_okx_code_prefers_the_per_order_code() -> None:
    assert live_okx.okx_code('{"code":"1","msg":"All","data":[{"sCode":"51008","sMsg":"no margin"}]}') == (
        "51008",
        "no margin",
    )
    assert live_okx.okx_code('{"code":"50113","msg":"Invalid Sign","data":[]}') == ("50113", "Invalid Sign")
    assert live_okx.okx_code("no json here") == (None, "")


def test_transient_pages_without_a_code_are_retried() -> None:
    for d in (live_bybit.Bybit(), live_okx.Okx()):
        assert d.classify(ccxt.ExchangeError('x {"code": -1003, "msg": "Too many requests"}')).outcome == "retry"
        assert d.classify(ccxt.ExchangeError("x System is under maintenance.")).outcome == "retry"
        assert d.classify(ccxt.ExchangeError("x something else")).outcome == "unknown"


def test_bybit_options_skip_the_account_probes() -> None:
    d = live_bybit.Bybit()
    cfg = d.client_config({"key": "k", "secret": "s"}, {"bybit_account": "classic"})
    o = cfg["options"]
    assert o["enableUnifiedAccount"] is False and o["enableUnifiedMargin"] is False and o["unifiedMarginStatus"] == 1
    cfg = live_bybit.Bybit().client_config({"key": "k", "secret": "s"}, {})
    assert cfg["options"]["enableUnifiedAccount"] is True and cfg["options"]["unifiedMarginStatus"] == 6
    with pytest.raises(ConfigError, match=r"bybit_account.*'uta'"):
        live_bybit.Bybit().client_config({"key": "k", "secret": "s"}, {"bybit_account": "uta"})


def test_okx_options() -> None:
    d = live_okx.Okx()
    cfg = d.client_config({"key": "k", "secret": "s", "password": "p"}, {"okx_margin_mode": "isolated"})
    assert cfg["password"] == "p" and cfg["options"]["createOrder"] == "privatePostTradeOrder"
    assert cfg["options"]["fetchMarkets"] == {"types": ["swap"]}
    assert d.margin_mode == "isolated"
    assert "password" in live_okx.Okx.credentials


def test_venue_lookup_needs_a_mounted_fake() -> None:
    from perphedge.exchange.fake import FakeExchange
    from tests.conftest import sample_dir

    with FakeExchange(sample_dir()) as fx, pytest.raises(LookupError):
        fake_bybit.venue(fx)
