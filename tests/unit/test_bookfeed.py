"""The book's feeds (``data/bookfeed.py``): StoreFeed on the sample market store (checked against direct DuckDB
queries), HistoryFeed on hand-built arrays, PortfolioFeed's settlement grid."""

from __future__ import annotations

import itertools
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perphedge.core.book import Feed, FeedSnapshot, FundingSettlement
from perphedge.data.bookfeed import EIGHT_HOURS_MS, HistoryFeed, PortfolioFeed, StoreFeed
from perphedge.errors import DataError

DAY = 86_400_000
HOUR = 3_600_000


def ms(text: str) -> int:
    """``2024-01-02 13:00`` (UTC) as epoch ms."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


# ---------------------------------------------------------------------------------------------- StoreFeed

pytestmark = pytest.mark.sample_data


def _feed(path: Path, **kw: object) -> StoreFeed:
    args: dict[str, object] = {
        "source": "binance",
        "assets": ["BTC", "eth", "SOL", "USDT"],
        "instruments": {"binance:BTCUSDT": "binance:BTC/USDT:USDT", "binance:ETHUSD_PERP": "ETH/USD:ETH"},
        "step": "1d",
        "stale_after_s": 36 * 3600,
        "assumed_rate_8h": 1e-4,
    }
    args.update(kw)
    return StoreFeed(path, **args)  # type: ignore[arg-type]


def _close_at(con: duckdb.DuckDBPyConnection, symbol: str, now: int) -> tuple[float, int]:
    """Direct query: the close of the newest daily candle with ts + 1 day <= now (close, close time ms)."""
    row = con.execute(
        "SELECT close, epoch_ms(ts) + 86400000 FROM candles WHERE source = 'binance' AND timeframe = '1d' "
        "AND symbol = ? AND epoch_ms(ts) + 86400000 <= ? ORDER BY ts DESC LIMIT 1",
        [symbol, now],
    ).fetchone()
    assert row is not None
    return float(row[0]), int(row[1])


@pytest.mark.parametrize(
    "now",
    ["2024-01-02 00:00", "2024-01-02 13:00", "2021-05-19 23:59", "2021-05-20 00:00", "2025-12-31 12:00"],
)
def test_store_feed_closes_match_duckdb(sample_store_path: Path, now: str) -> None:
    feed = _feed(sample_store_path)
    assert isinstance(feed, Feed)
    t = ms(now)
    snap = feed.snapshot(t, t - DAY)
    con = duckdb.connect(str(sample_store_path), read_only=True)
    try:
        expected = {a: _close_at(con, f"{a}/USDT", t) for a in ("BTC", "ETH", "SOL")}
    finally:
        con.close()
    assert snap.prices == {a: v[0] for a, v in expected.items()}
    assert "USDT" not in snap.prices  # stablecoins are 1 USD, not read
    assert snap.last_price_ms == min(v[1] for v in expected.values())
    assert snap.last_price_ms <= t < snap.last_price_ms + DAY  # the newest candle that has closed
    assert snap.now_ms == t and snap.bar is None and not snap.stale and snap.source == "binance"


def test_store_feed_highs_over_the_window(sample_store_path: Path) -> None:
    feed = _feed(sample_store_path)
    t = ms("2021-05-22 00:00")
    con = duckdb.connect(str(sample_store_path), read_only=True)
    try:
        for days in (1, 3, 10):
            snap = feed.snapshot(t, t - days * DAY)
            for a in ("BTC", "ETH", "SOL"):
                row = con.execute(
                    "SELECT max(high) FROM candles WHERE source = 'binance' AND timeframe = '1d' AND symbol = ? "
                    "AND epoch_ms(ts) + 86400000 > ? AND epoch_ms(ts) + 86400000 <= ?",
                    [f"{a}/USDT", t - days * DAY, t],
                ).fetchone()
                assert row is not None
                assert snap.highs[a] == float(row[0])
        # a window in which no candle closed: the high is the latest close
        snap = feed.snapshot(t + 5 * HOUR, t + HOUR)
        assert snap.highs == snap.prices
    finally:
        con.close()
    # the May 2021 crash: the 10-day high is well above the close
    assert feed.snapshot(t, t - 10 * DAY).highs["BTC"] > 1.2 * feed.snapshot(t, t - 10 * DAY).prices["BTC"]


@pytest.mark.parametrize(
    ("since", "now"),
    [
        ("2024-01-01 00:00", "2024-01-02 00:00"),  # settlement at since excluded, at now included
        ("2024-01-01 07:59", "2024-01-01 08:00"),
        ("2024-01-01 08:00", "2024-01-01 15:59"),  # none
        ("2023-12-20 05:00", "2024-01-03 17:00"),
    ],
)
def test_store_feed_funding_settlements_match_duckdb(sample_store_path: Path, since: str, now: str) -> None:
    feed = _feed(sample_store_path)
    s, t = ms(since), ms(now)
    snap = feed.snapshot(t, s)
    con = duckdb.connect(str(sample_store_path), read_only=True)
    try:
        for inst, (src, sym) in (
            ("binance:BTCUSDT", ("binance", "BTC/USDT:USDT")),
            ("binance:ETHUSD_PERP", ("binance", "ETH/USD:ETH")),
        ):
            rows = con.execute(
                "SELECT epoch_ms(ts), rate FROM funding WHERE source = ? AND symbol = ? AND epoch_ms(ts) > ? "
                "AND epoch_ms(ts) <= ? ORDER BY ts",
                [src, sym, s, t],
            ).fetchall()
            expected = tuple(FundingSettlement(instrument=inst, settlement_ms=int(m), rate=float(r)) for m, r in rows)
            assert snap.funding.get(inst, ()) == expected
            last = con.execute(
                "SELECT rate, interval_hours FROM funding WHERE source = ? AND symbol = ? AND epoch_ms(ts) <= ? "
                "ORDER BY ts DESC LIMIT 1",
                [src, sym, t],
            ).fetchone()
            assert last is not None
            assert snap.funding_rate_8h[inst] == float(last[0]) * 8.0 / float(last[1])
    finally:
        con.close()
    n = (t // EIGHT_HOURS_MS) - (s // EIGHT_HOURS_MS)
    assert len(snap.funding.get("binance:BTCUSDT", ())) == n  # the sample has every 8h settlement of 2023-24


def test_store_feed_rate_in_force_is_normalised_to_8h(sample_store_path: Path) -> None:
    t = ms("2020-06-01 00:00")
    feed = _feed(
        sample_store_path,
        assets=["BTC"],
        instruments={
            "daily": "binance_dailymean:BTC/USDT:USDT",  # 24 h interval
            "hourly": ("deribit", "BTC/USD:BTC"),  # 1 h interval
            "eight": "binance:BTC/USDT:USDT",
            "none": "binance:DOGE/USDT:USDT",  # not stored: the assumed rate, no settlements
        },
    )
    snap = feed.snapshot(t, t - DAY)
    con = duckdb.connect(str(sample_store_path), read_only=True)
    try:

        def latest(src: str, sym: str) -> float:
            row = con.execute(
                "SELECT rate FROM funding WHERE source = ? AND symbol = ? AND epoch_ms(ts) <= ? ORDER BY ts DESC "
                "LIMIT 1",
                [src, sym, t],
            ).fetchone()
            assert row is not None
            return float(row[0])

        assert snap.funding_rate_8h["daily"] == latest("binance_dailymean", "BTC/USDT:USDT") * 8.0 / 24.0
        assert snap.funding_rate_8h["hourly"] == latest("deribit", "BTC/USD:BTC") * 8.0
        assert snap.funding_rate_8h["eight"] == latest("binance", "BTC/USDT:USDT")
    finally:
        con.close()
    assert len(snap.funding["hourly"]) == 24
    assert snap.funding_rate_8h["none"] == 1e-4
    assert "none" not in snap.funding
    assert feed.funding_last_ms["none"] is None
    assert feed.funding_last_ms["eight"] == t
    # after the stored history ends: the latest stored rate, and the feed says where it ended
    late = ms("2025-12-31 12:00")
    snap = feed.snapshot(late, late - DAY)
    assert "eight" not in snap.funding
    assert feed.funding_last_ms["eight"] == ms("2025-12-29 16:00")


def test_store_feed_instrument_forms_are_equivalent(sample_store_path: Path) -> None:
    t = ms("2024-01-02 00:00")
    snaps = [
        _feed(sample_store_path, instruments={"i": spec}).snapshot(t, t - DAY).funding["i"]
        for spec in ("binance:BTC/USDT:USDT", "BTC/USDT:USDT", ("binance", "BTC/USDT:USDT"))
    ]
    assert snaps[0] == snaps[1] == snaps[2]
    assert len(snaps[0]) == 3


def test_store_feed_staleness(sample_store_path: Path) -> None:
    t = ms("2024-01-02 13:00")  # the newest close is 13 h old
    assert not _feed(sample_store_path, stale_after_s=13 * 3600).snapshot(t, t - DAY).stale
    assert _feed(sample_store_path, stale_after_s=13 * 3600 - 1).snapshot(t, t - DAY).stale
    # after the store's last candle (2025-12-31 closes 2026-01-01 00:00) the feed goes stale
    late = ms("2026-01-03 00:00")
    snap = _feed(sample_store_path).snapshot(late, late - DAY)
    assert snap.last_price_ms == ms("2026-01-01 00:00")
    assert snap.stale


def test_store_feed_oldest_close_decides(sample_store_path: Path) -> None:
    # MATIC's history ends 2024-09-09: its close is the oldest used
    t = ms("2024-10-01 00:00")
    snap = _feed(sample_store_path, assets=["BTC", "MATIC"]).snapshot(t, t - DAY)
    assert snap.last_price_ms == ms("2024-09-10 00:00")
    assert snap.stale


def test_store_feed_missing_asset_is_named(sample_store_path: Path) -> None:
    t = ms("2024-01-02 00:00")
    with pytest.raises(DataError, match=r"no 1d candle of PEPE \(PEPE/USDT from binance\).*`perphedge data fetch`"):
        _feed(sample_store_path, assets=["BTC", "PEPE"]).snapshot(t, t - DAY)
    early = ms("2020-01-01 00:00")  # SOL is listed 2020-08-11
    with pytest.raises(DataError, match=r"no 1d candle of SOL .* at or before 2020-01-01 00:00:00 UTC"):
        _feed(sample_store_path).snapshot(early, early - DAY)
    with pytest.raises(DataError, match=r"no 8h candle of BTC"):  # the sample has daily candles only
        _feed(sample_store_path, step="8h").snapshot(t, t - DAY)
    with pytest.raises(DataError, match=r"window starts after it ends"):
        _feed(sample_store_path).snapshot(t, t + 1)
    with pytest.raises(DataError, match=r"no market store at"):
        _feed(sample_store_path.parent / "nothing.duckdb").snapshot(t, t - DAY)
    with pytest.raises(DataError, match=r"step must be 1d or 8h"):
        _feed(sample_store_path, step="1h")
    with pytest.raises(DataError, match=r"stale_after_s must be > 0"):
        _feed(sample_store_path, stale_after_s=0)


def test_store_feed_does_not_hold_the_store(sample_store_path: Path, tmp_path: Path) -> None:
    from perphedge.data.store import MarketStore

    copy = tmp_path / "market.duckdb"
    shutil.copyfile(sample_store_path, copy)
    feed = _feed(copy)
    t = ms("2024-01-02 00:00")
    first = feed.snapshot(t, t - DAY)
    with MarketStore(copy, lock_timeout=0) as store:  # a writer gets the file between snapshots
        store.con.execute(
            "UPDATE candles SET close = 1.0 WHERE source = 'binance' AND symbol = 'BTC/USDT' AND ts = '2024-01-01'"
        )
    second = feed.snapshot(t, t - DAY)
    assert first.prices["BTC"] != 1.0
    assert second.prices["BTC"] == 1.0  # and the next snapshot reads what it wrote


# ---------------------------------------------------------------------------------------------- HistoryFeed

OPENS = np.array([ms("2024-01-01"), ms("2024-01-02"), ms("2024-01-03"), ms("2024-01-04"), ms("2024-01-05")])


def _history(**kw: object) -> HistoryFeed:
    args: dict[str, object] = {
        "bar_open_ms": OPENS,
        "bar_ms": DAY,
        "closes": {"BTC": np.array([100.0, 110.0, 90.0, 95.0, 120.0]), "sol": np.array([np.nan, 10.0, 11.0, 9.0, 8.0])},
        "highs": {"BTC": np.array([105.0, 130.0, 99.0, 97.0, 121.0]), "SOL": np.array([np.nan, 12.0, 11.5, 9.5, 8.5])},
        "funding": {"binance:BTCUSDT": np.array([0.0, 0.1, 0.2, 0.3, -0.05])},
    }
    args.update(kw)
    return HistoryFeed(**args)  # type: ignore[arg-type]


def test_history_bar_closes_and_one_bar_snapshots() -> None:
    feed = _history()
    assert isinstance(feed, Feed)
    closes = feed.bar_closes()
    assert closes == [int(o) + DAY for o in OPENS]
    assert all(isinstance(c, int) for c in closes)
    btc = [100.0, 110.0, 90.0, 95.0, 120.0]
    high = [105.0, 130.0, 99.0, 97.0, 121.0]
    fund = [0.0, 0.1, 0.2, 0.3, -0.05]
    prev = int(OPENS[0])
    for t, now in enumerate(closes):
        snap = feed.snapshot(now, prev)
        assert snap.bar == t
        assert snap.prices["BTC"] == btc[t]
        assert snap.highs["BTC"] == high[t]
        assert not snap.stale and snap.last_price_ms == now and snap.source == "store"
        if fund[t] == 0.0:
            assert "binance:BTCUSDT" not in snap.funding  # a zero bar books nothing
        else:
            assert snap.funding["binance:BTCUSDT"] == (
                FundingSettlement(instrument="binance:BTCUSDT", settlement_ms=now, rate=fund[t]),
            )
        assert snap.funding_rate_8h["binance:BTCUSDT"] == pytest.approx(fund[t] / 3.0, rel=1e-15)  # per 8 h
        prev = now
    first = feed.snapshot(closes[0], int(OPENS[0]))
    assert "SOL" not in first.prices and "SOL" not in first.highs  # not traded yet
    assert feed.snapshot(closes[1], closes[0]).prices["SOL"] == 10.0


def test_history_multi_bar_window_sums_funding_in_bar_order() -> None:
    feed = _history()
    closes = feed.bar_closes()
    snap = feed.snapshot(closes[3], closes[0])  # bars 1, 2, 3
    assert snap.bar == 3
    assert snap.prices == {"BTC": 95.0, "SOL": 9.0}
    assert snap.highs == {"BTC": 130.0, "SOL": 12.0}
    (settlement,) = snap.funding["binance:BTCUSDT"]
    assert settlement.settlement_ms == closes[3]
    assert settlement.rate == (0.1 + 0.2) + 0.3  # bar order: 0.6000000000000001
    assert settlement.rate != 0.1 + (0.2 + 0.3)
    # a since between two closes counts the bars closing after it
    assert feed.snapshot(closes[3], closes[1] - 1).highs["BTC"] == 130.0
    assert feed.snapshot(closes[3], closes[1]).highs["BTC"] == 99.0
    # since before the history: from the first bar
    snap = feed.snapshot(closes[4], int(OPENS[0]) - 10 * DAY)
    assert snap.highs["BTC"] == 130.0
    assert snap.funding["binance:BTCUSDT"][0].rate == (((0.0 + 0.1) + 0.2) + 0.3) + -0.05
    assert snap.highs["SOL"] == 12.0  # the NaN bar is skipped


def test_history_since_equal_now_and_refusals() -> None:
    feed = _history()
    closes = feed.bar_closes()
    snap = feed.snapshot(closes[2], closes[2])
    assert snap.highs == snap.prices  # no bar in the window
    assert snap.funding == {}
    with pytest.raises(DataError, match=r"is not a bar close of the history"):
        feed.snapshot(closes[2] - 1, closes[1])
    with pytest.raises(DataError, match=r"2024-01-01 00:00:00 UTC is not a bar close"):
        feed.snapshot(int(OPENS[0]), int(OPENS[0]) - DAY)
    with pytest.raises(DataError, match=r"is not a bar close"):
        feed.snapshot(closes[-1] + DAY, closes[-1])
    with pytest.raises(DataError, match=r"window starts after it ends"):
        feed.snapshot(closes[1], closes[2])


def test_history_rate_in_force_given() -> None:
    feed = _history(funding_rate_8h_now={"binance:BTCUSDT": np.array([1e-4, 2e-4, 3e-4, 4e-4, 5e-4])})
    assert feed.snapshot(feed.bar_closes()[2], feed.bar_closes()[1]).funding_rate_8h == {"binance:BTCUSDT": 3e-4}


def test_history_eight_hour_bars() -> None:
    opens = np.arange(6, dtype=np.int64) * EIGHT_HOURS_MS + ms("2024-03-31 00:00")
    feed = HistoryFeed(
        bar_open_ms=opens,
        bar_ms=EIGHT_HOURS_MS,
        closes={"ETH": np.linspace(3000, 3500, 6)},
        highs={"ETH": np.linspace(3100, 3600, 6)},
        funding={"x": np.full(6, 1e-4)},
        source="binance",
    )
    assert feed.bar_closes()[0] == ms("2024-03-31 08:00")
    snap = feed.snapshot(ms("2024-04-01 00:00"), ms("2024-03-31 16:00"))
    assert snap.bar == 2
    assert snap.funding_rate_8h == {"x": 1e-4}
    assert snap.source == "binance"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"bar_open_ms": np.array([], dtype=np.int64)}, "non-empty 1-D"),
        ({"bar_open_ms": OPENS.astype(float)}, "must hold integers"),
        ({"bar_ms": 0}, "`bar_ms` must be a positive integer"),
        ({"bar_open_ms": OPENS[[0, 2, 1, 3, 4]]}, "bar 2 opens at 2024-01-02 .* bars must be increasing"),
        ({"bar_ms": 2 * DAY}, "less than one bar"),
        ({"closes": {"BTC": np.ones(4)}}, r"`closes\[BTC\]` has shape \(4,\), expected \(5,\)"),
        ({"closes": {"BTC": np.ones(5), "btc": np.ones(5)}}, "names BTC twice"),
        ({"closes": {"BTC": np.array([1.0, 0.0, 1.0, 1.0, 1.0])}, "highs": {"BTC": np.ones(5)}}, "price <= 0"),
        ({"closes": {"ETH": np.ones(5)}}, "`highs` has no series for ETH"),
        ({"funding": {"i": np.array([0.0, np.nan, 0.0, 0.0, 0.0])}}, "funding of i is not finite at bar 1"),
        ({"funding_rate_8h_now": {"i": np.ones(3)}}, r"funding_rate_8h_now\[i\]"),
    ],
)
def test_history_bad_arrays_are_refused(kw: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        _history(**kw)


# ---------------------------------------------------------------------------------------------- PortfolioFeed


def test_portfolio_feed_settles_at_00_08_16_utc() -> None:
    feed = PortfolioFeed(
        {"btc": 60_000.0, "SOL": 150}, instruments=["binance:BTCUSDT", "okx:BTC-USDT-SWAP"], rate_8h=1e-4
    )
    assert isinstance(feed, Feed)
    midnight = ms("2024-01-02 00:00")
    snap = feed.snapshot(midnight, midnight - 1)
    assert snap.funding == {
        i: (FundingSettlement(instrument=i, settlement_ms=midnight, rate=1e-4),)
        for i in ("binance:BTCUSDT", "okx:BTC-USDT-SWAP")
    }
    assert feed.snapshot(midnight + 8 * HOUR - 1, midnight).funding == {}  # since excluded, 08:00 not reached
    day = feed.snapshot(midnight + DAY, midnight)
    assert [s.settlement_ms for s in day.funding["binance:BTCUSDT"]] == [
        ms("2024-01-02 08:00"),
        ms("2024-01-02 16:00"),
        ms("2024-01-03 00:00"),
    ]
    # across a European DST change nothing moves: UTC has none
    dst = feed.snapshot(ms("2024-03-31 12:00"), ms("2024-03-30 12:00"))
    assert [s.settlement_ms for s in dst.funding["binance:BTCUSDT"]] == [
        ms("2024-03-30 16:00"),
        ms("2024-03-31 00:00"),
        ms("2024-03-31 08:00"),
    ]
    assert day.prices == {"BTC": 60_000.0, "SOL": 150.0} == day.highs
    assert day.funding_rate_8h == {"binance:BTCUSDT": 1e-4, "okx:BTC-USDT-SWAP": 1e-4}
    assert day.last_price_ms == midnight + DAY and not day.stale and day.bar is None
    assert day.source == "portfolio" and feed.kind == "portfolio"


def test_portfolio_feed_edges() -> None:
    feed = PortfolioFeed({"BTC": 1.0}, instruments=["i"], rate_8h=-2e-4)
    now = ms("2024-01-02 00:00")
    assert feed.snapshot(now, now).funding == {}  # since == now: empty window
    assert feed.snapshot(now, now - 1).funding["i"][0].rate == -2e-4
    with pytest.raises(DataError, match=r"window starts after it ends: since 2024-01-02 00:00:00 UTC"):
        feed.snapshot(now - 1, now)
    before_1970 = feed.snapshot(-EIGHT_HOURS_MS, -3 * EIGHT_HOURS_MS - 1)
    assert [s.settlement_ms for s in before_1970.funding["i"]] == [
        -3 * EIGHT_HOURS_MS,
        -2 * EIGHT_HOURS_MS,
        -EIGHT_HOURS_MS,
    ]
    with pytest.raises(DataError, match=r"price of ETH must be a finite number > 0, was 0"):
        PortfolioFeed({"eth": 0}, instruments=[], rate_8h=0.0)
    with pytest.raises(DataError, match=r"price of ETH must be a finite number > 0, was nan"):
        PortfolioFeed({"eth": float("nan")}, instruments=[], rate_8h=0.0)
    with pytest.raises(DataError, match=r"rate_8h must be finite"):
        PortfolioFeed({"eth": 1}, instruments=[], rate_8h=float("inf"))


@given(since=st.integers(-(10**13), 10**13), span=st.integers(0, 30 * DAY))
def test_portfolio_settlement_grid(since: int, span: int) -> None:
    now = since + span
    times = PortfolioFeed.settlement_times(since, now)
    assert all(since < t <= now for t in times)
    assert all(t % EIGHT_HOURS_MS == 0 for t in times)
    assert all(b - a == EIGHT_HOURS_MS for a, b in itertools.pairwise(times))
    assert len(times) == now // EIGHT_HOURS_MS - since // EIGHT_HOURS_MS
    snap: FeedSnapshot = PortfolioFeed({"BTC": 2.0}, instruments=["i"], rate_8h=1e-4).snapshot(now, since)
    assert [s.settlement_ms for s in snap.funding.get("i", ())] == times
