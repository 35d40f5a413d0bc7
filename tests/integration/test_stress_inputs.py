"""`perphedge stress` refuses inputs it would silently misread, and states its Monte Carlo assumptions."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from perphedge.errors import ConfigError
from perphedge.usecases.montecarlo import format_bytes, parse_bytes
from perphedge.usecases.stress import StressRequest
from tests.conftest import run_cli

ALTS = "examples/altcoins.yaml"  # SOL, AVAX, DOT hedged with an inverse BTC short on bought BTC
BTC = "examples/btc-50pct.yaml"  # one asset, a linear BTC short


def refused(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, one line on stderr starting with `perphedge: error:`, no traceback, naming every needle."""
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("perphedge: error:"), r.stderr
    assert "Traceback" not in r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def empty_home(tmp_path: Path) -> Path:
    home = tmp_path / "empty-home"
    home.mkdir()
    return home


# ----------------------------------------------------------------------------- parametric models without history


@pytest.mark.parametrize("model", ["gbm", "student_t"])
def test_parametric_without_history_needs_sigma_and_correlation(empty_home: Path, model: str) -> None:
    refused(run_cli("stress", ALTS, "--model", model, "--paths", "500", home=empty_home), "--sigma", "--correlation")
    refused(
        run_cli("stress", ALTS, "--model", model, "--sigma", "0.7", "--paths", "500", home=empty_home),
        "--correlation",
    )
    refused(run_cli("stress", BTC, "--model", model, "--paths", "500", home=empty_home), "--sigma")


def test_parametric_without_history_states_its_assumptions(empty_home: Path) -> None:
    args = ("stress", ALTS, "--model", "gbm", "--sigma", "0.7", "--correlation", "0.6", "--paths", "500")
    r = run_cli(*args, "--format", "json", home=empty_home)
    assert r.returncode == 0, r.stderr
    a = json.loads(r.stdout)["monte_carlo"]["assumptions"]
    assert a["volatility_annual"] == {x: pytest.approx(0.7) for x in ("AVAX", "BTC", "DOT", "SOL")}
    assert "--sigma" in a["volatility_source"]
    assert a["correlation"] == {k: pytest.approx(0.6) for k in a["correlation"]} and len(a["correlation"]) == 6
    assert "--correlation" in a["correlation_source"]
    assert a["drift_annual"]["BTC"] == 0 and "no --drift" in a["drift_source"]
    assert a["history"] is None
    table = run_cli(*args, home=empty_home)
    assert table.returncode == 0, table.stderr
    out = " ".join(table.stdout.split())
    for text in ("Monte Carlo assumptions", "--sigma 0.7", "--correlation 0.6", "BTC/SOL 0.60", "70.0%"):
        assert text in out, text
    assert "None" not in table.stdout and "nonex" not in table.stdout


def test_single_asset_needs_no_correlation(empty_home: Path) -> None:
    r = run_cli(
        "stress", BTC, "--model", "student_t", "--sigma", "0.5", "--paths", "500", "-f", "json", home=empty_home
    )
    assert r.returncode == 0, r.stderr
    a = json.loads(r.stdout)["monte_carlo"]["assumptions"]
    assert a["correlation"] == {} and a["correlation_source"] == "single asset"


def test_store_estimates_are_stated_with_their_window(store_home: Path) -> None:
    r = run_cli("stress", BTC, "--model", "gbm", "--paths", "500", "--leverage", "2", "-f", "json", home=store_home)
    assert r.returncode == 0, r.stderr
    mc = json.loads(r.stdout)["monte_carlo"]
    a = mc["assumptions"]
    assert a["volatility_source"].startswith("store ") and "→" in a["volatility_source"]
    assert a["history"] == mc["history"] and a["history"]["first"] < a["history"]["last"]
    assert 0.2 < a["volatility_annual"]["BTC"] < 1.5  # estimated, not the old silent 80%
    r = run_cli("stress", BTC, "--paths", "500", "--leverage", "2", "-f", "json", home=store_home)
    assert "resampled history" in json.loads(r.stdout)["monte_carlo"]["assumptions"]["volatility_source"]


# ----------------------------------------------------------------------------- flags the bootstrap ignores


@pytest.mark.parametrize(("flag", "value"), [("--sigma", "0.6"), ("--drift", "0.1"), ("--correlation", "0.5")])
def test_bootstrap_refuses_parametric_flags(store_home: Path, flag: str, value: str) -> None:
    refused(run_cli("stress", ALTS, flag, value, home=store_home), flag, "bootstrap")


# ----------------------------------------------------------------------------- numbers out of range


@pytest.mark.parametrize("value", ["nan", "-0.5", "0", "inf", "25"])
def test_bad_sigma(empty_home: Path, value: str) -> None:
    refused(run_cli("stress", BTC, "--model", "gbm", f"--sigma={value}", home=empty_home), "--sigma")


@pytest.mark.parametrize("value", ["1.5", "-2", "nan", "-0.9"])  # -0.9 between 5 assets is not PSD
def test_bad_correlation(empty_home: Path, value: str) -> None:
    r = run_cli("stress", ALTS, "--model", "gbm", "--sigma", "0.6", f"--correlation={value}", home=empty_home)
    refused(r, "--correlation")


def test_non_psd_correlation_names_the_bound(empty_home: Path) -> None:
    r = run_cli(
        "stress", ALTS, "--model", "gbm", "--sigma", "0.6", "--correlation=-0.4", "--paths", "500", home=empty_home
    )
    refused(r, "--correlation", "positive semi-definite", "-0.333")


@pytest.mark.parametrize("value", ["0", "-5", "99", "1000000000"])
def test_bad_paths(empty_home: Path, value: str) -> None:
    refused(run_cli("stress", BTC, "--model", "gbm", "--sigma", "0.5", f"--paths={value}", home=empty_home), "--paths")


@pytest.mark.parametrize("value", ["-1", "-123456"])
def test_negative_seed(empty_home: Path, value: str) -> None:
    refused(run_cli("stress", BTC, "--model", "gbm", "--sigma", "0.5", f"--seed={value}", home=empty_home), "--seed")


@pytest.mark.parametrize("value", ["0d", "-5d", "0", "20000d", "abc"])
def test_bad_horizon(empty_home: Path, value: str) -> None:
    refused(
        run_cli("stress", BTC, "--model", "gbm", "--sigma", "0.5", f"--horizon={value}", home=empty_home), "--horizon"
    )


@pytest.mark.parametrize("value", ["0", "1", "-0.1", "nan", "1.5"])
def test_bad_max_liq_prob(empty_home: Path, value: str) -> None:
    r = run_cli("stress", BTC, "--model", "gbm", "--sigma", "0.5", f"--max-liq-prob={value}", home=empty_home)
    refused(r, "--max-liq-prob")


@pytest.mark.parametrize("value", ["0.5", "1,x", "nan", ","])
def test_bad_leverage(empty_home: Path, value: str) -> None:
    refused(
        run_cli("stress", BTC, "--model", "gbm", "--sigma", "0.5", f"--leverage={value}", home=empty_home), "--leverage"
    )


# ----------------------------------------------------------------------------- leverages above the maximum


def test_dropped_leverages_are_listed(empty_home: Path) -> None:
    args = ("stress", ALTS, "--model", "gbm", "--sigma", "0.6", "--correlation", "0.6", "--paths", "500")
    r = run_cli(*args, "--leverage", "1,2,200", "-f", "json", home=empty_home)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["leverages"] == [2.0]
    dropped = {d["leverage"]: d["reason"] for d in doc["leverages_dropped"]}
    assert set(dropped) == {1.0, 200.0}
    assert "maximum 125x" in dropped[200.0] and "BTCUSD_PERP" in dropped[200.0]
    assert "synthetic dollar" in dropped[1.0]
    table = run_cli(*args, "--leverage", "1,2,200", home=empty_home)
    out = " ".join(table.stdout.split())
    assert "leverages not tested: 1x" in out and "200x is above the maximum 125x" in out


def test_no_leverage_left_is_refused(empty_home: Path) -> None:
    r = run_cli(
        "stress",
        ALTS,
        "--model",
        "gbm",
        "--sigma",
        "0.6",
        "--correlation",
        "0.6",
        "--leverage",
        "130,200",
        home=empty_home,
    )
    refused(r, "--leverage", "130x", "200x", "125x")


# ----------------------------------------------------------------------------- bounded memory


def test_monte_carlo_over_the_memory_bound_is_refused_with_the_figure(empty_home: Path) -> None:
    r = run_cli(
        "stress",
        BTC,
        "--model",
        "gbm",
        "--sigma",
        "0.5",
        "--paths",
        "200000",
        "--horizon",
        "365d",
        "--max-memory",
        "64MB",
        home=empty_home,
    )
    refused(r, "--max-memory", "64.0 MB", "needs about", "116.5 MB", "200,000 paths")


@pytest.mark.parametrize("value", ["abc", "0", "-4GB", "4XB", ""])
def test_bad_max_memory(empty_home: Path, value: str) -> None:
    r = run_cli("stress", BTC, "--model", "gbm", "--sigma", "0.5", f"--max-memory={value}", home=empty_home)
    refused(r, "--max-memory")


def test_within_the_memory_bound_runs(empty_home: Path) -> None:
    r = run_cli(
        "stress",
        BTC,
        "--model",
        "gbm",
        "--sigma",
        "0.5",
        "--paths",
        "1000",
        "--max-memory",
        "512MB",
        "-f",
        "json",
        home=empty_home,
    )
    assert r.returncode == 0, r.stderr
    assert 0 < json.loads(r.stdout)["monte_carlo"]["memory_estimate_bytes"] < 512e6


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4GB", 4 * 10**9), ("512MB", 512 * 10**6), ("1.5GiB", int(1.5 * 2**30)), ("1000", 1000), ("2 gb", 2 * 10**9)],
)
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


def test_format_bytes() -> None:
    assert format_bytes(1.6e9) == "1.6 GB" and format_bytes(64e6) == "64.0 MB" and format_bytes(12) == "12 B"


# ----------------------------------------------------------------------------- the request object itself


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model": "lognormal"},
        {"paths": 0},
        {"horizon_days": 0},
        {"seed": -1},
        {"model": "gbm", "sigma": float("nan")},
        {"model": "gbm", "drift": 20.0},  # 2000%/yr: a percentage typed as a fraction
        {"model": "gbm", "correlation": 1.01},
        {"max_liq_prob": 0.0},
        {"leverages": ()},
        {"leverages": (float("inf"),)},
        {"max_memory": 0},
        {"sigma": 0.5},  # bootstrap
    ],
)
def test_request_refuses(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        StressRequest(file="x.yaml", **kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- outputs and stores


def test_plot_into_a_file_is_refused_before_the_work(empty_home: Path, tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("x")
    r = run_cli("stress", BTC, "--model", "gbm", "--sigma", "0.5", "--plot", str(target), home=empty_home)
    refused(r, "--plot", "is a file")
    r = run_cli("analyze", "--assets", "SOL", "--plot", str(target), home=empty_home)
    refused(r, "--plot", "is a file")


def test_a_named_store_that_does_not_exist_is_refused(empty_home: Path, tmp_path: Path) -> None:
    r = run_cli(
        "stress", BTC, "--model", "gbm", "--sigma", "0.5", "--store", str(tmp_path / "no.duckdb"), home=empty_home
    )
    refused(r, "--store", "no.duckdb")


@pytest.mark.parametrize("rho", ["1", "0.999999999"])
def test_perfect_correlation_is_simulated(empty_home: Path, rho: str) -> None:
    r = run_cli(
        "stress",
        ALTS,
        "--model",
        "gbm",
        "--sigma",
        "0.6",
        "--correlation",
        rho,
        "--paths",
        "500",
        "--leverage",
        "2",
        "-f",
        "json",
        home=empty_home,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["monte_carlo"]["assumptions"]["correlation"]["BTC/SOL"] == pytest.approx(float(rho))
