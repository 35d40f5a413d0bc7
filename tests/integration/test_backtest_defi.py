"""`perphedge backtest` on DeFi positions over the sample history, run as a user runs it (issue 14, item 4).

The numbers are recomputed here from the sample's CSVs (ETH closes, Binance ETHUSDT funding) with the Uniswap v3
formulas and a plain replay of the drift-band hedge on the linear perpetual, not read from the engine.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from perphedge.specs import default_registry
from tests.conftest import REPO, run_cli, sample_dir

RUN = REPO / "runs" / "defi-lp-v3.yaml"


def _eth(start: str, end: str) -> pd.DataFrame:
    df = pd.read_csv(sample_dir() / "prices" / "ETH.csv", parse_dates=["timestamp"]).set_index("timestamp")
    return df.loc[start:end]


def _funding_per_day(dates: pd.DatetimeIndex) -> np.ndarray:
    """Settlements paid by the position held through each day: those in (day 00:00, next day 00:00]."""
    f = pd.read_csv(sample_dir() / "funding" / "BINANCE_ETHUSDT.csv")
    ts = pd.to_datetime(f["timestamp"], utc=True).dt.tz_localize(None)
    day = (ts - pd.Timedelta(milliseconds=1)).dt.floor("D")
    return f.groupby(day)["funding_rate"].sum().reindex(dates).to_numpy()


def _replay_hedge(target: np.ndarray, close: np.ndarray, funding: np.ndarray, band: float) -> np.ndarray:
    """The short's contribution to the book per close: the drift band on ``target`` USD, 0.001 ETH lots, taker 0.05%
    and 2 bp slippage per fill, funding on the position held through the bar (no liquidation at 2x here)."""
    lot, fee, slip = 0.001, 0.0005, 0.0002
    q = 0.0
    book = np.zeros(len(close))
    acc = 0.0
    for t, px in enumerate(close):
        if t > 0:
            acc += -q * (px - close[t - 1]) + funding[t] * q * px
        d = target[t]
        trade = (d > 0) if q == 0 else (d <= 0 or abs(-q * px + d) > band * d)
        if trade:
            new = max(math.floor(d / px / lot + 0.5) * lot, 0.0)
            acc -= abs(new - q) * px * (fee + slip)
            q = new
        book[t] = acc
    return book


def test_v3_lp_backtest_through_the_cli(store_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = run_cli("backtest", str(RUN), "--out", str(out), "--format", "json", home=store_home, cwd=REPO)
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads((out / "result.json").read_text())
    run_doc = yaml.safe_load(RUN.read_text())
    eth = _eth(str(run_doc["start"]), str(run_doc["end"]))
    c = eth["close"].to_numpy()
    liquidity, pa, pb, apr = 4000.0, 1500.0, 2500.0, run_doc["defi"]["fee_apr"]
    sp = np.sqrt(np.clip(c, pa, pb))
    x = liquidity * (1 / sp - 1 / math.sqrt(pb))
    value = x * c + liquidity * (sp - math.sqrt(pa))
    inside = (c > pa) & (c < pb)
    fees = np.concatenate([[0.0], np.cumsum(apr / 365.0 * value[:-1] * inside[:-1])])
    unhedged = value + fees
    np.testing.assert_allclose([e["unhedged_usd"] for e in doc["equity"]], unhedged, rtol=1e-10)
    # the hedge targets the pool's delta x·P at each close, not its value
    inst = default_registry().get("binance:ETHUSDT")
    assert (inst.lot_size, inst.taker_fee) == (0.001, 0.0005)
    book = _replay_hedge(x * c, c, _funding_per_day(eth.index), run_doc["policy"]["band"])
    np.testing.assert_allclose([e["hedged_usd"] for e in doc["equity"]], unhedged + book, rtol=1e-9)
    d = doc["defi"]
    assert d["fee_apr"] == apr and any("15.00% a year" in a for a in d["assumptions"])
    p = d["positions"][0]
    assert p["start_delta_usd"]["ETH"] == pytest.approx(x[0] * c[0], abs=0.01)
    assert p["end_delta_usd"]["ETH"] == pytest.approx(x[-1] * c[-1], abs=0.01)
    assert p["bars_out_of_range"] == int((~inside).sum()) > 0
    assert p["impermanent_loss_usd"] == pytest.approx(value[-1] - (x[0] * c[-1] + value[0] - x[0] * c[0]), abs=0.01)
    gamma = np.sum(value[1:] - value[:-1] - x[:-1] * (c[1:] - c[:-1]))
    assert d["gamma_pnl_usd"] == pytest.approx(gamma, abs=0.01)
    du, dh = np.diff(unhedged), np.diff(unhedged + book)
    assert d["hedge_effectiveness_pnl"] == pytest.approx(1 - np.var(dh) / np.var(du), abs=1e-6)
    assert d["hedge_effectiveness_pnl"] > 0.9
    assert d["hedge_pnl_usd"] == pytest.approx(book[-1], abs=0.01)
    # the terminal and the report state the assumption
    r = run_cli("backtest", str(RUN), "--out", str(tmp_path / "t"), home=store_home, cwd=REPO, columns=200)
    assert r.returncode == 0, r.stderr
    assert "the hedge removes" in r.stdout and "assumed: pool fees: an assumed 15.00% a year" in r.stdout
    html = (tmp_path / "t" / "report.html").read_text()
    assert "DeFi positions" in html and "an assumed 15.00% a year" in html


def test_lending_run_reports_the_liquidation(store_home: Path, tmp_path: Path) -> None:
    run_file = REPO / "runs" / "defi-lending.yaml"
    r = run_cli("backtest", str(run_file), "--out", str(tmp_path / "o"), "--no-report", home=store_home, cwd=REPO)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "o" / "result.json").read_text())
    eth = _eth("2024-05-01", "2025-06-30")
    lt, debt = 0.83, 12000.0
    first = eth.index[np.argmax((10 * eth["low"] * lt / debt < 1).to_numpy())]
    liq = doc["defi"]["positions"][0]["liquidation"]
    assert liq["date"] == str(first.date()) == "2025-04-07"
    assert liq["loss_usd"] == pytest.approx(0.05 * debt, abs=0.01)
    assert liq["supplied_left"]["ETH"] == pytest.approx(10 - debt * 1.05 / eth.loc[first, "low"], abs=1e-8)
    hf = [e["health_factor"] for e in doc["equity"]]
    i = list(eth.index).index(first)
    assert hf[i - 1] == pytest.approx(10 * eth["close"].iloc[i - 1] * lt / debt, rel=1e-6) and hf[i] is None


def _write_run(tmp_path: Path, **extra: Any) -> Path:
    run = {"portfolio": str(REPO / "examples" / "defi-lp-v3.yaml"), "start": "2023-02-01", "end": "2023-06-30"}
    run.update(extra)
    f = tmp_path / "run.yaml"
    f.write_text(yaml.safe_dump(run), encoding="utf-8")
    return f


@pytest.mark.parametrize(
    ("defi", "needle"),
    [
        ({"fee_apr": 6}, "field `defi.fee_apr`: must be <= 5, was 6"),
        ({"fee_apr": -0.1}, "field `defi.fee_apr`: must be >= 0"),
        ({"fee_apr": ".nan"}, "field `defi.fee_apr`"),
        ({"fee_apr": "15%"}, "field `defi.fee_apr`"),
        ({"apr": 0.1}, "field `defi`: unknown key `apr`"),
    ],
)
def test_a_wrong_fee_apr_is_one_line(tmp_path: Path, store_home: Path, defi: dict[str, Any], needle: str) -> None:
    run = _write_run(tmp_path, defi=defi)
    if defi.get("fee_apr") == ".nan":
        run.write_text(run.read_text().replace("fee_apr: .nan", "fee_apr: .nan").replace("'.nan'", ".nan"))
    r = run_cli("backtest", str(run), "--out", str(tmp_path / "o"), home=store_home)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "o").exists()


def test_fee_apr_without_a_pool_is_refused(tmp_path: Path, store_home: Path) -> None:
    run = _write_run(tmp_path, defi={"fee_apr": 0.1}, portfolio=str(REPO / "examples" / "defi-staked-eth.yaml"))
    r = run_cli("backtest", str(run), "--out", str(tmp_path / "o"), home=store_home)
    assert r.returncode == 2 and "has no pool position" in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_pool_amounts_off_the_start_price_are_refused_naming_the_start(tmp_path: Path, store_home: Path) -> None:
    # the v2 pool of defi-lending.yaml holds 5 ETH + 15,000 USDC: a price of 3,000, not ETH's 1,642 on 2023-02-01
    run = _write_run(tmp_path, portfolio=str(REPO / "examples" / "defi-lending.yaml"))
    r = run_cli("backtest", str(run), "--out", str(tmp_path / "o"), home=store_home)
    assert r.returncode == 2, r.stderr
    assert "positions[1].amounts" in r.stderr and "closes of its `start` 2023-02-01: ETH 1,641.68" in r.stderr
    assert r.stderr.count("\n") == 1


def test_staked_eth_hedged_half_on_the_inverse_perpetual(tmp_path: Path, store_home: Path) -> None:
    # the DeFi guide's case over 2023: 100 stETH = 100 ETH of delta every day, the hedge sized on half of it
    run = _write_run(
        tmp_path,
        portfolio=str(REPO / "examples" / "defi-staked-eth.yaml"),
        end="2023-12-31",
        policy={"kind": "static", "ratio": 0.5, "band": 0.05},
    )
    r = run_cli("backtest", str(run), "--out", str(tmp_path / "o"), "--no-report", home=store_home)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "o" / "result.json").read_text())
    c = _eth("2023-02-01", "2023-12-31")["close"].to_numpy()
    np.testing.assert_allclose([e["unhedged_usd"] for e in doc["equity"]], 100 * c, rtol=1e-12)
    assert doc["defi"]["positions"][0]["end_delta_usd"]["ETH"] == pytest.approx(100 * c[-1], abs=0.01)
    assert doc["defi"]["gamma_pnl_usd"] == pytest.approx(0.0, abs=1e-6)  # a staked token is linear
    assert any("no staking yield" in a for a in doc["defi"]["assumptions"])
    assert 0.2 < doc["hedge_effectiveness"] < 0.9  # half hedged


def test_sweep_over_the_fee_apr(tmp_path: Path, store_home: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        f"base: {RUN}\ngrid:\n  defi.fee_apr: [0.0, 0.1, 0.3]\n  policy.band: [0.05, 0.2]\n"
        "rank_by: unhedged.total_return\ntop: 6\n",
        encoding="utf-8",
    )
    r = run_cli("sweep", str(grid), "--workers", "1", "--format", "json", home=store_home)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["configurations"] == 6 and not doc["failed"]
    by_apr = {row["overrides"]["defi.fee_apr"]: row["unhedged.total_return"] for row in doc["top"]}
    assert by_apr[0.3] > by_apr[0.1] > by_apr[0.0]
