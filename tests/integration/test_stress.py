"""`perphedge stress` and `plan --leverage auto` on the sample history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perphedge.specs import default_registry
from perphedge.usecases.montecarlo import leverage_candidates
from perphedge.usecases.plan import plan_from_file
from tests.conftest import REPO, run_cli


def test_stress_json(store_home: Path, tmp_path: Path) -> None:
    r = run_cli(
        "stress",
        "examples/altcoins.yaml",
        "--horizon",
        "90d",
        "--leverage",
        "1.5,2,3,5,200",
        "--paths",
        "5000",
        "--plot",
        str(tmp_path / "plots"),
        "--format",
        "json",
        home=store_home,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "perphedge.stress/1"
    assert doc["leverages"] == [1.5, 2.0, 3.0, 5.0]  # 200x is above the instrument's 125x: never tested
    names = {row["name"] for row in doc["replays"]}
    assert {"2021-05 crash", "2022-05 LUNA", "2022-11 FTX", "2024-08 carry unwind"} <= names
    done = [row for row in doc["replays"] if "skipped" not in row]
    for row in done:
        for key in ("start", "end", "spot_pnl_usd", "hedge_pnl_usd", "net_pnl_usd", "max_drawdown", "liquidated"):
            assert key in row
    crash = next(row for row in done if row["name"] == "2022-05 LUNA")
    assert crash["hedge_pnl_usd"] > 0 and crash["net_pnl_usd"] > crash["spot_pnl_usd"]
    rallies = [row for row in done if row["name"].startswith("BTC rally")]
    assert rallies and any(row["liquidated"] for row in rallies)  # a 2x short does not survive every rally
    mc = doc["monte_carlo"]
    for key in ("model", "paths", "horizon_days", "var_95_usd", "es_95_usd", "liquidation"):
        assert key in mc
    assert mc["es_95_usd"] >= mc["var_95_usd"] > 0
    assert mc["hedged"]["var_95_usd"] < mc["unhedged"]["var_95_usd"]
    probs = [row["liquidation_probability"] for row in mc["liquidation"]]
    assert probs == sorted(probs)  # more leverage, more liquidations
    assert all(
        row["liquidation_probability_with_top_up"] <= row["liquidation_probability"] + 1e-12
        for row in mc["liquidation"]
    )
    rec = doc["recommended_leverage"]
    assert rec in doc["leverages"]
    assert doc["monte_carlo"]["by_leverage"][str(rec)]["any_leg"] <= 0.01
    assert set(doc["recommended_by_model"]) == {"bootstrap", "gbm", "student_t"}
    grid = doc["shock_grid"]
    assert any(row["scenario"].startswith("BTC flat, others") for row in grid)
    assert {row["funding_regime"] for row in grid} == {"normal", "stressed"}
    assert sorted(Path(p).name for p in doc["plots"]) == ["monte_carlo.png", "shock_grid.html", "shock_grid.png"]


def test_stress_gbm_flags_and_errors(store_home: Path) -> None:
    r = run_cli(
        "stress",
        "examples/btc-50pct.yaml",
        "--model",
        "gbm",
        "--sigma",
        "0.6",
        "--drift",
        "0.0",
        "--paths",
        "4000",
        "--seed",
        "7",
        "--leverage",
        "1,2,5",
        "--format",
        "json",
        home=store_home,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["monte_carlo"]["model"] == "gbm" and doc["monte_carlo"]["volatility_annual"]["BTC"] == pytest.approx(0.6)
    assert doc["leverages"] == [1.0, 2.0, 5.0]
    r = run_cli("stress", "examples/altcoins.yaml", "--model", "lognormal", home=store_home)
    assert r.returncode == 2 and "--model" in r.stderr
    r = run_cli("stress", "examples/altcoins.yaml", "--max-liq-prob", "2", home=store_home)
    assert r.returncode == 2 and "--max-liq-prob" in r.stderr


def test_plan_leverage_auto(store_home: Path) -> None:
    r = run_cli("plan", "examples/altcoins.yaml", "--leverage", "auto", "--format", "json", home=store_home)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rec = doc["hedge"]["leverage_recommendation"]
    assert doc["hedge"]["leverage"] == rec["leverage"] and rec["liquidation_probability"] <= 0.01
    assert doc["hedge"]["legs"][0]["leverage"] == rec["leverage"]
    assert doc["hedge"]["net_delta_usd"] == pytest.approx(0, abs=60)


def test_candidates_respect_the_instrument() -> None:
    plan = plan_from_file(str(REPO / "examples" / "altcoins.yaml"), registry=default_registry()).plan
    assert 1.0 not in leverage_candidates(plan)  # 1x inverse on bought collateral is a synthetic dollar
    assert max(leverage_candidates(plan, [2, 100, 130])) == 100  # BTCUSD_PERP allows 125x
