"""`perphedge analyze` and estimated betas on the real sample history."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perphedge.core.analytics import ols
from perphedge.data.store import MarketStore
from perphedge.errors import DataError
from perphedge.usecases.analyze import AnalyzeRequest, analyze, simple_returns
from tests.conftest import run_cli


def test_beta_equals_lstsq_on_sample(sample_store_path: Path) -> None:
    with MarketStore(sample_store_path, read_only=True) as store:
        rets = simple_returns(store, ["SOL", "BTC"], "2021-01-01", None).dropna()
    s, f = rets["SOL"].to_numpy(), rets["BTC"].to_numpy()
    coef, *_ = np.linalg.lstsq(np.column_stack([np.ones_like(f), f]), s, rcond=None)
    assert ols(s, f).beta == pytest.approx(coef[1], abs=1e-10)


def test_analyze_on_the_sample(sample_store_path: Path) -> None:
    with MarketStore(sample_store_path, read_only=True) as store:
        doc = analyze(
            store, AnalyzeRequest(assets=("ETH", "SOL", "AVAX", "DOT", "LINK", "DOGE", "XRP"), since="2021-01-01")
        )
    by = {a["asset"]: a for a in doc["assets"]}
    # a BTC cross-hedge removes only ρ² of an altcoin's variance (DESIGN: 0.28–0.50 on log returns, 0.66 ETH)
    for asset in ("SOL", "AVAX", "DOT", "LINK", "DOGE", "XRP"):
        assert 0.27 <= by[asset]["log_returns"]["r2"] <= 0.51, asset
    assert by["ETH"]["log_returns"]["r2"] == pytest.approx(0.67, abs=0.02)
    for a in doc["assets"]:
        assert a["hedge_effectiveness"] == pytest.approx(a["r2"], abs=1e-12)
        assert set(a["oos_hedge_effectiveness"]) == {
            "rolling_ols",
            "expanding_ols",
            "ewma",
            "downside",
            "stress",
            "naive",
        }
        assert 0 < a["unhedgeable_variance"] < 1
        assert {w["name"] for w in a["regimes"]["crash_windows"]} >= {"2021-05 crash", "2022-05 LUNA", "2022-11 FTX"}
    basis = {(b["source"], b["asset"]): b for b in doc["basis"]}
    # BTC spot hedged with Binance's BTCUSDT perpetual, daily: anything below 0.99 is an alignment bug
    assert basis[("binance", "BTC")]["linear_daily_hedge"]["hedge_effectiveness"] >= 0.99
    assert basis[("binance", "BTC")]["inverse_daily_hedge"]["hedge_effectiveness"] >= 0.99
    ih = by["SOL"]["instrument_hedge"]  # on the BTC perpetuals themselves, 2023-01 → 2024-06
    assert ih["n_days"] > 500
    assert ih["linear"]["min_variance_ratio"] == pytest.approx(ih["proxy_spot"]["min_variance_ratio"], rel=0.02)
    assert ih["inverse"]["min_variance_ratio"] == pytest.approx(ih["linear"]["min_variance_ratio"], rel=0.02)
    funding = {(r["source"], r["symbol"]): r for r in doc["funding"]}
    btc = funding[("binance", "BTC/USDT:USDT")]
    assert btc["share_positive"] > 0.8 and btc["short_carry_annual"] > 0.05
    assert doc["basket"]["oos_hedge_effectiveness"]["rolling_ols"] > 0.5


def test_missing_asset_and_short_history(sample_store_path: Path) -> None:
    with MarketStore(sample_store_path, read_only=True) as store:
        with pytest.raises(DataError, match="no daily binance history of PEPE"):
            analyze(store, AnalyzeRequest(assets=("SOL", "PEPE")))
        with pytest.raises(DataError, match=r"only .* days"):
            analyze(store, AnalyzeRequest(assets=("SOL",), since="2025-10-01", funding=False))


def test_analyze_cli_json_plots_and_plan_estimates(store_home: Path, tmp_path: Path) -> None:
    home = store_home
    r = run_cli(
        "analyze",
        "--assets",
        "SOL,AVAX,DOT,LINK",
        "--proxy",
        "BTC",
        "--since",
        "2021-01-01",
        "--plot",
        str(tmp_path / "plots"),
        "--format",
        "json",
        home=home,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "perphedge.analyze/1"
    for a in doc["assets"]:
        for key in ("beta", "correlation", "r2", "hedge_effectiveness", "oos_hedge_effectiveness"):
            assert key in a
    assert sorted(Path(p).name for p in doc["plots"]) == [
        "hedge_effectiveness.html",
        "hedge_effectiveness.png",
        "rolling_beta.html",
        "rolling_beta.png",
    ]
    assert all(Path(p).stat().st_size > 10_000 for p in doc["plots"])
    r = run_cli("analyze", "--assets", "SOL,DOGE", "--since", "2021-01-01", home=home)
    assert r.returncode == 0 and "Funding for a short" in r.stdout and "OOS" in r.stdout
    r = run_cli(
        "plan",
        "examples/altcoins-min-variance.yaml",
        "--window",
        "90d",
        "--as-of",
        "2024-06-30",
        "--format",
        "json",
        home=home,
    )
    assert r.returncode == 0, r.stderr
    est = json.loads(r.stdout)["hedge"]["beta_estimation"]
    assert est["window_days"] == 90 and est["end"] == "2024-06-30" and set(est["betas"]) == {"SOL", "AVAX", "DOT"}
    r = run_cli("analyze", "--assets", "SOL,NOPE", home=home)
    assert r.returncode == 2 and "no daily binance history of NOPE" in r.stderr
