"""`perphedge backtest` of a hedge on Binance COIN-M quarterlies rolled before delivery, vs the perpetual (2021)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_cli, sample_dir

RUN = REPO / "runs" / "btc-quarterly-roll.yaml"


def _run_doc(**changes: object) -> dict[str, object]:
    doc = yaml.safe_load(RUN.read_text())
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def _write(tmp_path: Path, doc: object, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return path


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory, sample_store_path: Path) -> dict[str, object]:
    out = tmp_path_factory.mktemp("bt") / "out"
    r = run_cli("backtest", str(RUN), "--store", str(sample_store_path), "--out", str(out), "-f", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (out / "report.html").stat().st_size > 500 and (out / "report.png").stat().st_size > 5000
    assert json.loads((out / "result.json").read_text())["config_hash"] == doc["config_hash"]
    return doc


def test_rolls_happen_three_days_before_each_delivery(result: dict[str, object]) -> None:
    doc: dict = result  # type: ignore[assignment]
    assert doc["schema"] == "perphedge.backtest-futures/1"
    rolls = doc["dated"]["rolls"]
    # delivery 03-26 08:00 − 3 days = 03-23 08:00: the first close at or after it is the 03-23 bar's (03-24 00:00)
    assert [(r["date"], r["from"], r["to"]) for r in rolls] == [
        ("2021-01-01", None, "BTCUSD_210326"),
        ("2021-03-23", "BTCUSD_210326", "BTCUSD_210625"),
        ("2021-06-22", "BTCUSD_210625", "BTCUSD_210924"),
    ]
    # the basis sold at each roll is the far contract's close over spot's, straight from the CSV
    rows = {
        (r["timestamp"], r["contract"]): r
        for r in csv.DictReader((sample_dir() / "futures/BINANCE_BTCUSD_quarterly_1d_2021.csv").open())
    }
    for roll in rolls:
        row = rows[(roll["date"], roll["to"])]
        assert roll["far_price"] == float(row["close"])
        assert roll["far_basis"] == pytest.approx(float(row["close"]) / float(row["spot_close"]) - 1, rel=1e-12)
        if roll["from"]:
            assert roll["near_price"] == float(rows[(roll["date"], roll["from"])]["close"])
    # both legs' fees: 0.05% of the value of every fill (slippage 2 bp)
    assert doc["dated"]["fees_usd"] == pytest.approx(sum(r["fees_usd"] for r in rolls))
    assert doc["perpetual_hedge"]["fees_usd"] > 0


def test_side_by_side_and_carry(result: dict[str, object]) -> None:
    doc: dict = result  # type: ignore[assignment]
    d, p = doc["dated"], doc["perpetual_hedge"]
    assert doc["dated_minus_perpetual_usd"] == pytest.approx(d["hedged"]["pnl"] - p["hedged"]["pnl"])
    eq = doc["equity"]
    assert eq[0]["date"] == "2021-01-01" and eq[-1]["date"] == "2021-09-20" and len(eq) == 263
    assert eq[-1]["funding_received_usd"] == pytest.approx(p["funding_received_usd"])
    assert eq[-1]["basis_carry_usd"] == pytest.approx(d["basis_carry_usd"])
    # 2021 was a contango year: both hedges earned a positive carry; the funding the perpetual received is positive
    assert d["basis_carry_usd"] > 0 and p["funding_received_usd"] > 0
    assert d["liquidations"] == [] and p["liquidations"] == []
    # the hedges work: the hedged books move far less than the unhedged one
    assert d["hedged"]["volatility"] < 0.5 * doc["unhedged"]["volatility"]
    assert p["hedged"]["volatility"] < 0.5 * doc["unhedged"]["volatility"]


def test_table_output(sample_store_path: Path, tmp_path: Path) -> None:
    r = run_cli("backtest", str(RUN), "--store", str(sample_store_path), "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert "Rolls of the dated leg" in r.stdout and "funding received USD" in r.stdout


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"roll": None}, "needs a roll policy"),
        ({"roll": {"days_before_expiry": 84}}, "shorter than the contract's life"),
        ({"roll": {"days_before_expiry": 0}}, "must be >= 1"),
        ({"roll": {"days_before_expiry": 2.5}}, "whole number"),
        ({"roll": {"days": 3}}, "roll.days"),
        ({"hedge": {"instrument": "binance:BTCUSD_PERP", "leverage": 2}}, "a roll policy is for a dated-futures"),
        ({"hedge": {"instrument": "binance:BTCUSD_201225", "leverage": 2}}, "delivered on 2020-12-25"),
        ({"hedge": {"instrument": "binance:BTCUSD_210327", "leverage": 2}}, "unknown expiry"),
        ({"hedge": {"instrument": "binance:BTCUSD_211231", "leverage": 2}}, "no 2021-01-01 close of"),
        ({"hedge": {"instrument": "binance:BTCUSD_210326", "leverage": 1}}, "hedges nothing"),
        ({"hedge": {"instrument": "binance:BTCUSD_210326", "leverage": 200}}, "at most 125x"),
        ({"hedge": {"instrument": "binance:BTCUSD_210326", "collateral": "holdings"}}, "`hedge.collateral`"),
        ({"hedge": {"instrument": "binance:BTCUSD_210326", "method": "beta"}}, "`hedge.method`"),
        ({"policy": {"kind": "drift_band", "ratio": 1.0}}, "`policy.kind`"),
        ({"policy": {"kind": "static", "ratio": 1.0, "band": 0.1}}, "`policy.band`"),
        ({"step": "8h"}, "`step`"),
        ({"end": "2021-12-31"}, "nothing to open or roll into"),
        ({"start": "2020-12-01"}, "no 2020-12-01 close of"),
        (
            {"hedge": {"legs": [{"instrument": "binance:BTCUSD_210326", "weight": 1.0}], "leverage": 2}},
            "one `hedge.instrument`",
        ),
    ],
)
def test_wrong_run_files_are_refused(
    sample_store_path: Path, tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    run = _write(tmp_path, _run_doc(**changes))
    r = run_cli("backtest", str(run), "--store", str(sample_store_path), "--out", str(tmp_path / "o"))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_duplicated_roll_key_is_refused(sample_store_path: Path, tmp_path: Path) -> None:
    text = RUN.read_text().replace(
        "roll: {days_before_expiry: 3}", "roll: {days_before_expiry: 3}\nroll: {days_before_expiry: 5}"
    )
    r = run_cli(
        "backtest", str(_write(tmp_path, text)), "--store", str(sample_store_path), "--out", str(tmp_path / "o")
    )
    assert r.returncode == 2 and "roll" in r.stderr and r.stderr.count("\n") == 1
