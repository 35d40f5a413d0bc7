"""``perphedge optimize`` through the real CLI on the sample store: JSON document, plan file, plots, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

SMALL = ["--hedges", "btc,own", "--methods", "notional,min_variance", "--leverages", "2,3", "--paths", "300"]


@pytest.fixture(scope="module")
def home_and_run(tmp_path_factory: pytest.TempPathFactory, sample_store_path: Path) -> tuple[Path, Path, dict]:
    home = tmp_path_factory.mktemp("opt") / "home"
    home.mkdir()
    (home / "market.duckdb").write_bytes(sample_store_path.read_bytes())
    out = home.parent
    r = run_cli(
        "optimize",
        str(REPO / "examples/altcoins.yaml"),
        *SMALL,
        "--write",
        str(out / "plan.yaml"),
        "--plot",
        str(out / "plots"),
        "--format",
        "json",
        home=home,
    )
    assert r.returncode == 0, r.stderr
    return home, out, json.loads(r.stdout)


def test_json_document(home_and_run: tuple[Path, Path, dict]) -> None:
    _, _, doc = home_and_run
    assert doc["schema"] == "perphedge.optimize/1"
    assert doc["recommended"] is not None and doc["recommended"]["in_sample"]["feasible"]
    assert doc["recommended"]["in_sample"]["p_liq"] <= doc["objective"]["max_liq_prob"]
    names = [r["name"] for r in doc["walk_forward"]["summary"]]
    for want in (
        "walk-forward choice",
        "unhedged",
        "guide: 100% notional BTC inverse 3x",
        "guide: 50% notional BTC inverse 2x",
        "guide: 100% notional BTC inverse 1x (bought coins)",
    ):
        assert want in names
    assert doc["walk_forward"]["stability"]["windows"] == len(doc["walk_forward"]["windows"]) > 3
    assert doc["pareto"] and any(r["recommended"] for r in doc["pareto"])
    assert doc["objective"]["lambda"] == 1.0 and doc["objective"]["horizon_days"] == 30


def test_written_plan_runs(home_and_run: tuple[Path, Path, dict]) -> None:
    home, out, doc = home_and_run
    text = (out / "plan.yaml").read_text()
    assert text.startswith("# written by `perphedge optimize`")
    r = run_cli("plan", str(out / "plan.yaml"), "--format", "json", home=home)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["hedge"]["ratio"] == doc["recommended"]["ratio"]
    assert {leg["leverage"] for leg in plan["hedge"]["legs"]} == {doc["recommended"]["leverage"]}


def test_plots_written(home_and_run: tuple[Path, Path, dict]) -> None:
    _, out, _ = home_and_run
    png, html = out / "plots" / "optimize_pareto.png", out / "plots" / "optimize_pareto.html"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    body = html.read_text()
    assert len(body) > 1_000_000 and '<script src="http' not in body  # plotly inlined: self-contained


def test_table_output(home_and_run: tuple[Path, Path, dict]) -> None:
    home, _, _ = home_and_run
    r = run_cli("optimize", str(REPO / "examples/altcoins.yaml"), *SMALL, "--risk", "cvar95", home=home)
    assert r.returncode == 0, r.stderr
    assert "Walk-forward" in r.stdout and "recommended:" in r.stdout and "lambda 1 (default 1)" in r.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--ratios", "0"], "--ratios"),
        (["--ratios", "nan"], "--ratios"),
        (["--ratios", "0.5,0.5"], "twice"),
        (["--leverages", "0.5"], "--leverages"),
        (["--leverages", "200"], "--leverages"),
        (["--leverages", ""], "--leverages"),
        (["--hedges", "sol"], "--hedges"),
        (["--kinds", "swap"], "--kinds"),
        (["--methods", "ols"], "--methods"),
        (["--collateral", "usd"], "--collateral"),
        (["--policies", "weekly"], "--policies"),
        (["--risk", "vol"], "--risk"),
        (["--lambda", "-1"], "--lambda"),
        (["--lambda", "inf"], "--lambda"),
        (["--lambda", "abc"], "--lambda"),
        (["--horizon", "0d"], "--horizon"),
        (["--horizon", "30"], "--horizon"),
        (["--horizon", "999d"], "--horizon"),
        (["--max-liq-prob", "0"], "--max-liq-prob"),
        (["--max-liq-prob", "1"], "--max-liq-prob"),
        (["--max-liq-prob", "nan"], "--max-liq-prob"),
        (["--paths", "10"], "--paths"),
        (["--paths", "-5"], "--paths"),
        (["--seed", "-1"], "--seed"),
        (["--train", "10d"], "--train"),
        (["--test", "5d"], "--test"),
        (["--train", "3000d"], "fewer than"),
        (["--start", "2021/01/01"], "--start"),
        (["--end", "yesterday"], "--end"),
        (["--start", "2015-01-01"], "--start"),
        (["--end", "2099-01-01"], "--end"),
        (["--start", "2023-01-01", "--end", "2022-01-01"], "after"),
        (["--venues", "nowhere"], "--venues"),
        (["--venues", "binance,binance"], "twice"),
        (["--format", "xml"], "--format"),
        (["--write", "/dev/null"], "not a regular file"),
        (["--kinds", "inverse", "--collateral", "stable"], "no design"),
        (["--workers", "0"], "--workers"),
        (["--workers", "two"], "--workers"),
        # non-ASCII digits pass str.isdigit() but not int(): was "internal error: ValueError"
        (["--workers", "\u00b2"], "--workers"),
        (["--workers", "\u0661\u0662"], "--workers"),
        (["--seed", "\u00b2"], "--seed"),
        (["--paths", "\uff15"], "--paths"),
        (["--cluster", "somewhere"], "--cluster"),
        (["--cluster", "tcp://127.0.0.1:0"], "--cluster"),
    ],
)
def test_refusals(home_and_run: tuple[Path, Path, dict], args: list[str], needle: str) -> None:
    home, _, _ = home_and_run
    r = run_cli("optimize", str(REPO / "examples/altcoins.yaml"), *args, home=home)
    assert r.returncode == 2, (args, r.stdout[-500:], r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perphedge: error:"), r.stderr
    assert needle in lines[0]


def test_file_refusals(home_and_run: tuple[Path, Path, dict], tmp_path: Path) -> None:
    home, _, _ = home_and_run
    dup = tmp_path / "dup.yaml"
    dup.write_text(
        "name: a\nholdings: [{asset: SOL, value_usd: 1}]\nholdings: []\nhedge: {instrument: binance:BTCUSDT}\n"
    )
    kraken = tmp_path / "kraken.yaml"
    kraken.write_text("name: k\nholdings: [{asset: SOL, value_usd: 100}]\nhedge: {instrument: kraken:XBTUSD}\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    stables = tmp_path / "stables.yaml"
    stables.write_text("name: a\nholdings: [{asset: USDT, quantity: 100}]\nhedge: {instrument: binance:BTCUSDT}\n")
    for args in (
        [str(tmp_path / "missing.yaml")],
        [str(tmp_path)],
        [str(dup)],
        [str(stables)],
        [str(kraken)],
        [str(empty)],
        [str(REPO / "examples/defi-lending.yaml")],
        [str(REPO / "examples/altcoins.yaml"), "--write", str(tmp_path)],
        [str(REPO / "examples/altcoins.yaml"), "--write", str(dup / "plan.yaml")],
        [str(REPO / "examples/altcoins.yaml"), "--plot", str(dup)],
        [str(REPO / "examples/altcoins.yaml"), "--store", str(tmp_path / "none.duckdb")],
    ):
        r = run_cli("optimize", *args, home=home)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("engine", [["--workers", "2"], ["--cluster", "local", "--workers", "2"]], ids=["pool", "dask"])
def test_engines_give_the_same_document(home_and_run: tuple[Path, Path, dict], engine: list[str]) -> None:
    """The designs run on a process pool or a real local Dask cluster of 2 workers: the same document as in one
    process (only the timings differ)."""
    home, _, doc = home_and_run
    r = run_cli("optimize", str(REPO / "examples/altcoins.yaml"), *SMALL, "--format", "json", *engine, home=home)
    assert r.returncode == 0, r.stderr
    other = json.loads(r.stdout)
    strip = {"timing", "plots", "written"}
    assert {k: v for k, v in other.items() if k not in strip} == {k: v for k, v in doc.items() if k not in strip}
