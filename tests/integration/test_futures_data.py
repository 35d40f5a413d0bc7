"""Dated futures on the real 2021 sample: import, convergence at delivery, `analyze --futures`, wrong files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from perphedge.data.importer import parse_sample, parse_sample_member, read_frame
from perphedge.data.store import MarketStore
from perphedge.errors import DataError
from perphedge.usecases.analyze_futures import FuturesAnalyzeRequest, analyze_futures
from tests.conftest import run_cli, sample_dir

FUT = "futures/BINANCE_BTCUSD_quarterly_1d_2021.csv"
SETTLE = "futures/BINANCE_BTCUSD_quarterly_2021_settlements.csv"


def _csv_rows(name: str) -> list[dict[str, str]]:
    with (sample_dir() / name).open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_sample_import_stores_each_contract_with_its_expiry_and_delivery_price(sample_store_path: Path) -> None:
    with MarketStore(sample_store_path, read_only=True) as store:
        c = store.query(
            "SELECT symbol, min(expiry) AS e1, max(expiry) AS e2, count(*) AS n FROM futures_candles "
            "GROUP BY symbol ORDER BY symbol"
        )
        s = store.query("SELECT symbol, expiry, settlement_price FROM futures_settlements ORDER BY symbol")
        f = store.query(
            "SELECT count(*) AS n FROM funding WHERE source = 'binance' AND symbol = 'BTC/USD:BTC' "
            "AND ts < TIMESTAMP '2022-01-01'"
        )
        m = store.query("SELECT count(*) AS n FROM candles WHERE source = 'binance_mark' AND symbol = 'BTC/USD:BTC'")
    assert list(c["symbol"]) == ["BTCUSD_210326", "BTCUSD_210625", "BTCUSD_210924"]
    assert (c["e1"] == c["e2"]).all()
    assert [str(x) for x in c["e1"]] == ["2021-03-26 08:00:00", "2021-06-25 08:00:00", "2021-09-24 08:00:00"]
    assert int(c["n"].sum()) == len(_csv_rows(FUT)) == 441
    assert list(s["symbol"]) == ["BTCUSD_210326", "BTCUSD_210625", "BTCUSD_210924"]
    raw = {r["contract"]: float(r["settlement_price"]) for r in _csv_rows(SETTLE)}
    assert list(s["settlement_price"]) == [raw[x] for x in s["symbol"]]
    assert int(f["n"][0]) == 819 and int(m["n"][0]) == 273


def test_basis_converges_at_delivery_on_the_sample(sample_store_path: Path) -> None:
    with MarketStore(sample_store_path, read_only=True) as store:
        doc = analyze_futures(store, FuturesAnalyzeRequest())
    assert len(doc["contracts"]) == 3
    for c in doc["contracts"]:
        last = c["last_bar"]
        assert last["days_to_expiry"] == pytest.approx(1 / 3)  # the bar closing at 00:00, delivery at 08:00
        assert abs(last["basis"]) < 0.005, c
    # and far from delivery the basis is not that small (the test could fail)
    first = next(r for r in doc["daily"] if r["contract"] == "BTCUSD_210326")
    assert abs(first["basis"]) > 0.02


def test_analyze_futures_numbers_recomputed_from_the_csv(sample_store_path: Path) -> None:
    """Recompute basis, days to expiry and percentiles straight from the CSV (numpy, no perphedge)."""
    import datetime as dt

    with MarketStore(sample_store_path, read_only=True) as store:
        doc = analyze_futures(store, FuturesAnalyzeRequest(min_days=7))
    ann = []
    per: dict[str, list[float]] = {}
    for r in _csv_rows(FUT):
        close = dt.datetime.fromisoformat(r["timestamp"]).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
        expiry = dt.datetime.fromisoformat(r["expiry"].replace("Z", "+00:00"))
        days = (expiry - close).total_seconds() / 86400
        if days >= 7:
            a = (float(r["close"]) / float(r["spot_close"]) - 1) * 365 / days
            ann.append(a)
            per.setdefault(r["contract"], []).append(a)
    assert doc["basis_annualized"]["n"] == len(ann)
    assert doc["basis_annualized"]["median"] == pytest.approx(float(np.median(ann)), rel=1e-12)
    assert doc["basis_annualized"]["p5"] == pytest.approx(float(np.percentile(ann, 5)), rel=1e-12)
    assert doc["basis_annualized"]["p95"] == pytest.approx(float(np.percentile(ann, 95)), rel=1e-12)
    for c in doc["contracts"]:
        assert c["basis_annualized"]["median"] == pytest.approx(float(np.median(per[c["contract"]])), rel=1e-12)


def test_carry_vs_funding_recomputed_for_one_entry(sample_store_path: Path) -> None:
    """The 2021-06-01 entry into BTCUSD_210924: carry locked vs the funding settled until delivery."""
    import datetime as dt

    with MarketStore(sample_store_path, read_only=True) as store:
        doc = analyze_futures(store, FuturesAnalyzeRequest())
    entry = next(
        e for e in doc["carry_vs_funding"]["entries"] if e["contract"] == "BTCUSD_210924" and e["entry"] == "2021-06-01"
    )
    row = next(r for r in _csv_rows(FUT) if r["contract"] == "BTCUSD_210924" and r["timestamp"] == "2021-06-01")
    days = 114 + 8 / 24  # 2021-06-02 00:00 → 2021-09-24 08:00 (30 + 31 + 31 + 22 days and 8 hours)
    assert entry["days"] == pytest.approx(days)
    assert entry["basis_locked"] == pytest.approx(float(row["close"]) / float(row["spot_close"]) - 1, rel=1e-12)
    start = dt.datetime(2021, 6, 2, tzinfo=dt.UTC)
    end = dt.datetime(2021, 9, 24, 8, tzinfo=dt.UTC)
    rates = [
        float(r["funding_rate"])
        for r in _csv_rows("futures/BINANCE_BTCUSD_PERP_funding_2021.csv")
        if start < dt.datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")) <= end
    ]
    assert len(rates) == 3 * 114 + 1  # 00/08/16 of each day after the entry close, and 08:00 on delivery day
    assert entry["funding"] == pytest.approx(sum(rates), rel=1e-12)
    assert entry["funding_annualized"] == pytest.approx(sum(rates) * 365 / days, rel=1e-12)
    assert entry["spread_annualized"] == pytest.approx(entry["carry_annualized"] - entry["funding_annualized"])
    cv = doc["carry_vs_funding"]
    assert cv["skipped_without_funding"] == 0 and cv["spread_annualized"]["n"] == len(cv["entries"])


def test_analyze_futures_cli_json_table_and_plots(store_home: Path, tmp_path: Path) -> None:
    r = run_cli("analyze", "--futures", "--since", "2021-02-01", "--until", "2021-06-30", "-f", "json", home=store_home)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "perphedge.analyze-futures/1"
    assert {d["date"] for d in doc["daily"]} <= {f"2021-{m:02d}-{d:02d}" for m in range(2, 7) for d in range(1, 32)}
    # a range that stops before delivery says nothing about the settlement
    sep = next(c for c in doc["contracts"] if c["contract"] == "BTCUSD_210924")
    assert sep["settlement_vs_last_spot"] is None
    r = run_cli("analyze", "--futures", "--plot", str(tmp_path / "plots"), home=store_home)
    assert r.returncode == 0, r.stderr
    assert "Term structure on" in r.stdout and "perp funding" in r.stdout
    for name in ("futures_basis.png", "futures_basis.html", "futures_carry_spread.png", "futures_carry_spread.html"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000


@pytest.mark.parametrize(
    "args,message",
    [
        (["--futures", "--assets", "SOL"], "leave --assets out"),
        (["--futures", "--min-days", "-1"], "`--min-days`"),
        (["--futures", "--min-days", "nan"], "`--min-days`"),
        (["--futures", "--min-days", "400"], "`--min-days`"),
        (["--futures", "--since", "2021-13-01"], "--since"),
        (["--futures", "--since", "2021-06-01", "--until", "2021-05-01"], "--until"),
        (["--futures", "--since", "2023-01-01"], "no dated-futures candles"),
        (["--futures", "--format", "xml"], "`--format`"),
        (["--proxy", "BTC"], "needs the option --assets"),
    ],
)
def test_analyze_futures_wrong_inputs(store_home: Path, args: list[str], message: str) -> None:
    r = run_cli("analyze", *args, home=store_home)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_a_store_without_futures_says_so(tmp_path: Path) -> None:
    with MarketStore(tmp_path / "empty.duckdb"):
        pass
    r = run_cli("analyze", "--futures", "--store", str(tmp_path / "empty.duckdb"))
    assert r.returncode == 2 and "no dated-futures candles" in r.stderr


def _copy_sample(tmp_path: Path) -> Path:
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


@pytest.mark.parametrize(
    "name,edit,message",
    [
        (SETTLE, lambda rows: rows.append(["BTCUSD_210326", "2021-03-26T08:00:00Z", "50000"]), "second settlement"),
        (SETTLE, lambda rows: rows[1].__setitem__(1, "2021-03-27T08:00:00Z"), "is not its delivery date"),
        (SETTLE, lambda rows: rows[1].__setitem__(2, "-1"), "must be > 0"),
        (SETTLE, lambda rows: rows[1].__setitem__(2, "abc"), "settlement_price"),
        (SETTLE, lambda rows: rows[1].__setitem__(0, "BTCUSD_210332"), "real delivery date"),
        (SETTLE, lambda rows: rows[1].__setitem__(0, "BTCUSD_PERP"), "must end with its delivery date"),
        (SETTLE, lambda rows: rows[1].__setitem__(0, ""), "contract"),
        (SETTLE, lambda rows: rows[1].__setitem__(1, "yesterday"), "yesterday"),
        (FUT, lambda rows: rows[1].__setitem__(2, "2021-03-27T08:00:00Z"), "more than one `expiry`"),
        (
            FUT,
            lambda rows: [r.__setitem__(2, "2021-03-19T08:00:00Z") for r in rows[1:] if r[1] == "BTCUSD_210326"],
            "is not its delivery",
        ),
        (FUT, lambda rows: rows[1].__setitem__(7, "0"), "`spot_close` must be > 0"),
        (FUT, lambda rows: rows[1].__setitem__(6, "-5"), "prices must be > 0"),
        (FUT, lambda rows: rows[1].__setitem__(6, "1e9"), "OHLC inconsistent"),
        (FUT, lambda rows: rows.append([*rows[1][:7], "1", rows[1][8]]), "duplicate timestamp"),
        (FUT, lambda rows: rows.append([*rows[30][:6], "1", *rows[30][7:]]), "line 31"),
        (FUT, lambda rows: rows.append(list(rows[1])), None),  # an exact duplicate row is dropped
        (FUT, lambda rows: [r.pop(1) for r in rows], "missing column `contract`"),
        (
            FUT,
            lambda rows: rows.append(["2021-09-24", "BTCUSD_210924", "2021-09-24T08:00:00Z", *rows[-1][3:]]),
            "closes after delivery",
        ),
    ],
)
def test_wrong_futures_files_are_refused(tmp_path: Path, name: str, edit: object, message: str | None) -> None:
    root = _copy_sample(tmp_path)
    _rewrite(root / name, edit)
    if message is None:
        parsed = parse_sample_member(name, read_frame(root / name), file=str(root / name))
        assert parsed.rows == len(_csv_rows(name))
        return
    with pytest.raises(DataError) as info:
        parse_sample_member(name, read_frame(root / name), file=str(root / name))
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_a_futures_folder_is_imported_with_the_rest_and_unknown_files_are_skipped(tmp_path: Path) -> None:
    root = _copy_sample(tmp_path)
    (root / "futures" / "notes.csv").write_text("a,b\n1,2\n")
    files = parse_sample(root)
    assert sorted(f.table for f in files) == ["candles", "funding", "futures_candles", "futures_settlements"]
    assert files[-1].table == "futures_settlements"
