"""``plan`` with ``hedge.margin_mode: cross`` (issue 13 item 3/5): the legs in one cross account, each
leg's liquidation given the others next to isolated, the liquidation surface and its heat map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perphedge.cli import main
from perphedge.core.contracts import Side
from perphedge.core.cross import account_state
from perphedge.specs import default_registry
from perphedge.usecases.plan import plan_from_file
from perphedge.usecases.plan_cross import SURFACE_MOVES, cross_account_of_plan

PF = """name: cross test
prices: {{BTC: 60000, ETH: 3000}}
holdings:
  - {{asset: BTC, quantity: 1}}
  - {{asset: ETH, quantity: 20}}
hedge:
  ratio: 1.0
  instrument: {instrument}
  leverage: 3
  collateral: {collateral}
  margin_mode: {mode}
"""


def _file(
    tmp_path: Path, instrument: str = "direct:binance:linear", collateral: str = "stable", mode: str = "cross"
) -> str:
    p = tmp_path / "pf.yaml"
    p.write_text(PF.format(instrument=instrument, collateral=collateral, mode=mode), encoding="utf-8")
    return str(p)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_two_linear_legs_share_the_wallet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, _file(tmp_path), "-f", "json")
    assert code == 0, err
    cross = json.loads(out)["cross_account"]
    assert cross["venue"] == "binance_usdm" and cross["settle"] == "USDT"
    assert cross["wallet_balance"] == pytest.approx(40000.0)  # 60,000/3 per leg
    btc, eth = cross["legs"]
    assert btc["instrument"] == "binance:BTCUSDT" and eth["instrument"] == "binance:ETHUSDT"
    # each short's cross liquidation lies above its isolated one: the other leg's margin backs it
    for leg in (btc, eth):
        assert leg["cross_liquidation_price"] > leg["isolated_liquidation_price"] > leg["entry_price"]
    # BTC leg: (WB − TMM_eth + UPNL_eth + cum + q·E)/(q·(1 + MMR)) with ETH at its entry (UPNL 0)
    tmm_eth = 20 * 3000 * 0.005 - 50.0  # bundled ETHUSDT tier 2 (50,000–: MMR 0.5 %, cum 50)
    lp = btc["cross_liquidation_price"]
    assert 50000 <= lp < 600000  # the BTC leg's value at its LP is in the bundled BTCUSDT tier 2 (0.5 %, cum 50)
    assert lp == pytest.approx((40000 - tmm_eth + 50.0 + 60000) / (1 + 0.005), rel=1e-9)
    surf = cross["surface"]
    assert surf["moves_a"] == list(SURFACE_MOVES)
    n = len(SURFACE_MOVES)
    assert len(surf["liquidated"]) == n and len(surf["isolated_any_leg_liquidated"]) == n
    zero = SURFACE_MOVES.index(0.0)
    assert not surf["liquidated"][zero][zero] and not surf["isolated_any_leg_liquidated"][zero][zero]
    # cross helps where one leg gains: BTC -50 %, ETH +40 % liquidates the isolated ETH leg, not the account
    i, k = SURFACE_MOVES.index(-0.5), SURFACE_MOVES.index(0.4)
    assert surf["isolated_any_leg_liquidated"][i][k] and not surf["liquidated"][i][k]


def test_surface_agrees_with_the_account(tmp_path: Path) -> None:
    outcome = plan_from_file(_file(tmp_path), registry=default_registry(None))
    assert outcome.cross_account is not None
    account = cross_account_of_plan(outcome.plan)
    assert all(p.side is Side.SHORT for p in account.positions)
    surf = outcome.cross_account["surface"]
    for i, da in enumerate(SURFACE_MOVES):
        for k, db in enumerate(SURFACE_MOVES):
            prices = [account.positions[0].mark * (1 + da), account.positions[1].mark * (1 + db)]
            assert surf["liquidated"][i][k] == account_state(account, prices).liquidated


def test_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plots = tmp_path / "plots"
    code, out, err = _run(capsys, _file(tmp_path), "--plot", str(plots))
    assert code == 0, err
    assert "cross account (binance_usdm)" in out and "cross liquidation" in out and "liquidation surface" in out
    assert (plots / "liquidation_surface.png").stat().st_size > 1000
    assert (plots / "liquidation_surface.html").stat().st_size > 1000


def test_isolated_plan_has_no_cross_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, _file(tmp_path, mode="isolated"), "-f", "json")
    assert code == 0, err
    assert "cross_account" not in json.loads(out)
    code, _, err = _run(capsys, _file(tmp_path, mode="isolated"), "--plot", str(tmp_path / "p"))
    assert code == 2 and "margin_mode: cross" in err and err.count("\n") == 1


def test_single_inverse_leg_equals_isolated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, _file(tmp_path, "binance:BTCUSD_PERP", "buy"), "-f", "json")
    assert code == 0, err
    cross = json.loads(out)["cross_account"]
    assert cross["venue"] == "binance_coinm" and cross["surface"] is None
    (leg,) = cross["legs"]
    assert leg["cross_liquidation_price"] == pytest.approx(leg["isolated_liquidation_price"], rel=1e-12)
    code, _, err = _run(capsys, _file(tmp_path, "binance:BTCUSD_PERP", "buy"), "--plot", str(tmp_path / "p"))
    assert code == 2 and "two hedge legs" in err


@pytest.mark.parametrize(
    ("instrument", "collateral", "needle"),
    [
        ("direct:binance:inverse", "buy", "one settle asset"),
        ("direct:bybit:inverse", "buy", "one settle asset"),
        ("bitmex:XBTUSD", "buy", "not modelled"),
        ("deribit:BTC-PERPETUAL", "buy", "not modelled"),
    ],
)
def test_cross_refusals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], instrument: str, collateral: str, needle: str
) -> None:
    code, out, err = _run(capsys, _file(tmp_path, instrument, collateral), "-f", "json")
    assert code == 2 and out == ""
    assert err.startswith("perphedge: error: ") and err.count("\n") == 1 and needle in err, err


@pytest.mark.parametrize("mode", ["Cross", "portfolio", "1", "true", "[cross]"])
def test_margin_mode_values(tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str) -> None:
    code, _, err = _run(capsys, _file(tmp_path, mode=mode))
    assert code == 2 and "hedge.margin_mode" in err and err.count("\n") == 1, err


def test_plot_path_checked_before_the_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    code, _, err = _run(capsys, str(tmp_path / "missing.yaml"), "--plot", str(afile))
    assert code == 2 and "--plot" in err  # the flag fails before the (missing) portfolio file is read
