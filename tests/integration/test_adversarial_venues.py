"""Adversarial trial of the OKX/Hyperliquid fetch, changing funding intervals and ``instruments --refresh``
(issue 13 items 1, 2, 5): each class of wrong input or wrong venue answer that misbehaved, now refused or
reported, against the fake exchange."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.data.store import MarketStore
from perphedge.errors import ConfigError
from perphedge.exchange.ccxt_source import CcxtSource, RetryPolicy, funding_intervals, make_exchange
from perphedge.exchange.fake import FakeExchange
from perphedge.exchange.fake_hyperliquid import HyperliquidState
from perphedge.specs import bundled_instruments, load_user_specs
from perphedge.usecases.data import FetchRequest, fetch_into
from perphedge.usecases.specs_refresh import RefreshRequest, refresh_specs
from tests.conftest import sample_dir

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, seed=1)


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange(sample_dir()) as fx:
        yield fx


def client(fx: FakeExchange, exchange: str) -> Any:
    c = make_exchange(exchange, base_url=fx.url, timeout_ms=10_000)
    c.rateLimit = 1
    return c


def hl_state(fx: FakeExchange) -> HyperliquidState:
    state = fx.venue_state["hyperliquid"]
    assert isinstance(state, HyperliquidState)
    return state


def mangle_call(c: Any, method: str, n: int, change: Callable[[Any], Any]) -> None:
    """Make the ``n``-th call of ``c.method`` answer ``change(answer)`` (the venue garbling one page)."""
    orig = getattr(c, method)
    calls = {"n": 0}

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        out = orig(*args, **kwargs)
        calls["n"] += 1
        return change(out) if calls["n"] == n else out

    setattr(c, method, wrapped)


def hl_pages(fx: FakeExchange, c: Any, n: int) -> tuple[list[tuple[int, float]], list[str]]:
    src = CcxtSource("hyperliquid", client=c, policy=FAST)
    src.markets()
    pages = list(
        src.funding_pages("BTC/USDC:USDC", T0, T0 + (n - 1) * HOUR, default_interval=1.0, now_ms=T0 + n * HOUR)
    )
    frame = pd.concat([p.frame for p in pages], ignore_index=True)
    got = [(int(t.value // 1_000_000), float(r)) for t, r in zip(frame["ts"], frame["rate"], strict=True)]
    return got, [note for p in pages for note in p.notes]


# ------------------------------------------------------------------------------------------- funding intervals


def series(runs: list[tuple[int, int]]) -> tuple[list[int], list[float]]:
    stamps, truth = [], []
    ms = T0
    for hours, n in runs:
        for _ in range(n):
            ms += hours * HOUR
            stamps.append(ms)
            truth.append(float(hours))
    return stamps, truth


@pytest.mark.parametrize(
    ("runs", "drop"),
    [
        ([(8, 5), (4, 5), (1, 5)], 4),  # the last 8h settlement before 8h -> 4h (a 12h spacing)
        ([(8, 5), (4, 5), (1, 5)], 9),  # the last 4h settlement before 4h -> 1h (a 5h spacing)
        ([(8, 5), (4, 5), (1, 5)], 10),  # the first 1h settlement (a 2h spacing between 4h and 1h)
        ([(1, 5), (8, 5)], 5),  # back from 1h to 8h, the first 8h settlement missing (a 16h spacing)
        ([(1, 5), (8, 5)], 4),  # back from 1h to 8h, the last 1h settlement missing (a 9h spacing)
        ([(8, 5), (4, 6)], 6),  # a change, then a settlement missing at the new interval
    ],
)
def test_a_settlement_missing_right_at_a_change_is_a_gap_not_a_one_off_interval(
    runs: list[tuple[int, int]], drop: int
) -> None:
    stamps, truth = series(runs)
    del stamps[drop], truth[drop]
    got, notes = funding_intervals(stamps, None, None, 8.0)
    assert got == truth
    changes = [n for n in notes if "changed" in n]
    assert len(changes) == len(runs) - 1  # each real change once, no 12h/5h/2h/16h/9h in between
    assert len([n for n in notes if "missing" in n]) == 1


@settings(max_examples=200, deadline=None)
@given(
    runs=st.lists(
        st.tuples(st.sampled_from([8, 4, 2, 1]), st.integers(min_value=3, max_value=10)), min_size=2, max_size=5
    ),
    data=st.data(),
)
def test_dropping_the_last_settlement_before_any_change_keeps_every_interval(
    runs: list[tuple[int, int]], data: st.DataObject
) -> None:
    stamps, truth = series(runs)
    i = data.draw(st.integers(min_value=0, max_value=len(runs) - 2))
    drop = sum(n for _, n in runs[: i + 1]) - 1  # the last settlement of run i
    del stamps[drop], truth[drop]
    got, notes = funding_intervals(stamps, None, None, 8.0)
    assert got == truth
    changes = sum(1 for a, b in itertools.pairwise(truth) if a != b)
    assert len([n for n in notes if "changed" in n]) == changes


def test_a_single_settlement_takes_the_spec_interval() -> None:
    assert funding_intervals([T0], None, None, 1.0) == ([1.0], [])
    assert funding_intervals([T0], T0 - 4 * HOUR, 4.0, 8.0) == ([4.0], [])


# ------------------------------------------------------------------------------------------- garbled pages


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), "abc", ""])
def test_a_funding_record_without_a_valid_rate_is_skipped_and_noted(fake: FakeExchange, bad: Any) -> None:
    rates = [(T0 + k * HOUR, 1e-5 * (k % 7 + 1)) for k in range(1200)]
    hl_state(fake).history_overrides["BTC"] = rates
    c = client(fake, "hyperliquid")

    def garble(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows[10] = dict(rows[10], fundingRate=bad)
        return rows

    mangle_call(c, "fetch_funding_rate_history", 2, garble)
    got, notes = hl_pages(fake, c, 1200)
    assert got == rates[:510] + rates[511:]  # never stored as NaN/inf, never a traceback
    assert any("has no valid rate" in n and "skipped" in n for n in notes)
    assert any("1 funding settlement(s) missing" in n for n in notes)


@pytest.mark.parametrize(
    "change",
    [
        lambda rows: rows[:200] + rows[:200] + rows[200:],  # duplicate timestamps
        lambda rows: list(reversed(rows)),  # newest first
        lambda rows: rows[250:] + rows[:250],  # out of order
        lambda rows: [*rows, dict(rows[-1], timestamp=rows[-1]["timestamp"] + 10**12)],  # one far past `until`
    ],
)
def test_duplicated_or_unordered_pages_give_the_series_exactly_once(fake: FakeExchange, change: Any) -> None:
    rates = [(T0 + k * HOUR, 1e-5 * (k % 5 + 1)) for k in range(1700)]
    hl_state(fake).history_overrides["BTC"] = rates
    c = client(fake, "hyperliquid")
    mangle_call(c, "fetch_funding_rate_history", 2, change)
    got, notes = hl_pages(fake, c, 1700)
    assert got == rates
    assert notes == []


def test_an_empty_page_midway_is_asked_again(fake: FakeExchange) -> None:
    rates = [(T0 + k * HOUR, 1e-5) for k in range(1700)]
    hl_state(fake).history_overrides["BTC"] = rates
    c = client(fake, "hyperliquid")
    mangle_call(c, "fetch_funding_rate_history", 2, lambda rows: [])
    got, notes = hl_pages(fake, c, 1700)
    assert got == rates  # before: the fetch stopped at 500 rows and said nothing
    assert notes == []


def test_a_history_that_stops_before_until_is_noted(fake: FakeExchange) -> None:
    rates = [(T0 + k * HOUR, 1e-5) for k in range(700)]
    hl_state(fake).history_overrides["BTC"] = rates
    got, notes = hl_pages(fake, client(fake, "hyperliquid"), 1700)
    assert got == rates
    assert len(notes) == 1 and "answered no funding after 2024-01-30 03:00:00" in notes[0]


# ------------------------------------------------------------------------------------------- fetch windows


@pytest.mark.parametrize(("since", "until"), [("2031-01-01", "2031-02-01"), ("2099-12-31T23:00", "2100-01-01")])
def test_since_in_the_future_is_refused_even_with_until(tmp_path: Path, since: str, until: str) -> None:
    req = FetchRequest(exchange="hyperliquid", perps=("BTC/USDC:USDC",), since=since, until=until)
    with MarketStore(tmp_path / "s.duckdb") as store, pytest.raises(ConfigError, match="is in the future"):
        fetch_into(store, req, client=object(), policy=FAST)


@pytest.mark.parametrize(("exchange", "perp"), [("hyperliquid", "ETH/USDC:USDC"), ("binance", "BTC/USDT:USDT")])
def test_an_earlier_since_fetches_the_older_part_too(
    fake: FakeExchange, tmp_path: Path, exchange: str, perp: str
) -> None:
    c = client(fake, exchange)

    def dump(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        with MarketStore(path, read_only=True) as store:
            return (
                store.query("SELECT ts, close FROM candles ORDER BY ts"),
                store.query("SELECT ts, rate, interval_hours FROM funding ORDER BY ts"),
            )

    with MarketStore(tmp_path / "whole.duckdb") as store:
        fetch_into(
            store, FetchRequest(exchange=exchange, perps=(perp,), since="2024-03-01", until="2024-04-30"), client=c
        )
    with MarketStore(tmp_path / "parts.duckdb") as store:
        for since in ("2024-04-01", "2024-03-01"):  # the later start first: resuming would skip March
            req = FetchRequest(exchange=exchange, perps=(perp,), since=since, until="2024-04-30")
            fetch_into(store, req, client=c, policy=FAST)
    whole, parts = dump(tmp_path / "whole.duckdb"), dump(tmp_path / "parts.duckdb")
    assert whole[0]["ts"].min() == pd.Timestamp("2024-03-01")
    for a, b in zip(whole, parts, strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)


# ------------------------------------------------------------------------------------------- instruments --refresh


def garbage_markets(field: str, value: Any) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    def change(markets: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for m in markets:
            if field == "max_leverage":
                m["limits"] = {**(m.get("limits") or {}), "leverage": {"max": value}}
            elif field == "contract_size":
                m["contractSize"] = value
            else:
                m["precision"] = {**(m.get("precision") or {}), field: value}
        return markets

    return change


@pytest.mark.parametrize("venue", ["okx", "hyperliquid"])
@pytest.mark.parametrize(
    ("field", "value", "spec_field"),
    [
        ("max_leverage", 0, "max_leverage"),
        ("max_leverage", float("nan"), "max_leverage"),
        ("max_leverage", 1e9, "max_leverage"),
        ("max_leverage", 0.5, "max_leverage"),
        ("contract_size", 1e9, "contract_size"),
        ("contract_size", 1e-30, "contract_size"),
        ("contract_size", float("nan"), "contract_size"),
        ("price", 0, "tick_size"),
        ("price", 1e9, "tick_size"),
        ("amount", 1e-30, "lot_size"),
    ],
)
def test_garbage_markets_are_reported_never_written(
    fake: FakeExchange, tmp_path: Path, venue: str, field: str, value: Any, spec_field: str
) -> None:
    c = client(fake, venue)
    mangle_call(c, "fetch_markets", 1, garbage_markets(field, value))
    out = tmp_path / "specs.yaml"
    doc = refresh_specs(RefreshRequest(exchanges=(venue,), write=str(out)), clients={venue: c})
    by_id = {f"{i.exchange}:{i.symbol}": i for i in bundled_instruments()}
    written = load_user_specs(out)  # what --specs reads
    assert written
    for inst in written:
        old = by_id[f"{inst.exchange}:{inst.symbol}"]
        # Hyperliquid's tick and lot come from szDecimals, not ccxt's precision: a garbled precision changes nothing
        assert getattr(inst, spec_field) == getattr(old, spec_field)
        # the tiers' rates and leverages stay (OKX's floors are converted from contracts at the last price)
        assert [(t.mmr, t.max_leverage) for t in inst.margin.tiers] == [
            (t.mmr, t.max_leverage) for t in old.margin.tiers
        ]
    if venue == "okx" or field in ("max_leverage", "contract_size"):
        assert any(f"`{spec_field}`" in n and "bundled value kept" in n for n in doc["notes"])


@pytest.mark.parametrize("missing", [498, 499, 500, 999])
def test_a_settlement_missing_at_a_page_boundary_is_a_gap_not_two_changes(fake: FakeExchange, missing: int) -> None:
    rates = [(T0 + k * HOUR, 1e-5) for k in range(1200)]
    del rates[missing]
    hl_state(fake).history_overrides["BTC"] = rates
    src = CcxtSource("hyperliquid", client=client(fake, "hyperliquid"), policy=FAST)
    src.markets()
    pages = list(
        src.funding_pages("BTC/USDC:USDC", T0, T0 + 1199 * HOUR, default_interval=1.0, now_ms=T0 + 1200 * HOUR)
    )
    frame = pd.concat([p.frame for p in pages], ignore_index=True)
    assert [int(t.value // 1_000_000) for t in frame["ts"]] == [ms for ms, _ in rates]  # each once, in order
    assert set(frame["interval_hours"]) == {1.0}
    notes = [n for p in pages for n in p.notes]
    assert len(notes) == 1 and "1 funding settlement(s) missing" in notes[0]
