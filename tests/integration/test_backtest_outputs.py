"""Backtest and sweep outputs: atomic run folders, clear refusals of bad output paths, bounded sweeps, exit codes,
flat markets, policy fallbacks in the result and the report, and kill -9 safety."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perphedge.data.importer import parse_sample
from perphedge.data.store import MarketStore
from perphedge.usecases.data import import_frames
from tests.conftest import REPO, run_cli

PERPHEDGE = str(Path(sys.executable).parent / "perphedge")


# ------------------------------------------------------------------------------------------ helpers


def _flat_store(root: Path) -> Path:
    """A store whose BTC and SOL prices never move (zero variance), with flat funding, built from generated CSVs."""
    data = root / "flat-data"
    (data / "prices").mkdir(parents=True)
    (data / "funding").mkdir()
    days = pd.date_range("2021-01-01", "2022-12-31", freq="D")
    for asset, price in (("BTC", 30_000.0), ("SOL", 100.0)):
        pd.DataFrame(
            {
                "timestamp": days.strftime("%Y-%m-%d"),
                "open": price,
                "high": price,
                "low": price,
                "close": price,
                "volume": 1000.0,
            }
        ).to_csv(data / "prices" / f"{asset}.csv", index=False)
    settle = pd.date_range("2021-01-01", "2023-01-01", freq="8h")
    pd.DataFrame({"timestamp": settle.strftime("%Y-%m-%dT%H:%M:%SZ"), "funding_rate": 0.0}).to_csv(
        data / "funding" / "BINANCE_BTCUSDT.csv", index=False
    )
    path = root / "flat.duckdb"
    with MarketStore(path) as store:
        import_frames(store, parse_sample(data), source=str(data))
    return path


def _write_run(path: Path, policy: str = "{kind: static, ratio: 0.5, band: 0.10}", **extra: str) -> Path:
    lines = [
        f"portfolio: {REPO / 'examples' / 'altcoins.yaml'}",
        f"start: {extra.pop('start', '2021-01-01')}",
        f"end: {extra.pop('end', '2021-12-31')}",
        "hedge: {instrument: binance:BTCUSDT, leverage: 2, collateral: stable}",
        f"policy: {policy}",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perphedge: error: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _folder_state(out: Path) -> str | None:
    """The config hash of a complete, consistent run folder; None when there is none; fails on a mix or a
    partial file."""
    if not out.exists():
        return None
    names = {p.name for p in out.iterdir()}
    assert names <= {"result.json", "report.html", "report.png", "manifest.json"}, names
    manifest = json.loads((out / "manifest.json").read_text())
    assert names == {*manifest["files"], "manifest.json"}, (names, manifest)
    import hashlib

    for name, meta in manifest["files"].items():
        blob = (out / name).read_bytes()
        assert len(blob) == meta["bytes"] and hashlib.sha256(blob).hexdigest() == meta["sha256"], name
    result = json.loads((out / "result.json").read_text())
    assert result["config_hash"] == manifest["config_hash"]
    if "report.html" in names:
        html = (out / "report.html").read_text()
        assert html.rstrip().endswith("</html>")
        m = re.search(r'<meta name="perphedge-config-hash" content="([0-9a-f]+)">', html)
        assert m and m.group(1) == manifest["config_hash"]
    return str(manifest["config_hash"])


# ------------------------------------------------------------------------------------------ run folders


def test_a_rerun_replaces_the_whole_folder(store_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _write_run(tmp_path / "a.yaml")
    r = run_cli("backtest", str(first), "--out", str(out), "--format", "json", home=store_home)
    assert r.returncode == 0, r.stderr
    h1 = _folder_state(out)
    assert h1 and {p.name for p in out.iterdir()} == {"result.json", "report.html", "report.png", "manifest.json"}
    assert json.loads(r.stdout)["files"][-1].endswith("manifest.json")
    second = _write_run(tmp_path / "b.yaml", policy="{kind: static, ratio: 0.7, band: 0.10}")
    r = run_cli("backtest", str(second), "--out", str(out), "--no-report", home=store_home)
    assert r.returncode == 0, r.stderr
    h2 = _folder_state(out)
    assert h2 and h2 != h1
    assert {p.name for p in out.iterdir()} == {"result.json", "manifest.json"}  # no stale report of run 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.perphedge-")]  # no leftovers


def test_bad_output_folders_are_refused_before_any_work(store_home: Path, tmp_path: Path) -> None:
    run = _write_run(tmp_path / "a.yaml")
    afile = tmp_path / "afile"
    afile.write_text("x")
    r = run_cli("backtest", str(run), "--out", str(afile), home=store_home)
    _one_line_error(r, str(afile), "is a file")
    r = run_cli("backtest", str(run), "--out", str(afile / "sub"), home=store_home)
    _one_line_error(r, "cannot create", str(afile))
    r = run_cli("backtest", str(run), "--out", "/proc/1/perphedge-out", home=store_home)
    _one_line_error(r, "/proc/1")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    r = run_cli("backtest", str(run), "--out", str(mine), home=store_home)
    _one_line_error(r, str(mine), "notes.txt", "not a perphedge run's")
    assert (mine / "notes.txt").read_text() == "keep me"
    if os.geteuid() != 0:  # root writes anywhere; the check then cannot be exercised
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        r = run_cli("backtest", str(run), "--out", str(ro / "out"), home=store_home)
        _one_line_error(r, "read-only")


def test_kill_9_never_leaves_a_mixed_folder(store_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = _write_run(tmp_path / "old.yaml")
    new = _write_run(tmp_path / "new.yaml", policy="{kind: static, ratio: 0.8, band: 0.10}")
    env = dict(os.environ, PERPHEDGE_HOME=str(store_home), COLUMNS="150")
    r = run_cli("backtest", str(new), "--out", str(tmp_path / "probe"), home=store_home)
    assert r.returncode == 0, r.stderr
    new_hash = _folder_state(tmp_path / "probe")
    t0 = time.monotonic()
    r = run_cli("backtest", str(old), "--out", str(out), home=store_home)
    duration = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    old_hash = _folder_state(out)
    assert old_hash and new_hash and old_hash != new_hash
    shutil.copytree(out, tmp_path / "pristine")
    rng = random.Random(9)
    seen = set()
    for _ in range(8):
        if _folder_state(out) != old_hash:  # put the old run back for the next trial
            shutil.rmtree(out)
            shutil.copytree(tmp_path / "pristine", out)
        proc = subprocess.Popen(
            [PERPHEDGE, "backtest", str(new), "--out", str(out)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.5, 1.4) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = _folder_state(out)
        assert state in (old_hash, new_hash)
        seen.add(state)
    # a later run cleans whatever a killed one left beside the folder
    assert run_cli("backtest", str(new), "--out", str(out), home=store_home).returncode == 0
    assert _folder_state(out) == new_hash
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.perphedge-")]
    assert seen <= {old_hash, new_hash}


# ------------------------------------------------------------------------------------------ flat market


def test_a_flat_market_reports_undefined_ratios_as_null(tmp_path: Path) -> None:
    store = _flat_store(tmp_path)
    pf = tmp_path / "pf.yaml"
    pf.write_text("holdings:\n  - {asset: SOL, value_usd: 10000}\n  - {asset: USDT, quantity: 1000}\n")
    run = tmp_path / "flat.yaml"
    run.write_text(
        f"portfolio: {pf}\nstart: 2021-06-01\nend: 2022-06-30\n"
        "hedge: {instrument: binance:BTCUSDT, leverage: 2, collateral: stable, method: min_variance}\n"
        "policy: {kind: beta, ratio: 0.5, window_days: 60}\n"
    )
    out = tmp_path / "out"
    r = run_cli("backtest", str(run), "--store", str(store), "--out", str(out), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["hedge_effectiveness"] is None
    assert doc["unhedged"]["sharpe"] is None and doc["unhedged"]["sortino"] is None
    assert doc["unhedged"]["volatility"] == 0 and doc["unhedged"]["total_return"] == 0
    assert doc["upside_capture"] is None and doc["downside_capture"] is None
    # no variance, no β: every bar's β = 1 stand-in is stated, compressed into one entry
    fb = doc["policy_fallbacks"]
    assert len(fb) == 1 and fb[0]["days"] == doc["days"] and "no β estimate of SOL" in fb[0]["reason"]
    assert fb[0]["ratio_used"] == 0.5
    html = (out / "report.html").read_text()
    assert ("HE n/a" in html or "HE n\\u002fa" in html) and "no β estimate of SOL" in html
    r = run_cli("backtest", str(run), "--store", str(store), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "hedge effectiveness -" in r.stdout and "Policy fallbacks (1)" in r.stdout


def test_fallbacks_reach_the_result_table_and_report(store_home: Path, tmp_path: Path) -> None:
    run = _write_run(
        tmp_path / "vol.yaml",
        policy="{kind: volatility, ratio: 0.3, vol_days: 30, bands: [{max_vol: 0.4, ratio: 0.2}, "
        "{max_vol: 0.8, ratio: 0.5}]}",
    )
    out = tmp_path / "out"
    r = run_cli("backtest", str(run), "--out", str(out), home=store_home)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "result.json").read_text())
    reasons = [f["reason"] for f in doc["policy_fallbacks"]]
    assert reasons[0].startswith("volatility window of 30 bars not yet full")
    assert doc["policy_fallbacks"][0]["from"] == "2021-01-01" and doc["policy_fallbacks"][0]["days"] == 30
    assert any("above the last band (80%)" in x for x in reasons)  # 2021 was wilder than 80% a year
    assert all(f["ratio_used"] == 0.3 for f in doc["policy_fallbacks"])
    assert "Policy fallbacks" in r.stdout and "above the last band" in r.stdout
    html = (out / "report.html").read_text()
    assert f"Policy fallbacks ({len(reasons)})" in html
    # a static policy has none, and says so
    r = run_cli("backtest", str(_write_run(tmp_path / "s.yaml")), "--out", str(out), home=store_home)
    assert json.loads((out / "result.json").read_text())["policy_fallbacks"] == []
    assert "Policy fallbacks" not in r.stdout and "Policy fallbacks (0)" in (out / "report.html").read_text()


# ------------------------------------------------------------------------------------------ sweeps


def _grid(tmp_path: Path, body: str, name: str = "grid.yaml") -> Path:
    base = _write_run(tmp_path / "base.yaml")
    path = tmp_path / name
    path.write_text(f"base: {base}\n{body}")
    return path


def test_sweep_size_is_bounded_up_front(store_home: Path, tmp_path: Path) -> None:
    grid = _grid(tmp_path, "grid:\n  policy.ratio: [0.1, 0.2, 0.3]\n  policy.band: [0.05, 0.1, 0.2]\n")
    t0 = time.monotonic()
    r = run_cli("sweep", str(grid), "--max-configs", "8", home=store_home)
    _one_line_error(r, "9 combinations", "--max-configs 8")
    assert time.monotonic() - t0 < 20
    big = _grid(tmp_path, "grid:\n" + "".join(f"  policy.x{i}: {list(range(10))}\n" for i in range(5)), "big.yaml")
    r = run_cli("sweep", str(big), home=store_home)
    _one_line_error(r, "100,000 combinations", "--max-configs 10,000")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("top: '3'\n", "field `top`: must be a whole number >= 1, was '3'"),
        ("top: true\n", "field `top`"),
        ("top: 0\n", "field `top`"),
        ("top: 2.5\n", "field `top`"),
        ("descending: 'no'\n", "field `descending`: must be true or false, was 'no'"),
        ("descending: 1\n", "field `descending`"),
        ("rank_by: 3\n", "field `rank_by`"),
        ("rank_by: hedged.shrape\n", "unknown metric 'hedged.shrape'"),
    ],
)
def test_sweep_options_of_the_wrong_type_are_refused(store_home: Path, tmp_path: Path, body: str, needle: str) -> None:
    grid = _grid(tmp_path, "grid:\n  policy.ratio: [0.25, 0.5]\n" + body)
    _one_line_error(run_cli("sweep", str(grid), home=store_home), needle)


def test_sweep_failures_are_counted_and_all_failing_exits_1(store_home: Path, tmp_path: Path) -> None:
    some = _grid(tmp_path, "grid:\n  hedge.leverage: [2, 500]\n")
    out = tmp_path / "s" / "sweep.json"
    r = run_cli("sweep", str(some), "--workers", "1", "--out", str(out), home=store_home)
    assert r.returncode == 0, r.stderr
    assert "1 of 2 configurations failed" in r.stdout and "above the" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["succeeded"] == 1 and doc["failed_count"] == 1 and len(doc["failed"]) == 1
    assert not [p for p in out.parent.iterdir() if p.name != "sweep.json"]  # no temporary left
    allbad = _grid(tmp_path, "grid:\n  hedge.leverage: [300, 500]\n", "bad.yaml")
    r = run_cli("sweep", str(allbad), "--workers", "1", "--format", "json", "--out", str(out), home=store_home)
    assert r.returncode == 1
    assert "all 2 configurations failed" in r.stderr
    doc = json.loads(r.stdout)
    assert doc["succeeded"] == 0 and doc["failed_count"] == 2
    assert json.loads(out.read_text())["failed_count"] == 2  # written even so
    r = run_cli("sweep", str(some), "--out", str(tmp_path), home=store_home)
    _one_line_error(r, str(tmp_path), "is a directory")


def _children(pid: int) -> set[int]:
    kids = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.add(int(d.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc for the process tree")
def test_sweep_workers_die_with_a_killed_parent(store_home: Path, tmp_path: Path) -> None:
    # 2,000 five-year runs in chunks of 125: each worker is busy for several seconds when its parent is killed, so
    # only the death signal (not a failed write of its chunk's results) can stop it within 2 s
    base = _write_run(tmp_path / "long.yaml", end="2025-12-31")
    ratios = [round(float(x), 3) for x in np.linspace(0.05, 1, 50)]
    bands = [round(float(x), 3) for x in np.linspace(0.01, 0.4, 40)]
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"base: {base}\ngrid:\n  policy.ratio: {ratios}\n  policy.band: {bands}\n")
    env = dict(os.environ, PERPHEDGE_HOME=str(store_home))
    proc = subprocess.Popen(
        [PERPHEDGE, "sweep", str(grid), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: set[int] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(workers) < 2:
        workers = _children(proc.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "the sweep never started its workers"
    time.sleep(1.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.05)
    left = [w for w in workers if _alive(w)]
    for w in left:  # do not leave them running if the assertion fails
        os.kill(w, signal.SIGKILL)
    assert not left, f"orphaned workers: {left}"


def _init_with_wrong_parent() -> None:
    from perphedge.usecases.sweep import _worker_init

    _worker_init(-1)  # the recorded parent is gone: the worker must exit at once
    time.sleep(30)


def test_a_worker_whose_parent_is_gone_exits() -> None:
    import multiprocessing as mp

    proc = mp.get_context("fork").Process(target=_init_with_wrong_parent)
    t0 = time.monotonic()
    proc.start()
    proc.join(10)
    assert proc.exitcode == 1 and time.monotonic() - t0 < 10


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--max-configs", "0"), "invalid value for --max-configs: must be >= 1, was '0'"),
        (("--workers", "0"), "invalid value for --workers: must be >= 1, was '0'"),
    ],
)
def test_sweep_limits_must_be_positive(store_home: Path, tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    grid = _grid(tmp_path, "grid:\n  policy.ratio: [0.25, 0.5]\n")
    _one_line_error(run_cli("sweep", str(grid), *args, home=store_home), needle)
