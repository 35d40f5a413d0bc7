"""Adversarial inputs that misbehaved after issue 9's hardening (one regression test per bug found).

Each case goes through the installed ``perphedge`` as a user would: a mistake is exit 2 with one line
``perphedge: error: ...`` naming the field or flag; a valid spelling keeps its plain meaning.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perphedge.errors import ConfigError
from perphedge.files import load_yaml_text
from tests.conftest import REPO, run_cli
from tests.integration.test_cli_errors import one_line_error

EXAMPLE = "examples/altcoins.yaml"

PF = """name: t
prices: {BTC: 60000, SOL: 150, AVAX: 30}
holdings:
  - {asset: SOL, value_usd: 5000}
  - {asset: AVAX, quantity: 100}
hedge:
  ratio: 1.0
  instrument: binance:BTCUSD_PERP
  leverage: 2
  collateral: buy
"""


def _portfolio(tmp_path: Path, old: str, new: str) -> str:
    assert old in PF
    f = tmp_path / "p.yaml"
    f.write_text(PF.replace(old, new, 1), encoding="utf-8")
    return str(f)


# ------------------------------------------------- bug 1: YAML 1.1 numbers (octal, sexagesimal, hex, `_`, 1e16)


@pytest.mark.parametrize(
    "text,value",
    [("a: 0100", 100), ("a: 007", 7), ("a: -0100", -100), ("a: 1e16", 1e16), ("a: 1E-3", 1e-3), ("a: 2.5e+2", 250.0)],
)
def test_numbers_read_as_decimal(text: str, value: float) -> None:
    got = load_yaml_text(text, "x.yaml")["a"]
    assert got == value and not isinstance(got, str)


@pytest.mark.parametrize("text", ["a: 1:30", "a: 0x64", "a: 0b1100100", "a: 1_000", "a: 0o144"])
def test_yaml11_number_spellings_stay_text(text: str) -> None:
    assert isinstance(load_yaml_text(text, "x.yaml")["a"], str)


def test_strict_numbers_do_not_leak_into_pyyaml() -> None:
    import yaml

    load_yaml_text("a: 1", "x.yaml")
    assert yaml.safe_load("a: 0100") == {"a": 64}  # other readers keep PyYAML's own (YAML 1.1) rules


def test_explicit_int_tag_on_hex_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"x.yaml: line 1: `0x1f` is not a decimal whole number"):
        load_yaml_text("a: !!int 0x1f", "x.yaml")


def test_leading_zero_quantity_is_decimal_not_octal(tmp_path: Path) -> None:
    f = _portfolio(tmp_path, "quantity: 100", "quantity: 0100")
    r = run_cli("plan", f, "--format", "json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    # octal would be 64 AVAX = 1,920 USD
    assert json.loads(r.stdout)["portfolio"]["value_usd"] == pytest.approx(5000 + 100 * 30)


@pytest.mark.parametrize(
    "old,new,fragments",
    [
        ("quantity: 100", "quantity: 1:30", ["`holdings[1].quantity`", "'1:30'", "no hex, octal, `:` or `_`"]),
        ("quantity: 100", "quantity: 0x64", ["`holdings[1].quantity`", "'0x64'", "plain decimal number"]),
        ("quantity: 100", "quantity: 0b1100100", ["`holdings[1].quantity`", "'0b1100100'"]),
        ("quantity: 100", "quantity: 1_000", ["`holdings[1].quantity`", "'1_000'"]),
        ("value_usd: 5000", "value_usd: 1e16", ["`holdings[0].value_usd`", "must be <= 1e+15"]),
        ("SOL: 150", "SOL: 1e-300", ["`prices.SOL`", "must be in [1e-12, 1e+09] USD"]),
        ("SOL: 150", "SOL: 1.5e2, ON: 1", ["field `prices", "was true", "quote it"]),
        ("{asset: AVAX, quantity: 100}", "{asset: NO, quantity: 100}", ["`holdings[1].asset`", "quote it"]),
    ],
)
def test_number_spellings_in_portfolios(tmp_path: Path, old: str, new: str, fragments: list[str]) -> None:
    line = one_line_error(run_cli("plan", _portfolio(tmp_path, old, new), home=tmp_path), *fragments)
    assert "without quotes" not in line  # the user wrote no quotes


def test_scientific_notation_is_a_number_in_a_portfolio(tmp_path: Path) -> None:
    f = _portfolio(tmp_path, "SOL: 150", "SOL: 1.5e2")
    r = run_cli("plan", f, "--format", "json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["portfolio"]["value_usd"] == pytest.approx(8000)


# ------------------------------------------------- bug 2: asset codes with invisible characters or absurd length


@pytest.mark.parametrize(
    "asset,fragment",
    [
        ('"AV\\u200bAX"', "invisible character, was 'AV\\u200bAX'"),
        ('"AV\\x07AX"', "control or invisible character, was 'AV\\x07AX'"),
        ("A" * 41, "longer than 40 characters"),
    ],
)
def test_asset_codes_that_would_print_as_another(tmp_path: Path, asset: str, fragment: str) -> None:
    f = _portfolio(tmp_path, "{asset: AVAX, quantity: 100}", f"{{asset: {asset}, quantity: 100}}")
    line = one_line_error(run_cli("plan", f, home=tmp_path), "`holdings[1].asset`", fragment)
    assert len(line) < 400


# ------------------------------------------------- bug 3: legs weights that almost sum to 1 ("sum to 1, sum to 1")


def test_leg_weights_show_the_exact_sum(tmp_path: Path) -> None:
    legs = (
        "  legs:\n    - {instrument: binance:BTCUSDT, weight: 0.3333333}\n"
        "    - {instrument: binance:ETHUSDT, weight: 0.3333333}\n"
        "    - {instrument: binance:SOLUSDT, weight: 0.3333333}\n"
    )
    f = _portfolio(tmp_path, "  instrument: binance:BTCUSD_PERP\n", legs)
    line = one_line_error(run_cli("plan", f, home=tmp_path), "`legs` weights must sum to exactly 1", "0.9999998999")
    assert "sum to 1," not in line


# ------------------------------------------------- bug 4: a proxy that the hedge ignores silently


@pytest.mark.parametrize(
    "args,file_change",
    [
        (["--proxy", "XRP"], None),
        (["--proxy", "USDT"], None),
        (["--proxy", "binance:ETHUSDT"], None),
        ([], ("collateral: buy", "collateral: buy\n  proxy: binance:ETHUSDT")),
    ],
)
def test_proxy_without_direct_mode_is_refused(
    tmp_path: Path, args: list[str], file_change: tuple[str, str] | None
) -> None:
    f = _portfolio(tmp_path, *file_change) if file_change else EXAMPLE
    one_line_error(run_cli("plan", f, *args, home=tmp_path), "invalid `proxy`", "direct:<exchange>")


def test_proxy_in_direct_mode_and_compare_still_work(tmp_path: Path) -> None:
    f = _portfolio(tmp_path, "instrument: binance:BTCUSD_PERP", "instrument: direct:binance:linear")
    f2 = Path(f).read_text().replace("collateral: buy", "collateral: stable\n  proxy: binance:BTCUSDT")
    Path(f).write_text(f2)
    r = run_cli("plan", f, "--compare", "--format", "json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("plan", EXAMPLE, "--compare", "--proxy", "binance:BTCUSD_PERP", "--format", "json", home=tmp_path)
    assert r.returncode == 0, r.stderr  # the proxy is the hedge's own instrument: nothing ignored


# ------------------------------------------------- bug 5: command-line overrides blamed on the file, or ignored


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--instrument", ""], ["invalid `--instrument`", "must not be empty"]),
        (["--instrument", "  "], ["invalid `--instrument`", "must not be empty"]),
        (["--scope", ""], ["invalid `--scope`"]),
        (["--collateral", "gold"], ["invalid `--collateral`", "'gold'"]),
        (["--method", "magic"], ["invalid `--method`", "'magic'"]),
        (["--ratio", "2.5"], ["invalid `--ratio`", "[0, 2]", "2.5"]),
        (["--ratio", "-0.1"], ["invalid `--ratio`"]),
        (["--leverage", "-2"], ["invalid `--leverage`", "must be >= 1"]),
        (["--leverage", "0.5"], ["invalid `--leverage`"]),
        (["--funding-rate-8h", "1"], ["invalid `--funding-rate-8h`", "±0.05"]),
        (["--funding-rate-8h", "-0.5"], ["invalid `--funding-rate-8h`"]),
    ],
)
def test_overrides_name_their_flag_not_the_file(args: list[str], fragments: list[str]) -> None:
    line = one_line_error(run_cli("plan", EXAMPLE, *args), *fragments)
    assert EXAMPLE not in line  # the file is not at fault


# ------------------------------------------------- bug 6: two --scenario with one name: the second vanished


@pytest.mark.parametrize(
    "scenarios",
    [
        ["x:BTC=-2%", "x:BTC=-3%"],
        ["BTC -30%:BTC=-31%"],  # a default scenario's name
        ["BTC=-5%", "BTC=-5%"],  # unnamed: named by their moves
    ],
)
def test_scenario_names_are_unique(scenarios: list[str]) -> None:
    args = [a for s in scenarios for a in ("--scenario", s)]
    one_line_error(run_cli("plan", EXAMPLE, *args), "invalid `--scenario`", "already shown")


def test_distinct_scenarios_all_shown() -> None:
    r = run_cli("plan", EXAMPLE, "--scenario", "a:BTC=-2%", "--scenario", "b:BTC=-3%", "--format", "json")
    assert r.returncode == 0, r.stderr
    names = [s["name"] for s in json.loads(r.stdout)["scenarios"]]
    assert names[-2:] == ["a", "b"]


# ------------------------------------------------- bug 7: spec files with ids that cannot be named, non-ISO dates

SPEC = {
    "exchange": "x",
    "symbol": "BTCUSD",
    "kind": "inverse",
    "base": "BTC",
    "quote": "USD",
    "settle": "BTC",
    "contract_size": 100,
    "lot_size": 1,
    "tick_size": 0.1,
    "max_leverage": 100,
    "tiers": [[0, 0.005, 100], [50, 0.01, 50]],
    "liquidation_method": "mm_at_liquidation_price",
    "funding_interval_hours": 8,
    "maker_fee": 0.0002,
    "taker_fee": 0.0005,
    "source": "test",
    "as_of": "2024-01-01",
}


@pytest.mark.parametrize(
    "change,fragments",
    [
        ({"exchange": "a:b"}, ["field `exchange`", "`:`", "'a:b'"]),
        ({"symbol": "BTC USD"}, ["field `symbol`", "without spaces", "'BTC USD'"]),
        ({"base": "B\u200bTC"}, ["field `base`", "control characters"]),
        ({"as_of": "01/02/2024"}, ["field `as_of`", "ISO 8601", "'01/02/2024'"]),
        ({"as_of": "2024-1-2"}, ["field `as_of`", "ISO 8601"]),
        ({"as_of": "2024-02-30"}, ["field `as_of`"]),
        ({"as_of": 20240101}, ["field `as_of`"]),
    ],
)
def test_spec_fields_that_cannot_be_named_or_dated(
    tmp_path: Path, change: dict[str, object], fragments: list[str]
) -> None:
    f = tmp_path / "specs.json"
    f.write_text(json.dumps({"instruments": [{**SPEC, **change}]}), encoding="utf-8")
    one_line_error(run_cli("instruments", "--specs", str(f), home=tmp_path), str(f), *fragments)


def test_spec_with_a_yaml_date_is_fine(tmp_path: Path) -> None:
    f = tmp_path / "specs.yaml"
    body = json.dumps({"instruments": [SPEC]}).replace('"2024-01-01"', "2024-01-01")
    f.write_text(body, encoding="utf-8")
    r = run_cli("instruments", "--specs", str(f), "--format", "json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2024-01-01" in r.stdout


# ------------------------------------------------- bug 8: grid keys that make every combination fail, duplicates

RUN = """portfolio: {pf}
start: 2021-01-01
end: 2021-06-30
hedge: {{instrument: binance:BTCUSDT, leverage: 2, collateral: stable}}
policy: {{kind: static, ratio: 0.5, band: 0.10}}
margin: {{top_up: false}}
"""


@pytest.mark.parametrize(
    "grid,fragments",
    [
        ("{policy.ratioo: [0.5]}", ["field `grid.policy.ratioo`", "not a field of a run file"]),
        ("{hedge.leverag: [2, 3]}", ["field `grid.hedge.leverag`", "not a field of a run file"]),
        ("{policy.ratio.x: [0.5]}", ["line 2: invalid grid key `policy.ratio.x`", "not a mapping"]),
        ("{policy.ratio: [0.5, 0.5]}", ["field `grid.policy.ratio[1]`", "0.5 is given twice"]),
        (
            "{hedge.instrument: [binance:BTCUSDT, binance:ETHUSDT, binance:BTCUSDT]}",
            ["grid.hedge.instrument[2]", "twice"],
        ),
        ("{policy.ratio: 0.5}", ["field `grid.policy.ratio`", "non-empty list", "was 0.5"]),
        ("{policy.ratio: []}", ["field `grid.policy.ratio`", "was an empty list"]),
    ],
)
def test_grid_mistakes_refused_before_any_work(tmp_path: Path, grid: str, fragments: list[str]) -> None:
    (tmp_path / "base.yaml").write_text(RUN.format(pf=(Path.cwd() / EXAMPLE).resolve()), encoding="utf-8")
    g = tmp_path / "grid.yaml"
    g.write_text(f"base: base.yaml\ngrid: {grid}\n", encoding="utf-8")
    r = run_cli("sweep", str(g), "--store", str(tmp_path / "absent.duckdb"), home=tmp_path)
    one_line_error(r, str(g), *fragments)


def test_grid_keys_new_to_the_base_run_still_accepted(tmp_path: Path) -> None:
    from perphedge.usecases.sweep import load_grid

    (tmp_path / "base.yaml").write_text(RUN.format(pf=(Path.cwd() / EXAMPLE).resolve()), encoding="utf-8")
    g = tmp_path / "grid.yaml"
    grid = "{costs.slippage_bps: [1, 2], margin.top_up: [true, false]}"
    g.write_text(f"base: base.yaml\ngrid: {grid}\n", encoding="utf-8")
    doc, _, _ = load_grid(g)
    assert doc["grid"]["margin.top_up"] == [True, False]


# ------------------------------------------------- bug 9: the README's own messages and outputs


def test_non_positive_amount_names_the_amount_field_as_the_readme_shows(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("name: x\nprices: {SOL: 150}\nholdings:\n  - {asset: SOL, quantity: -3}\n", encoding="utf-8")
    line = one_line_error(run_cli("plan", str(f), home=tmp_path))
    assert line == f"perphedge: error: {f}: line 4: field `holdings[0].quantity`: must be > 0, was -3"
    f.write_text("name: x\nprices: {SOL: 150}\nholdings:\n  - {asset: SOL, value_usd: 0}\n", encoding="utf-8")
    one_line_error(run_cli("plan", str(f), home=tmp_path), "field `holdings[0].value_usd`: must be > 0, was 0")


@pytest.mark.parametrize(
    "path",
    ["runs/backtest-results/altcoins-50pct/result.json", "backtest-results/x/report.html", "runs/plots/shock_grid.png"],
)
def test_outputs_of_readme_commands_run_in_subfolders_are_ignored(path: str) -> None:
    import shutil
    import subprocess

    git = shutil.which("git")
    if git is None or not (Path.cwd() / ".git").exists():
        pytest.skip("not a git checkout")
    r = subprocess.run([git, "check-ignore", "--no-index", "-q", path], check=False, cwd=Path.cwd())
    assert r.returncode == 0, f"{path} is not ignored by .gitignore"


# ------------------------------------------------- bug 10: a --face-value no exchange lists printed every amount as 0

CALC = ["calc", "--instrument", "binance:BTCUSDT", "--side", "short", "--contracts", "1", "--entry", "60000"]


@pytest.mark.parametrize(
    "instrument,face,unit",
    [
        ("binance:BTCUSDT", "1e-300", "BTC per contract"),
        ("binance:BTCUSDT", "1e-9", "BTC per contract"),
        ("binance:BTCUSD_PERP", "1e9", "USD per contract"),
    ],
)
def test_face_value_outside_what_exchanges_list(instrument: str, face: str, unit: str) -> None:
    args = [*CALC[:2], instrument, *CALC[3:], "--face-value", face]
    one_line_error(run_cli(*args), "invalid `--face-value`", "[1e-08, 1e+08]", unit)


def test_face_value_within_range_still_reproduces_a_small_contract() -> None:
    r = run_cli(*CALC, "--face-value", "0.0001", "--format", "json")
    assert r.returncode == 0, r.stderr


def test_as_of_that_prices_nothing_says_so(sample_store_path: Path) -> None:
    """`plan --as-of` on a file that prices every asset used no stored close: stated, not silent."""
    r = run_cli(
        "plan",
        str(REPO / "examples" / "altcoins.yaml"),
        "--as-of",
        "2024-01-02",
        "--store",
        str(sample_store_path),
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    codes = [w["code"] for w in json.loads(r.stdout)["warnings"]]
    assert "as_of_not_used_for_prices" in codes
    r = run_cli(
        "plan",
        str(REPO / "examples" / "altcoins-stored-prices.yaml"),
        "--as-of",
        "2024-03-13",
        "--store",
        str(sample_store_path),
        "--format",
        "json",
    )
    assert r.returncode == 0, r.stderr
    assert "as_of_not_used_for_prices" not in [w["code"] for w in json.loads(r.stdout)["warnings"]]


def test_calc_method_for_the_wrong_kind_names_the_flag() -> None:
    r = run_cli(
        "calc",
        "--instrument",
        "binance:BTCUSD_PERP",
        "--side",
        "short",
        "--contracts",
        "100",
        "--entry",
        "60000",
        "--method",
        "binance_usdm",
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "invalid `--method`: binance_usdm is for linear contracts" in r.stderr
