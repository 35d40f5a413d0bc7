"""Limits on a whole plan (core/limits.py): each limit refuses and names itself; risk-reducing orders pass."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.config import LimitsModel
from perphedge.core.limits import LimitSpec, PlannedOrder, check_limits


def order(**kw: Any) -> PlannedOrder:
    base: dict[str, Any] = {
        "leg": 0,
        "account": "paper1",
        "instrument": "binance:BTCUSDT",
        "side": "sell",
        "contracts": 0.51,
        "notional_usd": 30_600.0,
        "reduce_only": False,
        "leverage_before": 1.5,
        "leverage_after": 2.0,
        "liq_distance_before": 0.6,
        "liq_distance_after": 0.45,
    }
    base.update(kw)
    return PlannedOrder(**base)


NONE = LimitSpec()


def test_no_limits_no_breach() -> None:
    assert check_limits([order()], NONE, turnover_24h_usd=1e12) == []
    assert check_limits([], LimitSpec(max_turnover_usd_per_day=1.0), turnover_24h_usd=0.0) == []


def test_max_order_usd_message() -> None:
    (b,) = check_limits([order()], LimitSpec(max_order_usd=25_000), turnover_24h_usd=0)
    assert b.limit == "max_order_usd" and b.value == 30_600 and b.bound == 25_000
    assert b.message == "limit `max_order_usd`: order binance:BTCUSDT sell 0.51 (30,600 USD) exceeds 25,000"


def test_max_order_usd_boundary_is_allowed() -> None:
    assert check_limits([order(notional_usd=25_000.0)], LimitSpec(max_order_usd=25_000), turnover_24h_usd=0) == []
    assert check_limits([order(notional_usd=25_000.01)], LimitSpec(max_order_usd=25_000), turnover_24h_usd=0)


def test_max_order_applies_to_cuts_too() -> None:
    cut = order(side="buy", reduce_only=True, leverage_after=1.0, liq_distance_after=1.0)
    (b,) = check_limits([cut], LimitSpec(max_order_usd=10_000), turnover_24h_usd=0)
    assert b.limit == "max_order_usd"


def test_turnover_counts_journal_and_plan() -> None:
    spec = LimitSpec(max_turnover_usd_per_day=50_000)
    plan = [order(notional_usd=20_000.0), order(leg=1, instrument="binance:ETHUSDT", notional_usd=10_000.0)]
    assert check_limits(plan, spec, turnover_24h_usd=20_000) == []
    (b,) = check_limits(plan, spec, turnover_24h_usd=20_000.01)
    assert b.limit == "max_turnover_usd_per_day" and b.subject == "plan"
    assert b.value == pytest.approx(50_000.01) and b.bound == 50_000
    assert "20,000 USD traded in the last 24 h plus 30,000 USD planned is 50,000 USD, above 50,000" in b.message


def test_max_leverage_after_the_trade() -> None:
    spec = LimitSpec(max_leverage=3)
    (b,) = check_limits([order(leverage_after=3.4)], spec, turnover_24h_usd=0)
    assert b.limit == "max_leverage" and b.value == 3.4 and b.bound == 3
    assert b.message.startswith("limit `max_leverage`: order binance:BTCUSDT sell 0.51")
    assert "3.40x leverage, above 3x" in b.message
    assert check_limits([order(leverage_after=3.0)], spec, turnover_24h_usd=0) == []


def test_min_liquidation_distance_after_the_trade() -> None:
    spec = LimitSpec(min_liquidation_distance=0.25)
    (b,) = check_limits([order(liq_distance_after=0.18)], spec, turnover_24h_usd=0)
    assert b.limit == "min_liquidation_distance" and b.value == 0.18
    assert "18.0% above the mark, below 25.0%" in b.message
    assert check_limits([order(liq_distance_after=math.inf)], spec, turnover_24h_usd=0) == []


def test_risk_reducing_order_is_never_refused_by_leverage_or_distance() -> None:
    """A cut that leaves the leg still over both limits is the way back under them: it passes."""
    spec = LimitSpec(max_leverage=3, min_liquidation_distance=0.25)
    cut = order(
        side="buy",
        reduce_only=True,
        leverage_before=8.0,
        leverage_after=5.0,
        liq_distance_before=0.05,
        liq_distance_after=0.1,
    )
    assert check_limits([cut], spec, turnover_24h_usd=0) == []
    # equal before and after also counts as not adding risk
    same = replace(cut, leverage_after=8.0, liq_distance_after=0.05)
    assert check_limits([same], spec, turnover_24h_usd=0) == []
    # but more leverage, or a shorter distance, is checked
    worse = replace(cut, leverage_after=8.5)
    assert {b.limit for b in check_limits([worse], spec, turnover_24h_usd=0)} == {
        "max_leverage",
        "min_liquidation_distance",
    }
    closer = replace(cut, liq_distance_after=0.04)
    assert {b.limit for b in check_limits([closer], spec, turnover_24h_usd=0)} == {
        "max_leverage",
        "min_liquidation_distance",
    }


def test_a_sell_is_checked_even_at_unchanged_leverage() -> None:
    """A leg already above the limits may not grow its short, even when the trade keeps its leverage."""
    spec = LimitSpec(max_leverage=1.5, min_liquidation_distance=0.6)
    grow = order(leverage_before=2.0, leverage_after=2.0, liq_distance_before=0.49, liq_distance_after=0.49)
    assert {b.limit for b in check_limits([grow], spec, turnover_24h_usd=0)} == {
        "max_leverage",
        "min_liquidation_distance",
    }
    cut = replace(grow, side="buy", reduce_only=True)
    assert check_limits([cut], spec, turnover_24h_usd=0) == []


def test_instruments() -> None:
    spec = LimitSpec(instruments=frozenset({"binance:BTCUSDT"}))
    assert check_limits([order(instrument="BINANCE:btcusdt")], spec, turnover_24h_usd=0) == []
    (b,) = check_limits([order(instrument="binance:ETHUSDT")], spec, turnover_24h_usd=0)
    assert b.limit == "instruments"
    assert b.message.startswith("limit `instruments`: order binance:ETHUSDT sell")
    assert "is not an allowed instrument (binance:BTCUSDT)" in b.message


def test_every_breach_in_a_fixed_order() -> None:
    spec = LimitSpec(
        max_order_usd=1_000,
        max_turnover_usd_per_day=1_000,
        max_leverage=1.5,
        min_liquidation_distance=0.5,
        instruments=frozenset({"binance:SOLUSDT"}),
    )
    got = [b.limit for b in check_limits([order()], spec, turnover_24h_usd=0)]
    assert got == [
        "instruments",
        "max_order_usd",
        "max_leverage",
        "min_liquidation_distance",
        "max_turnover_usd_per_day",
    ]


@pytest.mark.parametrize(
    "field", ["contracts", "notional_usd", "leverage_before", "leverage_after", "liq_distance_before"]
)
def test_nan_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match=f"`{field}`"):
        order(**{field: math.nan})


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"contracts": -1.0}, "contracts"),
        ({"notional_usd": math.inf}, "notional_usd"),
        ({"notional_usd": -5.0}, "notional_usd"),
        ({"leverage_after": -0.1}, "leverage_after"),
        ({"side": "short"}, "side"),
        ({"contracts": True}, "contracts"),
    ],
)
def test_bad_orders_are_refused(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"`{field}`"):
        order(**kw)


def test_turnover_nan_refused() -> None:
    with pytest.raises(ValueError, match="turnover_24h_usd"):
        check_limits([order()], NONE, turnover_24h_usd=math.nan)
    with pytest.raises(ValueError, match="turnover_24h_usd"):
        check_limits([order()], NONE, turnover_24h_usd=-1.0)


@pytest.mark.parametrize("value", [0.0, -1.0, math.nan, math.inf])
def test_bad_spec_refused(value: float) -> None:
    with pytest.raises(ValueError, match="max_order_usd"):
        LimitSpec(max_order_usd=value)


def test_from_model() -> None:
    m = LimitsModel.model_validate(
        {"max_order_usd": 25_000, "max_leverage": 3, "instruments": ["binance:BTCUSDT", "bybit:BTCUSDT"]}
    )
    spec = LimitSpec.from_model(m)
    assert spec == LimitSpec(
        max_order_usd=25_000, max_leverage=3, instruments=frozenset({"binance:BTCUSDT", "bybit:BTCUSDT"})
    )
    duck = SimpleNamespace(
        max_order_usd=None,
        max_turnover_usd_per_day=5.0,
        max_leverage=None,
        min_liquidation_distance=0.2,
        instruments=[],
    )
    assert LimitSpec.from_model(duck) == LimitSpec(max_turnover_usd_per_day=5.0, min_liquidation_distance=0.2)


finite = st.floats(0, 1e9, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(finite, finite, finite, st.floats(-1, 10), st.floats(-1, 10), st.sampled_from(["sell", "buy"])),
        min_size=1,
        max_size=6,
    ),
    st.floats(1, 1e9),
    st.floats(1, 1e9),
    st.floats(1, 50),
    st.floats(0.01, 5),
    finite,
)
def test_property_breaches_exactly_when_a_rule_is_broken(
    rows: list[tuple[float, float, float, float, float, str]],
    max_order: float,
    max_turn: float,
    max_lev: float,
    min_dist: float,
    journaled: float,
) -> None:
    orders = [
        order(
            leg=i,
            notional_usd=n,
            leverage_before=lb,
            leverage_after=la,
            liq_distance_before=db,
            liq_distance_after=da,
            side=side,
            reduce_only=side == "buy",
        )
        for i, (n, lb, la, db, da, side) in enumerate(rows)
    ]
    spec = LimitSpec(
        max_order_usd=max_order,
        max_turnover_usd_per_day=max_turn,
        max_leverage=max_lev,
        min_liquidation_distance=min_dist,
    )
    got = {(b.limit, b.subject) for b in check_limits(orders, spec, turnover_24h_usd=journaled)}
    want = set()
    for o in orders:
        if o.notional_usd > max_order:
            want.add(("max_order_usd", o.describe()))
        safer = (
            o.side == "buy" and o.leverage_after <= o.leverage_before and o.liq_distance_after >= o.liq_distance_before
        )
        if not safer and o.leverage_after > max_lev:
            want.add(("max_leverage", o.describe()))
        if not safer and o.liq_distance_after < min_dist:
            want.add(("min_liquidation_distance", o.describe()))
    if journaled + math.fsum(o.notional_usd for o in orders) > max_turn:
        want.add(("max_turnover_usd_per_day", "plan"))
    assert got == want
