"""Adversarial trial of dated futures (issue 16) through the CLI: each class of wrong input, refused in one line."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from perphedge.data.importer import parse_sample_member, read_frame
from perphedge.errors import DataError
from tests.conftest import REPO, run_cli, sample_dir

EXAMPLE = str(REPO / "examples" / "btc-quarterly.yaml")
RUN = str(REPO / "runs" / "btc-quarterly-roll.yaml")
FUT = "futures/BINANCE_BTCUSD_quarterly_1d_2021.csv"
SETTLE = "futures/BINANCE_BTCUSD_quarterly_2021_settlements.csv"


def _one_line_refusal(r: object, message: str) -> None:
    out = r.stderr  # type: ignore[attr-defined]
    assert r.returncode == 2, (r.stdout, out)  # type: ignore[attr-defined]
    assert message in out and "Traceback" not in out and "internal error" not in out, out
    assert [line for line in out.splitlines() if line.startswith("perphedge: error:")] == [out.splitlines()[-1]]


# --------------------------------------------------------------------------- plan


@pytest.mark.parametrize(
    "price,message",
    [
        ("1e-300", "-100.0% from spot"),  # was an internal error (infinite annualised basis in the JSON)
        ("1e-9", "-100.0% from spot"),
        ("60000", "+63.5% from spot"),
        ("1e300", "must be a finite price > 0 and < 1e12"),
    ],
)
def test_plan_refuses_a_future_price_that_is_not_a_basis(store_home: Path, price: str, message: str) -> None:
    r = run_cli(
        "plan", EXAMPLE, "--instrument", "binance:BTCUSD_210924", "--as-of", "2021-06-01", "--future-price", price,
        "-f", "json", home=store_home,
    )  # fmt: skip
    _one_line_refusal(r, message)


def test_plan_lists_every_roll_of_a_long_horizon_with_its_fees(store_home: Path) -> None:
    r = run_cli(
        "plan", EXAMPLE, "--instrument", "binance:BTCUSD_210924", "--as-of", "2021-06-01", "--horizon", "400d",
        "--roll-days", "3", "-f", "json", home=store_home,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    d = doc["dated"]
    # 2021-06-02 + 400 days = 2022-07-07: four quarterly rolls (was one, with one roll's fees)
    assert [(x["date"], x["from"], x["into"]) for x in d["rolls"]] == [
        ("2021-09-21", "binance:BTCUSD_210924", "binance:BTCUSD_211231"),
        ("2021-12-28", "binance:BTCUSD_211231", "binance:BTCUSD_220325"),
        ("2022-03-22", "binance:BTCUSD_220325", "binance:BTCUSD_220624"),
        ("2022-06-21", "binance:BTCUSD_220624", "binance:BTCUSD_220930"),
    ]
    notional = doc["hedge"]["legs"][0]["notional_usd"]
    taker = 0.0005  # binance:BTCUSD_PERP's taker fee, both legs of each roll
    assert all(x["fees_usd"] == pytest.approx(2 * taker * notional) for x in d["rolls"])
    assert d["roll_needed"] is True


# --------------------------------------------------------------------------- analyze


@pytest.mark.parametrize(
    "args,message",
    [
        (["--futures", "--window", "30d"], "invalid `--window`: analyze --futures does not use it"),
        (["--futures", "--horizon", "7d"], "invalid `--horizon`: analyze --futures does not use it"),
        (["--futures", "--proxy", "ETH"], "invalid `--proxy`"),
        (["--futures", "--factors", "BTC"], "invalid `--factors`"),
        (["--futures", "--nonneg"], "invalid `--nonneg`"),
        (["--futures", "--no-funding"], "invalid `--no-funding`"),
        (["--assets", "SOL", "--min-days", "3"], "invalid `--min-days`: it applies to analyze --futures only"),
        (["--futures", "--min-days", "nan"], "invalid `--min-days`"),
        (["--futures", "--min-days", "-1"], "invalid `--min-days`"),
        (["--futures", "--min-days", "1e9"], "invalid `--min-days`"),
        (["--futures", "--since", "2021-09-30", "--until", "2021-01-01"], "is after `--until`"),
        (["--futures", "--since", "2021-02-30"], "not a calendar date"),
    ],
)
def test_analyze_futures_refuses_options_it_would_ignore(store_home: Path, args: list[str], message: str) -> None:
    _one_line_refusal(run_cli("analyze", *args, home=store_home), message)


def _edit_store(home: Path, sql: str) -> None:
    con = duckdb.connect(str(home / "market.duckdb"))
    try:
        con.execute(sql)
    finally:
        con.close()


def test_analyze_refuses_a_stored_settlement_that_is_not_a_delivery_price(store_home: Path) -> None:
    _edit_store(store_home, "UPDATE futures_settlements SET settlement_price = 5e9 WHERE symbol = 'BTCUSD_210326'")
    r = run_cli("analyze", "--futures", "-f", "json", home=store_home)
    _one_line_refusal(r, "stored settlement of binance:BTCUSD_210326")


def test_analyze_refuses_a_stored_close_far_from_spot(store_home: Path) -> None:
    # as a fetch or an older import could have stored: a spot close off by a factor 100
    _edit_store(
        store_home,
        "UPDATE futures_candles SET spot_close = spot_close * 100 WHERE symbol = 'BTCUSD_210625' "
        "AND ts = TIMESTAMP '2021-04-01'",
    )
    _one_line_refusal(run_cli("analyze", "--futures", home=store_home), "BTCUSD_210625 on 2021-04-01")


# --------------------------------------------------------------------------- backtest on a store without futures


def test_backtest_on_a_store_without_futures_tables(store_home: Path) -> None:
    _edit_store(store_home, "DROP TABLE futures_candles; DROP TABLE futures_settlements")
    r = run_cli("backtest", RUN, home=store_home)
    _one_line_refusal(r, "holds no dated-futures table")
    assert "Catalog Error" not in r.stderr


def test_backtest_leverage_one_names_what_works(store_home: Path, tmp_path: Path) -> None:
    run = tmp_path / "r.yaml"
    run.write_text(Path(RUN).read_text().replace("leverage: 1.5", "leverage: 1"))
    _one_line_refusal(run_cli("backtest", str(run), home=store_home), "use more than 1x, e.g. 1.5 or 2")


# --------------------------------------------------------------------------- import


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "futures").mkdir(parents=True)
    for p in (sample_dir() / "futures").iterdir():
        shutil.copy(p, root / "futures" / p.name)
    return root


def _rewrite(path: Path, edit: object) -> None:
    rows = list(csv.reader(path.open(newline="")))
    edit(rows)  # type: ignore[operator]
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def _drop(name: str) -> object:
    def edit(rows: list[list[str]]) -> None:
        i = rows[0].index(name)
        for r in rows:
            r.pop(i)

    return edit


def _set(row: int, column: str, value: str) -> object:
    def edit(rows: list[list[str]]) -> None:
        rows[row][rows[0].index(column)] = value

    return edit


@pytest.mark.parametrize(
    "name,edit,message",
    [
        (FUT, _drop("close"), "missing column `close` (a futures candles file has the columns timestamp, contract"),
        (FUT, _drop("timestamp"), "missing column `timestamp`"),
        (FUT, _drop("perp_close"), "missing column `perp_close`"),
        (SETTLE, _drop("settlement_price"), "missing column `settlement_price` (a futures settlements file"),
        (SETTLE, _drop("expiry"), "missing column `expiry`"),
        (FUT, _set(4, "spot_close", "3000000"), "`close` 33,502.8 is -98.9% from `spot_close`"),
        (FUT, _set(8, "perp_close", "3"), "`perp_close` 3 is -100.0% from `spot_close`"),
        (FUT, _set(4, "spot_close", "15000"), "from `spot_close` 15,000"),  # half the real one
    ],
)
def test_futures_files_with_wrong_columns_or_prices(tmp_path: Path, name: str, edit: object, message: str) -> None:
    root = _copy(tmp_path)
    _rewrite(root / name, edit)
    with pytest.raises(DataError) as info:
        parse_sample_member(name, read_frame(root / name), file=str(root / name))
    text = str(info.value)
    assert message in text and "\n" not in text and "expiry_ts" not in text and "--columns" not in text, text


def test_a_bad_futures_file_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    store = tmp_path / "s.duckdb"
    assert run_cli("data", "import", str(root), "--store", str(store)).returncode == 0
    before = run_cli("analyze", "--futures", "--store", str(store), "-f", "json")
    assert before.returncode == 0, before.stderr
    _rewrite(root / FUT, _set(4, "spot_close", "3000000"))
    _one_line_refusal(run_cli("data", "import", str(root), "--store", str(store)), "is not a basis but a wrong price")
    after = run_cli("analyze", "--futures", "--store", str(store), "-f", "json")
    assert after.returncode == 0 and json.loads(after.stdout) == json.loads(before.stdout)


# --------------------------------------------------------------------------- fetch


@pytest.mark.parametrize(
    "args,message",
    [
        (["--timeframe", "1h"], "invalid `--timeframe`: --futures fetches the contracts' daily candles only"),
        (["--no-funding"], "invalid `--no-funding`"),
        (["--futures", "ＢＴＣ"], "an underlying coin such as BTC"),
    ],
)
def test_fetch_futures_refuses_options_it_would_ignore(tmp_path: Path, args: list[str], message: str) -> None:
    flags = args if "--futures" in args else ["--futures", "BTC", *args]
    r = run_cli(
        "data", "fetch", "--exchange", "binance", "--since", "2021-09-01", "--store", str(tmp_path / "f.duckdb"),
        *flags, env={"PERPHEDGE_EXCHANGE_URL": "http://127.0.0.1:9"},
    )  # fmt: skip
    _one_line_refusal(r, message)
