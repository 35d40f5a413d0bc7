"""A synthetic one-factor market for the optimize tests: known beta, correlation and funding."""

from __future__ import annotations

from typing import Any

import numpy as np


def market(
    *,
    beta: float = 1.5,
    rho: float = 0.8,
    sigma_f: float = 0.03,
    funding_linear: float = 0.0,
    funding_inverse: float = 0.0,
    n: int = 700,
    seed: int = 1,
    perturb_from: int | None = None,
    kinds: tuple[str, ...] = ("linear",),
    zero_costs: bool = True,
) -> Any:
    """A :class:`perphedge.usecases.optimize.Market` with one altcoin ``ALT`` (10,000 USD) driven by ``BTC``.

    ALT's daily log return is β·f + ε with Corr(ALT, BTC) = ρ. Funding per day is constant per kind (positive: a
    short receives). ``perphedge_from``: bars from there on get an independent extra shock (a different future).
    """
    import pandas as pd

    from perphedge.config import parse_run
    from perphedge.core.hedge import CollateralSource, SizingMethod
    from perphedge.core.optimize import HedgeChoice
    from perphedge.specs import default_registry
    from perphedge.usecases.backtest import LegData, Prepared
    from perphedge.usecases.optimize import Market

    rng = np.random.default_rng(seed)
    f = rng.normal(0.0, sigma_f, n)
    sd_eps = beta * sigma_f * np.sqrt(1.0 / rho**2 - 1.0)
    a = beta * f + rng.normal(0.0, sd_eps, n)
    if perturb_from is not None:
        other = np.random.default_rng(seed + 99)
        f[perturb_from:] += other.normal(0.0, 0.05, n - perturb_from)
        a[perturb_from:] += other.normal(0.0, 0.05, n - perturb_from)
    f[0] = a[0] = 0.0
    btc = 30_000.0 * np.exp(np.cumsum(f))
    alt = 20.0 * np.exp(np.cumsum(a))
    wick = np.abs(np.random.default_rng(seed + 7).normal(0.0, 0.01, n))
    dates = pd.date_range("2021-01-01", periods=n, freq="D", tz="UTC")
    days = (dates.tz_localize(None).to_numpy().astype("datetime64[D]").astype(np.int64)).astype(np.int64)
    reg = default_registry()
    closes = {"BTC": btc, "ALT": alt}
    o = np.concatenate([[btc[0]], btc[:-1]])
    h = np.maximum(o, btc) * (1 + wick)
    lo = np.minimum(o, btc) * (1 - wick)
    run_cfg = parse_run(
        {
            "portfolio": {"name": "synthetic", "holdings": [{"asset": "SOL", "value_usd": 1}], "hedge": {}},
            "start": "2021-01-01",
            "end": "2022-01-01",
            "margin": {"reopen_after_days": 1},
            "costs": {"taker_fee": 0.0, "slippage_bps": 0.0} if zero_costs else {},
        },
        "synthetic",
    )
    preps: dict[str, Any] = {}
    choices = []
    for kind in kinds:
        inst = reg.get("binance:BTCUSDT" if kind == "linear" else "binance:BTCUSD_PERP")
        rate = funding_linear if kind == "linear" else funding_inverse
        leg = LegData(
            instrument=inst,
            weights={"ALT": 1.0},
            o=o,
            h=h,
            lo=lo,
            c=btc,
            funding=np.full(n, rate),
            funding_assumed_days=0,
            funding_series="synthetic",
        )
        choice = HedgeChoice(
            name="btc",
            kind=kind,
            venue="binance",
            legs=((inst.id, 1.0),),
            max_leverage=inst.max_leverage,
            bases=("BTC",),
        )
        preps[choice.label] = Prepared(
            dates=dates,
            days=days,
            closes=closes,
            quantities={"ALT": 10_000.0 / alt[0]},
            cash0=0.0,
            legs=[leg],
            proxy="BTC",
            btc_close=btc,
            fear_greed=None,
            scope_assets=["ALT"],
            collateral=CollateralSource.STABLE if kind == "linear" else CollateralSource.BUY,
            leverage=2.0,
            method=SizingMethod.NOTIONAL,
            betas={},
        )
        choices.append(choice)
    return Market(
        dates=dates,
        closes=closes,
        highs={"BTC": h},
        quantities={"ALT": 10_000.0 / alt[0]},
        cash0=0.0,
        scope_assets=["ALT"],
        betas_file={"ALT": beta},
        preps=preps,
        choices=choices,
        run_cfg=run_cfg,
    )


# ------------------------------------------------------------------------------------------------ tests

import math  # noqa: E402

import pytest  # noqa: E402

from perphedge.usecases.optimize import OptimizeRequest, evaluate, optimize  # noqa: E402


def _req(**kw: Any) -> OptimizeRequest:
    base: dict[str, Any] = {
        "file": "synthetic",
        "ratios": (0.5, 1.0, 1.5, 2.0),
        "leverages": (1.0,),
        "methods": ("notional",),
        "policies": ("band",),
        "band": 0.0,
        "lam": 0.0,
        "train": 180,
        "test": 60,
        "paths": 500,
    }
    return OptimizeRequest(**(base | kw))


@pytest.mark.parametrize("beta", [0.5, 1.0, 1.5])
def test_min_variance_ratio_is_beta(beta: float) -> None:
    """On a one-factor market the variance-minimising notional ratio is β: the search finds it in every window."""
    m = market(beta=beta, rho=0.85)
    doc = optimize(m, _req())
    chosen = [w["chosen"] for w in doc["walk_forward"]["windows"]]
    want = f"btc linear binance | notional {beta:g} | 1x stable | band"
    assert chosen.count(want) >= len(chosen) - 1, chosen
    assert doc["recommended"]["ratio"] == beta


def test_min_variance_method_finds_beta_at_ratio_one() -> None:
    """With the rolling min-variance β the best ratio is 1 (the β is already in the size)."""
    m = market(beta=1.5, rho=0.85)
    doc = optimize(m, _req(methods=("min_variance",), beta_window=60))
    assert doc["recommended"]["ratio"] == 1.0
    assert doc["recommended"]["betas_at_end"]["ALT"] == pytest.approx(1.5, abs=0.3)


def test_inverse_preferred_when_it_earns_more_funding() -> None:
    """Same risk, higher funding received on the inverse contract: the inverse design is chosen; and the reverse."""
    common = {"beta": 1.0, "kinds": ("linear", "inverse")}
    req = _req(ratios=(1.0,), leverages=(2.0,), collaterals=("stable", "buy"))
    doc = optimize(market(**common, funding_inverse=0.0005), req)
    assert doc["recommended"]["kind"] == "inverse"
    assert all(w["chosen"].startswith("btc inverse") for w in doc["walk_forward"]["windows"])
    doc = optimize(market(**common, funding_linear=0.0005), req)
    assert doc["recommended"]["kind"] == "linear"


def test_inverse_liquidates_less_than_linear_at_the_same_leverage() -> None:
    """At 3x the inverse short's liquidation price is further away (1/(1 − 1/L) vs 1 + 1/L): P(liq) lower."""
    m = market(beta=1.0, kinds=("linear", "inverse"), sigma_f=0.05)
    doc = optimize(m, _req(ratios=(1.0,), leverages=(3.0,), collaterals=("stable", "buy"), max_liq_prob=0.99))
    last = {r["kind"]: r["p_liq"] for r in doc["pareto"]}
    designs, paths, _ = evaluate(m, _req(ratios=(1.0,), leverages=(3.0,), collaterals=("stable", "buy")))
    lp = {d.hedge.kind: p.legs_lp[0][1][-1] for d, p in zip(designs, paths, strict=True)}
    assert lp["inverse"] > lp["linear"] > 1.0
    if "inverse" in last and "linear" in last:
        assert last["inverse"] <= last["linear"]


@pytest.mark.parametrize("k", [0, 2])
def test_no_look_ahead(k: int) -> None:
    """Changing every price after a training window's end never changes that window's choice or its scores."""
    req = _req(leverages=(1.0, 3.0), lam=1.0, max_liq_prob=0.2)
    a = optimize(market(beta=1.2), req)
    cut = 1 + 180 + 60 * k  # the train_end bar of window k
    b = optimize(market(beta=1.2, perturb_from=cut), req)
    wa, wb = a["walk_forward"]["windows"][k], b["walk_forward"]["windows"][k]
    assert wa["chosen"] == wb["chosen"]
    assert wa["in_sample"] == wb["in_sample"]
    assert wa["feasible_designs"] == wb["feasible_designs"]
    # the future did change: the test window's score differs
    assert wa["out_of_sample"]["objective"] != wb["out_of_sample"]["objective"]


def test_deterministic_with_a_seed() -> None:
    req = _req(leverages=(2.0, 5.0), lam=1.0, max_liq_prob=0.5, seed=7)
    a, b = optimize(market(), req), optimize(market(), req)
    for d in (a, b):
        d.pop("timing")
    assert a == b
    c = optimize(market(), _req(leverages=(2.0, 5.0), lam=1.0, max_liq_prob=0.5, seed=8))
    p_a = [w["in_sample"]["p_liq"] for w in a["walk_forward"]["windows"]]
    p_c = [w["in_sample"]["p_liq"] for w in c["walk_forward"]["windows"]]
    assert len(p_a) == len(p_c)
    assert p_a != p_c  # the seed drives the Monte Carlo


def test_constraint_violations_never_recommended() -> None:
    """High leverage with a tight P(liq) target: every chosen design and every Pareto row meets the target."""
    m = market(beta=1.0, sigma_f=0.06)
    req = _req(leverages=(1.0, 5.0, 20.0), lam=0.0, max_liq_prob=0.02)
    doc = optimize(m, req)
    for w in doc["walk_forward"]["windows"]:
        if w["chosen"] is not None:
            assert w["in_sample"]["feasible"] and w["in_sample"]["p_liq"] <= 0.02
    assert all(r["p_liq"] <= 0.02 and r["feasible"] for r in doc["pareto"])
    rec = doc["recommended"]
    assert rec is None or rec["in_sample"]["p_liq"] <= 0.02
    # and without the constraint the 20x design would have been chosen somewhere (the constraint bites)
    free = optimize(m, _req(leverages=(1.0, 5.0, 20.0), lam=0.0, max_liq_prob=0.999999))
    assert any(" 20x " in (w["chosen"] or "") for w in free["walk_forward"]["windows"]) or any(
        r["p_liq"] > 0.02 for r in free["pareto"]
    )


def test_document_shape() -> None:
    doc = optimize(market(), _req())
    assert doc["schema"] == "perphedge.optimize/1"
    assert doc["objective"]["defaults"] == {"lambda": 1.0, "horizon_days": 30, "max_liq_prob": 0.01, "risk": "variance"}
    names = {r["name"] for r in doc["walk_forward"]["summary"]}
    assert "walk-forward choice" in names and "unhedged" in names
    assert all(math.isfinite(r["risk"]) for r in doc["pareto"])
    assert doc["space"]["designs"] == 4


def test_a_leg_liquidated_in_training_is_never_chosen() -> None:
    """At 100x the leg is liquidated again and again (flat while it waits to reopen): never feasible, never chosen,
    even though at some closes it holds no position (no liquidation price)."""
    m = market(beta=1.0, sigma_f=0.04)
    doc = optimize(m, _req(ratios=(1.0,), leverages=(1.0, 100.0), max_liq_prob=0.5))
    for w in doc["walk_forward"]["windows"]:
        assert w["chosen"] is None or " 100x " not in w["chosen"]
    assert doc["recommended"] is None or doc["recommended"]["leverage"] == 1.0
    _designs, paths, _ = evaluate(m, _req(ratios=(1.0,), leverages=(100.0,)))
    assert paths[0].liquidated.sum() > 3


def test_wiped_out_design_infeasible_from_then_on() -> None:
    """A 2x over-hedge of a coin that falls while the proxy triples wipes out the book: never chosen after that."""
    m = market(beta=0.2, rho=0.3, sigma_f=0.05, seed=3)
    doc = optimize(m, _req(ratios=(0.5, 2.0), leverages=(1.0,), max_liq_prob=0.99))
    designs, paths, _ = evaluate(m, _req(ratios=(0.5, 2.0), leverages=(1.0,)))
    for d, p in zip(designs, paths, strict=True):
        if p.wiped_at is not None:
            for w in doc["walk_forward"]["windows"]:
                if w["chosen"] == d.key:
                    assert w["train_end"] < str(m.dates[p.wiped_at].date())
