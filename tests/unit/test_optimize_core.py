"""Pure parts of optimize: grids, design enumeration, windows, risk, carry, Pareto front, stability, β."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from perphedge.core.optimize import (
    Design,
    HedgeChoice,
    choose,
    enumerate_designs,
    objective,
    pareto_front,
    parse_choices,
    parse_grid,
    rolling_ols_beta,
    stability,
    walk_forward_windows,
    window_carry,
    window_risk,
)
from perphedge.errors import ConfigError

LIN = HedgeChoice(
    name="btc", kind="linear", venue="binance", legs=(("binance:BTCUSDT", 1.0),), max_leverage=125, bases=("BTC",)
)
INV = HedgeChoice(
    name="btc", kind="inverse", venue="binance", legs=(("binance:BTCUSD_PERP", 1.0),), max_leverage=3, bases=("BTC",)
)


def test_parse_grid_sorted_and_checked() -> None:
    assert parse_grid("1, 0.25,0.5", "--ratios", low=0, high=2, low_open=True) == (0.25, 0.5, 1.0)
    assert parse_grid("5,1", "--leverages", low=1, high=125) == (1.0, 5.0)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "comma-separated"),
        ("  ", "comma-separated"),
        ("0.5,,1", "empty item"),
        ("0.5,abc", "not a number"),
        ("nan", "not a finite"),
        ("inf", "not a finite"),
        ("0", "(0, 2]"),
        ("-0.5", "(0, 2]"),
        ("2.5", "(0, 2]"),
        ("0.5,0.5", "twice"),
        ("1e999", "not a finite"),
    ],
)
def test_parse_grid_refusals(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match="--ratios") as exc:
        parse_grid(text, "--ratios", low=0, high=2, low_open=True)
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_parse_choices() -> None:
    assert parse_choices("all", "--kinds", ("inverse", "linear")) == ("inverse", "linear")
    assert parse_choices("Linear", "--kinds", ("inverse", "linear")) == ("linear",)
    for bad in ("", "swap", "linear,linear", "linear,,inverse"):
        with pytest.raises(ConfigError, match="--kinds"):
            parse_choices(bad, "--kinds", ("inverse", "linear"))


def test_enumerate_rules() -> None:
    designs, dropped = enumerate_designs(
        [LIN, INV],
        ratios=(0.5, 1.0),
        leverages=(1.0, 2.0, 5.0),
        methods=("notional", "beta"),
        collaterals=("stable", "buy", "holdings"),
        policies=("band",),
        held=("SOL",),
        has_betas=False,
    )
    assert all(d.method == "notional" for d in designs)  # beta dropped: no betas in the file
    assert all(d.collateral == "stable" for d in designs if d.hedge.kind == "linear")
    assert all(d.collateral == "buy" for d in designs if d.hedge.kind == "inverse")  # holdings: BTC not held
    assert not any(d.hedge.kind == "inverse" and d.leverage == 1.0 for d in designs)  # synthetic dollar
    assert not any(d.leverage > d.hedge.max_leverage for d in designs)
    reasons = " ".join(r for _, r in dropped)
    assert "above the 3x maximum" in reasons and "betas" in reasons and "holdings" in reasons
    assert len({d.key for d in designs}) == len(designs)


def test_enumerate_holdings_when_held() -> None:
    designs, _ = enumerate_designs(
        [INV],
        ratios=(1.0,),
        leverages=(1.0,),
        methods=("notional",),
        collaterals=("holdings",),
        policies=("band", "calendar"),
        held=("BTC",),
    )
    assert [(d.collateral, d.leverage, d.policy) for d in designs] == [
        ("holdings", 1.0, "band"),
        ("holdings", 1.0, "calendar"),
    ]


def test_windows_roll_without_overlap() -> None:
    ws = walk_forward_windows(1000, 365, 90)
    assert ws[0].train_start == 1 and ws[0].train_end == 366
    for a, b in itertools.pairwise(ws):
        assert b.train_start == a.train_start + 90 and b.train_end == a.test_end
    assert all(w.test_end <= 1000 and w.test_end - w.train_end >= 45 for w in ws)
    with pytest.raises(ConfigError, match="fewer than"):
        walk_forward_windows(400, 365, 90)
    with pytest.raises(ConfigError, match="train"):
        walk_forward_windows(400, 10, 90)


def test_window_risk_and_carry() -> None:
    r = np.array([0.01, -0.01] * 50)
    assert window_risk(r, "variance", 30) == pytest.approx(1e-4 * 30)
    assert window_risk(r, "cvar95", 4) == pytest.approx(0.01 * 2)
    assert math.isnan(window_risk(np.array([0.1, np.nan]), "variance", 30))
    with pytest.raises(ConfigError, match="--risk"):
        window_risk(r, "vol", 30)
    assert window_carry(np.full(10, 5.0), np.full(10, 10_000.0), 30) == pytest.approx(0.015)
    assert math.isnan(window_carry(np.array([]), np.array([]), 30))
    assert objective(0.01, 0.02, 0.005, 2.0) == pytest.approx(0.045)


def test_choose_respects_feasibility() -> None:
    obj = np.array([0.1, -5.0, 0.3, np.nan])
    assert choose(obj, np.array([True, False, True, True])) == 0
    assert choose(obj, np.array([False, False, False, True])) is None


def test_pareto_front_small() -> None:
    pts = np.array([[1, 1, 0], [2, 0, 0], [2, 2, 0], [1, 1, 0.1], [np.nan, 0, 0]])
    assert pareto_front(pts) == [0, 1]


def test_stability() -> None:
    s = stability(["a", "b", "a", None])
    assert s == {"windows": 4, "distinct": 2, "most_frequent": "a", "share": 2 / 3}
    assert stability([None])["most_frequent"] is None


def test_rolling_beta_matches_ols() -> None:
    rng = np.random.default_rng(0)
    f = rng.normal(0, 0.02, 300)
    s = 1.3 * f + rng.normal(0, 0.01, 300)
    b = rolling_ols_beta(s, f, 60)
    assert np.isnan(b[:60]).all()
    t = 200
    x, y = f[t - 59 : t + 1], s[t - 59 : t + 1]
    assert b[t] == pytest.approx(np.polyfit(x, y, 1)[0], rel=1e-9)


def test_design_key_readable() -> None:
    d = Design(hedge=LIN, ratio=0.5, leverage=2, method="ewma", collateral="stable", policy="calendar")
    assert d.key == "btc linear binance | ewma 0.5 | 2x stable | calendar"
