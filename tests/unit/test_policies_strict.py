"""Policies never fall back silently: bad tables and bounds are refused at load, run-time fallbacks are stated."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.config import parse_run
from perphedge.core.policies import PolicySpec, policy_decisions
from perphedge.errors import ConfigError
from perphedge.usecases.backtest import _fallback_entries

DAYS = np.arange(20_000, 20_010, dtype=np.int64)
FLAT = np.full(10, 100.0)


def run_doc(policy: dict[str, Any], start: str = "2022-01-01") -> dict[str, Any]:
    return {"portfolio": "p.yaml", "start": start, "end": "2022-12-31", "policy": policy}


def refused(policy: dict[str, Any], match: str, start: str = "2022-01-01") -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse_run(run_doc(policy, start), "run.yaml")
    msg = str(info.value)
    assert msg.startswith("run.yaml: ") and "\n" not in msg


def table(*bounds: float) -> list[dict[str, float]]:
    return [{"max": b, "ratio": 0.5} for b in bounds]


# ------------------------------------------------------------------------------------------ load time


@pytest.mark.parametrize(
    ("bounds", "match"),
    [
        ((20, 39, 60, 79, 99), r"`table\[4\].max` must be >= 100.*was 99"),
        ((20, 20, 100), r"`table\[1\].max` must be above `table\[0\].max` \(20\)"),
        ((60, 39, 100), r"`table\[1\].max` must be above `table\[0\].max` \(60\).*was 39"),
        ((-5, 50, 100), r"`table\[0\].max` must be >= 0.*was -5"),
        ((50,), r"`table\[0\].max` must be >= 100"),
    ],
)
def test_fear_greed_table_must_cover_0_to_100(bounds: tuple[float, ...], match: str) -> None:
    refused({"kind": "fear_greed", "table": table(*bounds)}, match)


def test_an_empty_fear_greed_table_is_refused() -> None:
    refused({"kind": "fear_greed", "table": []}, "at least one entry")


@given(st.lists(st.floats(0, 99, allow_nan=False), min_size=0, max_size=6, unique=True), st.floats(100, 1000))
@settings(max_examples=60, deadline=None)
def test_any_increasing_covering_table_is_accepted(inner: list[float], last: float) -> None:
    bounds = [*sorted(inner), last]
    run = parse_run(run_doc({"kind": "fear_greed", "table": table(*bounds)}), "run.yaml")
    assert run.policy.table is not None and [e.max for e in run.policy.table] == bounds


@given(st.lists(st.floats(0, 200, allow_nan=False), min_size=2, max_size=6))
@settings(max_examples=60, deadline=None)
def test_a_table_not_strictly_increasing_is_refused(bounds: list[float]) -> None:
    if all(b > a for a, b in itertools.pairwise(bounds)):
        bounds = bounds[::-1]  # strictly decreasing now
    with pytest.raises(ConfigError, match="table"):
        parse_run(run_doc({"kind": "fear_greed", "table": table(*bounds)}), "run.yaml")


@pytest.mark.parametrize(
    ("bands", "match"),
    [
        ([0.4, 0.4, 2.0], r"`bands\[1\].max_vol` must be above `bands\[0\].max_vol` \(0.4\)"),
        ([0.8, 0.4], r"`bands\[1\].max_vol` must be above"),
        ([], "at least one band"),
    ],
)
def test_volatility_bands_must_increase(bands: list[float], match: str) -> None:
    refused({"kind": "volatility", "bands": [{"max_vol": b, "ratio": 0.5} for b in bands]}, match)


@pytest.mark.parametrize(
    ("policy", "match"),
    [
        ({"cut": 1.1}, r"`cut` must be <= 1.*was 1.1"),
        ({"boost": 0.9}, r"`boost` must be >= 1.*was 0.9"),
        ({"ratio": 1.0, "max_ratio": 0.8}, r"`ratio` must lie in \[`min_ratio`, `max_ratio`\] = \[0, 0.8\], was 1"),
        ({"ratio": 0.2, "min_ratio": 0.3}, r"\[0.3, 1.5\], was 0.2"),
        ({"cost_threshold_8h": 0.001, "rich_threshold_8h": 0.0005}, r"`rich_threshold_8h` must be >= `cost"),
        ({"cost_threshold_8h": -0.001}, r"cost_threshold_8h"),
        ({"lookback_days": 0}, r"lookback_days"),
    ],
)
def test_funding_aware_bounds(policy: dict[str, Any], match: str) -> None:
    refused({"kind": "funding_aware", **policy}, match)


@pytest.mark.parametrize(
    ("policy", "match"),
    [
        ({"kind": "trend", "sma_days": 1}, "sma_days"),
        ({"kind": "volatility", "vol_days": 4}, "vol_days"),
        ({"kind": "beta", "window_days": 5000}, "window_days"),
        ({"kind": "calendar", "every_days": 0}, "every_days"),
        ({"kind": "events", "events": [{"date": "2022-03-01", "ratio": 1, "before_days": -1}]}, "before_days"),
    ],
)
def test_windows_in_sensible_ranges(policy: dict[str, Any], match: str) -> None:
    refused(policy, match)


def test_schedule_must_be_in_force_at_the_start() -> None:
    sched = [{"from": "2022-03-01", "ratio": 0.9}, {"from": "2022-06-01", "ratio": 0.2}]
    refused(
        {"kind": "schedule", "schedule": sched},
        r"field `policy`: `schedule\[0\].from` \(2022-03-01\) is after `start` \(2022-01-01\)",
    )
    # an entry from the start, or an explicit base ratio, makes it well defined
    parse_run(run_doc({"kind": "schedule", "schedule": sched}, start="2022-03-01"), "run.yaml")
    parse_run(run_doc({"kind": "schedule", "ratio": 0.5, "schedule": sched}), "run.yaml")
    refused(
        {"kind": "schedule", "schedule": [*sched, {"from": "2022-03-01", "ratio": 0.1}]},
        r"`schedule\[2\].from` \(2022-03-01\) repeats `schedule\[0\].from`",
        start="2022-03-01",
    )


def test_policy_spec_checks_its_own_bounds() -> None:
    with pytest.raises(ConfigError, match="cover the index from 0 to 100"):
        PolicySpec(kind="fear_greed", table=((20.0, 0.5), (80.0, 0.1)))
    with pytest.raises(ConfigError, match=r"policy.table\[1\]"):
        PolicySpec(kind="fear_greed", table=((50.0, 0.5), (40.0, 0.1), (100.0, 0.1)))
    with pytest.raises(ConfigError, match=r"policy.bands\[1\]"):
        PolicySpec(kind="volatility", vol_bands=((0.8, 0.5), (0.4, 0.1)))
    with pytest.raises(ConfigError, match="cut <= 1 <= boost"):
        PolicySpec(kind="funding_aware", ratio=1.0, cut=1.2)
    with pytest.raises(ConfigError, match=r"min_ratio, max_ratio"):
        PolicySpec(kind="funding_aware", ratio=1.0, max_ratio=0.5)
    with pytest.raises(ConfigError, match="rich_threshold_8h"):
        PolicySpec(kind="funding_aware", cost_threshold_8h=0.01, rich_threshold_8h=0.001)


# ------------------------------------------------------------------------------------------ run time


def test_fear_greed_gaps_are_reported() -> None:
    fg = np.array([np.nan, np.nan, 50, 70, np.nan, np.nan, 15, 15, 15, 15], dtype=float)
    d = policy_decisions(PolicySpec(kind="fear_greed", ratio=0.3), days=DAYS, proxy_close=FLAT, fear_greed=fg)
    assert d.fallback[:2] == ("no Fear & Greed value yet: the policy's base ratio applies",) * 2
    assert d.target[:2].tolist() == [0.3, 0.3]
    assert d.fallback[4] == d.fallback[5] == "no Fear & Greed value that day: the last known value applies"
    assert d.target[4] == d.target[3] == 0.15
    assert [i for i, r in enumerate(d.fallback) if r] == [0, 1, 4, 5]


def test_volatility_above_the_last_band_and_warm_up_are_reported() -> None:
    rng = np.random.default_rng(1)
    wild = 100 * np.exp(np.cumsum(rng.normal(0, 0.2, 40)))
    days = np.arange(20_000, 20_040, dtype=np.int64)
    spec = PolicySpec(kind="volatility", ratio=0.3, vol_days=10, vol_bands=((0.4, 0.2), (0.8, 0.5)))
    d = policy_decisions(spec, days=days, proxy_close=wild)
    assert all("not yet full" in r for r in d.fallback[:10])
    assert all("above the last band (80%)" in r for r in d.fallback[10:])
    assert (d.target[10:] == 0.3).all()
    calm = np.full(40, 100.0)
    d = policy_decisions(spec, days=days, proxy_close=calm)
    assert not any(d.fallback[10:]) and (d.target[10:] == 0.2).all()


def test_schedule_days_before_the_first_entry_are_reported() -> None:
    d = policy_decisions(PolicySpec(kind="schedule", ratio=0.3, schedule=((20_003, 0.9),)), days=DAYS, proxy_close=FLAT)
    assert [bool(r) for r in d.fallback] == [True] * 3 + [False] * 7
    assert "before the first schedule entry" in d.fallback[0]


def test_funding_gaps_and_trend_warm_up_are_reported() -> None:
    f = np.array([0.0001] * 4 + [np.nan] + [0.0001] * 5)
    d = policy_decisions(
        PolicySpec(kind="funding_aware", ratio=1.0, lookback_days=3), days=DAYS, proxy_close=FLAT, funding_daily=f
    )
    assert "not yet full" in d.fallback[0] and "not yet full" in d.fallback[1] and not d.fallback[2]
    assert all("no funding rate" in d.fallback[i] for i in (4, 5, 6)) and not d.fallback[7]
    d = policy_decisions(PolicySpec(kind="trend", sma_days=4), days=DAYS, proxy_close=FLAT)
    assert [bool(r) for r in d.fallback] == [True] * 3 + [False] * 7


@pytest.mark.parametrize("kind", ["static", "drift_band", "calendar", "events", "beta"])
def test_rules_without_a_signal_have_no_fallbacks(kind: str) -> None:
    spec = PolicySpec(kind=kind, events=((20_004, 1.0, 1, 1),))
    assert not any(policy_decisions(spec, days=DAYS, proxy_close=FLAT).fallback)


def test_fallback_runs_are_compressed() -> None:
    prep = SimpleNamespace(dates=pd.date_range("2022-01-01", periods=10, freq="D", tz="UTC"), bar_hours=24.0)
    rows = [(0, "a", 0.5), (1, "a", 0.5), (2, "a", 0.5), (3, "a", 0.4), (5, "a", 0.4), (5, "b", 0.5), (1, "a", 0.5)]
    out = _fallback_entries(prep, rows)  # type: ignore[arg-type]
    assert out == [
        {"from": "2022-01-01", "to": "2022-01-03", "days": 3, "reason": "a", "ratio_used": 0.5},
        {"date": "2022-01-04", "reason": "a", "ratio_used": 0.4},
        {"date": "2022-01-06", "reason": "a", "ratio_used": 0.4},
        {"date": "2022-01-06", "reason": "b", "ratio_used": 0.5},
    ]
    prep8 = SimpleNamespace(dates=pd.date_range("2022-01-01", periods=9, freq="8h", tz="UTC"), bar_hours=8.0)
    out = _fallback_entries(prep8, [(i, "c", 1.0) for i in range(4)])  # type: ignore[arg-type]
    assert out == [{"from": "2022-01-01T00:00", "to": "2022-01-02T00:00", "days": 2, "reason": "c", "ratio_used": 1.0}]


def test_default_tables_are_stated_in_the_result() -> None:
    from perphedge.usecases.backtest import _policy_stated

    fg = _policy_stated(parse_run(run_doc({"kind": "fear_greed"}), "run.yaml"))
    assert fg["table_used"][0] == {"max": 20.0, "ratio": 0.625} and fg["table_used"][-1]["max"] == 100.0
    vol = _policy_stated(parse_run(run_doc({"kind": "volatility"}), "run.yaml"))
    assert vol["bands_used"][-1] == {"max_vol": None, "ratio": 0.75}
    given_table = {"kind": "fear_greed", "table": table(50, 100)}
    assert "table_used" not in _policy_stated(parse_run(run_doc(given_table), "run.yaml"))
