"""Invariants of optimize: the Pareto front, grids, walk-forward windows, and constraints on the choice."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from perphedge.core.optimize import choose, pareto_front, parse_grid, walk_forward_windows
from perphedge.errors import ConfigError

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(arrays(np.float64, st.tuples(st.integers(1, 40), st.just(3)), elements=finite))
def test_pareto_front_is_exactly_the_non_dominated(points: np.ndarray) -> None:
    front = set(pareto_front(points))
    assert front
    for i in range(len(points)):
        dominated = any(
            (points[j] <= points[i]).all() and (points[j] < points[i]).any() for j in range(len(points)) if j != i
        )
        assert (i in front) == (not dominated)


@given(st.text(max_size=30))
def test_parse_grid_never_crashes(text: str) -> None:
    try:
        out = parse_grid(text, "--ratios", low=0, high=2, low_open=True)
    except ConfigError as exc:
        assert "--ratios" in str(exc) and "\n" not in str(exc)
    else:
        assert out == tuple(sorted(set(out))) and all(0 < x <= 2 for x in out)


@given(st.lists(st.floats(min_value=0.01, max_value=2.0, allow_nan=False), min_size=1, max_size=8, unique=True))
def test_parse_grid_round_trip(values: list[float]) -> None:
    assert parse_grid(",".join(repr(v) for v in values), "--ratios", low=0, high=2, low_open=True) == tuple(
        sorted(values)
    )


@given(st.integers(100, 4000), st.integers(30, 800), st.integers(7, 300))
def test_windows_train_before_test(n: int, train: int, test: int) -> None:
    try:
        ws = walk_forward_windows(n, train, test)
    except ConfigError:
        assert n < train + test
        return
    for w in ws:
        assert 1 <= w.train_start < w.train_end < w.test_end <= n
        assert w.train_end - w.train_start == train


@given(
    arrays(np.float64, st.integers(1, 30), elements=st.floats(allow_nan=True, allow_infinity=True)),
    st.data(),
)
def test_choose_only_feasible_finite(obj: np.ndarray, data: st.DataObject) -> None:
    feas = data.draw(arrays(np.bool_, len(obj)))
    i = choose(obj, feas)
    ok = feas & np.isfinite(obj)
    if i is None:
        assert not ok.any()
    else:
        assert ok[i] and obj[i] == obj[ok].min()


@settings(max_examples=6, deadline=None)
@given(st.floats(min_value=0.001, max_value=0.5), st.integers(0, 50))
def test_choice_never_violates_the_liquidation_target(target: float, seed: int) -> None:
    from perphedge.usecases.optimize import optimize
    from tests.unit.test_optimize_synthetic import _req, market

    doc = optimize(market(sigma_f=0.05, seed=seed % 5 + 1), _req(leverages=(1.0, 5.0, 10.0), max_liq_prob=target))
    for w in doc["walk_forward"]["windows"]:
        if w["chosen"] is not None:
            assert w["in_sample"]["p_liq"] <= target and w["in_sample"]["feasible"]
    assert all(r["p_liq"] <= target for r in doc["pareto"])
