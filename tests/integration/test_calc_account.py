"""``perphedge calc --account FILE``: a cross-margined account (issue 13 item 3).

Good files give every position's liquidation price given the others; wrong files, wrong values and
wrong option combinations are refused with one line ``perphedge: error: ...`` and exit 2.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from perphedge.cli import main
from tests.conftest import REPO, run_cli

EXAMPLE = REPO / "examples" / "accounts" / "binance-usdm-cross.yaml"

GOOD = """venue: binance_usdm
wallet_balance: 1535443.01
positions:
  - {instrument: binance:ETHUSDT, side: long, contracts: 3683.979, entry: 1456.84, mark: 1335.18,
     mmr: 0.10, maintenance_amount: 135365}
  - {instrument: binance:BTCUSDT, side: long, contracts: 109.488, entry: 32481.98, mark: 31967.27,
     mmr: 0.025, maintenance_amount: 16300}
"""


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["calc", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _write(tmp_path: Path, text: str, name: str = "acct.yaml") -> str:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_example_json_reproduces_binance(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--account", str(EXAMPLE), "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    lps = [p["liquidation_price"] for p in doc["positions"]]
    assert lps[0] == pytest.approx(1153.26, abs=0.005)
    assert lps[1] == pytest.approx(26316.89, abs=0.005)
    assert doc["positions"][0]["liquidation_status"] == "at_price"
    assert doc["account_equity"] == pytest.approx(1535443.01 - 448192.88514 - 56354.56848, abs=1e-3)
    assert doc["total_maintenance_margin"] == pytest.approx(427713.319566, abs=1e-3)
    assert doc["margin_ratio"] == pytest.approx(doc["total_maintenance_margin"] / doc["account_equity"])
    assert doc["liquidated"] is False
    assert doc["settle"] == "USDT" and doc["venue"] == "binance_usdm"


def test_table_and_surface(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--account", str(EXAMPLE), "--surface")
    assert code == 0, err
    assert "1,153.26" in out and "26,316.89" in out
    assert "liquidation surface" in out and "X" in out


def test_surface_json_is_monotone(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--account", str(EXAMPLE), "--surface", "-f", "json")
    assert code == 0
    surf = json.loads(out)["surface"]
    grid = surf["liquidated"]
    assert len(grid) == len(surf["moves_a"]) == 21 and all(len(r) == 21 for r in grid)
    # two longs: a lower price of either leg can only liquidate more
    for i in range(21):
        for k in range(21):
            if grid[i][k]:
                assert all(grid[ii][k] for ii in range(i + 1)) and all(grid[i][kk] for kk in range(k + 1))
    assert grid[0][0] and not grid[-1][-1]
    assert not grid[10][10]  # no move: not liquidated


def test_surface_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "plots"
    code, _, err = _run(capsys, "--account", str(EXAMPLE), "--surface", "--plot", str(out_dir))
    assert code == 0, err
    assert (out_dir / "liquidation_surface.png").stat().st_size > 1000
    assert (out_dir / "liquidation_surface.html").stat().st_size > 1000


def test_installed_entry_point() -> None:
    r = run_cli("calc", "--account", str(EXAMPLE), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["positions"][1]["liquidation_price"] == pytest.approx(26316.89, abs=0.005)
    r = run_cli("calc", "--account", str(EXAMPLE), "--side", "long")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "perphedge: error:" in r.stderr


def test_bybit_classic_account(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(
        tmp_path,
        "venue: bybit_classic\nwallet_balance: 0.5\npositions:\n"
        "  - {instrument: bybit:BTCUSD, side: long, contracts: 10000, entry: 8000, mark: 8000, mmr: 0.005}\n",
    )
    code, out, err = _run(capsys, "--account", path, "-f", "json")
    assert code == 0, err
    p = json.loads(out)["positions"][0]
    # the bundled Bybit taker fee is 0.055 % (the 2019 example used 0.075 %): reserved, so above the fee-free LP
    assert p["closing_fee_rate"] == pytest.approx(0.00055)
    assert 10000 / (1.25 + 0.5 - 0.00625) < p["liquidation_price"] < 5739.08
    assert p["liquidation_price_on_tick"] % 0.5 == 0 and p["liquidation_price_on_tick"] >= p["liquidation_price"]


def test_hedge_leg_never_liquidated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A 1x inverse short in a COIN-M account cannot be liquidated: status never, price none."""
    path = _write(
        tmp_path,
        "venue: binance_coinm\nwallet_balance: 1.0\npositions:\n"
        "  - {instrument: binance:BTCUSD_PERP, side: short, contracts: 600, entry: 60000, mark: 60000}\n",
    )
    code, out, err = _run(capsys, "--account", path, "-f", "json")
    assert code == 0, err
    p = json.loads(out)["positions"][0]
    assert p["liquidation_price"] is None and p["liquidation_status"] == "never"


ALL_SHORT = "  - {instrument: binance:BTCUSDT, side: short, contracts: 1, entry: 60000, mark: 60000}\n"


def _acct(**over: Any) -> str:
    base: dict[str, Any] = {
        "venue": "binance_usdm",
        "wallet_balance": "10000",
        "positions": "\n" + ALL_SHORT,
    }
    base.update(over)
    return "".join(f"{k}: {v}\n" if not str(v).startswith("\n") else f"{k}:{v}" for k, v in base.items())


BAD_FILES = [
    (_acct(venue="binance"), "venue"),
    (_acct(venue="[1]"), "venue"),
    (_acct(wallet_balance="0"), "wallet_balance"),
    (_acct(wallet_balance="-5"), "wallet_balance"),
    (_acct(wallet_balance=".nan"), "wallet_balance"),
    (_acct(wallet_balance=".inf"), "wallet_balance"),
    (_acct(wallet_balance="'10000'"), "wallet_balance"),
    (_acct(wallet_balance="true"), "wallet_balance"),
    (_acct(wallet_balance="1e300"), "wallet_balance"),
    (_acct(positions="[]"), "positions"),
    (_acct(positions="{}"), "positions"),
    (_acct(positions="\n  - {instrument: binance:NOPE, side: short, contracts: 1, entry: 1, mark: 1}\n"), "NOPE"),
    (_acct(positions="\n  - {instrument: bybit:BTCUSDT, side: short, contracts: 1, entry: 1, mark: 1}\n"), "venue"),
    (
        _acct(positions="\n  - {instrument: binance:BTCUSD_PERP, side: short, contracts: 1, entry: 1, mark: 1}\n"),
        "inverse",
    ),
    (_acct(positions="\n  - {instrument: binance:BTCUSDT, side: sell, contracts: 1, entry: 1, mark: 1}\n"), "side"),
    (
        _acct(positions="\n  - {instrument: binance:BTCUSDT, side: short, contracts: 0, entry: 1, mark: 1}\n"),
        "contracts",
    ),
    (
        _acct(positions="\n  - {instrument: binance:BTCUSDT, side: short, contracts: -1, entry: 1, mark: 1}\n"),
        "contracts",
    ),
    (
        _acct(positions="\n  - {instrument: binance:BTCUSDT, side: short, contracts: 1, entry: .nan, mark: 1}\n"),
        "entry",
    ),
    (_acct(positions="\n  - {instrument: binance:BTCUSDT, side: short, contracts: 1, entry: 1, mark: 0}\n"), "mark"),
    (_acct(positions="\n  - {instrument: binance:BTCUSDT, side: short, contracts: 1, entry: 1, mark: -3}\n"), "mark"),
    (_acct(positions="\n  - {instrument: binance:BTCUSDT, side: short, contracts: 1, entry: 1}\n"), "mark"),
    (_acct(positions="\n  - {instrument: binance:BTCUSDT, side: short, contracts: 1, entry: 1, mark: 1, x: 2}\n"), "x"),
    (
        _acct(positions="\n  - {instrument: binance:BTCUSDT, side: short, contracts: 1, entry: 1, mark: 1, mmr: 1}\n"),
        "mmr",
    ),
    (
        _acct(positions="\n  - {instrument: binance:BTCUSDT, side: short, contracts: 1, entry: 1, mark: 1, mmr: 0}\n"),
        "mmr",
    ),
    (
        _acct(
            positions="\n  - {instrument: binance:BTCUSDT, side: short, contracts: 1, entry: 1, mark: 1, "
            "maintenance_amount: 5}\n"
        ),
        "maintenance_amount",
    ),
    (
        _acct(
            positions="\n  - {instrument: binance:BTCUSDT, side: short, contracts: 1, entry: 1, mark: 1, mmr: 0.01, "
            "maintenance_amount: -5}\n"
        ),
        "maintenance_amount",
    ),
    (_acct(positions="\n" + ALL_SHORT + ALL_SHORT), "twice"),
    (_acct(positions="\n" + ALL_SHORT * 201), "at most 200 positions"),
    (
        _acct(
            positions="\n  - {instrument: binance:BTCUSDT, side: short, contracts: 1, entry: 1, mark: 1, mmr: 0.5, "
            "maintenance_amount: 1}\n"
        ),
        "would be negative",
    ),
    (_acct(positions="\n  - {instrument: binance:BTCUSDT, side: LONG, contracts: 1, entry: 1, mark: 1}\n"), "side"),
    (
        _acct(positions="\n  - {instrument: binance:BTCUSDT, side: short, contracts: 0x10, entry: 1, mark: 1}\n"),
        "plain decimal",
    ),
    (_acct(wallet_balance="1_000"), "plain decimal"),
    (_acct(positions="\n  - binance:BTCUSDT\n"), "mapping"),
    (
        _acct(positions="\n  - {instrument: binance:BTCUSDT, side: short, contracts: 1e17, entry: 1e9, mark: 1e9}\n"),
        "more than",
    ),
    ("a: &x {instrument: binance:BTCUSDT, side: long, contracts: 1, entry: 100, mark: 100}\n" + _acct(), "unknown key"),
    (
        "venue: hyperliquid\nwallet_balance: 100\npositions:\n"
        "  - {instrument: hyperliquid:BTC, side: short, contracts: 1, entry: 1, mark: 1}\n"
        "  - {instrument: hyperliquid:ETH, side: short, contracts: 1, entry: 1, mark: 1}\n"
        "wallet_balance: 5\n",
        "wallet_balance",
    ),
    (
        "venue: okx\nwallet_balance: 1\npositions:\n"
        "  - {instrument: okx:BTC-USD-SWAP, side: short, contracts: 1, entry: 1, mark: 1}\n"
        "  - {instrument: okx:BTC-USDT-SWAP, side: short, contracts: 1, entry: 1, mark: 1}\n",
        "settle",
    ),
    ("venue: binance_usdm\n", "wallet_balance"),
    ("- 1\n- 2\n", "mapping"),
    ("just text\n", "mapping"),
    ("", "empty"),
    (_acct() + "extra: 1\n", "extra"),
]


@pytest.mark.parametrize(("text", "needle"), BAD_FILES, ids=[f"bad{i}" for i in range(len(BAD_FILES))])
def test_bad_files_are_refused_on_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    path = _write(tmp_path, text)
    code, out, err = _run(capsys, "--account", path, "-f", "json")
    assert code == 2, (out, err)
    assert out == ""
    assert err.startswith("perphedge: error: ") and err.count("\n") == 1, err
    assert needle.lower() in err.lower(), err
    assert "Traceback" not in err


def test_paths_that_are_not_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path in (str(tmp_path), str(tmp_path / "missing.yaml")):
        code, _, err = _run(capsys, "--account", path)
        assert code == 2 and err.count("\n") == 1 and path in err, err
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\x00\xff\xfe" * 10)
    code, _, err = _run(capsys, "--account", str(binary))
    assert code == 2 and err.count("\n") == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable files")
def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(_write(tmp_path, GOOD))
    path.chmod(0)
    try:
        code, _, err = _run(capsys, "--account", str(path))
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert code == 2 and err.count("\n") == 1


@pytest.mark.parametrize(
    "extra",
    [
        ["--instrument", "binance:BTCUSDT"],
        ["--side", "long"],
        ["--contracts", "1"],
        ["--entry", "1"],
        ["--exit", "1"],
        ["--leverage", "3"],
        ["--margin-mode", "cross"],
        ["--wallet-balance", "1"],
        ["--mmr", "0.01"],
        ["--mark", "1"],
        ["--fee-rate", "0.001"],
    ],
)
def test_single_position_options_are_refused_with_account(capsys: pytest.CaptureFixture[str], extra: list[str]) -> None:
    code, _, err = _run(capsys, "--account", str(EXAMPLE), *extra)
    assert code == 2 and err.count("\n") == 1 and extra[0] in err, err


def test_option_combinations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "--surface", "--instrument", "binance:BTCUSDT")
    assert code == 2 and "--account" in err and err.count("\n") == 1
    code, _, err = _run(capsys, "--instrument", "binance:BTCUSDT", "--side", "short", "--contracts", "1")
    assert code == 2 and "`perphedge calc` needs the option --entry" in err and err.count("\n") == 1
    code, _, err = _run(capsys, "--account", str(EXAMPLE), "--plot", str(tmp_path))
    assert code == 2 and "--surface" in err
    one = _write(tmp_path, _acct())
    code, _, err = _run(capsys, "--account", one, "--surface")
    assert code == 2 and "two" in err
    afile = tmp_path / "f"
    afile.write_text("x")
    code, _, err = _run(capsys, "--account", str(EXAMPLE), "--surface", "--plot", str(afile))
    assert code == 2 and "--plot" in err and err.count("\n") == 1


def test_single_position_calc_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(
        capsys,
        "--instrument",
        "binance:BTCUSDT",
        "--side",
        "short",
        "--contracts",
        "1",
        "--entry",
        "60000",
        "--leverage",
        "2",
        "-f",
        "json",
    )
    assert code == 0, err
    # bundled BTCUSDT tiers: at ~89,600 USDT the 50,000 tier (MMR 0.5 %, cum 50): (30,000 + 50 + 60,000)/1.005
    assert json.loads(out)["liquidation_price"]["value"] == pytest.approx(90050 / 1.005, rel=1e-9)


def test_account_already_liquidated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(
        tmp_path,
        "venue: binance_usdm\nwallet_balance: 100\npositions:\n"
        "  - {instrument: binance:BTCUSDT, side: long, contracts: 1, entry: 60000, mark: 59000}\n",
    )
    code, out, err = _run(capsys, "--account", path, "-f", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["liquidated"] is True and doc["margin_ratio"] is None  # equity <= 0
    code, out, err = _run(capsys, "--account", path)
    assert code == 0 and "equity <= 0" in out
