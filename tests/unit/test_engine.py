"""Execution engines, sweep spaces, Pareto fronts and the Monte Carlo's mergeable summaries (no cluster here)."""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.errors import ConfigError
from perphedge.usecases.engine import DaskEngine, InProcessEngine, PoolEngine, check_cluster, make_engine
from perphedge.usecases.montecarlo import (
    _hist_quantile,
    _ratio_bins,
    _ratio_values,
    _usd_bins,
    _usd_values,
    chunk_paths,
    run_chunks,
)
from perphedge.usecases.sweep import Space, expand, pareto_front


def _square(shared: Any, batch: int) -> int:
    return int(shared["k"]) * batch * batch


def test_in_process_engine_maps_every_batch_in_order() -> None:
    out = list(InProcessEngine().map_batches(_square, range(6), {"k": 3}))
    assert out == [(i, 3 * i * i) for i in range(6)]


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_pool_engine_returns_the_same_results_in_any_order(start: str) -> None:
    with PoolEngine(2, start) as eng:
        out = sorted(eng.map_batches(_square, range(20), {"k": 2}))
    assert out == [(i, 2 * i * i) for i in range(20)]


def test_make_engine_picks_in_process_for_one_worker_and_a_pool_for_more() -> None:
    assert isinstance(make_engine(None, 1), InProcessEngine)
    assert isinstance(make_engine(None, 3), PoolEngine)
    assert isinstance(make_engine(None, None, default_workers=1), InProcessEngine)


@pytest.mark.parametrize(
    "cluster",
    [
        "",
        "locale",
        "LOCAL",
        "tcp://",
        "tcp://host",
        "tcp://host:",
        "tcp://host:0",
        "tcp://host:65536",
        "tcp://host:99999999",
        "http://host:8786",
        "host:8786",
        "tcp://ho st:8786",
        "tcp://host:8786/path",
        " tcp://host:8786",
        "tcp://host:-1",
        "tcp://host:80.5",
    ],
)
def test_bad_cluster_addresses_are_refused_in_one_line(cluster: str) -> None:
    with pytest.raises(ConfigError, match="invalid `--cluster`") as exc:
        check_cluster(cluster, None)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("workers", [0, -1, -100, True, 1025, 10**9])
def test_bad_worker_counts_are_refused(workers: Any) -> None:
    with pytest.raises(ConfigError, match="invalid `--workers`"):
        check_cluster(None, workers)


@pytest.mark.parametrize("cluster", ["local", "tcp://127.0.0.1:8786", "tls://sched.example.org:8786", "tcp://[::1]:1"])
def test_good_cluster_addresses_pass(cluster: str) -> None:
    check_cluster(cluster, 2)


def test_an_unreachable_scheduler_is_refused_within_the_timeout() -> None:
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"invalid `--cluster`: could not reach the Dask scheduler at tcp://127") as e:
        DaskEngine("tcp://127.0.0.1:9", timeout=2)
    assert time.monotonic() - t0 < 20
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------- sweep spaces


grids = st.dictionaries(
    st.sampled_from(["policy.ratio", "policy.band", "hedge.leverage", "fees.taker"]),
    st.lists(st.integers(0, 50), min_size=1, max_size=4, unique=True),
    min_size=1,
    max_size=4,
)


@given(grids)
@settings(max_examples=40, deadline=None)
def test_space_numbers_grid_combinations_in_expand_order(grid: dict[str, list[int]]) -> None:
    space = Space(grid, None)
    base: dict[str, Any] = {"policy": {}, "hedge": {}, "fees": {}}
    expected = [o for o, _ in expand(grid, base)]
    assert space.size == len(expected)
    assert [space.overrides(i) for i in range(space.size)] == expected


@given(st.integers(1, 60), st.integers(0, 2**31), st.sampled_from(["lhs", "random"]))
@settings(max_examples=40, deadline=None)
def test_samples_are_reproducible_in_range_and_lhs_fills_every_stratum(n: int, seed: int, method: str) -> None:
    sample = {"method": method, "n": n, "seed": seed, "ranges": {"policy.band": (0.02, 0.3), "hedge.leverage": (1, 5)}}
    a, b = Space({}, sample), Space({}, sample)
    assert np.array_equal(a.points, b.points) and a.size == n
    assert (a.points[:, 0] >= 0.02).all() and (a.points[:, 0] <= 0.3).all()
    assert (a.points[:, 1] >= 1).all() and (a.points[:, 1] <= 5).all()
    if method == "lhs":
        for j, (lo, hi) in enumerate([(0.02, 0.3), (1.0, 5.0)]):
            strata = np.floor((a.points[:, j] - lo) / (hi - lo) * n).clip(0, n - 1)
            assert sorted(strata.astype(int).tolist()) == list(range(n))


def test_grid_crossed_with_samples_and_data_sets() -> None:
    sample = {"method": "random", "n": 3, "seed": 1, "ranges": {"policy.band": (0.1, 0.2)}}
    space = Space({"hedge.leverage": [2, 3], "policy.ratio": [0.5, 1.0]}, sample)
    assert space.size == 12
    seen = {(o["hedge.leverage"], o["policy.ratio"], o["policy.band"]) for o in map(space.overrides, range(12))}
    assert len(seen) == 12
    # hedge.* changes the data read from the store: one configuration per leverage is prepared
    picks = space.data_indices()
    assert sorted({space.overrides(i)["hedge.leverage"] for i in picks}) == [2, 3] and len(picks) == 2


def test_too_many_distinct_data_sets_are_refused() -> None:
    sample = {"method": "random", "n": 1000, "seed": 1, "ranges": {"hedge.leverage": (1.5, 5.0)}}
    with pytest.raises(ConfigError, match="distinct data sets"):
        Space({}, sample).data_indices()


points = st.lists(
    st.tuples(st.floats(0, 1, allow_nan=False), st.floats(-1, 3, allow_nan=False)), min_size=1, max_size=60
)


@given(points)
@settings(max_examples=80, deadline=None)
def test_pareto_front_is_exactly_the_undominated_points(pts: list[tuple[float, float]]) -> None:
    front = set(pareto_front(pts))

    def dominated(i: int) -> bool:
        x, y = pts[i]
        return any((a <= x and b >= y) and (a < x or b > y) for a, b in pts)

    for i in range(len(pts)):
        if dominated(i):
            assert i not in front
    for i in range(len(pts)):  # every undominated value pair is represented once
        if not dominated(i):
            assert any(pts[j] == pts[i] for j in front)
    assert len({pts[i] for i in front}) == len(front)


def test_pareto_front_skips_missing_values() -> None:
    assert pareto_front([(math.nan, 1.0), (0.1, math.inf), (0.2, 0.5)]) == [2]


# ---------------------------------------------------------------------------------------- Monte Carlo summaries


@given(
    st.lists(st.floats(-1e9, 1e9, allow_nan=False).filter(lambda v: v == 0 or abs(v) > 1.0), min_size=1, max_size=400),
    st.sampled_from([0.05, 0.5, 0.95]),
)
@settings(max_examples=80, deadline=None)
def test_binned_usd_quantile_is_within_the_documented_precision(values: list[float], q: float) -> None:
    v = np.array(values)
    counts = np.bincount(_usd_bins(v), minlength=int(_usd_bins(np.array([1e30]))[0]) + 1)
    got = _hist_quantile(counts, q, _usd_values)
    # each value is read at its bin's middle (±0.025 %): the interpolated quantile is within that of numpy's
    lo = np.quantile(v, q) - 3e-4 * np.abs(v).max() - 1e-2
    hi = np.quantile(v, q) + 3e-4 * np.abs(v).max() + 1e-2
    assert lo <= got <= hi
    exact = np.sort(v)
    rank = (len(v) - 1) * q
    if rank == int(rank):  # on a sample point: relative precision of that point
        assert got == pytest.approx(exact[int(rank)], rel=2.6e-4, abs=1e-2)


@given(st.lists(st.floats(1.0, 900.0, allow_nan=False), min_size=1, max_size=300))
@settings(max_examples=60, deadline=None)
def test_binned_ratio_quantile_is_within_precision(values: list[float]) -> None:
    v = np.array(values)
    counts = np.bincount(_ratio_bins(v), minlength=int(_ratio_bins(np.array([1e9]))[0]) + 1)
    got = _hist_quantile(counts, 0.95, _ratio_values)
    assert abs(got - np.quantile(v, 0.95)) <= 3e-5 * v.max()


def test_values_of_exactly_one_and_zero_keep_their_value() -> None:
    assert _ratio_values(_ratio_bins(np.array([1.0, 0.99])))[0] == 1.0
    assert _usd_values(_usd_bins(np.array([0.0, 0.004, -0.004]))).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize(("model", "horizon", "assets"), [("bootstrap", 365, 10), ("gbm", 365, 10), ("gbm", 7, 1)])
def test_chunk_size_depends_on_the_problem_only(model: str, horizon: int, assets: int) -> None:
    c = chunk_paths(model, horizon, assets, assets)
    assert 64 <= c <= 20_000
    draws = (2 * horizon if model == "bootstrap" else horizon * (2 * assets + 3)) * c
    assert draws <= 4_000_000 or c == 64


def _gbm_shared(levels: list[tuple[float, list[tuple[Any, ...]]]]) -> dict[str, Any]:
    return {
        "model": "gbm",
        "horizon": 30,
        "watch": [0],
        "returns": None,
        "highs": None,
        "mu": np.array([0.1, 0.0]),
        "sigma": np.array([0.8, 0.6]),
        "corr": np.array([[1.0, 0.7], [0.7, 1.0]]),
        "holdings": [(0, 50_000.0), (1, 50_000.0)],
        "levels": levels,
    }


LEGS = [(0, 0, 0, 1.4, 50_000.0, 25_000.0, 10.0, 0.0)]  # linear short, LP 1.4 × entry


def test_chunk_summaries_merge_to_the_same_numbers_whatever_the_engine_and_batching() -> None:
    shared = _gbm_shared([(2.0, LEGS), (3.0, [(0, 0, 0, 1.25, 50_000.0, 16_000.0, 10.0, 0.0)])])
    a = run_chunks(shared, paths=50_000, seed=7, engine=InProcessEngine(), n_assets=2)
    with PoolEngine(2, "spawn") as pool:  # a fork after numba's thread pool ran could deadlock
        b = run_chunks(shared, paths=50_000, seed=7, engine=pool, n_assets=2)
    assert a["paths"] == b["paths"] == 50_000
    assert np.array_equal(a["counts"], b["counts"])
    assert a["sums"] == b["sums"]
    assert np.array_equal(a["usd"], b["usd"]) and np.array_equal(a["ratio"], b["ratio"])
    c = run_chunks(shared, paths=50_000, seed=8, engine=InProcessEngine(), n_assets=2)
    assert not np.array_equal(a["usd"], c["usd"])  # the seed matters


def test_liquidation_counts_match_a_direct_count_of_the_same_paths() -> None:
    from perphedge.core.stress import simulate

    shared = _gbm_shared([(2.0, LEGS)])
    n = 3_000
    summary = run_chunks(shared, paths=n, seed=3, engine=InProcessEngine(), n_assets=2)
    chunk = chunk_paths("gbm", 30, 2, 1)
    seqs = np.random.SeedSequence(3).spawn(math.ceil(n / chunk))
    liq = 0
    for i, seq in enumerate(seqs):
        size = min(chunk, n - i * chunk)
        sim = simulate(
            model="gbm",
            paths=size,
            horizon=30,
            watch=[0],
            seed=np.random.default_rng(seq),
            mu_annual=shared["mu"],
            sigma_annual=shared["sigma"],
            corr=shared["corr"],
            chunk=size,
        )
        liq += int((sim["max_high"][:, 0] >= 1.4).sum())
    assert summary["counts"][0] == liq > 0


def test_binned_quantiles_of_a_real_run_are_close_to_exact_ones() -> None:
    """The same paths, summarised exactly (all samples) and by the bins: within the documented precision."""
    from perphedge.core.stress import simulate

    shared = _gbm_shared([(2.0, LEGS)])
    n = 5_000
    summary = run_chunks(shared, paths=n, seed=5, engine=InProcessEngine(), n_assets=2)
    chunk = chunk_paths("gbm", 30, 2, 1)
    spot = []
    for i, seq in enumerate(np.random.SeedSequence(5).spawn(math.ceil(n / chunk))):
        size = min(chunk, n - i * chunk)
        sim = simulate(
            model="gbm",
            paths=size,
            horizon=30,
            watch=[0],
            seed=np.random.default_rng(seq),
            mu_annual=shared["mu"],
            sigma_annual=shared["sigma"],
            corr=shared["corr"],
            chunk=size,
        )
        spot.append(50_000 * (sim["terminal"][:, 0] - 1) + 50_000 * (sim["terminal"][:, 1] - 1))
    exact = np.concatenate(spot)
    assert summary["sums"][0] / n == pytest.approx(exact.mean(), rel=1e-12)
    for q in (0.05, 0.5, 0.95):
        got = _hist_quantile(summary["usd"][0], q, _usd_values)
        assert got == pytest.approx(np.quantile(exact, q), rel=3e-4, abs=1.0)


def test_every_grid_value_combination_is_enumerated_once() -> None:
    grid: dict[str, list[Any]] = {"a.x": [1, 2, 3], "a.y": [True, False], "b.z": ["p", "q"]}
    space = Space(grid, None)
    got = [tuple(space.overrides(i).values()) for i in range(space.size)]
    assert got == list(itertools.product(*grid.values()))


# ------------------------------------------------------------------------------- grid files with `sample:`

BASE = "runs/altcoins-50pct.yaml"


@pytest.mark.parametrize(
    ("sample", "needle"),
    [
        ("5", "field `sample`: must be a mapping"),
        ("{method: sobol, n: 5, ranges: {policy.band: [0.1, 0.2]}}", "`sample.method`: must be random or lhs"),
        ("{n: 0, ranges: {policy.band: [0.1, 0.2]}}", "`sample.n`: must be a whole number >= 1"),
        ("{n: -3, ranges: {policy.band: [0.1, 0.2]}}", "`sample.n`"),
        ("{n: 2.5, ranges: {policy.band: [0.1, 0.2]}}", "`sample.n`"),
        ("{n: true, ranges: {policy.band: [0.1, 0.2]}}", "`sample.n`"),
        ("{n: 5, seed: -1, ranges: {policy.band: [0.1, 0.2]}}", "`sample.seed`"),
        ("{n: 5, seed: abc, ranges: {policy.band: [0.1, 0.2]}}", "`sample.seed`"),
        ("{n: 5, ranges: {}}", "`sample.ranges`: must map"),
        ("{n: 5, ranges: {policy.band: [0.2, 0.1]}}", "low < high"),
        ("{n: 5, ranges: {policy.band: [0.1, .nan]}}", "low < high"),
        ("{n: 5, ranges: {policy.band: [0.1, .inf]}}", "low < high"),
        ("{n: 5, ranges: {policy.band: [0.1]}}", "low < high"),
        ("{n: 5, ranges: {policy.band: ['0.1', 0.2]}}", "low < high"),
        ("{n: 5, ranges: {policy.bnad: [0.1, 0.2]}}", "unknown key"),
        ("{n: 5, ranges: {policy.kind: [0.1, 0.2]}}", "not a number to sample"),
        ("{n: 5, ranges: {policy.ratio: [-5, 0.2]}}", "-5 is not a valid value"),
        ("{n: 5, ranges: {policy.band: [0.1, 0.2]}, extra: 1}", "`sample.extra`: unknown key"),
        ("{n: 20000, ranges: {policy.band: [0.1, 0.2]}}", "more than --max-configs 10,000"),
    ],
)
def test_bad_sample_blocks_are_refused_in_one_line(sample: str, needle: str, tmp_path: Any) -> None:
    from perphedge.usecases.sweep import DEFAULT_MAX_CONFIGS, load_grid
    from tests.conftest import REPO

    g = tmp_path / "g.yaml"
    g.write_text(f"base: {REPO / BASE}\nsample: {sample}\n")
    with pytest.raises(ConfigError) as exc:
        load_grid(g, DEFAULT_MAX_CONFIGS)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_a_key_both_gridded_and_sampled_is_refused(tmp_path: Any) -> None:
    from perphedge.usecases.sweep import load_grid
    from tests.conftest import REPO

    g = tmp_path / "g.yaml"
    g.write_text(
        f"base: {REPO / BASE}\ngrid: {{policy.band: [0.1]}}\nsample: {{n: 3, ranges: {{policy.band: [0.1, 0.2]}}}}\n"
    )
    with pytest.raises(ConfigError, match="also in `grid:`"):
        load_grid(g)
