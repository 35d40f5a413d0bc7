"""`analyze` uses exactly the requested window; the listing week is skipped only after a real listing.

And a flat market (zero variance) gives undefined statistics (null / —), never a crash, in analyze and stress.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from perphedge.data.store import MarketStore
from perphedge.errors import DataError
from perphedge.usecases.analyze import LISTING_SKIP_DAYS, AnalyzeRequest, analyze, listings, run_analyze, simple_returns
from tests.conftest import run_cli


def candles(symbol: str, start: str, end: str, closes: np.ndarray | float, spread: float = 0.01) -> pd.DataFrame:
    ts = pd.date_range(start, end, freq="D")
    c = np.broadcast_to(np.asarray(closes, dtype=float), (len(ts),)).copy()
    return pd.DataFrame(
        {
            "source": "binance",
            "symbol": symbol,
            "timeframe": "1d",
            "ts": ts,
            "open": c,
            "high": c * (1 + spread),
            "low": c * (1 - spread),
            "close": c,
            "volume": 1.0,
        }
    )


def walk(n: int, seed: int, vol: float = 0.03, start: float = 100.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return start * np.exp(np.cumsum(rng.normal(0, vol, n)))


def days(a: str, b: str) -> int:
    return (pd.Timestamp(b) - pd.Timestamp(a)).days + 1


@pytest.fixture(scope="module")
def listed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BTC from 2019, OLD (listed 2020-01-01, long before the window), NEW (listed 2021-03-10, inside it)."""
    path = tmp_path_factory.mktemp("listed") / "m.duckdb"
    btc = walk(days("2019-01-01", "2022-06-30"), 1)
    old = walk(days("2020-01-01", "2022-06-30"), 2)
    new = walk(days("2021-03-10", "2022-06-30"), 3)
    with MarketStore(path) as store:
        store.upsert("candles", candles("BTC/USDT", "2019-01-01", "2022-06-30", btc))
        store.upsert("candles", candles("OLD/USDT", "2020-01-01", "2022-06-30", old))
        store.upsert("candles", candles("NEW/USDT", "2021-03-10", "2022-06-30", new))
    return path


def test_listings_are_the_first_stored_days(listed_store: Path) -> None:
    with MarketStore(listed_store, read_only=True) as store:
        first = listings(store, ["BTC", "OLD", "NEW"])
    assert {k: str(v.date()) for k, v in first.items()} == {
        "BTC": "2019-01-01",
        "OLD": "2020-01-01",
        "NEW": "2021-03-10",
    }


@pytest.mark.parametrize(
    ("since", "until"), [("2021-01-01", "2021-12-31"), ("2020-06-15", "2020-09-30"), ("2021-02-01", "2021-02-01")]
)
def test_a_window_long_after_listing_uses_every_day(listed_store: Path, since: str, until: str) -> None:
    with MarketStore(listed_store, read_only=True) as store:
        rets = simple_returns(store, ["OLD", "BTC"], since, until)
    assert str(rets.index[0].date()) == since and str(rets.index[-1].date()) == until
    assert rets["OLD"].notna().sum() == days(since, until)  # nothing dropped at the start of the window
    assert rets["BTC"].notna().sum() == days(since, until)


@pytest.mark.parametrize("since", ["2021-01-01", "2021-03-10", "2021-03-14", None])
def test_an_asset_listed_in_the_window_skips_exactly_the_listing_week(listed_store: Path, since: str | None) -> None:
    with MarketStore(listed_store, read_only=True) as store:
        rets = simple_returns(store, ["NEW", "BTC"], since, "2021-12-31")
    first_used = pd.Timestamp("2021-03-10", tz="UTC") + pd.Timedelta(days=LISTING_SKIP_DAYS + 1)
    got = rets["NEW"].dropna()
    assert got.index[0] == first_used  # returns dated listing+1 … listing+7 are skipped, not one more
    assert len(got) == days(str(first_used.date()), "2021-12-31")


def test_analyze_counts_the_observations_of_the_window(listed_store: Path) -> None:
    req = AnalyzeRequest(
        assets=("OLD", "NEW"),
        since="2021-01-01",
        until="2022-06-30",
        window_days=60,
        factors=(),
        funding=False,
        store_path=str(listed_store),
    )
    doc = run_analyze(req)
    by = {a["asset"]: a for a in doc["assets"]}
    assert by["OLD"]["n_days"] == days("2021-01-01", "2022-06-30")
    assert by["OLD"]["first"] == "2021-01-01" and by["OLD"]["last"] == "2022-06-30"
    assert by["NEW"]["first"] == "2021-03-18"
    assert by["NEW"]["n_days"] == days("2021-03-18", "2022-06-30")


def test_until_before_since_is_refused(listed_store: Path) -> None:
    r = run_cli(
        "analyze", "--assets", "OLD", "--since", "2021-06-01", "--until", "2021-01-01", "--store", str(listed_store)
    )
    assert r.returncode == 2 and "--until" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_sample_window_keeps_every_day(sample_store_path: Path) -> None:
    with MarketStore(sample_store_path, read_only=True) as store:
        doc = analyze(
            store,
            AnalyzeRequest(assets=("SOL", "ETH"), since="2022-01-01", until="2023-12-31", funding=False),
        )
    for a in doc["assets"]:
        assert a["first"] == "2022-01-01" and a["n_days"] == days("2022-01-01", "2023-12-31"), a["asset"]


# ------------------------------------------------------------------------------------------------ flat market


@pytest.fixture(scope="module")
def flat_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose BTC, SOL and ETH never move (zero variance), and AVAX which moves while BTC does not."""
    home = tmp_path_factory.mktemp("flat-home")
    n = days("2022-01-01", "2023-12-31")
    with MarketStore(home / "market.duckdb") as store:
        store.upsert("candles", candles("BTC/USDT", "2022-01-01", "2023-12-31", 60000.0, spread=0.0))
        store.upsert("candles", candles("SOL/USDT", "2022-01-01", "2023-12-31", 150.0, spread=0.0))
        store.upsert("candles", candles("ETH/USDT", "2022-01-01", "2023-12-31", 3000.0, spread=0.0))
        store.upsert("candles", candles("AVAX/USDT", "2022-01-01", "2023-12-31", walk(n, 5, start=30.0)))
    return home


def test_flat_market_analyze_reports_undefined(flat_home: Path) -> None:
    req = AnalyzeRequest(
        assets=("SOL", "AVAX"), since="2022-01-01", store_path=str(flat_home / "market.duckdb"), funding=False
    )
    doc = run_analyze(req)
    for a in doc["assets"]:
        assert a["beta"] is None and a["hedge_effectiveness"] is None and a["r2"] is None, a["asset"]
        assert a["downside_beta"] is None and a["stress_beta"] is None
        assert a["unhedgeable_variance"] is None
        oos = a["oos_hedge_effectiveness"]
        assert all(v is None for k, v in oos.items() if k != "naive")  # no ratio can be estimated
        assert "zero variance" in a["undefined"] and "BTC" in a["undefined"]
    # a ratio of 1 on a flat proxy is defined and removes nothing; on a flat asset HE is undefined
    assert {a["asset"]: a["oos_hedge_effectiveness"]["naive"] for a in doc["assets"]} == {"SOL": None, "AVAX": 0.0}
    sol = next(a for a in doc["assets"] if a["asset"] == "SOL")
    assert sol["unhedged_volatility"] == 0.0 and "SOL's returns have zero variance" in sol["undefined"]


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_flat_market_analyze_cli(flat_home: Path, fmt: str) -> None:
    r = run_cli("analyze", "--assets", "SOL,AVAX", "--since", "2022-01-01", "--format", fmt, home=flat_home)
    assert r.returncode == 0, r.stderr
    assert "None" not in r.stdout and "nan" not in r.stdout.lower().replace("nanc", "")
    if fmt == "json":
        doc = json.loads(r.stdout)
        assert doc["assets"][0]["beta"] is None and doc["basket"]["beta"] is None
    else:
        assert "zero variance" in r.stdout and "—" in r.stdout


@pytest.mark.parametrize("model", ["bootstrap", "gbm", "student_t"])
def test_flat_market_stress(flat_home: Path, tmp_path: Path, model: str) -> None:
    pf = tmp_path / "flat.yaml"
    pf.write_text(
        "name: flat\nprices: {BTC: 60000, SOL: 150}\nholdings:\n  - {asset: SOL, value_usd: 10000}\n"
        "hedge: {ratio: 1.0, instrument: binance:BTCUSDT, leverage: 3, collateral: stable}\n"
    )
    args = ("stress", str(pf), "--model", model, "--paths", "500", "--leverage", "2,3,5")
    r = run_cli(*args, "--format", "json", home=flat_home)
    assert r.returncode == 0, r.stderr
    mc = json.loads(r.stdout)["monte_carlo"]
    assert mc["unhedged"]["var_95_usd"] == pytest.approx(0, abs=1e-6)
    assert all(row["liquidation_probability"] == 0 for row in mc["liquidation"])
    assert mc["assumptions"]["volatility_annual"]["BTC"] == 0
    assert all(v is None for v in mc["assumptions"]["correlation"].values())
    t = run_cli(*args, home=flat_home)
    assert t.returncode == 0, t.stderr
    assert "None" not in t.stdout and "nonex" not in t.stdout


# ------------------------------------------------------------------------------------------------ inputs


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--assets", "BTC", "--proxy", "BTC"), ("--assets", "proxy")),
        (("--assets", "OLD,btc"), ("--assets", "BTC is also the proxy")),
        (("--assets", "OLD", "--since", "01/02/2021"), ("--since", "YYYY-MM-DD")),
        (("--assets", "OLD", "--since", "2021-13-01"), ("--since",)),
        (("--assets", "OLD", "--until", "yesterday"), ("--until",)),
        (("--assets", "OLD", "--since", "2021-06-01", "--until", "2021-01-01"), ("--since", "after `--until`")),
        (("--assets", "OLD", "--factors", "BTC,NOPE"), ("--factors", "NOPE")),
        (("--assets", "OLD", "--window", "0d"), ("--window",)),
        (("--assets", "OLD", "--horizon", "0d"), ("--horizon",)),
    ],
)
def test_analyze_refuses(listed_store: Path, args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    r = run_cli("analyze", *args, "--store", str(listed_store))
    assert r.returncode == 2, (r.stdout[-300:], r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("perphedge: error:") and "Traceback" not in r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_default_factors_are_those_the_store_has(listed_store: Path) -> None:
    """The store has no ETH: the default BTC,ETH factors use BTC alone; naming ETH is refused."""
    base = {"assets": ("OLD",), "since": "2021-01-01", "window_days": 60, "funding": False}
    doc = run_analyze(AnalyzeRequest(**base, store_path=str(listed_store)))  # type: ignore[arg-type]
    assert doc["assets"][0]["multi_factor"]["factors"] == ["BTC"]
    with pytest.raises(DataError, match=r"--factors.*ETH"):
        run_analyze(AnalyzeRequest(**base, factors=("BTC", "ETH"), store_path=str(listed_store)))  # type: ignore[arg-type]
