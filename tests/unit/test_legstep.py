"""The per-bar step (core/legstep.py): the kernel built on it equals the frozen pre-refactor kernel bit for bit,
the array API replays the kernel exactly, and policy_decision_at equals policy_decisions bar by bar."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.core import _kernels as K
from perphedge.core import legstep as S
from perphedge.core.policies import KINDS, PolicySpec, lookback_bars, policy_decision_at, policy_decisions
from perphedge.data.store import MarketStore
from perphedge.specs import default_registry
from perphedge.usecases.backtest import load_run, prepare
from tests.conftest import REPO
from tests.unit import _legacy_kernel as L

COL = {n: i for i, n in enumerate(S.OUT_COLUMNS)}
KINDS_COLL = [
    (S.INVERSE, S.BUY),
    (S.INVERSE, S.HOLDINGS),
    (S.INVERSE, S.STABLE),
    (S.LINEAR, S.STABLE),
    (S.LINEAR, S.BUY),
    (S.LINEAR, S.HOLDINGS),
]


def random_leg(seed: int, kind: float, coll: float) -> tuple[list[np.ndarray], np.ndarray]:
    """A random path and params: wild prices (liquidations), policy gaps, NaN targets, sign flips."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    c = 30_000 * np.exp(np.cumsum(rng.normal(0, rng.uniform(0.01, 0.08), n)))
    h = c * (1 + np.abs(rng.normal(0, rng.uniform(0.0, 0.06), n)))
    lo = c * (1 - np.abs(rng.normal(0, 0.02, n)))
    exposure = 20_000 * np.exp(np.cumsum(rng.normal(0, 0.05, n)))
    target = rng.normal(0.7, 0.5, n)
    target[rng.random(n) < 0.05] = np.nan
    allowed = (rng.random(n) > rng.uniform(0, 0.5)).astype(float)
    funding = rng.normal(0.0003, rng.uniform(0.0, 0.01), n)
    params = {
        "kind": kind,
        "collateral": coll,
        "leverage": float(rng.choice([1.0, 1.25, 2.0, 3.0, 5.0, 10.0, 25.0])),
        "contract_size": 100.0 if kind == S.INVERSE else float(rng.choice([0.001, 1.0])),
        "lot": float(rng.choice([1.0, 0.5])) if kind == S.INVERSE else 1.0,
        "mmr": float(rng.uniform(0.004, 0.1)),
        "cum": float(rng.choice([0.0, rng.uniform(0, 0.05) if kind == S.INVERSE else rng.uniform(0, 500)])),
        "family": float(rng.integers(0, 2)),
        "taker": float(rng.uniform(0, 0.001)),
        "slippage": float(rng.uniform(0, 0.001)),
        "band": float(rng.uniform(0, 0.6)),
        "reopen_after": float(rng.integers(-1, 6)),
        "top_up": float(rng.integers(0, 2)),
        "top_up_level": float(rng.uniform(0.2, 1.3)),
    }
    p = np.array([params[k] for k in S.PARAMS], dtype=np.float64)
    return [c, h, lo, c, exposure, target, allowed, funding], p


def both(fn_new, fn_old, arrays: list[np.ndarray], p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """New and frozen kernel on one leg. Inverse margin from the holdings changed on purpose (the account's own coins
    now count in the exposure and the delta): that pair is compared against the frozen kernel fed the same
    corrected exposure bar by bar, which only works while no trade depends on it, so it is checked separately."""
    n = len(arrays[0])
    a = np.full((n, len(S.OUT_COLUMNS)), 7.0)  # the kernel must overwrite every cell
    b = np.full((n, len(S.OUT_COLUMNS)), 7.0)
    fn_new(*arrays, p, a)
    fn_old(*arrays, p, b)
    return a, b


def test_kernel_re_exports_are_the_step_module() -> None:
    assert K.leg_path is S.leg_path
    assert K.leg_path_python is S.leg_path_python
    assert K.short_liquidation_price is S.short_liquidation_price
    assert (K.PARAMS, K.OUT_COLUMNS) == (L.PARAMS, L.OUT_COLUMNS)
    assert (K.INVERSE, K.LINEAR, K.BUY, K.HOLDINGS, K.STABLE, K.ENTRY_FAMILY, K.AT_LP_FAMILY) == (
        L.INVERSE,
        L.LINEAR,
        L.BUY,
        L.HOLDINGS,
        L.STABLE,
        L.ENTRY_FAMILY,
        L.AT_LP_FAMILY,
    )


def test_kernel_equals_the_frozen_kernel_on_a_corpus_that_covers_every_event() -> None:
    """600 random legs, every kind × collateral, jitted and plain: bit-identical output (NaN = NaN)."""
    seen = dict.fromkeys(("liquidated", "top_up", "reopened", "rebalanced", "closed_by_target"), 0)
    for seed in range(600):
        kind, coll = KINDS_COLL[seed % len(KINDS_COLL)]
        if (kind, coll) == (S.INVERSE, S.HOLDINGS):
            continue  # changed on purpose: see test_inverse_holdings_counts_the_accounts_own_coins
        arrays, p = random_leg(seed, kind, coll)
        a, b = both(S.leg_path, L.leg_path, arrays, p)
        np.testing.assert_array_equal(a, b, err_msg=f"seed {seed}")
        liq = np.nonzero(a[:, COL["liquidated"]] > 0)[0]
        seen["liquidated"] += len(liq)
        seen["top_up"] += int((a[:, COL["top_up_usd"]] != 0).sum())
        seen["rebalanced"] += int(a[:, COL["rebalanced"]].sum())
        seen["closed_by_target"] += int(((a[:, COL["rebalanced"]] > 0) & (a[:, COL["contracts"]] == 0)).sum())
        if len(liq) and (a[liq[0] + 1 :, COL["contracts"]] > 0).any():
            seen["reopened"] += 1
        if seed % 10 == 0:  # the plain twins too (slow in pure Python)
            a, b = both(S.leg_path_python, L.leg_path_python, arrays, p)
            np.testing.assert_array_equal(a, b, err_msg=f"seed {seed} (plain)")
    assert all(v >= 20 for v in seen.values()), seen


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**31),
    st.sampled_from(KINDS_COLL),
    st.booleans(),
    st.floats(1.0, 20.0),
    st.floats(0.0, 0.5),
)
def test_kernel_equals_the_frozen_kernel_hypothesis(
    seed: int, kc: tuple[float, float], top_up: bool, lev: float, band: float
) -> None:
    if kc == (S.INVERSE, S.HOLDINGS):
        return  # changed on purpose: see test_inverse_holdings_counts_the_accounts_own_coins
    arrays, p = random_leg(seed, *kc)
    p[S.PARAMS.index("top_up")] = 1.0 if top_up else 0.0
    p[S.PARAMS.index("leverage")] = lev
    p[S.PARAMS.index("band")] = band
    a, b = both(S.leg_path, L.leg_path, arrays, p)
    np.testing.assert_array_equal(a, b)


def replay_with_the_array_api(arrays: list[np.ndarray], p: np.ndarray) -> np.ndarray:
    """The kernel's loop written against the array API (what the paper account and the book call)."""
    _, h, _, c, exposure, target, allowed, funding = arrays
    out = np.zeros((len(c), len(S.OUT_COLUMNS)))
    state = np.full(len(S.STATE), 99.0)
    S.init_state(state, p)
    coins_in = 0.0
    for t in range(len(c)):
        row = out[t]
        if t > 0:
            S.settle_bar(state, p, h[t], c[t], funding[t], row)
            if row[COL["liquidated"]] > 0:
                S.on_liquidation(state, p, float(t))
        own = S.own_coins_usd(state, p, c[t], coins_in)
        d = S.rebalance_target(state, p, float(t), c[t], exposure[t] + own, target[t], allowed[t])
        if not math.isnan(d):
            S.fill(state, p, c[t], S.target_contracts(p, c[t], d), row)
            # right after a fill the planned move equals the exact reset
            planned = S.margin_move(state, p, c[t])
            move = S.reset_margin(state, p, c[t])
            assert planned == pytest.approx(move, rel=1e-12, abs=1e-12)
            assert S.liq_of(state, p) == state[3]  # recomputed at the move (not after funding)
            S.book_collateral(p, c[t], move, row)
            coins_in += row[COL["spot_coin_flow"]]
            row[COL["rebalanced"]] = 1.0
        else:
            add = S.top_up_amount(state, p, c[t])
            if not math.isnan(add):
                S.transfer(state, p, add)
                assert S.liq_of(state, p) == state[3]
                S.book_collateral(p, c[t], add, row)
                coins_in += row[COL["spot_coin_flow"]]
                row[COL["top_up_usd"]] = add * c[t] if p[0] == S.INVERSE else add
        S.mark(state, p, c[t], row)
        row[COL["delta_usd"]] += S.own_coins_usd(state, p, c[t], coins_in)
        assert S.hedge_delta_usd(state, p, c[t]) + S.own_coins_usd(state, p, c[t], coins_in) == row[COL["delta_usd"]]
    return out


def test_inverse_holdings_counts_the_accounts_own_coins() -> None:
    """Inverse margin taken from the holdings: the account's coins beyond those moved in (PnL, funding, fees in coin)
    are the book's coins, hedged like the holdings. A 100% static hedge at 1x of 100 coins keeps the book's USD value
    through a 90% fall and a 10x rally (the frozen kernel let the short's coin gains ride unhedged)."""
    c = np.array([1000.0, 800.0, 500.0, 300.0, 100.0, 150.0, 400.0, 1000.0, 2000.0])
    n = len(c)
    qty = 100.0
    arrays = [c, c, c, c, qty * c, np.ones(n), np.ones(n), np.zeros(n)]
    params = dict.fromkeys(S.PARAMS, 0.0) | {
        "kind": S.INVERSE, "collateral": S.HOLDINGS, "leverage": 1.0, "contract_size": 1.0, "lot": 1e-9,
        "mmr": 0.005, "band": 0.05, "reopen_after": -1.0, "top_up_level": 0.5, "family": 0.0,
    }  # fmt: skip
    p = np.array([params[k] for k in S.PARAMS], dtype=np.float64)
    for fn in (S.leg_path, S.leg_path_python):
        out = np.zeros((n, len(S.OUT_COLUMNS)))
        fn(*arrays, p, out)
        spot = qty - np.cumsum(out[:, COL["spot_coin_flow"]])
        book_usd = spot * c + out[:, COL["account_usd"]]
        assert book_usd == pytest.approx(np.full(n, qty * c[0]), rel=0.02)  # within the 5% band's drift
        assert out[:, COL["liquidated"]].sum() == 0
        # at 1x the short's coin gains are exactly the coins the hedge needs: it is a synthetic dollar, never resized
        assert out[:, COL["rebalanced"]].sum() == 1
    # the legacy kernel (own coins ignored) drifts far from flat on the same path
    legacy = np.zeros((n, len(S.OUT_COLUMNS)))
    L.leg_path(*arrays, p, legacy)
    spot = qty - np.cumsum(legacy[:, COL["spot_coin_flow"]])
    assert abs(spot[-1] * c[-1] + legacy[-1, COL["account_usd"]] - qty * c[0]) > 0.5 * qty * c[0]


@pytest.mark.parametrize("seed", range(0, 120, 7))
def test_array_api_replays_the_kernel_exactly(seed: int) -> None:
    kind, coll = KINDS_COLL[seed % len(KINDS_COLL)]
    arrays, p = random_leg(seed, kind, coll)
    out = np.zeros((len(arrays[0]), len(S.OUT_COLUMNS)))
    S.leg_path(*arrays, p, out)
    np.testing.assert_array_equal(replay_with_the_array_api(arrays, p), out)


def test_step_functions_by_hand_linear() -> None:
    """Linear, at-LP family: fill, funding, mark, transfer, liquidation by an intrabar high."""
    p = np.array([S.LINEAR, S.STABLE, 2.0, 1.0, 0.001, 0.005, 0.0, S.AT_LP_FAMILY, 0.001, 0.0, 0.1, 3.0, 1.0, 0.5])
    state = np.zeros(len(S.STATE))
    S.init_state(state, p)
    assert state[3] == math.inf and state[6] == -math.inf and state[4] == 0.005
    row = np.zeros(len(S.OUT_COLUMNS))
    assert S.rebalance_target(state, p, 0.0, 100.0, 1000.0, 0.5, 1.0) == 500.0
    assert S.rebalance_target(state, p, 0.0, 100.0, 1000.0, 0.5, 0.0) != S.rebalance_target(
        state, p, 0.0, 100.0, 1000.0, 0.5, 0.0
    )  # NaN = hold
    n = S.target_contracts(p, 100.0, 500.0)
    assert n == 5.0
    S.fill(state, p, 100.0, n, row)
    assert row[COL["fee_usd"]] == pytest.approx(0.5)  # 5 coin × 100 × 0.1%
    assert state[2] == pytest.approx(-0.5)
    assert S.margin_move(state, p, 100.0) == pytest.approx(250.5)
    assert S.reset_margin(state, p, 100.0) == pytest.approx(250.5)
    assert state[2] == 250.0
    lp = (250.0 + 5 * 100.0) / (5 * 0.005 + 5)
    assert state[3] == pytest.approx(lp)
    row[:] = 0
    S.settle_bar(state, p, 101.0, 100.0, 0.001, row)  # funding 0.1% of 500 USD received by the short
    assert row[COL["funding_usd"]] == pytest.approx(0.5) and state[2] == pytest.approx(250.5)
    assert state[3] == pytest.approx(lp)  # not recomputed after funding
    S.mark(state, p, 110.0, row)
    assert row[COL["account_usd"]] == pytest.approx(250.5 - 50.0)
    assert row[COL["delta_usd"]] == pytest.approx(-550.0)
    # at 110 equity 200.5 >= 0.5 × 550/2: no top-up; at 130 equity 100.5 < 0.5 × 650/2: back to value / L
    assert math.isnan(S.top_up_amount(state, p, 110.0))
    add = S.top_up_amount(state, p, 130.0)
    assert add == pytest.approx(325.0 - 100.5)
    S.transfer(state, p, add)
    assert S.liq_of(state, p) == state[3] > lp
    # a mark above the liquidation price between two settlements liquidates at the next settle_bar
    S.observe_high(state, float("nan"))
    S.observe_high(state, state[3] + 1)
    row[:] = 0
    liq = state[3]
    S.settle_bar(state, p, 100.0, 100.0, 0.0, row)
    assert row[COL["liquidated"]] == 1.0 and row[COL["liq_price"]] == liq and state[0] == 0.0
    assert state[7] == -math.inf
    S.on_liquidation(state, p, 10.0)
    assert state[6] == 13.0
    assert math.isnan(S.rebalance_target(state, p, 12.0, 100.0, 1000.0, 0.5, 1.0))
    assert S.rebalance_target(state, p, 13.0, 100.0, 1000.0, 0.5, 1.0) == 500.0


def test_step_functions_by_hand_inverse_buy() -> None:
    """Inverse with bought collateral: contracts sized d·L/(L−1), delta (equity − Q/P)·P, move in coin."""
    p = np.array([S.INVERSE, S.BUY, 2.0, 100.0, 1.0, 0.005, 0.0, S.ENTRY_FAMILY, 0.0005, 0.0, 0.1, -1.0, 0.0, 0.5])
    state = np.zeros(len(S.STATE))
    S.init_state(state, p)
    assert S.target_contracts(p, 50_000.0, 10_000.0) == 200.0  # 20,000 USD of contracts
    row = np.zeros(len(S.OUT_COLUMNS))
    S.fill(state, p, 50_000.0, 200.0, row)
    move = S.reset_margin(state, p, 50_000.0)
    assert state[2] == pytest.approx(0.2)  # 0.4 BTC of contracts / 2
    assert move == pytest.approx(0.2 + 20_000 / 50_000 * 0.0005)
    S.book_collateral(p, 50_000.0, move, row)
    assert row[COL["cash_flow_usd"]] == pytest.approx(move * 50_000) and row[COL["spot_coin_flow"]] == 0
    assert S.hedge_delta_usd(state, p, 50_000.0) == pytest.approx(-10_000.0)
    assert math.isnan(S.top_up_amount(state, p, 60_000.0))  # top-ups off
    S.on_liquidation(state, p, 5.0)
    assert state[6] == math.inf  # never reopens


# ------------------------------------------------------------------------------------ policies at one bar


@pytest.fixture(scope="module")
def sample_inputs(sample_store_path: Path) -> dict[str, object]:
    run_cfg, pfile, _, _ = load_run(REPO / "runs" / "fear-greed.yaml")
    with MarketStore(sample_store_path, read_only=True) as store:
        prep = prepare(run_cfg, pfile, store, default_registry())
    assert prep.fear_greed is not None
    return {
        "days": prep.days,
        "proxy_close": prep.closes[prep.proxy],
        "fear_greed": prep.fear_greed,
        "funding_daily": prep.legs[0].funding,
        "periods_per_year": prep.periods_per_year,
        "bar_hours": prep.bar_hours,
    }


def specs_of_every_kind(days: np.ndarray) -> list[PolicySpec]:
    d0, d1 = int(days[0]), int(days[-1])
    mid = (d0 + d1) // 2
    out = [
        PolicySpec(kind="static", ratio=0.5),
        PolicySpec(kind="drift_band", ratio=0.8, band=0.2),
        PolicySpec(kind="calendar", ratio=0.6, every_days=7),
        PolicySpec(kind="calendar", ratio=0.6, every_days=30),
        PolicySpec(kind="schedule", ratio=0.3, schedule=((d0 + 100, 0.5), (mid, 1.0), (d1 - 50, 0.2))),
        PolicySpec(kind="fear_greed"),
        PolicySpec(kind="volatility", vol_days=30),
        PolicySpec(kind="volatility", vol_days=5, vol_bands=((0.3, 0.2), (0.6, 0.7))),
        PolicySpec(kind="funding_aware", ratio=1.0, lookback_days=7, max_ratio=1.2),
        PolicySpec(kind="funding_aware", ratio=0.5, lookback_days=30, cost_threshold_8h=0.0, rich_threshold_8h=1e-4),
        PolicySpec(kind="trend", sma_days=50),
        PolicySpec(kind="trend", sma_days=3, ratio_on=0.7, ratio_off=0.1),
        PolicySpec(kind="events", ratio=0.4, events=((mid, 1.0, 5, 10), (d0 + 3, 0.9, 10, 2))),
        PolicySpec(kind="beta", ratio=0.9),
    ]
    assert {s.kind for s in out} == set(KINDS)
    return out


def assert_bar_equal(spec: PolicySpec, inputs: dict[str, object], origin: int, t: int, full) -> None:  # type: ignore[no-untyped-def]
    got = policy_decision_at(spec, t=t, origin=origin, **inputs)  # type: ignore[arg-type]
    i = t - origin
    want = (float(full.target[i]), float(full.allowed[i]), full.band, full.fallback[i])
    assert (got.target, got.allowed, got.band, got.fallback) == want, (spec.kind, origin, t)


def test_policy_decision_at_equals_policy_decisions_every_bar_of_the_sample(sample_inputs: dict[str, object]) -> None:
    days = sample_inputs["days"]
    assert isinstance(days, np.ndarray) and len(days) > 1000
    for spec in specs_of_every_kind(days):
        full = policy_decisions(spec, **sample_inputs)  # type: ignore[arg-type]
        for t in range(len(days)):
            assert_bar_equal(spec, sample_inputs, 0, t, full)


@pytest.mark.parametrize("origin", [1, 29, 400, 1000])
def test_policy_decision_at_counts_from_its_origin(sample_inputs: dict[str, object], origin: int) -> None:
    """A policy started at ``origin``: equal to the run over the arrays from ``origin`` (calendar and windows too)."""
    days = sample_inputs["days"]
    assert isinstance(days, np.ndarray)
    tail = {k: (v[origin:] if isinstance(v, np.ndarray) else v) for k, v in sample_inputs.items()}
    for spec in specs_of_every_kind(days):
        full = policy_decisions(spec, **tail)  # type: ignore[arg-type]
        for t in [*range(origin, origin + 60), *range(origin + 60, len(days), 37), len(days) - 1]:
            assert_bar_equal(spec, sample_inputs, origin, t, full)


def test_policy_decisions_offset_shifts_only_the_calendar() -> None:
    days = np.arange(20, dtype=np.int64)
    close = np.linspace(100, 120, 20)
    cal = PolicySpec(kind="calendar", every_days=5)
    assert list(np.nonzero(policy_decisions(cal, days=days, proxy_close=close).allowed)[0]) == [0, 5, 10, 15]
    assert list(np.nonzero(policy_decisions(cal, days=days, proxy_close=close, offset=3).allowed)[0]) == [2, 7, 12, 17]
    static = PolicySpec(kind="static")
    a = policy_decisions(static, days=days, proxy_close=close, offset=3)
    assert a.allowed.tolist() == [1.0] * 20
    with pytest.raises(ValueError, match="offset"):
        policy_decisions(static, days=days, proxy_close=close, offset=-1)


def test_lookback_bars_and_bounds() -> None:
    assert lookback_bars(PolicySpec(kind="static")) == 0
    assert lookback_bars(PolicySpec(kind="calendar")) == 0
    assert lookback_bars(PolicySpec(kind="volatility", vol_days=30)) == 30
    assert lookback_bars(PolicySpec(kind="funding_aware", lookback_days=7)) == 6
    assert lookback_bars(PolicySpec(kind="trend", sma_days=50)) == 49
    days = np.arange(10, dtype=np.int64)
    close = np.ones(10)
    for t, origin in ((10, 0), (-1, 0), (3, 4), (5, -1)):
        with pytest.raises(ValueError, match="origin"):
            policy_decision_at(PolicySpec(kind="static"), t=t, origin=origin, days=days, proxy_close=close)


def test_policy_decision_at_keeps_the_missing_signal_errors() -> None:
    from perphedge.errors import ConfigError

    days = np.arange(10, dtype=np.int64)
    close = np.ones(10)
    with pytest.raises(ConfigError, match="Fear & Greed"):
        policy_decision_at(PolicySpec(kind="fear_greed"), t=5, days=days, proxy_close=close)
    with pytest.raises(ConfigError, match="funding"):
        policy_decision_at(PolicySpec(kind="funding_aware"), t=5, days=days, proxy_close=close)


def test_policy_decision_at_fear_greed_forward_fills_across_long_gaps() -> None:
    """Leading unknown days, gaps of many days, a value above the table: same ratio and fallback text per bar."""
    rng = np.random.default_rng(3)
    n = 300
    days = np.arange(19_000, 19_000 + n, dtype=np.int64)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.03, n)))
    fg = rng.uniform(0, 100, n).round()
    fg[:12] = np.nan
    for start in (40, 100, 101, 180):
        fg[start : start + int(rng.integers(5, 40))] = np.nan
    spec = PolicySpec(kind="fear_greed", table=((20.0, 0.6), (50.0, 0.4), (80.0, 0.2), (100.0, 0.1)))
    inputs: dict[str, object] = {"days": days, "proxy_close": close, "fear_greed": fg}
    for origin in (0, 5, 45, 150):
        tail = {k: v[origin:] for k, v in inputs.items()}  # type: ignore[index]
        full = policy_decisions(spec, **tail)  # type: ignore[arg-type]
        assert any("last known value" in w for w in full.fallback)
        for t in range(origin, n):
            assert_bar_equal(spec, inputs, origin, t, full)


@pytest.mark.parametrize("kind", ["funding_aware", "trend"])
def test_policy_decision_at_is_exact_at_a_threshold_after_a_long_history(kind: str) -> None:
    """The backtest averages a window as a difference of running sums from the run's start; a large early
    history leaves rounding in that difference. At a value sitting exactly on the threshold, a sum over the
    window alone could decide the other way: policy_decision_at must still equal the run bar by bar."""
    n = 400
    days = np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(11)
    if kind == "funding_aware":
        spec = PolicySpec(kind=kind, ratio=1.0, lookback_days=7, cost_threshold_8h=1e-4, max_ratio=1.2)
        f = np.full(n, -3e-4)  # exactly −0.01% per 8h on daily bars: on the cost threshold
        f[:200] = rng.uniform(-30.0, 30.0, 200)  # a wild early history
        inputs: dict[str, object] = {"days": days, "proxy_close": np.ones(n), "funding_daily": f}
    else:
        spec = PolicySpec(kind=kind, sma_days=5, ratio_on=1.0, ratio_off=0.0)
        close = np.full(n, 0.1)  # the close equals its average: on the threshold
        close[:200] = rng.uniform(1e6, 3e6, 200)
        inputs = {"days": days, "proxy_close": close}
    full = policy_decisions(spec, **inputs)  # type: ignore[arg-type]
    for t in range(n):
        assert_bar_equal(spec, inputs, 0, t, full)
