"""The generic live-account pieces: redaction, the weight budget, the dialect registry, Binance's error and
weight tables, the fake CLI's balance parsing."""

from __future__ import annotations

import importlib.util

import ccxt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.errors import ConfigError
from perphedge.exchange import fake_binance
from perphedge.exchange.fake_cli import parse_balances
from perphedge.exchange.live import VENUES, VenueDialect, WeightBudget, dialect_for, scrub
from perphedge.exchange.live_binance import DAPI_WEIGHTS, FAPI_WEIGHTS, BinanceCoinm, BinanceUsdm, binance_code

# ------------------------------------------------------------------------------------------------ scrub


def test_scrub_removes_signatures_headers_and_values() -> None:
    text = (
        "binanceusdm GET http://h/fapi/v3/account?timestamp=1&signature=abcdef0123 "
        "{'X-MBX-APIKEY': 'PHSENTINELKEY123', 'Accept': '*/*'} secret=hunter22 MYSECRETVALUE"
    )
    out = scrub(text, ["MYSECRETVALUE", "PHSENTINELKEY123"])
    assert "abcdef0123" not in out and "PHSENTINELKEY" not in out and "MYSECRETVALUE" not in out
    assert "hunter22" not in out
    assert "signature=<redacted>" in out and "/fapi/v3/account" in out


def test_scrub_keeps_ordinary_text() -> None:
    text = 'binanceusdm {"code":-2019,"msg":"Margin is insufficient."}'
    assert scrub(text, ["abc"]) == text  # values shorter than 4 characters are not scrubbed (too common)


@given(
    secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=8, max_size=64),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
)
@settings(max_examples=200, deadline=None)
def test_scrub_never_lets_a_secret_through(secret: str, before: str, after: str) -> None:
    assert secret not in scrub(before + secret + after + secret, [secret])


# ------------------------------------------------------------------------------------------------ budget


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        assert s > 0
        self.t += s


@given(
    weights=st.lists(st.floats(min_value=0.0, max_value=40.0), min_size=1, max_size=80),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.3), min_size=80, max_size=80),
)
@settings(max_examples=150, deadline=None)
def test_budget_never_exceeds_limit_in_any_window(weights: list[float], gaps: list[float]) -> None:
    clock = _Clock()
    budget = WeightBudget(100.0, 1000, clock=clock.now, sleep=clock.sleep)
    booked: list[tuple[float, float]] = []
    for w, gap in zip(weights, gaps, strict=False):
        clock.t += gap
        budget.acquire(w)
        booked.append((clock.t, w))
    for t0, _ in booked:  # every window starting at a booking
        assert sum(w for t, w in booked if t0 <= t < t0 + 1.0) <= 100.0 + 1e-9
    assert budget.used() <= 100.0 + 1e-9


def test_budget_waits_for_the_oldest_to_leave() -> None:
    clock = _Clock()
    budget = WeightBudget(10.0, 1000, clock=clock.now, sleep=clock.sleep)
    budget.acquire(6)
    clock.t += 0.25
    budget.acquire(4)
    assert clock.t == pytest.approx(1000.25)
    budget.acquire(5)  # must wait until the first 6 leave the window at t = 1001.0
    assert clock.t == pytest.approx(1001.001, abs=1e-3)
    assert budget.used() == pytest.approx(9)


def test_budget_heavier_than_limit_waits_for_an_empty_window() -> None:
    clock = _Clock()
    budget = WeightBudget(10.0, 1000, clock=clock.now, sleep=clock.sleep)
    budget.acquire(3)
    budget.acquire(40)
    assert clock.t >= 1001.0
    assert budget.used() == 40


def test_budget_observes_the_venues_count() -> None:
    clock = _Clock()
    budget = WeightBudget(100.0, 1000, clock=clock.now, sleep=clock.sleep)
    budget.acquire(5)
    budget.observe_venue(90)  # another process spent 85
    assert budget.used() == pytest.approx(90)
    budget.observe_venue(10)  # lower than ours: ignored
    assert budget.used() == pytest.approx(90)
    budget.acquire(20)  # 90 + 20 > 100: waits a window
    assert clock.t >= 1001.0


@pytest.mark.parametrize(("limit", "window"), [(0, 1000), (-1, 1000), (float("nan"), 1000), (10, 0), (10, 1.5)])
def test_budget_refuses_bad_settings(limit: float, window: int) -> None:
    with pytest.raises(ConfigError, match="weight budget"):
        WeightBudget(limit, window)


# ------------------------------------------------------------------------------------------------ registry


def test_unknown_venue_lists_the_five() -> None:
    with pytest.raises(ConfigError) as err:
        dialect_for("kraken")
    msg = str(err.value)
    for venue in ("binance_usdm", "binance_coinm", "bybit", "okx", "hyperliquid"):
        assert venue in msg
    assert "'kraken'" in msg
    assert set(VENUES) == {"binance_usdm", "binance_coinm", "bybit", "okx", "hyperliquid"}


@pytest.mark.parametrize("venue", ["bybit", "okx", "hyperliquid"])
def test_other_venues_are_imported_lazily(venue: str) -> None:
    if importlib.util.find_spec(f"perphedge.exchange.{VENUES[venue]}") is None:
        with pytest.raises(ConfigError, match="not available"):
            dialect_for(venue)
    else:
        assert isinstance(dialect_for(venue), VenueDialect)


def test_binance_dialects() -> None:
    usdm, coinm = dialect_for("binance_usdm"), dialect_for("binance_coinm")
    assert isinstance(usdm, BinanceUsdm) and usdm.ccxt_id == "binanceusdm" and usdm.kinds == ("linear",)
    assert isinstance(coinm, BinanceCoinm) and coinm.ccxt_id == "binancecoinm" and coinm.kinds == ("inverse",)
    assert usdm.weight_limit == 2400 and coinm.weight_limit == 2400


def test_binance_client_config_and_sandbox() -> None:
    d = BinanceUsdm()
    cfg = d.client_config({"key": "K" * 10, "secret": "S" * 10}, {"ccxt": {"foo": 1}})
    assert cfg["apiKey"] == "K" * 10 and cfg["options"]["foo"] == 1 and cfg["options"]["defaultType"] == "swap"
    client = ccxt.binanceusdm(cfg)
    d.apply_sandbox(client)
    assert client.urls["api"]["fapiPrivate"].startswith("https://demo-fapi.binance.com")


@pytest.mark.parametrize(
    ("text", "outcome", "kind"),
    [
        ('{"code":-4164,"msg":"Order\'s notional must be no smaller than 5"}', "reject", "min_notional"),
        ('{"code":-1013,"msg":"Filter failure: MIN_NOTIONAL"}', "reject", "min_notional"),
        ('{"code":-1013,"msg":"Filter failure: LOT_SIZE"}', "reject", "invalid"),
        ('{"code":-2019,"msg":"Margin is insufficient."}', "reject", "insufficient_margin"),
        ('{"code":-2022,"msg":"ReduceOnly Order is rejected."}', "reject", "reduce_only"),
        ('{"code":-1111,"msg":"Precision is over the maximum defined for this asset."}', "reject", "invalid"),
        ('{"code":-4116,"msg":"ClientOrderId is duplicated."}', "reject", "duplicate"),
        ('{"code":-4015,"msg":"Client order id is not valid."}', "reject", "invalid"),
        ('{"code":-1015,"msg":"Too many new orders"}', "reject", "rate_limited"),
        ('{"code":-2013,"msg":"Order does not exist."}', "not_found", None),
        ('{"code":-2011,"msg":"Unknown order sent."}', "not_found", None),
        ('{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}', "auth", None),
        ('{"code":-1022,"msg":"Signature for this request is not valid."}', "auth", None),
        ('{"code":-1003,"msg":"Too many requests"}', "retry", None),
        ('{"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}', "retry", None),
        ('{"code":-1000,"msg":"An unknown error occured while processing the request."}', "retry", None),
    ],
)
def test_binance_classify(text: str, outcome: str, kind: str | None) -> None:
    c = BinanceUsdm().classify(ccxt.ExchangeError("binanceusdm " + text))
    assert (c.outcome, c.kind) == (outcome, kind)
    assert c.detail.startswith(text.split(",", maxsplit=1)[0].split(":")[1])  # the code leads the detail


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (ccxt.RequestTimeout("binanceusdm POST http://x/fapi/v1/order"), "retry"),
        (ccxt.NetworkError("binanceusdm POST http://x/fapi/v1/order"), "retry"),
        (ccxt.ExchangeNotAvailable("binanceusdm 503 Service Unavailable"), "retry"),
        (ccxt.DDoSProtection("binanceusdm 429"), "retry"),
        (ccxt.InsufficientFunds("x"), "reject"),
        (ccxt.OrderNotFound("x"), "not_found"),
        (ccxt.ExchangeError("binanceusdm something odd"), "unknown"),
    ],
)
def test_classify_without_a_code_falls_back_to_ccxt_classes(exc: Exception, outcome: str) -> None:
    assert BinanceCoinm().classify(exc).outcome == outcome


def test_binance_code_parsing() -> None:
    assert binance_code('binanceusdm {"code": -2019, "msg": "Margin is insufficient."}') == (
        -2019,
        "Margin is insufficient.",
    )
    assert binance_code("no code here") == (None, "")


def test_binance_weights() -> None:
    d = BinanceUsdm()
    assert d.weight("GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"}) == 1
    assert d.weight("GET", "/fapi/v1/openOrders", {}) == 40
    assert d.weight("GET", "/fapi/v1/income", {}) == 30
    assert d.weight("GET", "/fapi/v9/unknown", {}) == 1
    assert BinanceCoinm().weight("GET", "/dapi/v1/userTrades", {"symbol": "BTCUSD_PERP"}) == 20
    assert d.venue_used_weight({"x-mbx-used-weight-1m": "37"}) == 37
    assert d.venue_used_weight({"Content-Type": "x"}) is None


def test_dialect_and_fake_agree_on_weights() -> None:
    ours = {**FAPI_WEIGHTS, **DAPI_WEIGHTS}
    for key, weight in fake_binance.WEIGHTS.items():
        if key[0] == "POST" and key[1].endswith("/order"):
            assert ours[key] == 1 and weight == 0  # 0 on the IP limit; we count 1 to stay conservative
        else:
            assert ours[key] >= weight, key  # every endpoint the fake counts, we count at least as heavy


# ------------------------------------------------------------------------------------------------ fake CLI


def test_parse_balances() -> None:
    assert parse_balances(["USDT=100000", "btc=2"]) == {"USDT": 100_000.0, "BTC": 2.0}
    for bad, match in [
        ("USDT", "ASSET=AMOUNT"),
        ("=5", "ASSET=AMOUNT"),
        ("USDT=-1", ">= 0"),
        ("USDT=nan", ">= 0"),
        ("US-DT=1", "ASSET=AMOUNT"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse_balances([bad])
    with pytest.raises(ConfigError, match="twice"):
        parse_balances(["BTC=1", "btc=2"])


def test_budget_counts_a_request_from_its_answer() -> None:
    clock = _Clock()
    budget = WeightBudget(10.0, 1000, clock=clock.now, sleep=clock.sleep)
    entry = budget.acquire(10)
    clock.t += 0.4  # the answer took 400 ms: the venue may have counted it as late as now
    budget.done(entry)
    budget.acquire(1)
    assert clock.t == pytest.approx(1001.4 + 0.001, abs=1e-3)  # a window after the answer, not after the send
