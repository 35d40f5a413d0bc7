"""``funding_intervals``: the interval in force at each settlement from the spacing, changes noted, gaps not taken
for changes (property-tested over random runs of 8h/4h/2h/1h settlements)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.exchange.ccxt_source import funding_intervals

HOUR = 3_600_000
T0 = 1_704_067_200_000


def series(runs: list[tuple[int, int]]) -> tuple[list[int], list[float]]:
    stamps, truth = [], []
    ms = T0
    for hours, n in runs:
        for _ in range(n):
            ms += hours * HOUR
            stamps.append(ms)
            truth.append(float(hours))
    return stamps, truth


RUNS = st.lists(
    st.tuples(st.sampled_from([8, 4, 2, 1]), st.integers(min_value=2, max_value=12)), min_size=1, max_size=6
)


@settings(max_examples=200, deadline=None)
@given(runs=RUNS)
def test_intervals_equal_the_truth_and_every_change_is_noted(runs: list[tuple[int, int]]) -> None:
    stamps, truth = series(runs)
    got, notes = funding_intervals(stamps, None, None, 8.0)
    changes = sum(1 for a, b in itertools.pairwise(truth) if a != b)
    # a change to a longer interval that is a whole multiple, after which the run goes on at that interval, is a
    # change (the next spacing is not the old interval); only the first settlement takes the next spacing
    assert got == truth
    assert len([n for n in notes if "changed" in n]) == changes
    assert not [n for n in notes if "missing" in n]


@settings(max_examples=200, deadline=None)
@given(runs=RUNS, split=st.integers(min_value=1, max_value=70))
def test_pages_give_the_same_answer_as_one_call(runs: list[tuple[int, int]], split: int) -> None:
    stamps, truth = series(runs)
    k = min(split, len(stamps) - 1)
    a, na = funding_intervals(stamps[:k], None, None, 8.0)
    b, nb = funding_intervals(stamps[k:], stamps[k - 1], a[-1], 8.0) if k < len(stamps) else ([], [])
    whole, notes = funding_intervals(stamps, None, None, 8.0)
    if k >= 2 or truth[0] == 8.0:  # a page of one settlement alone cannot know its interval: the default
        assert a + b == whole == truth
        assert na + nb == notes


@settings(max_examples=100, deadline=None)
@given(hours=st.sampled_from([8, 4, 1]), n=st.integers(min_value=4, max_value=30), data=st.data())
def test_a_missing_settlement_is_a_gap_not_a_change(hours: int, n: int, data: st.DataObject) -> None:
    stamps, _ = series([(hours, n)])
    # not before the first nor the last one: with nothing after it a gap cannot be told from a change
    drop = data.draw(st.integers(min_value=1, max_value=n - 3))
    kept = stamps[:drop] + stamps[drop + 1 :]
    got, notes = funding_intervals(kept, None, None, float(hours))  # the spec's interval is the series'
    assert got == [float(hours)] * len(kept)
    assert notes == [f"1 funding settlement(s) missing before {_ts(stamps[drop + 1])} (every {hours}h)"]


def _ts(ms: int) -> str:
    import pandas as pd

    return str(pd.Timestamp(ms, unit="ms"))


def test_one_settlement_takes_the_default_or_the_resumed_spacing() -> None:
    assert funding_intervals([T0], None, None, 8.0) == ([8.0], [])
    assert funding_intervals([T0 + 4 * HOUR], T0, 8.0, 8.0) == (
        [4.0],
        ["funding interval changed from 8h to 4h at 2024-01-01 04:00:00"],
    )
    assert funding_intervals([], None, None, 8.0) == ([], [])
