"""No renderer prints Python's `None` (or `nonex`): an undefined value is `—` or `none` in tables, null in JSON."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from perphedge.cli.stress import render as render_stress
from perphedge.jsonsafe import json_safe
from perphedge.usecases.stress import StressRequest, run_stress
from tests.conftest import REPO, run_cli

EXAMPLES = sorted(p.name for p in (REPO / "examples").glob("*.yaml"))


def no_none(text: str) -> None:
    assert "None" not in text, text
    assert "nonex" not in text, text


def rendered(doc: dict[str, Any]) -> str:
    buf = io.StringIO()
    render_stress(json_safe(doc), Console(file=buf, width=200, force_terminal=False))
    return buf.getvalue()


@pytest.fixture
def gbm_doc() -> dict[str, Any]:
    """A parametric stress without a store (the autouse fixture points PERPHEDGE_HOME at an empty directory)."""
    req = StressRequest(
        file=str(REPO / "examples" / "altcoins.yaml"),
        model="gbm",
        sigma=0.6,
        correlation=0.6,
        paths=500,
        horizon_days=30,
        leverages=(2.0, 3.0),
    )
    return run_stress(req)


def test_stress_render_with_no_recommendation(gbm_doc: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(json_safe(gbm_doc)))
    rec = doc["monte_carlo"]["recommended"]
    for key in list(rec):
        if key != "max_liquidation_probability":
            rec[key] = None
    for m in doc["recommended_by_model"]:
        doc["recommended_by_model"][m] = {"without_top_up": None, "with_top_up": None}
    doc["monte_carlo"]["hedged"]["var_95_usd"] = None
    doc["monte_carlo"]["liquidation"][0]["liquidation_price_ratio"] = None
    text = rendered(doc)
    no_none(text)
    assert "gbm none / none" in text and "none without top-ups" in text


def test_stress_render_of_a_real_document(gbm_doc: dict[str, Any]) -> None:
    text = rendered(gbm_doc)
    no_none(text)
    assert "Monte Carlo assumptions" in text


@pytest.mark.parametrize("example", EXAMPLES)
def test_plan_tables(store_home: Path, example: str) -> None:
    r = run_cli("plan", f"examples/{example}", "--as-of", "2024-06-30", home=store_home)
    assert r.returncode == 0, r.stderr
    no_none(r.stdout)


def test_plan_leverage_auto_table(store_home: Path) -> None:
    r = run_cli("plan", "examples/altcoins.yaml", "--leverage", "auto", home=store_home)
    assert r.returncode == 0, r.stderr
    no_none(r.stdout)
    assert "with daily top-ups:" in r.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("--instrument", "binance:BTCUSD_PERP", "--side", "short", "--contracts", "100", "--entry", "60000"),
        (
            "--instrument",
            "binance:BTCUSD_PERP",
            "--side",
            "short",
            "--contracts",
            "100",
            "--entry",
            "60000",
            "--leverage",
            "3",
            "--exit",
            "50000",
        ),
        (
            "--instrument",
            "binance:BTCUSDT",
            "--side",
            "long",
            "--contracts",
            "0.5",
            "--entry",
            "60000",
            "--leverage",
            "5",
        ),
        (
            "--instrument",
            "binance:BTCUSDT",
            "--side",
            "short",
            "--contracts",
            "0.5",
            "--entry",
            "60000",
            "--margin-mode",
            "cross",
            "--wallet-balance",
            "20000",
        ),
    ],
)
def test_calc_tables(args: tuple[str, ...]) -> None:
    r = run_cli("calc", *args)
    assert r.returncode == 0, r.stderr
    no_none(r.stdout)


def test_analyze_table(store_home: Path) -> None:
    r = run_cli("analyze", "--assets", "SOL,DOGE,ETH", "--since", "2021-01-01", home=store_home)
    assert r.returncode == 0, r.stderr
    no_none(r.stdout)


@pytest.mark.parametrize("run", ["runs/altcoins-50pct.yaml", "runs/fear-greed.yaml", "runs/altcoins-inverse-buy.yaml"])
def test_backtest_tables(store_home: Path, tmp_path: Path, run: str) -> None:
    r = run_cli("backtest", run, "--out", str(tmp_path / "out"), home=store_home)
    assert r.returncode == 0, r.stderr
    no_none(r.stdout)


@pytest.mark.parametrize(
    "args",
    [
        ("examples/altcoins.yaml", "--paths", "2000", "--leverage", "1,2,3,200"),
        ("examples/btc-50pct.yaml", "--model", "student_t", "--paths", "2000", "--leverage", "2,50,100"),
    ],
)
def test_stress_tables(store_home: Path, args: tuple[str, ...]) -> None:
    r = run_cli("stress", *args, home=store_home)
    assert r.returncode == 0, r.stderr
    no_none(r.stdout)


def test_plan_render_with_no_top_up_leverage(store_home: Path) -> None:
    from perphedge.cli.render import render_plan

    r = run_cli("plan", "examples/altcoins.yaml", "--leverage", "auto", "--format", "json", home=store_home)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    doc.setdefault("source", "examples/altcoins.yaml")
    doc["hedge"]["leverage_recommendation"]["with_top_up"] = None
    buf = io.StringIO()
    render_plan(doc, Console(file=buf, width=200))
    text = buf.getvalue()
    no_none(text)
    assert "with daily top-ups: none" in text
