"""Backtests and sweeps on the real sample history, through the service and the CLI."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perphedge.data.store import MarketStore
from perphedge.specs import default_registry
from perphedge.usecases.backtest import load_run, prepare, run
from tests.conftest import REPO, run_cli


def _baseline():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("baseline", REPO / "benchmarks" / "baseline_backtest.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.baseline_static_linear


def test_engine_agrees_with_the_row_by_row_baseline(sample_store_path: Path) -> None:
    run_cfg, pfile, source, digest = load_run(REPO / "runs" / "altcoins-50pct.yaml")
    run_cfg = run_cfg.model_copy(update={"end": pd.Timestamp("2021-12-31").date()})
    with MarketStore(sample_store_path, read_only=True) as store:
        prep = prepare(run_cfg, pfile, store, default_registry())
    doc = run(prep, run_cfg, config_hash=digest, source=source)
    leg = prep.legs[0]
    spot = sum(q * prep.closes[a] for a, q in prep.quantities.items())
    frame = pd.DataFrame(
        {"spot": spot, "exposure": spot, "close": leg.c, "high": leg.h, "funding": leg.funding}, index=prep.dates
    )
    inst = leg.instrument
    base = _baseline()(
        frame,
        ratio=0.5,
        band=0.10,
        leverage=2.0,
        lot=inst.lot_size,
        mmr=inst.margin.tiers[0].mmr,
        taker=0.0005,
        slippage=2e-4,
    )
    np.testing.assert_allclose(doc["_series"]["hedged"], base.to_numpy(), rtol=1e-9)


def test_runs_on_the_sample(sample_store_path: Path) -> None:
    reg = default_registry()
    with MarketStore(sample_store_path, read_only=True) as store:
        for name in (
            "altcoins-50pct",
            "altcoins-inverse-buy",
            "btc-eth-60pct",
            "fear-greed",
            "funding-aware",
            "core-satellite",
        ):
            run_cfg, pfile, source, digest = load_run(REPO / "runs" / f"{name}.yaml")
            doc = run(prepare(run_cfg, pfile, store, reg), run_cfg, config_hash=digest, source=source)
            for key in (
                "start_value_usd",
                "end_value_usd",
                "pnl_usd",
                "total_return",
                "volatility",
                "max_drawdown",
                "sharpe",
                "cvar_95",
            ):
                assert key in doc["hedged"] and key in doc["unhedged"]
            assert 0 < doc["hedge_effectiveness"] < 1, name
            assert doc["hedged"]["max_drawdown"] > doc["unhedged"]["max_drawdown"], name  # a hedge cuts drawdown
            assert doc["funding_received_usd"] > 0, name  # 2021–2025: shorts were paid on balance
            assert doc["equity"][0]["unhedged_usd"] == pytest.approx(doc["unhedged"]["start_value_usd"])
            assert len(doc["equity"]) == doc["days"] == 1826


def test_backtest_and_sweep_cli(store_home: Path, tmp_path: Path) -> None:
    home = store_home
    out = tmp_path / "out"
    r = run_cli("backtest", "runs/altcoins-50pct.yaml", "--out", str(out), home=home, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "hedge effectiveness" in r.stdout and "Liquidations" in r.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["schema"] == "perphedge.backtest/1"
    raw = (
        (REPO / "runs" / "altcoins-50pct.yaml").read_bytes()
        + b"\n--portfolio--\n"
        + (REPO / "examples" / "altcoins.yaml").read_bytes()
    )
    assert result["config_hash"] == hashlib.sha256(raw).hexdigest()
    assert {"date", "instrument", "price", "loss_usd"} <= set(result["liquidations"][0])
    html = (out / "report.html").read_text()
    assert "plotly" in html and len(html) > 1_000_000 and "https://cdn" not in html[:5000]  # self-contained
    assert (out / "report.png").stat().st_size > 20_000
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "portfolio: ../examples/altcoins.yaml\nstart: 2021-01-01\nend: 2022-01-01\npolicy: {kind: static, ratoi: 0.5}\n"
    )
    r = run_cli("backtest", str(bad), home=home, cwd=REPO)
    assert r.returncode == 2 and "field `policy.ratoi`: unknown key" in r.stderr
    early = tmp_path / "early.yaml"
    early.write_text(f"portfolio: {REPO / 'examples' / 'altcoins.yaml'}\nstart: 2020-01-01\nend: 2021-01-01\n")
    r = run_cli("backtest", str(early), home=home, cwd=REPO)
    assert r.returncode == 2 and "start on or after their listing" in r.stderr
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        f"base: {REPO / 'runs' / 'altcoins-50pct.yaml'}\ngrid:\n  policy.ratio: [0.25, 0.75]\n"
        "  hedge.leverage: [2, 5]\nrank_by: hedge_effectiveness\ntop: 3\n"
    )
    r = run_cli("sweep", str(grid), "--workers", "2", "--format", "json", home=home, cwd=REPO)
    assert r.returncode == 0, r.stderr
    sweep = json.loads(r.stdout)
    assert sweep["configurations"] == 4 and sweep["workers"] == 2 and not sweep["failed"]
    he = [row["hedge_effectiveness"] for row in sweep["top"]]
    assert he == sorted(he, reverse=True) and len(he) == 3


def test_step_8h_on_8h_candles(tmp_path: Path) -> None:
    from perphedge.config import parse_portfolio, parse_run
    from perphedge.usecases.backtest import prepare as prep_fn

    n = 3 * 120
    ts = pd.date_range("2024-01-01", periods=n, freq="8h")
    rng = np.random.default_rng(4)
    frames = []
    for sym, p0 in (("BTC/USDT", 40_000.0), ("SOL/USDT", 100.0)):
        c = p0 * np.exp(np.cumsum(rng.normal(0, 0.015, n)))
        o = np.concatenate([[p0], c[:-1]])
        frames.append(
            pd.DataFrame(
                {
                    "source": "binance",
                    "symbol": sym,
                    "timeframe": "8h",
                    "ts": ts,
                    "open": o,
                    "high": np.maximum(o, c) * 1.004,
                    "low": np.minimum(o, c) * 0.996,
                    "close": c,
                    "volume": 1.0,
                }
            )
        )
    settle = pd.date_range("2024-01-01 08:00", periods=n, freq="8h")
    funding = pd.DataFrame(
        {
            "source": "binance",
            "symbol": "BTC/USDT:USDT",
            "ts": settle,
            "rate": np.linspace(0.0001, 0.0002, n),
            "interval_hours": 8.0,
            "mark_price": np.nan,
        }
    )
    with MarketStore(tmp_path / "8h.duckdb") as store:
        for f in frames:
            store.upsert("candles", f)
        store.upsert("funding", funding)
    run_cfg = parse_run(
        {
            "portfolio": "x",
            "start": "2024-01-01",
            "end": "2024-04-29",
            "step": "8h",
            "hedge": {"instrument": "binance:BTCUSDT", "leverage": 2, "collateral": "stable"},
            "policy": {"kind": "static", "ratio": 0.5, "band": 0.05},
        },
        "8h run",
    )
    pfile = parse_portfolio({"holdings": [{"asset": "SOL", "value_usd": 10_000}]}, "8h portfolio")
    with MarketStore(tmp_path / "8h.duckdb", read_only=True) as store:
        prep = prep_fn(run_cfg, pfile, store, default_registry())
    assert len(prep.dates) == n and prep.periods_per_year == 1095
    # each 8h bar is paid the one settlement at its closing instant
    np.testing.assert_allclose(prep.legs[0].funding, funding["rate"].to_numpy())
    doc = run(prep, run_cfg, config_hash="x")
    h = doc["_series"]["hedged"]
    r = h[1:] / h[:-1] - 1
    assert doc["hedged"]["volatility"] == pytest.approx(np.std(r, ddof=1) * np.sqrt(1095))
    assert doc["days"] == n and doc["rebalances"] >= 1


def test_maker_fills_pay_the_maker_fee(sample_store_path: Path) -> None:
    run_cfg, pfile, _, digest = load_run(REPO / "runs" / "altcoins-50pct.yaml")
    with MarketStore(sample_store_path, read_only=True) as store:
        prep = prepare(run_cfg, pfile, store, default_registry())
    taker = run(prep, run_cfg, config_hash=digest, full=False)
    maker_cfg = run_cfg.model_copy(
        update={"costs": run_cfg.costs.model_copy(update={"fills": "maker", "maker_fee": 0.0001})}
    )
    maker = run(prep, maker_cfg, config_hash=digest, full=False)
    assert taker["rebalances"] == maker["rebalances"]
    assert maker["fees_usd"] == pytest.approx(taker["fees_usd"] * 0.0001 / 0.0005, rel=0.02)


def test_holdings_collateral_must_be_held(sample_store_path: Path, tmp_path: Path) -> None:
    from perphedge.errors import InfeasibleHedgeError

    run_cfg, pfile, _, _ = load_run(REPO / "runs" / "altcoins-50pct.yaml")
    run_cfg = run_cfg.model_copy(
        update={"hedge": {"instrument": "binance:BTCUSD_PERP", "leverage": 2, "collateral": "holdings"}}
    )
    with (
        MarketStore(sample_store_path, read_only=True) as store,
        pytest.raises(InfeasibleHedgeError, match="portfolio holds 0 BTC"),
    ):
        prepare(run_cfg, pfile, store, default_registry())
