"""A real Dask LocalCluster of 2 workers: the same numbers as in-process, a killed worker changes nothing,
the CLI refuses a bad cluster in one line, and a killed sweep resumes from its Parquet dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from perphedge.usecases.engine import DaskEngine, Engine, InProcessEngine
from tests.conftest import REPO, run_cli

PERPHEDGE = str(Path(sys.executable).parent / "perphedge")
BTC_ETH = str(REPO / "examples" / "btc-eth-60pct.yaml")


@pytest.fixture(scope="module")
def cluster() -> Iterator[DaskEngine]:
    eng = DaskEngine("local", 2)
    try:
        yield eng
    finally:
        eng.close()


class KillOneWorker(Engine):
    """Passes batches to a Dask engine and kills one worker process (SIGKILL) after the first result."""

    def __init__(self, inner: DaskEngine) -> None:
        self.inner = inner
        self.workers = inner.workers
        self.killed: int | None = None

    def map_batches(self, fn: Any, batches: Iterable[Any], shared: Any) -> Iterator[tuple[int, Any]]:
        for item in self.inner.map_batches(fn, batches, shared):
            if self.killed is None:
                pids = self.inner.client.run(os.getpid)
                self.killed = sorted(pids.values())[0]
                os.kill(self.killed, signal.SIGKILL)
            yield item


def _mc(engine: Engine | None, paths: int = 60_000) -> dict[str, Any]:
    from perphedge.config import load_portfolio_file
    from perphedge.specs import default_registry
    from perphedge.usecases.montecarlo import monte_carlo
    from perphedge.usecases.plan import plan_portfolio

    pfile = load_portfolio_file(BTC_ETH)
    plan = plan_portfolio(pfile, source=BTC_ETH, registry=default_registry(None)).plan
    doc = monte_carlo(
        plan,
        None,
        model="gbm",
        paths=paths,
        horizon=60,
        seed=11,
        leverages=[2.0, 3.0, 5.0],
        sigma=0.7,
        correlation=0.6,
        engine=engine,
    )
    doc.pop("memory_estimate_bytes")
    hist = doc.pop("_histograms")
    doc["_hist"] = [list(map(list, h)) for h in hist.values() if h is not None]
    return doc


def test_monte_carlo_on_two_workers_equals_in_process(cluster: DaskEngine) -> None:
    local = _mc(InProcessEngine())
    dask = _mc(cluster)
    assert dask == local
    assert local["liquidation"] and 0 < local["by_leverage"]["5.0"]["any_leg"] < 1


def test_monte_carlo_survives_a_killed_worker_with_the_same_numbers(cluster: DaskEngine) -> None:
    killer = KillOneWorker(cluster)
    got = _mc(killer, paths=200_000)
    assert killer.killed is not None
    assert got == _mc(InProcessEngine(), paths=200_000)


def _grid(tmp_path: Path, n: int = 8) -> Path:
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        f"base: {REPO / 'runs' / 'altcoins-50pct.yaml'}\n"
        "grid:\n  policy.ratio: [0.5, 1.0]\n  hedge.leverage: [2, 3]\n"
        f"sample:\n  method: lhs\n  n: {n // 4}\n  seed: 3\n  ranges:\n    policy.band: [0.02, 0.3]\n"
        "rank_by: hedged.sharpe\ntop: 5\n"
    )
    return grid


def _sweep(grid: Path, store: Path, engine: Engine | None, **kw: Any) -> dict[str, Any]:
    from perphedge.specs import default_registry
    from perphedge.usecases.sweep import run_sweep

    return run_sweep(grid, store_path=str(store), registry=default_registry(None), engine=engine, **kw)


@pytest.mark.sample_data
def test_sweep_rows_on_two_workers_equal_in_process(
    cluster: DaskEngine, sample_store_path: Path, tmp_path: Path
) -> None:
    grid = _grid(tmp_path)
    local = _sweep(grid, sample_store_path, InProcessEngine(), batch=3)
    dask = _sweep(grid, sample_store_path, cluster, batch=3)
    assert local["configurations"] == 8 and local["succeeded"] == 8
    assert dask["all"] == local["all"]
    assert all(len(r["config_hash"]) == 64 for r in local["all"])
    # streamed to Parquet on the cluster, read back: the same rows and ranking
    ds = _sweep(grid, sample_store_path, cluster, batch=2, dataset=tmp_path / "ds")
    assert ds["top"] == local["top"] and ds["succeeded"] == 8 and ds["computed"] == 8


@pytest.mark.sample_data
def test_sweep_survives_a_killed_worker(cluster: DaskEngine, sample_store_path: Path, tmp_path: Path) -> None:
    grid = _grid(tmp_path, 16)
    killer = KillOneWorker(cluster)
    got = _sweep(grid, sample_store_path, killer, batch=1)
    assert killer.killed is not None
    assert got["all"] == _sweep(grid, sample_store_path, InProcessEngine())["all"]


# ------------------------------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--cluster", "tcp://127.0.0.1:9"], "could not reach the Dask scheduler at tcp://127.0.0.1:9"),
        (["--cluster", "nowhere"], "must be local or a Dask scheduler address"),
        (["--cluster", "tcp://host:70000"], "must be local or a Dask scheduler address"),
        (["--cluster", "local", "--workers", "0"], "--workers"),
        (["--workers", "-3"], "--workers"),
        (["--workers", "two"], "--workers"),
        (["--paths", "100000001"], "--paths"),
    ],
)
def test_stress_refuses_bad_engine_options_in_one_line(args: list[str], needle: str, tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = run_cli("stress", BTC_ETH, "--model", "gbm", "--sigma", "0.6", "--correlation", "0.5", *args, home=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("perphedge: error:") and needle in lines[0], r.stderr
    assert time.monotonic() - t0 < 60


def test_stress_on_a_local_cluster_matches_in_process(tmp_path: Path) -> None:
    base = ["stress", BTC_ETH, "--model", "gbm", "--sigma", "0.6", "--correlation", "0.5", "--paths", "30000"]
    a = run_cli(*base, "-f", "json", home=tmp_path)
    b = run_cli(*base, "--cluster", "local", "--workers", "2", "-f", "json", home=tmp_path)
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    da, db = json.loads(a.stdout), json.loads(b.stdout)
    assert da.pop("engine") == {"engine": "in-process", "workers": 1}
    assert db.pop("engine") == {"engine": "dask", "workers": 2, "cluster": "local"}
    for d in (da, db):
        d["monte_carlo"].pop("memory_estimate_bytes")
    assert da == db


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")
def test_local_cluster_workers_die_with_a_killed_perphedge(tmp_path: Path) -> None:
    cmd = [PERPHEDGE, "stress", BTC_ETH, "--model", "gbm", "--sigma", "0.6", "--correlation", "0.5"]
    cmd += ["--paths", "20000000", "--horizon", "365d", "--cluster", "local", "--workers", "2"]
    env = dict(os.environ, PERPHEDGE_HOME=str(tmp_path))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    kids: list[int] = []
    while time.monotonic() < deadline and len(kids) < 3:  # resource tracker + 2 workers
        kids = _children(proc.pid)
        time.sleep(0.1)
    assert len(kids) >= 3, "the local cluster never started"
    time.sleep(3)  # the workers are simulating
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.1)
    left = [k for k in kids if _alive(k)]
    for k in left:
        os.kill(k, signal.SIGKILL)
    assert not left, f"orphaned workers: {left}"


@pytest.mark.sample_data
def test_a_sweep_killed_midway_resumes_with_only_the_missing_rows(store_home: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    grid = tmp_path / "grid.yaml"
    grid.write_text(
        f"base: {REPO / 'runs' / 'altcoins-50pct.yaml'}\n"
        "sample:\n  method: random\n  n: 400\n  seed: 5\n  ranges:\n    policy.ratio: [0.2, 1.0]\n"
        "    policy.band: [0.02, 0.3]\n"
    )
    ds = tmp_path / "ds"
    env = dict(os.environ, PERPHEDGE_HOME=str(store_home))
    proc = subprocess.Popen(
        [PERPHEDGE, "sweep", str(grid), "--workers", "1", "--batch", "1", "--dataset", str(ds)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(ds.glob("part-*.parquet")) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {i for p in ds.glob("part-*.parquet") for i in pq.read_table(p).column("index").to_pylist()}
    assert 0 < len(first) < 400, "kill the sweep midway"
    r = run_cli("sweep", str(grid), "--workers", "2", "--dataset", str(ds), "-f", "json", home=store_home)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["resumed"] == len(first) and doc["computed"] == 400 - len(first) and doc["succeeded"] == 400
    parts = [pq.read_table(p) for p in ds.glob("part-*.parquet")]
    index = [i for t in parts for i in t.column("index").to_pylist()]
    assert sorted(index) == list(range(400))  # every configuration exactly once
    assert not list(ds.glob(".*.tmp"))
    # the resumed dataset ranks exactly like an uninterrupted in-memory run
    full = run_cli("sweep", str(grid), "--workers", "1", "-f", "json", home=store_home)
    assert json.loads(full.stdout)["top"] == doc["top"]
    # another grid in the same directory is refused before any work
    grid.write_text(grid.read_text().replace("seed: 5", "seed: 6"))
    r = run_cli("sweep", str(grid), "--dataset", str(ds), home=store_home)
    assert r.returncode == 2 and "holds a sweep of another grid" in r.stderr
