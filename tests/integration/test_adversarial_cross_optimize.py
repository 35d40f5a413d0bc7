"""Adversarial trial of ``calc --account``, ``plan`` with ``margin_mode: cross`` and ``optimize`` (classes found).

Each test stands for a class of wrong inputs the trial found misbehaving: a tier override whose maintenance
margin is negative at the liquidation price (a liquidation price past bankruptcy), an account already
liquidated at its marks shown without a warning, an empty ``--plot``/``--write`` taken as the working
directory, plots half-written when the process dies midway, and optimize's JSON differing between two runs
with one seed (wall-clock timing).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perphedge.cli import main
from perphedge.core.contracts import Side
from perphedge.core.cross import CrossAccount, CrossPosition, CrossVenue, account_state, cross_liquidation
from perphedge.core.instruments import MarginSchedule
from perphedge.errors import ConfigError
from perphedge.specs import default_registry
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "accounts" / "binance-usdm-cross.yaml"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _account(tmp_path: Path, positions: list[str], wallet: str = "5000", venue: str = "binance_usdm") -> str:
    p = tmp_path / "acct.yaml"
    p.write_text(
        f"venue: {venue}\nwallet_balance: {wallet}\npositions:\n" + "".join(f"  - {x}\n" for x in positions),
        encoding="utf-8",
    )
    return str(p)


def _one_line_refusal(code: int, out: str, err: str) -> str:
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perphedge: error: "), err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- negative MM at the liquidation price


def test_override_negative_mm_at_liquidation_price_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 10 ETH at mark 1,400 × 0.01 = 140 >= 139 (fine at the mark), but the liquidation price (≈ 996) has a value of
    # ≈ 9,961 × 0.01 = 99.6 < 139: the override would put liquidation past bankruptcy (1,000). Was answered 996.06.
    path = _account(
        tmp_path,
        [
            "{instrument: binance:ETHUSDT, side: long, contracts: 10, entry: 1500, mark: 1400, mmr: 0.01, "
            "maintenance_amount: 139}"
        ],
    )
    line = _one_line_refusal(*_run(capsys, "calc", "--account", path, "--format", "json"))
    assert "positions[0].maintenance_amount" in line and "liquidation price" in line and "negative" in line
    assert "line 4" in line


def test_override_consistent_at_liquidation_price_is_answered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _account(
        tmp_path,
        [
            "{instrument: binance:ETHUSDT, side: long, contracts: 10, entry: 1500, mark: 1400, mmr: 0.01, "
            "maintenance_amount: 50}"
        ],
    )
    code, out, err = _run(capsys, "calc", "--account", path, "--format", "json")
    assert code == 0, err
    p = json.loads(out)["positions"][0]
    # 5,000 + 10 (P − 1,500) = 0.1 P − 50  →  P = 9,950 / 9.9
    assert p["liquidation_price"] == pytest.approx(9950 / 9.9, rel=1e-12)
    assert p["liquidation_price"] > p["bankruptcy_price"] == pytest.approx(1000.0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mmr=st.floats(0.001, 0.2),
    share=st.one_of(st.floats(0.0, 1.0), st.floats(0.9, 1.0)),
    cover=st.floats(0.001, 1.5),
    contracts=st.floats(0.01, 100.0),
    side=st.sampled_from([Side.LONG, Side.SHORT]),
)
def test_maintenance_margin_never_negative(
    mmr: float, share: float, cover: float, contracts: float, side: Side
) -> None:
    """Whatever override is given, the account's maintenance requirement is >= 0 at every price, and a long's
    liquidation price is never below its bankruptcy price (a short's never above)."""
    inst = default_registry().get("binance:ETHUSDT")
    mark = 2000.0
    amount = share * contracts * mark * mmr  # consistent at the mark
    wallet = cover * contracts * mark  # from a thin to an over-collateralised account
    pos = CrossPosition(
        instrument=inst,
        side=side,
        contracts=contracts,
        entry=mark,
        mark=mark,
        schedule=MarginSchedule.single(mmr, amount, max_leverage=inst.max_leverage),
    )
    acct = CrossAccount(venue=CrossVenue.BINANCE_USDM, wallet_balance=wallet, positions=(pos,))
    for move in (0.01, 0.1, 0.5, 1.0, 3.0):
        assert account_state(acct, [mark * move]).total_maintenance >= 0.0
    liq = cross_liquidation(acct).positions[0]
    if liq.liquidation_price is not None and liq.bankruptcy_price is not None:
        if side is Side.LONG:
            assert liq.liquidation_price >= liq.bankruptcy_price * (1 - 1e-9)
        else:
            assert liq.liquidation_price <= liq.bankruptcy_price * (1 + 1e-9)


# --------------------------------------------------------------------------- account liquidated at the marks


@pytest.mark.parametrize("wallet", ["10", "1e-300"])
def test_account_past_liquidation_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str], wallet: str) -> None:
    path = _account(
        tmp_path,
        ["{instrument: binance:ETHUSDT, side: long, contracts: 10, entry: 1500, mark: 100}"],
        wallet=wallet,
    )
    code, out, err = _run(capsys, "calc", "--account", path, "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["liquidated"] is True
    assert len(doc["warnings"]) == 1 and "already liquidated" in doc["warnings"][0]
    code, out, err = _run(capsys, "calc", "--account", path)
    assert code == 0, err
    assert "equity <= 0 LIQUIDATED" in out and "already liquidated" in out


def test_healthy_account_has_no_warning(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "calc", "--account", str(EXAMPLE), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["warnings"] == []


# --------------------------------------------------------------------------- empty output paths


@pytest.mark.parametrize("value", ["", " "])
def test_empty_plot_dir_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    line = _one_line_refusal(*_run(capsys, "calc", "--account", str(EXAMPLE), "--surface", "--plot", value))
    assert "`--plot`" in line and "directory name" in line
    assert list(tmp_path.iterdir()) == []  # nothing written into the working directory


def test_empty_output_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from perphedge.usecases.outputs import check_output_file, write_file_atomic

    monkeypatch.chdir(tmp_path)
    for value in ("", "  "):
        with pytest.raises(ConfigError, match="`--write`: give a file name"):
            check_output_file(value, "--write")
        with pytest.raises(ConfigError, match="give a file name"):
            write_file_atomic(value, "x", "--write")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- plots: all or nothing


class _Killed(BaseException):
    """Stands for the process dying (kill -9) in the middle of writing a plot."""


def _die_midway(monkeypatch: pytest.MonkeyPatch) -> None:
    import os as _os

    real = _os.fdopen

    def fdopen(fd: int, *a: Any, **k: Any) -> Any:
        fh = real(fd, *a, **k)
        write = fh.write

        def half(data: Any) -> int:
            write(data[: len(data) // 2])
            fh.flush()
            raise _Killed

        fh.write = half
        return fh

    monkeypatch.setattr("perphedge.usecases.outputs.os.fdopen", fdopen)


def test_surface_plot_is_never_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from perphedge.cli.account import SURFACE_MOVES, plot_surface
    from perphedge.core.cross import liquidation_surface
    from perphedge.usecases.account import account_document, load_account, surface_document

    acct = load_account(EXAMPLE, default_registry())
    doc = account_document(acct)
    doc["surface"] = surface_document(liquidation_surface(acct, 0, 1, SURFACE_MOVES, SURFACE_MOVES))
    out = tmp_path / "plots"
    out.mkdir()
    with monkeypatch.context() as m:
        _die_midway(m)
        with pytest.raises(_Killed):
            plot_surface(doc, out)
    assert not (out / "liquidation_surface.png").exists() and not (out / "liquidation_surface.html").exists()
    files = plot_surface(doc, out)  # the rerun writes both, whole
    png, html = Path(files[0]), Path(files[1])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert html.read_text(encoding="utf-8").rstrip().endswith("</html>")


def test_pareto_plot_is_never_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from perphedge.usecases.optimize import write_plots

    doc = {
        "pareto": [
            {"key": "a", "risk": 0.01, "carry": 0.002, "p_liq": 0.001, "objective": 0.01, "recommended": True},
            {"key": "b", "risk": 0.02, "carry": 0.004, "p_liq": 0.0, "objective": 0.02, "recommended": False},
        ],
        "baselines": [{"name": "unhedged", "risk": 0.07, "carry": 0.0}],
        "objective": {"risk": "variance", "horizon_days": 30},
        "period": {"end": "2025-12-31"},
    }
    out = tmp_path / "plots"
    with monkeypatch.context() as m:
        _die_midway(m)
        with pytest.raises(_Killed):
            write_plots(doc, out)
    assert not (out / "optimize_pareto.png").exists() and not (out / "optimize_pareto.html").exists()
    files = write_plots(doc, out)
    assert Path(files[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(files[1]).read_text(encoding="utf-8").rstrip().endswith("</html>")


# --------------------------------------------------------------------------- optimize JSON is deterministic


def test_optimize_json_leaves_out_wall_clock_timing() -> None:
    from perphedge.usecases.optimize import to_json

    a = {"schema": "perphedge.optimize/1", "x": [1.0, float("nan")], "timing": {"total_seconds": 1.06}}
    b = {**a, "timing": {"total_seconds": 1.09}}
    assert to_json(a) == to_json(b)
    assert "timing" not in json.loads(to_json(a)) and json.loads(to_json(a))["x"] == [1.0, None]
    assert "timing" in a  # the caller's document (benchmarks read it) keeps it


@pytest.mark.parametrize(
    "args",
    [
        ["plan", str(REPO / "examples" / "btc-eth-cross.yaml"), "--plot", ""],
        ["optimize", str(REPO / "examples" / "altcoins.yaml"), "--plot", ""],
        ["optimize", str(REPO / "examples" / "altcoins.yaml"), "--write", ""],
        ["optimize", str(REPO / "examples" / "altcoins.yaml"), "--write", " "],
    ],
)
def test_empty_output_flags_are_refused_not_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """An empty --plot was silently dropped by plan and optimize (no plot, exit 0); now a one-line refusal."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERPHEDGE_HOME", str(tmp_path / "home"))  # no store: the refusal comes before any work
    line = _one_line_refusal(*_run(capsys, *args))
    assert f"`{args[2]}`" in line and ("directory name" in line or "file name" in line)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- any account document


_VENUE_INSTRUMENTS = {
    "binance_usdm": ["binance:BTCUSDT", "binance:ETHUSDT", "binance:SOLUSDT"],
    "binance_coinm": ["binance:BTCUSD_PERP", "binance:ETHUSD_PERP"],
    "bybit_unified": ["bybit:BTCUSDT", "bybit:ETHUSDT", "bybit:SOLUSDT"],
    "bybit_classic": ["bybit:BTCUSD", "bybit:ETHUSD"],
    "okx": ["okx:BTC-USD-SWAP", "okx:BTC-USDT-SWAP", "binance:BTCUSDT"],
    "hyperliquid": ["hyperliquid:BTC", "hyperliquid:ETH", "hyperliquid:SOL"],
}
_ANY = st.one_of(
    st.floats(0.5, 1e5),
    st.floats(0.5, 1e5),
    st.floats(0.5, 1e5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10, 10**16),
    st.text(max_size=3),
    st.none(),
    st.booleans(),
)


@st.composite
def _account_doc(draw: st.DrawFn) -> dict[str, Any]:
    venue = draw(st.sampled_from(sorted(_VENUE_INSTRUMENTS)))
    insts = draw(st.lists(st.sampled_from(_VENUE_INSTRUMENTS[venue]), min_size=1, max_size=2, unique=True))
    positions = []
    for inst in insts:
        p: dict[str, Any] = {
            "instrument": inst,
            "side": draw(st.sampled_from(["long", "short"])),
            "contracts": draw(st.one_of(st.integers(1, 10**5), st.integers(1, 10**5), _ANY)),
            "entry": draw(_ANY),
            "mark": draw(_ANY),
        }
        if draw(st.booleans()):
            p["mmr"] = draw(st.one_of(st.floats(1e-4, 0.99), _ANY))
            if draw(st.booleans()):
                p["maintenance_amount"] = draw(st.one_of(st.floats(0.0, 1e6), _ANY))
        positions.append(p)
    return {"venue": venue, "wallet_balance": draw(_ANY), "positions": positions}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_account_doc())
def test_any_account_document_is_refused_on_one_line_or_answered_consistently(doc: dict[str, Any]) -> None:
    """Any document: a one-line ConfigError, or a JSON-safe answer in which no long is liquidated below its
    bankruptcy price (no short above it) while the account is healthy, every price > 0, and a surface."""
    from perphedge.config import parse_account
    from perphedge.core.cross import liquidation_surface
    from perphedge.errors import PerphedgeError
    from perphedge.usecases.account import account_document, build_account

    try:
        account = build_account(parse_account(doc, "acct.yaml"), default_registry(), "acct.yaml")
    except PerphedgeError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("acct.yaml")
        return
    out = account_document(account)
    json.dumps(out, allow_nan=False)
    for row in out["positions"]:
        lp, bp = row["liquidation_price"], row["bankruptcy_price"]
        assert lp is None or (math.isfinite(lp) and lp > 0)
        if lp is not None and bp is not None and not out["liquidated"]:
            if row["side"] == "long":
                assert lp >= bp * (1 - 1e-9), row
            else:
                assert lp <= bp * (1 + 1e-9), row
    if len(account.positions) >= 2:
        surf = liquidation_surface(account, 0, 1, (-0.5, 0.0, 0.5), (-0.5, 0.0, 0.5))
        assert all(r is None or r >= 0 for row in surf.margin_ratio for r in row)


def test_hedge_mode_pair_is_refused_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A long and a short of one instrument (hedge mode) was told to "merge them"; the refusal now names the
    mode perphedge models and asks for the net position."""
    path = _account(
        tmp_path,
        [
            "{instrument: binance:ETHUSDT, side: long, contracts: 10, entry: 1500, mark: 1400}",
            "{instrument: binance:ETHUSDT, side: short, contracts: 4, entry: 1450, mark: 1400}",
        ],
    )
    line = _one_line_refusal(*_run(capsys, "calc", "--account", path))
    assert "positions[1].instrument" in line and "hedge mode" in line and "net position" in line


# --------------------------------------------------------------------------- optimize: a book too small to hedge


@pytest.mark.parametrize("value", ["1e-9", "0.01"])
def test_optimize_refuses_a_book_smaller_than_any_lot(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    sample_store_path: Path,
    value: str,
) -> None:
    """A basket worth less than half a lot of every hedge instrument was "recommended" a hedge that rounds to
    nothing (risk = unhedged, P(liq) 0, so it looked feasible); now a one-line refusal naming the smallest lot."""
    pf = tmp_path / "small.yaml"
    pf.write_text(f"name: small\nholdings:\n  - {{asset: SOL, value_usd: {value}}}\n", encoding="utf-8")
    args = ["optimize", str(pf), "--hedges", "btc", "--methods", "notional", "--collateral", "stable"]
    args += ["--policies", "band", "--ratios", "1", "--leverages", "1", "--paths", "100"]
    line = _one_line_refusal(*_run(capsys, *args, "--store", str(sample_store_path), "--format", "json"))
    assert "less than half a lot of every hedge instrument" in line and "binance:BTCUSDT" in line
    assert str(pf) in line


@pytest.mark.parametrize(
    ("contracts", "nearest"), [("0.0001", "0.001"), ("1e-300", "0.001"), ("0.0015", "0.001 or 0.002")]
)
def test_contracts_off_the_lot_grid_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], contracts: str, nearest: str
) -> None:
    """`calc --contracts` refuses sizes off the lot grid; the account file took them (1e-300 BTC answered)."""
    path = _account(
        tmp_path, [f"{{instrument: binance:BTCUSDT, side: long, contracts: {contracts}, entry: 60000, mark: 60000}}"]
    )
    line = _one_line_refusal(*_run(capsys, "calc", "--account", path))
    assert "positions[0].contracts" in line and "lot 0.001" in line and line.endswith(f"nearest {nearest}")


def test_optimize_says_why_no_design_is_feasible() -> None:
    """With no feasible design the output only said "raise --max-liq-prob or change the grids", whatever the
    cause; the document's `rejected` now counts each kind of violation (numbers and dates folded together)."""
    from perphedge.usecases.optimize import _why_rejected

    def score(*violations: str, risk: float = 0.01) -> dict[str, Any]:
        return {"risk": risk, "violations": list(violations), "feasible": False}

    out = _why_rejected(
        [
            score("P(liquidation) 16.00% > 1.00%"),
            score("P(liquidation) 8.00% > 1.00%", "liquidated 2 time(s) in the window"),
            score("the hedged book is wiped out on 2021-01-06"),
            score("P(liquidation) 2.50% > 1.00%"),
            score(risk=float("nan")),
        ]
    )
    assert out[0] == {"violation": "P(liquidation) 16.00% > 1.00%", "designs": 3}
    assert {r["violation"]: r["designs"] for r in out[1:]} == {
        "liquidated 2 time(s) in the window": 1,
        "the hedged book is wiped out on 2021-01-06": 1,
        "no risk can be measured (missing prices in the window)": 1,
    }
