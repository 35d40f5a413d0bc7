"""Alerts once per episode with hysteresis (core/alerts.py)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.config import AlertsModel
from perphedge.core.alerts import ALERTS, AlertEvent, AlertSpec, Observation, evaluate, firing

SPEC = AlertSpec(
    liquidation_distance_below=0.30,
    ratio_off_by=0.15,
    funding_cost_8h_above=0.0003,
    feed_stale=True,
    order_rejected=True,
    rearm=0.8,
    liquidation_mismatch_ticks=5.0,
)
STALE = 900


def run(
    path: list[float],
    alert: str = "liquidation_distance",
    subject: str = "binance:BTCUSDT",
    *,
    state: dict[str, Any] | None = None,
    spec: AlertSpec = SPEC,
    through_json: bool = False,
) -> tuple[dict[str, Any], list[AlertEvent]]:
    st_: dict[str, Any] = state or {}
    events: list[AlertEvent] = []
    for i, v in enumerate(path):
        obs = [Observation(alert=alert, subject=subject, value=v)]
        st_, ev = evaluate(st_, obs, spec, now_ms=i, stale_after_s=STALE)
        if through_json:
            st_ = json.loads(json.dumps(st_, allow_nan=False))
        events += ev
    return st_, events


def kinds(events: list[AlertEvent]) -> list[str]:
    return [e.kind for e in events]


def test_distance_three_crossings_with_noise_three_opens() -> None:
    # threshold 0.30, re-arm above 0.30 / 0.8 = 0.375; noise around 0.30 and just under 0.375 changes nothing
    path = [
        0.50, 0.31, 0.29, 0.31, 0.299, 0.33, 0.37, 0.29, 0.374,  # one episode, noisy
        0.38,  # closes
        0.31, 0.2999, 0.35, 0.28, 0.36, 0.376,  # second episode
        0.40, 0.301, 0.30, 0.1, 0.5,  # third (0.30 is not below 0.30)
    ]  # fmt: skip
    _, events = run(path)
    assert kinds(events) == ["open", "close", "open", "close", "open", "close"]
    opens = [e for e in events if e.kind == "open"]
    assert [e.value for e in opens] == [0.29, 0.2999, 0.1]
    assert [e.ts_ms for e in opens] == [2, 11, 19]
    assert opens[0].threshold == 0.30
    assert opens[0].message == (
        "liquidation distance of binance:BTCUSDT is 29.0%, below 30.0%: add margin or cut the short"
    )
    assert events[1].message == "liquidation distance of binance:BTCUSDT back to 38.0% (re-armed above 37.5%)"


@pytest.mark.parametrize(
    ("alert", "threshold"), [("ratio_off", 0.15), ("funding_cost", 0.0003), ("feed_stale", float(STALE))]
)
def test_above_alerts_three_crossings_with_noise(alert: str, threshold: float) -> None:
    t = threshold
    up, noise, back = t * 1.01, t * 0.95, t * 0.79  # re-arm below t * 0.8
    path = [t * 0.5, up, noise, up, t * 0.81, back, noise, up, up, back, up, t * 0.8, back, t]
    _, events = run(path, alert)
    assert kinds(events) == ["open", "close", "open", "close", "open", "close"]
    assert all(e.threshold == t for e in events)


def test_funding_cost_message_and_zero_threshold() -> None:
    _, events = run([0.0001, 0.0005], "funding_cost")
    assert events[0].message == "the short on binance:BTCUSDT pays 0.0500% per 8h, above 0.0300% per 8h"
    zero = AlertSpec(
        liquidation_distance_below=None,
        ratio_off_by=None,
        funding_cost_8h_above=0.0,
        feed_stale=False,
        order_rejected=False,
        rearm=0.8,
    )
    # threshold 0: opens when the short pays anything, closes only when it receives
    _, events = run([0.0, 0.00001, 0.0, -0.00001], "funding_cost", spec=zero)
    assert kinds(events) == ["open", "close"]


def test_restart_mid_episode_does_not_fire_again() -> None:
    state, events = run([0.5, 0.2, 0.25], through_json=True)
    assert kinds(events) == ["open"]
    restored = json.loads(json.dumps(state, allow_nan=False))
    state2, events2 = run([0.21, 0.1, 0.29], state=restored, through_json=True)
    assert events2 == []
    (f,) = firing(state2)
    assert f["since_ms"] == 1 and f["value"] == 0.29 and f["threshold"] == 0.30
    _, events3 = run([0.4], state=state2)
    assert kinds(events3) == ["close"]


def test_absent_subject_keeps_its_state_flat_leg_closes() -> None:
    state, _ = run([0.2])
    state, ev = evaluate(state, [], SPEC, now_ms=5, stale_after_s=STALE)
    assert ev == [] and len(firing(state)) == 1
    other = Observation(alert="liquidation_distance", subject="binance:ETHUSDT", value=0.9)
    state, ev = evaluate(state, [other], SPEC, now_ms=6, stale_after_s=STALE)
    assert ev == [] and firing(state)[0]["subject"] == "binance:BTCUSDT"
    flat = Observation(alert="liquidation_distance", subject="binance:BTCUSDT", value=math.inf)
    state, ev = evaluate(state, [flat], SPEC, now_ms=7, stale_after_s=STALE)
    assert kinds(ev) == ["close"] and firing(state) == []
    assert "back to inf" in ev[0].message


def test_subjects_are_independent() -> None:
    obs = [
        Observation(alert="liquidation_distance", subject="a", value=0.1),
        Observation(alert="liquidation_distance", subject="b", value=0.1),
        Observation(alert="ratio_off", subject="a", value=0.5),
    ]
    state, ev = evaluate({}, obs, SPEC, now_ms=1, stale_after_s=STALE)
    assert [(e.alert, e.subject) for e in ev] == [
        ("liquidation_distance", "a"),
        ("liquidation_distance", "b"),
        ("ratio_off", "a"),
    ]
    assert [(f["alert"], f["subject"]) for f in firing(state)] == [
        ("liquidation_distance", "a"),
        ("liquidation_distance", "b"),
        ("ratio_off", "a"),
    ]


def test_order_rejected_fires_once_per_client_id_and_never_closes() -> None:
    cid = "ph3f9a1c2e0000007010"
    obs = [Observation(alert="order_rejected", subject=cid, value=1.0)]
    state, ev = evaluate({}, obs, SPEC, now_ms=1, stale_after_s=STALE)
    assert kinds(ev) == ["open"] and ev[0].message == f"order {cid} was rejected"
    for t in range(2, 6):
        state, ev = evaluate(state, obs, SPEC, now_ms=t, stale_after_s=STALE)
        assert ev == []
    obs2 = [Observation(alert="order_rejected", subject=cid[:-1] + "1", value=1.0)]
    state, ev = evaluate(state, obs2, SPEC, now_ms=9, stale_after_s=STALE)
    assert kinds(ev) == ["open"]


def test_feed_stale_uses_stale_after() -> None:
    _, ev = run([10, 901, 800, 700, 719], "feed_stale", subject="live:binance")
    assert kinds(ev) == ["open", "close"]
    assert ev[0].message == "price feed live:binance is stale: 901 s old, limit 900 s; trading is blocked"
    state, ev = run([math.inf], "feed_stale", subject="store", through_json=True)
    assert kinds(ev) == ["open"] and ev[0].message.startswith("price feed store is stale: never priced")
    assert firing(state)[0]["value"] is None


def test_switched_off_alert_closes_its_episodes() -> None:
    state, _ = run([0.1])
    off = AlertSpec(
        liquidation_distance_below=None,
        ratio_off_by=0.15,
        funding_cost_8h_above=0.0003,
        feed_stale=True,
        order_rejected=True,
        rearm=0.8,
    )
    state, ev = evaluate(
        state, [Observation(alert="liquidation_distance", subject="x", value=0.01)], off, now_ms=3, stale_after_s=STALE
    )
    assert kinds(ev) == ["close"] and "no longer watched" in ev[0].message
    assert firing(state) == []


@pytest.mark.parametrize("value", [math.nan, True, "0.2", None])
def test_bad_values_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="value must be a number"):
        evaluate({}, [Observation(alert="ratio_off", subject="book", value=value)], SPEC, now_ms=0, stale_after_s=1)


def test_unknown_alert_and_bad_state_refused() -> None:
    with pytest.raises(ValueError, match="unknown alert"):
        evaluate({}, [Observation(alert="margin_call", subject="x", value=1)], SPEC, now_ms=0, stale_after_s=1)
    with pytest.raises(ValueError, match="version"):
        evaluate({"version": 99, "firing": {}}, [], SPEC, now_ms=0, stale_after_s=1)
    with pytest.raises(ValueError, match="malformed"):
        firing({"version": 1, "firing": {"ratio_off": {"book": {"value": 1}}}})
    with pytest.raises(ValueError, match="unknown alert"):
        firing({"version": 1, "firing": {"nope": {}}})
    with pytest.raises(ValueError, match="stale_after_s"):
        evaluate({}, [], SPEC, now_ms=0, stale_after_s=0)


@pytest.mark.parametrize(
    "kw",
    [
        {"rearm": 1.0},
        {"rearm": 0.0},
        {"rearm": math.nan},
        {"liquidation_distance_below": 0.0},
        {"ratio_off_by": math.inf},
        {"funding_cost_8h_above": -0.1},
        {"feed_stale": 1},
    ],
)
def test_bad_spec_refused(kw: dict[str, Any]) -> None:
    base = {
        "liquidation_distance_below": 0.3,
        "ratio_off_by": 0.15,
        "funding_cost_8h_above": 0.0003,
        "feed_stale": True,
        "order_rejected": True,
        "rearm": 0.8,
    }
    with pytest.raises(ValueError, match=f"`{next(iter(kw))}`"):
        AlertSpec(**{**base, **kw})


def test_from_model() -> None:
    assert AlertSpec.from_model(AlertsModel()) == SPEC
    m = AlertsModel.model_validate({"liquidation_distance_below": None, "order_rejected": False, "rearm": 0.5})
    spec = AlertSpec.from_model(m)
    assert spec.liquidation_distance_below is None and not spec.order_rejected and spec.rearm == 0.5
    duck = SimpleNamespace(
        liquidation_distance_below=0.2,
        ratio_off_by=None,
        funding_cost_8h_above=None,
        order_rejected=True,
        rearm=0.9,
        feed_stale=False,
    )
    assert AlertSpec.from_model(duck).feed_stale is False


values = st.one_of(st.floats(-1, 3, allow_nan=False), st.just(math.inf), st.sampled_from([0.3, 0.375, 0.15, 0.12]))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(ALERTS[:3]), st.sampled_from(["a", "b", "c"]), values), min_size=1, max_size=60),
    st.lists(st.integers(1, 59), max_size=4),
)
def test_property_episodes_alternate(obs: list[tuple[str, str, float]], restarts: list[int]) -> None:
    """Per (alert, subject): opens and closes alternate, starting with an open; restarts change nothing."""
    state: dict[str, Any] = {}
    plain: dict[str, Any] = {}
    seen: dict[tuple[str, str], list[str]] = {}
    for i, (alert, subject, v) in enumerate(obs):
        o = [Observation(alert=alert, subject=subject, value=v)]
        state, ev = evaluate(state, o, SPEC, now_ms=i, stale_after_s=STALE)
        plain, ev2 = evaluate(plain, o, SPEC, now_ms=i, stale_after_s=STALE)
        assert ev == ev2
        if i in restarts:
            state = json.loads(json.dumps(state, allow_nan=False))
        for e in ev:
            seen.setdefault((e.alert, e.subject), []).append(e.kind)
    for events in seen.values():
        assert events[::2] == ["open"] * len(events[::2])
        assert events[1::2] == ["close"] * len(events[1::2])
        assert events.count("open") - events.count("close") in (0, 1)
    firing_now = {(f["alert"], f["subject"]) for f in firing(state)}
    assert firing_now == {k for k, e in seen.items() if e[-1] == "open"}


def test_liquidation_mismatch_opens_above_the_ticks_and_closes_below_rearm() -> None:
    st, ev = evaluate(
        {},
        [Observation(alert="liquidation_mismatch", subject="a:binance:BTCUSDT", value=4.0)],
        SPEC,
        now_ms=1,
        stale_after_s=STALE,
    )
    assert ev == []
    st, ev = evaluate(
        st,
        [Observation(alert="liquidation_mismatch", subject="a:binance:BTCUSDT", value=12.5)],
        SPEC,
        now_ms=2,
        stale_after_s=STALE,
    )
    assert [e.kind for e in ev] == ["open"] and "12.5 ticks" in ev[0].message
    st, ev = evaluate(
        st,
        [Observation(alert="liquidation_mismatch", subject="a:binance:BTCUSDT", value=4.5)],
        SPEC,
        now_ms=3,
        stale_after_s=STALE,
    )
    assert ev == []  # between 4 (= 5 x 0.8) and 5: the episode goes on
    st, ev = evaluate(
        st,
        [Observation(alert="liquidation_mismatch", subject="a:binance:BTCUSDT", value=1.0)],
        SPEC,
        now_ms=4,
        stale_after_s=STALE,
    )
    assert [e.kind for e in ev] == ["close"]


def test_manual_change_and_transfer_are_one_shot_per_subject_and_always_on() -> None:
    off = AlertSpec(
        liquidation_distance_below=None,
        ratio_off_by=None,
        funding_cost_8h_above=None,
        feed_stale=False,
        order_rejected=False,
        rearm=0.8,
    )
    obs = [
        Observation(alert="manual_change", subject="a:binance:BTCUSDT@5", value=1.0),
        Observation(alert="manual_transfer", subject="phtid", value=1.0),
    ]
    st, ev = evaluate({}, obs, off, now_ms=5, stale_after_s=STALE)
    assert sorted(e.alert for e in ev) == ["manual_change", "manual_transfer"]
    st, ev = evaluate(st, obs, off, now_ms=6, stale_after_s=STALE)
    assert ev == []  # the same subject never fires twice
    st, ev = evaluate(
        st,
        [Observation(alert="manual_change", subject="a:binance:BTCUSDT@7", value=1.0)],
        off,
        now_ms=7,
        stale_after_s=STALE,
    )
    assert [e.subject for e in ev] == ["a:binance:BTCUSDT@7"]
