"""The backtest kernel: hand-computed golden days, the numba twin, and book-level invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perphedge.config import parse_run
from perphedge.core import _kernels as K
from perphedge.core.contracts import liquidation_price
from perphedge.core.hedge import CollateralSource, SizingMethod
from perphedge.core.instruments import MarginSchedule
from perphedge.specs import InstrumentRegistry, bundled_instruments
from perphedge.usecases.backtest import LegData, Prepared, run

COL = {n: i for i, n in enumerate(K.OUT_COLUMNS)}
REG = InstrumentRegistry(bundled_instruments())


def params(**kw: float) -> np.ndarray:
    base = {
        "kind": K.LINEAR,
        "collateral": K.STABLE,
        "leverage": 2.0,
        "contract_size": 1.0,
        "lot": 0.001,
        "mmr": 0.005,
        "cum": 0.0,
        "family": K.AT_LP_FAMILY,
        "taker": 0.0005,
        "slippage": 0.0,
        "band": 0.5,
        "reopen_after": -1.0,
        "top_up": 0.0,
        "top_up_level": 0.5,
    }
    base.update(kw)
    return np.array([base[k] for k in K.PARAMS], dtype=np.float64)


def go(
    c: list[float], h: list[float], exposure: list[float], funding: list[float], p: np.ndarray, target: float = 1.0
) -> np.ndarray:
    n = len(c)
    arr = np.asarray
    out = np.zeros((n, len(K.OUT_COLUMNS)))
    K.leg_path(
        arr(c, float),
        arr(h, float),
        arr(c, float),
        arr(c, float),
        arr(exposure, float),
        np.full(n, target),
        np.ones(n),
        arr(funding, float),
        p,
        out,
    )
    return out


def test_golden_linear_three_days() -> None:
    """10 coins hedged 1:1 on a linear 2x short, worked by hand (see the numbers in the comments)."""
    out = go([100, 110, 90], [100, 112, 111], [1000, 1100, 900], [0, 0.0003, 0.0003], params())
    # day 0: short 10 at 100, fee 10·100·0.05% = 0.5, margin 1000/2 = 500 from cash: 500.5 spent
    assert out[0, COL["contracts"]] == pytest.approx(10)
    assert out[0, COL["fee_usd"]] == pytest.approx(0.5)
    assert out[0, COL["cash_flow_usd"]] == pytest.approx(500.5)
    assert out[0, COL["account_usd"]] == pytest.approx(500)
    # Binance USDⓈ-M LP of the short: (500 + 10·100)/(10·1.005) = 149.2537
    assert out[0, COL["liq_price"]] == pytest.approx(1500 / 10.05)
    # day 1: funding 0.03% of 10·110 = 0.33 received; uPnL −100 → account 400.33; on target, no trade
    assert out[1, COL["funding_usd"]] == pytest.approx(0.33)
    assert out[1, COL["account_usd"]] == pytest.approx(400.33)
    assert out[1, COL["rebalanced"]] == 0
    # day 2: funding 0.27; uPnL +100 → 600.60
    assert out[2, COL["account_usd"]] == pytest.approx(600.60)
    book = np.array([1000, 1100, 900]) - np.cumsum(out[:, COL["cash_flow_usd"]]) + out[:, COL["account_usd"]]
    assert book == pytest.approx([999.5, 999.83, 1000.10])


def test_golden_inverse_bought_collateral_liquidated() -> None:
    """1 BTC hedged on a 2x inverse short (100 USD contracts) with bought BTC margin; a rally liquidates it."""
    p = params(kind=K.INVERSE, collateral=K.BUY, contract_size=100.0, lot=1.0)
    out = go([10_000, 19_000, 19_500], [10_000, 20_000, 19_600], [10_000, 19_000, 19_500], [0, 0, 0], p)
    # D = 10,000 → Q = D·L/(L−1) = 20,000 = 200 contracts; margin 2 BTC / 2 = 1 BTC bought; fee 0.001 BTC
    assert out[0, COL["contracts"]] == 200
    assert out[0, COL["cash_flow_usd"]] == pytest.approx(1.001 * 10_000)
    assert out[0, COL["delta_usd"]] == pytest.approx(-10_000)  # (M − Q/E)·P = (1 − 2)·10,000
    lp = liquidation_price(
        kind="inverse",
        method="mm_at_liquidation_price",
        side="short",
        size=20_000,
        entry=10_000,
        margin=1.0,
        schedule=MarginSchedule.single(0.005),
    ).price
    assert out[0, COL["liq_price"]] == pytest.approx(lp) == pytest.approx(19_900)
    # day 1: the high 20,000 crosses 19,900: the 1 BTC of margin is lost (worth 19,900 USD there)
    assert out[1, COL["liquidated"]] == 1
    assert out[1, COL["liq_loss_usd"]] == pytest.approx(19_900)
    assert out[1, COL["account_usd"]] == 0 and out[2, COL["contracts"]] == 0  # stays closed (reopen: never)


def test_reopen_after_days_and_top_up() -> None:
    p = params(kind=K.INVERSE, collateral=K.BUY, contract_size=100.0, lot=1.0, reopen_after=2.0)
    c = [10_000, 19_000, 19_500, 19_000, 19_000]
    out = go(c, [10_000, 20_000, 19_600, 19_100, 19_100], c, [0] * 5, p)
    assert out[1, COL["liquidated"]] == 1
    assert out[2, COL["contracts"]] == 0 and out[3, COL["contracts"]] > 0  # reopened on day 1 + 2
    topped = go([100, 140, 140], [100, 141, 141], [1000, 1000, 1000], [0] * 3, params(top_up=1.0, band=0.9))
    assert topped[1, COL["top_up_usd"]] > 0 and topped[1, COL["liquidated"]] == 0


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 10_000),
    st.sampled_from([(K.INVERSE, K.BUY), (K.INVERSE, K.HOLDINGS), (K.LINEAR, K.STABLE)]),
    st.floats(1.2, 5),
    st.floats(0, 0.3),
    st.sampled_from([-1.0, 3.0]),
    st.sampled_from([0.0, 1.0]),
)
def test_numba_twin_agrees(
    seed: int, kc: tuple[float, float], lev: float, band: float, reopen: float, top_up: float
) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    c = 50_000 * np.exp(np.cumsum(rng.normal(0, 0.04, n)))
    h = c * (1 + np.abs(rng.normal(0, 0.02, n)))
    lo = c * (1 - np.abs(rng.normal(0, 0.02, n)))
    exposure = 20_000 * np.exp(np.cumsum(rng.normal(0, 0.05, n)))
    target = np.clip(rng.normal(0.7, 0.3, n), 0, 1.5)
    allowed = (rng.random(n) > 0.2).astype(float)
    funding = rng.normal(0.0003, 0.0005, n)
    p = params(
        kind=kc[0],
        collateral=kc[1],
        leverage=lev,
        contract_size=100.0 if kc[0] == K.INVERSE else 0.001,
        lot=1.0,
        band=band,
        reopen_after=reopen,
        top_up=top_up,
        family=float(seed % 2),
    )
    a = np.zeros((n, len(K.OUT_COLUMNS)))
    b = np.zeros((n, len(K.OUT_COLUMNS)))
    K.leg_path(c, h, lo, c, exposure, target, allowed, funding, p, a)
    K.leg_path_python(c, h, lo, c, exposure, target, allowed, funding, p, b)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-9, equal_nan=True)


# ------------------------------------------------------------------------------------------- book invariants


def synthetic_prep(
    n: int = 500,
    *,
    inst: str = "binance:BTCUSD_PERP",
    collateral: CollateralSource,
    leverage: float = 2.0,
    seed: int = 0,
    hold: str = "SOL",
    funding: float = 0.0003,
) -> Prepared:
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2022-01-01", periods=n, freq="D", tz="UTC")
    btc = 40_000 * np.exp(np.cumsum(rng.normal(0, 0.03, n)))
    sol = 100 * np.exp(np.cumsum(rng.normal(0, 0.05, n)))
    instrument = REG.get(inst)
    closes = {"BTC": btc, "SOL": sol}
    q = {"BTC": 1.0} if hold == "BTC" else {"SOL": 100.0}
    leg = LegData(
        instrument=instrument,
        weights={hold: 1.0},
        o=btc,
        h=btc * 1.01,
        lo=btc * 0.99,
        c=btc,
        funding=np.full(n, funding),
        funding_assumed_days=n,
        funding_series="assumed",
    )
    return Prepared(
        dates=dates,
        days=np.arange(n, dtype=np.int64) + 19_000,
        closes=closes,
        quantities=q,
        cash0=0.0,
        legs=[leg],
        proxy="BTC",
        btc_close=btc,
        fear_greed=None,
        scope_assets=[hold],
        collateral=collateral,
        leverage=leverage,
        method=SizingMethod.NOTIONAL,
        betas={},
    )


def cfg(policy: dict[str, object], **extra: object) -> object:
    doc = {
        "portfolio": {"holdings": [{"asset": "SOL", "quantity": 100}], "prices": {"SOL": 100}},
        "start": "2022-01-01",
        "end": "2023-05-01",
        "policy": policy,
        **extra,
    }
    return parse_run(doc, "test")


def test_ratio_zero_is_the_unhedged_book_exactly() -> None:
    prep = synthetic_prep(collateral=CollateralSource.BUY)
    doc = run(prep, cfg({"kind": "static", "ratio": 0.0}), config_hash="x")  # type: ignore[arg-type]
    s = doc["_series"]
    np.testing.assert_array_equal(s["hedged"], s["unhedged"])
    assert doc["fees_usd"] == 0 and doc["rebalances"] == 0 and doc["funding_received_usd"] == 0


def test_one_x_inverse_short_on_own_coin_keeps_usd_value() -> None:
    prep = synthetic_prep(collateral=CollateralSource.HOLDINGS, leverage=1.0, hold="BTC", funding=0.0)
    doc = run(
        prep,
        cfg({"kind": "static", "ratio": 1.0, "band": 0.99}, costs={"taker_fee": 0.0, "slippage_bps": 0}),
        config_hash="x",
    )  # type: ignore[arg-type]
    h = doc["_series"]["hedged"]
    start = h[0]
    # 1 BTC fully shorted at 1x: contracts are whole 100 USD, the remainder (< 100 USD) stays long
    btc = prep.closes["BTC"]
    residual_coin = 1.0 - round(btc[0] / 100) * 100 / btc[0]
    np.testing.assert_allclose(h - residual_coin * btc, start - residual_coin * btc[0], rtol=1e-9)
    assert not doc["liquidations"]


def test_constant_funding_matches_the_closed_form() -> None:
    rate_8h = 0.0002
    prep = synthetic_prep(collateral=CollateralSource.BUY, funding=rate_8h * 3)
    doc = run(prep, cfg({"kind": "static", "ratio": 1.0, "band": 0.99}), config_hash="x")  # type: ignore[arg-type]
    leg = doc["legs"][0]
    notional = 100 * round(100 * prep.closes["SOL"][0] * 2 / 100)  # D·L/(L−1) at 2x, whole contracts
    expected = (len(prep.dates) - 1) * 3 * rate_8h * notional  # inverse: USD funding = Q·rate each day
    if doc["liquidations"]:
        pytest.skip("this random path liquidated the leg")
    assert leg["funding_received_usd"] == pytest.approx(expected, rel=1e-12)


def test_deterministic_and_no_look_ahead() -> None:
    prep = synthetic_prep(collateral=CollateralSource.BUY, n=600)
    run_cfg = cfg({"kind": "trend", "sma_days": 30, "ratio_on": 1.0, "ratio_off": 0.2, "band": 0.05})
    a = run(prep, run_cfg, config_hash="x")  # type: ignore[arg-type]
    b = run(prep, run_cfg, config_hash="x")  # type: ignore[arg-type]
    np.testing.assert_array_equal(a["_series"]["hedged"], b["_series"]["hedged"])
    k = 300
    rng = np.random.default_rng(9)
    future = synthetic_prep(collateral=CollateralSource.BUY, n=600)
    for arr in (future.closes["BTC"], future.closes["SOL"]):
        arr[k + 1 :] *= np.exp(rng.normal(0, 0.01, len(arr) - k - 1))
    leg = future.legs[0]
    leg.c, leg.o = future.closes["BTC"], future.closes["BTC"]
    leg.h, leg.lo = future.closes["BTC"] * 1.01, future.closes["BTC"] * 0.99
    future.btc_close = future.closes["BTC"]
    c = run(future, run_cfg, config_hash="x")  # type: ignore[arg-type]
    np.testing.assert_array_equal(a["_series"]["hedged"][: k + 1], c["_series"]["hedged"][: k + 1])
    assert not np.array_equal(a["_series"]["hedged"], c["_series"]["hedged"])
