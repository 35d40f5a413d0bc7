"""Each policy's rule on small hand-made signals."""

from __future__ import annotations

import numpy as np
import pytest

from perphedge.core.policies import PolicySpec, policy_targets
from perphedge.errors import ConfigError

DAYS = np.arange(20_000, 20_010, dtype=np.int64)
FLAT = np.full(10, 100.0)


def targets(spec: PolicySpec, **kw: object) -> tuple[np.ndarray, np.ndarray, float]:
    return policy_targets(spec, days=DAYS, proxy_close=kw.pop("close", FLAT), **kw)  # type: ignore[arg-type]


def test_static_and_calendar() -> None:
    t, a, band = targets(PolicySpec(kind="static", ratio=0.4, band=0.05))
    assert (t == 0.4).all() and (a == 1).all() and band == 0.05
    t, a, band = targets(PolicySpec(kind="calendar", ratio=0.5, every_days=4))
    assert a.tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 1, 0] and band == 0


def test_schedule_and_events() -> None:
    t, _, _ = targets(PolicySpec(kind="schedule", ratio=0.3, schedule=((20_003, 0.9), (20_007, 0.1))))
    assert t.tolist() == [0.3] * 3 + [0.9] * 4 + [0.1] * 3
    t, _, _ = targets(PolicySpec(kind="events", ratio=0.2, events=((20_005, 1.0, 1, 2),)))
    assert t.tolist() == [0.2] * 4 + [1.0] * 4 + [0.2] * 2


def test_fear_greed_table_and_gaps() -> None:
    fg = np.array([10, 30, 50, 70, 90, np.nan, 15, np.nan, np.nan, 85], dtype=float)
    t, _, _ = targets(PolicySpec(kind="fear_greed", ratio=0.25), fear_greed=fg)
    assert t.tolist() == [0.625, 0.4, 0.25, 0.15, 0.05, 0.05, 0.625, 0.625, 0.625, 0.05]
    with pytest.raises(ConfigError, match="Fear & Greed"):
        targets(PolicySpec(kind="fear_greed"))


def test_funding_aware_sign_is_right() -> None:
    funding = np.array([0.0003] * 3 + [-0.0009] * 4 + [0.003] * 3)  # per day; 0.003/day = 0.1% per 8h
    t, _, _ = targets(
        PolicySpec(kind="funding_aware", ratio=1.0, lookback_days=1, cut=0.7, boost=1.2, max_ratio=1.2),
        funding_daily=funding,
    )
    # paid 0.01%/8h: keep; paying 0.03%/8h (cost): cut to 0.7; earning 0.1%/8h: raise to 1.2
    assert t.tolist() == [1.0] * 3 + [0.7] * 4 + [1.2] * 3


def test_trend_and_volatility() -> None:
    close = np.array([100, 101, 102, 103, 104, 90, 80, 70, 120, 130], dtype=float)
    t, _, _ = targets(PolicySpec(kind="trend", sma_days=3, ratio_on=1.0, ratio_off=0.1), close=close)
    assert t.tolist() == [0.1, 0.1, 0.1, 0.1, 0.1, 1.0, 1.0, 1.0, 0.1, 0.1]  # on while below the 3-day average
    calm = 100 * np.exp(np.cumsum(np.full(60, 0.001)))
    wild = 100 * np.exp(np.cumsum(np.tile([0.1, -0.1], 30)))
    spec = PolicySpec(kind="volatility", ratio=0.3, vol_days=10, vol_bands=((0.4, 0.2), (float("inf"), 0.8)))
    days = np.arange(60, dtype=np.int64)
    assert policy_targets(spec, days=days, proxy_close=calm)[0][-1] == 0.2
    assert policy_targets(spec, days=days, proxy_close=wild)[0][-1] == 0.8


def test_bad_policy() -> None:
    with pytest.raises(ConfigError, match=r"policy\.kind"):
        PolicySpec(kind="yolo")
    with pytest.raises(ConfigError, match=r"policy\.ratio"):
        PolicySpec(kind="static", ratio=3)
