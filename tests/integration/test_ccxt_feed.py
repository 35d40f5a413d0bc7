"""LiveTickerFeed (exchange/ccxt_feed.py) against the fake exchange on 127.0.0.1 (public endpoints, no keys)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from perphedge.core.book import Feed
from perphedge.errors import ConfigError, ExchangeError
from perphedge.exchange.ccxt_feed import LiveTickerFeed
from perphedge.exchange.ccxt_source import RetryPolicy, make_exchange
from perphedge.exchange.fake import DAY_MS, FakeExchange, Fault
from perphedge.specs import default_registry
from tests.conftest import sample_dir

H = 3_600_000
T0 = 1_640_995_200_000 + H  # 2022-01-01 01:00 UTC
FAST = RetryPolicy(max_retries=1, base_delay=0.01, max_delay=0.02, unreachable_budget=0.5, seed=1)
NO_RETRY = RetryPolicy(max_retries=0, base_delay=0.01, max_delay=0.02, unreachable_budget=0.2, seed=1)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir()) as fx:
        yield fx


@pytest.fixture(autouse=True)
def _reset(fake: FakeExchange) -> None:
    fake.now_ms = T0
    fake.marks.clear()
    fake.faults.clear()


def feed(
    fx: FakeExchange,
    exchange: str = "binance",
    instruments: tuple[str, ...] = ("BTCUSDT",),
    assets: tuple[str, ...] = ("SOL", "BTC", "USDT"),
    policy: RetryPolicy = FAST,
    stale_after_s: float = 900,
) -> LiveTickerFeed:
    client = make_exchange(exchange, base_url=fx.url, timeout_ms=5_000)
    client.rateLimit = 1
    reg = default_registry()
    insts = [reg.get(f"{exchange}:{s}") for s in instruments]
    return LiveTickerFeed(
        exchange, instruments=insts, assets=assets, stale_after_s=stale_after_s, client=client, policy=policy
    )


def close_before(fx: FakeExchange, asset: str, ms: int) -> float:
    return float([r for r in fx.data.candles[asset] if r[0] + DAY_MS <= ms][-1][4])


def rates(fx: FakeExchange, exchange: str, native: str, lo: int, hi: int) -> list[tuple[int, float]]:
    return [(t, float(r)) for t, r in fx.data.funding[(exchange, native)] if lo < t <= hi]


def test_is_a_feed_and_prices_mark_and_spot(fake: FakeExchange) -> None:
    f = feed(fake)
    assert isinstance(f, Feed) and f.kind == "live"
    snap = f.snapshot(T0, T0 - H)
    assert snap.source == "live:binance" and snap.now_ms == T0
    assert snap.prices == {"BTC": close_before(fake, "BTC", T0), "SOL": close_before(fake, "SOL", T0)}
    assert snap.highs == snap.prices
    assert snap.price("sol") == close_before(fake, "SOL", T0)
    assert snap.last_price_ms == T0 and not snap.stale
    nxt, rate = next((t, float(r)) for t, r in fake.data.funding[("binance", "BTCUSDT")] if t > T0)
    assert snap.funding_rate_8h == {"binance:BTCUSDT": rate}
    assert f.next_funding_ms == {"binance:BTCUSDT": nxt}
    assert snap.funding == {}  # nothing settled in (00:00, 01:00]
    assert f.last_snapshot is snap
    paths = [p for p, _ in fake.log]
    assert any("/fapi/v1/premiumIndex" in p for p in paths) and any("/api/v3/ticker/24hr" in p for p in paths)


def test_settlement_between_snapshots_uses_the_history(fake: FakeExchange) -> None:
    f = feed(fake)
    f.snapshot(T0, T0 - H)
    t1 = T0 + 7 * H + 1  # 08:00:00.001
    fake.now_ms = t1
    snap = f.snapshot(t1, T0)
    want = rates(fake, "binance", "BTCUSDT", T0, t1)
    assert len(want) == 1
    assert [(s.settlement_ms, s.rate) for s in snap.funding["binance:BTCUSDT"]] == want
    assert all(s.instrument == "binance:BTCUSDT" for s in snap.funding["binance:BTCUSDT"])
    # the next tick does not report it again
    fake.now_ms = t1 + H
    assert f.snapshot(t1 + H, t1).funding == {}


def test_settlement_at_the_closing_instant_belongs_to_that_window(fake: FakeExchange) -> None:
    f = feed(fake)
    t8 = T0 + 7 * H  # exactly 08:00
    fake.now_ms = t8
    snap = f.snapshot(t8, T0)
    assert [s.settlement_ms for s in snap.funding["binance:BTCUSDT"]] == [t8]
    fake.now_ms = t8 + H
    assert f.snapshot(t8 + H, t8).funding == {}


def test_a_day_gap_after_restart_gets_every_settlement(fake: FakeExchange) -> None:
    f = feed(fake)  # a fresh object: nothing announced, the grid finds them
    now = T0 + DAY_MS
    fake.now_ms = now
    snap = f.snapshot(now, T0)
    want = rates(fake, "binance", "BTCUSDT", T0, now)
    assert len(want) == 3
    assert [(s.settlement_ms, s.rate) for s in snap.funding["binance:BTCUSDT"]] == want


def test_history_failure_falls_back_to_the_announced_rate(fake: FakeExchange) -> None:
    f = feed(fake, policy=NO_RETRY)
    fake.marks["BTC"] = 50_000.0
    f.snapshot(T0, T0 - H)
    announced = f._announced["binance:BTCUSDT"]
    (t8, rate) = next(iter(announced.items()))
    fake.now_ms = t8 + 1
    fake.inject(Fault("500", path="/fapi/v1/fundingRate"))
    snap = f.snapshot(t8 + 1, T0)
    assert [(s.settlement_ms, s.rate) for s in snap.funding["binance:BTCUSDT"]] == [(t8, rate)]


def test_history_failure_without_an_announced_rate_fails_the_tick(fake: FakeExchange) -> None:
    f = feed(fake, policy=NO_RETRY)
    now = T0 + DAY_MS
    fake.now_ms = now
    fake.inject(Fault("500", path="/fapi/v1/fundingRate"))
    with pytest.raises(ExchangeError, match="cannot read the funding settled on binance:BTCUSDT") as exc:
        f.snapshot(now, T0)
    assert "\n" not in str(exc.value)
    # retried with the same window, it succeeds
    snap = f.snapshot(now, T0)
    assert len(snap.funding["binance:BTCUSDT"]) == 3


def test_highs_are_the_max_price_seen_since(fake: FakeExchange) -> None:
    f = feed(fake, assets=())
    path = [50_000.0, 53_000.0, 51_000.0, 49_000.0]
    for i, p in enumerate(path):
        fake.marks["BTC"] = p
        fake.now_ms = T0 + i * 60_000
        snap = f.snapshot(T0 + i * 60_000, T0 - 1)
    assert snap.prices["BTC"] == 49_000.0 and snap.highs["BTC"] == 53_000.0
    # a later window that starts after the 53,000 observation forgets it
    fake.marks["BTC"] = 48_000.0
    fake.now_ms = T0 + 10 * 60_000
    snap = f.snapshot(T0 + 10 * 60_000, T0 + 60_000)
    assert snap.highs["BTC"] == 51_000.0


def test_stale_when_a_price_is_older_than_stale_after(fake: FakeExchange) -> None:
    f = feed(fake, stale_after_s=900)
    fake.now_ms = T0 - 901_000  # the venue's tickers are 901 s old
    snap = f.snapshot(T0, T0 - H)
    assert snap.stale and snap.last_price_ms == T0 - 901_000
    fake.now_ms = T0 - 900_000
    assert not f.snapshot(T0, T0 - H).stale


def test_bybit_linear_and_inverse(fake: FakeExchange) -> None:
    f = feed(fake, "bybit", ("BTCUSDT", "BTCUSD"), assets=("ETH", "BTC"))
    snap = f.snapshot(T0, T0 - H)
    assert snap.prices == {"BTC": close_before(fake, "BTC", T0), "ETH": close_before(fake, "ETH", T0)}
    assert set(snap.funding_rate_8h) == {"bybit:BTCUSDT", "bybit:BTCUSD"}
    t1 = T0 + 7 * H + 1
    fake.now_ms = t1
    snap = f.snapshot(t1, T0)
    assert [(s.settlement_ms, s.rate) for s in snap.funding["bybit:BTCUSDT"]] == rates(fake, "bybit", "BTCUSDT", T0, t1)


def test_unknown_spot_asset_is_one_line(fake: FakeExchange) -> None:
    f = feed(fake, assets=("NOPE",))
    with pytest.raises(ExchangeError, match=r"^binance has no spot market NOPE/USDT to price NOPE$"):
        f.snapshot(T0, T0 - H)


def test_nonsense_price_is_refused(fake: FakeExchange) -> None:
    f = feed(fake)
    fake.marks["BTC"] = 0.0
    with pytest.raises(ExchangeError, match="no valid mark price for binance:BTCUSDT"):
        f.snapshot(T0, T0 - H)
    fake.marks["BTC"] = 50_000.0
    fake.marks["SOL"] = -1.0
    with pytest.raises(ExchangeError, match="no valid price for SOL/USDT"):
        f.snapshot(T0, T0 - H)


def test_server_errors_are_one_line(fake: FakeExchange) -> None:
    f = feed(fake, policy=NO_RETRY)
    f.snapshot(T0, T0 - H)
    fake.inject(Fault("500", path="premiumIndex"))
    with pytest.raises(ExchangeError) as exc:
        f.snapshot(T0, T0 - H)
    text = str(exc.value)
    assert text.startswith("binance: fetch_funding_rate BTC/USDT:USDT failed after 1 attempts") and "\n" not in text


def test_unreachable_exchange_is_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = make_exchange("binance", base_url=f"http://127.0.0.1:{port}", timeout_ms=1_000)
    client.rateLimit = 1
    inst = default_registry().get("binance:BTCUSDT")
    f = LiveTickerFeed("binance", instruments=[inst], stale_after_s=60, client=client, policy=NO_RETRY)
    with pytest.raises(ExchangeError, match="connection refused") as exc:
        f.snapshot(T0, T0 - H)
    assert "\n" not in str(exc.value) and "Traceback" not in str(exc.value)


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({"exchange_id": "okx"}, "the live feed supports binance, bybit"),
        ({"instruments": ["bybit:BTCUSDT"]}, "it is listed on bybit"),
        ({"stale_after_s": 0}, "feed_stale_after"),
    ],
)
def test_construction_refusals(kw: dict[str, Any], text: str) -> None:
    reg = default_registry()
    args: dict[str, Any] = {"exchange_id": "binance", "instruments": ["binance:BTCUSDT"], "stale_after_s": 60}
    args.update(kw)
    insts = [reg.get(i) for i in args.pop("instruments")]
    with pytest.raises(ConfigError, match=text):
        LiveTickerFeed(args.pop("exchange_id"), instruments=insts, client=object(), **args)


def test_bad_window_refused(fake: FakeExchange) -> None:
    f = feed(fake)
    with pytest.raises(ValueError, match="since_ms"):
        f.snapshot(T0, T0 + 1)


def test_history_stamped_a_few_ms_off_is_one_settlement(fake: FakeExchange, monkeypatch: pytest.MonkeyPatch) -> None:
    """Binance history rows can carry fundingTime a few ms after the announced time: not two payments."""
    f = feed(fake)
    real = f.client.fetch_funding_rate_history

    def shifted(*args: Any, **kwargs: Any) -> Any:
        return [{**r, "timestamp": r["timestamp"] + 4} for r in real(*args, **kwargs)]

    monkeypatch.setattr(f.client, "fetch_funding_rate_history", shifted)
    f.snapshot(T0, T0 - H)
    t1 = T0 + 7 * H + 10
    fake.now_ms = t1
    got = [(s.settlement_ms, s.rate) for s in f.snapshot(t1, T0).funding["binance:BTCUSDT"]]
    assert got == rates(fake, "binance", "BTCUSDT", T0, t1)


def test_window_longer_than_a_year_refused(fake: FakeExchange) -> None:
    with pytest.raises(ValueError, match="longer than 366 days"):
        feed(fake).snapshot(T0, 0)
