"""The JSON API answers with the CLI's own documents (byte for byte for plan and calc) and the CLI's own one-line
refusals (issue 12, item 1)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.web.conftest import home, init_paper_book

YAML = {"Content-Type": "application/yaml"}


def cli(*args: str, cwd: Path) -> Any:
    r = run_cli(*args, home=home(), cwd=cwd)
    return r


def cli_error(*args: str, cwd: Path) -> str:
    r = cli(*args, cwd=cwd)
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-500:])
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("perphedge: error: ")
    return line.removeprefix("perphedge: error: ")


@pytest.mark.parametrize(
    "flags",
    [
        (),
        ("--ratio", "0.5"),
        ("--leverage", "3", "--collateral", "buy"),
        ("--instrument", "direct:binance:linear"),
        ("--compare",),
        ("--scenario", "crash:BTC=-15%,*=-20%", "--drift", "BTC=+20%"),
        ("--funding-rate-8h", "0.0002", "--method", "notional"),
    ],
)
def test_post_plan_is_byte_for_byte_the_cli(
    served: Path, make_client: Callable[..., Any], flags: tuple[str, ...]
) -> None:
    rel = "examples/altcoins.yaml"
    want = cli("plan", rel, *flags, "--format", "json", cwd=served)
    assert want.returncode == 0, want.stderr
    q: list[tuple[str, str]] = [("source", rel)]
    it = iter(flags)
    for flag in it:
        name = flag.removeprefix("--").replace("-", "_")
        q.append((name, "true") if name == "compare" else (name, next(it)))
    c = make_client()
    r = c.post("/api/plan", params=q, content=(served / rel).read_bytes(), headers=YAML)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.content == want.stdout.encode()


@pytest.mark.parametrize("name", ["btc-eth-60pct.yaml", "core-satellite.yaml", "defi-lp-v3.yaml", "beta-basket.yaml"])
def test_get_plan_of_a_served_file_is_the_cli(served: Path, make_client: Callable[..., Any], name: str) -> None:
    path = served / "examples" / name
    want = cli("plan", str(path), "--format", "json", cwd=served)
    assert want.returncode == 0, want.stderr
    r = make_client().get("/api/plan", params={"file": f"examples/{name}"})
    assert r.status_code == 200, r.text
    assert r.text == want.stdout


BAD_FILES = [
    "holdings: [{asset: SOL, value_usd: 5000}]\nhedge: {instrument: binance:BTCUSD_PERP, leverage: 0.5}\n",
    "prices: {SOL: 150, SOL: 1}\nholdings: [{asset: SOL, value_usd: 5000}]\n",
    "holdings: [{asset: SOL, value_usd: -5}]\nprices: {SOL: 150}\n",
    "holdings: [{asset: SOL, value_usd: .nan}]\nprices: {SOL: 150}\n",
    "holdings: [{asset: SOL, value_usd: 5000}]\nprices: {SOL: 150}\nsurprise: 1\n",
    "holdings: {asset: SOL}\n",
    "- just\n- a list\n",
    "holdings: [\n",
    "# only a comment\n",
    "   \n",
    "holdings: [{asset: SOL, value_usd: 5000}]\nprices: {SOL: 150}\nhedge: {ratio: 7}\n",
    "holdings: [{asset: SOL, value_usd: 5000}]\nprices: {SOL: 150}\nhedge: {instrument: nowhere:XYZ}\n",
]


@pytest.mark.parametrize("text", BAD_FILES)
def test_a_bad_portfolio_is_refused_with_the_cli_line(
    tmp_path: Path, make_client: Callable[..., Any], text: str
) -> None:
    (tmp_path / "portfolio.yaml").write_text(text, encoding="utf-8")
    want = cli_error("plan", "portfolio.yaml", "--format", "json", cwd=tmp_path)
    r = make_client().post("/api/plan", content=text.encode(), headers=YAML)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == want
    assert "Traceback" not in r.text


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("ratio", "abc"),
        ("ratio", "nan"),
        ("ratio", "inf"),
        ("ratio", "3"),
        ("ratio", "-0.1"),
        ("leverage", "0.5"),
        ("leverage", "x"),
        ("collateral", "gold"),
        ("method", "magic"),
        ("funding-rate-8h", "1"),
        ("scenario", "crash:BTC=-150%"),
        ("scenario", "nonsense"),
        ("drift", "BTC=20"),
        ("as-of", "2024-13-01"),
        ("as-of", "01/02/2024"),
        ("window", "7x"),
        ("instrument", "nowhere:XYZ"),
    ],
)
def test_a_bad_flag_is_refused_with_the_cli_line_and_names_its_field(
    served: Path, make_client: Callable[..., Any], flag: str, value: str
) -> None:
    rel = "examples/altcoins.yaml"
    want = cli_error("plan", rel, f"--{flag}", value, "--format", "json", cwd=served)
    r = make_client().get("/api/plan", params={"file": rel, flag.replace("-", "_"): value})
    assert r.status_code == 422, r.text
    got = r.json()
    # the file name in a message about the file is the path the API resolved (the CLI's is the one typed)
    assert got["error"].replace(str(served / rel), rel) == want
    assert got["field"] in (flag.replace("-", "_"), None) or "." in (got["field"] or "")


@pytest.mark.parametrize(
    "args",
    [
        ("--instrument", "binance:BTCUSD_PERP", "--side", "short", "--contracts", "100", "--entry", "60000",
         "--leverage", "2"),
        ("--instrument", "bybit:BTCUSD", "--side", "short", "--contracts", "60000", "--entry", "50000", "--leverage",
         "10", "--mmr", "0.005", "--method", "mm_on_entry_value", "--exit", "45000"),
        ("--instrument", "binance:BTCUSDT", "--side", "long", "--contracts", "0.5", "--entry", "60000", "--leverage",
         "5", "--margin-mode", "cross", "--wallet-balance", "20000"),
    ],
)  # fmt: skip
def test_calc_is_byte_for_byte_the_cli(tmp_path: Path, make_client: Callable[..., Any], args: tuple[str, ...]) -> None:
    want = cli("calc", *args, "--format", "json", cwd=tmp_path)
    assert want.returncode == 0, want.stderr
    q = {args[i].removeprefix("--").replace("-", "_"): args[i + 1] for i in range(0, len(args), 2)}
    c = make_client()
    r = c.get("/api/calc", params=q)
    assert r.status_code == 200, r.text
    assert r.text == want.stdout
    r2 = c.post("/api/calc", json=q)
    assert r2.text == want.stdout


@pytest.mark.parametrize(
    ("name", "value"),
    [("contracts", "abc"), ("entry", "nan"), ("leverage", "inf"), ("contracts", "-5"), ("entry", "0"),
     ("leverage", "0.5"), ("side", "sideways"), ("instrument", "nope:NOPE")],
)  # fmt: skip
def test_calc_refusals_are_the_cli_lines(
    tmp_path: Path, make_client: Callable[..., Any], name: str, value: str
) -> None:
    base = {"instrument": "binance:BTCUSD_PERP", "side": "short", "contracts": "100", "entry": "60000"}
    base[name] = value
    args = [x for k, v in base.items() for x in (f"--{k}", v)]
    want = cli_error("calc", *args, "--format", "json", cwd=tmp_path)
    r = make_client().get("/api/calc", params=base)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == want


def test_calc_missing_options_are_refused(make_client: Callable[..., Any]) -> None:
    c = make_client()
    for missing in ("instrument", "side", "contracts", "entry"):
        q = {"instrument": "binance:BTCUSD_PERP", "side": "short", "contracts": "1", "entry": "60000"}
        del q[missing]
        r = c.get("/api/calc", params=q)
        assert r.status_code == 422
        assert r.json()["error"] == f"`perphedge calc` needs the option --{missing}"
        assert r.json()["field"] == missing


def test_post_plan_refuses_binary_and_wrong_content_types(make_client: Callable[..., Any]) -> None:
    c = make_client()
    r = c.post("/api/plan", content=b"holdings: []", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "application/yaml" in r.json()["error"]
    r = c.post("/api/plan", content=b"\xff\xfe\x00bad", headers=YAML)
    assert r.status_code == 422 and "not a text file" in r.json()["error"]
    r = c.post("/api/plan", content=b"holdings: [{asset: SOL\x00}]", headers=YAML)
    assert r.status_code == 422 and "NUL" in r.json()["error"]
    r = c.post("/api/plan", content=b"", headers=YAML)
    assert r.status_code == 422 and "is empty" in r.json()["error"]
    r = c.post("/api/plan", content=b"x: 1\n" * 300_000, headers=YAML)
    assert r.status_code == 413


def test_plan_source_is_a_plain_label(make_client: Callable[..., Any], served: Path) -> None:
    body = (served / "examples" / "altcoins.yaml").read_bytes()
    c = make_client()
    for bad in ("/etc/passwd", "../x.yaml", "a\nb", "x" * 400):
        r = c.post("/api/plan", params={"source": bad}, content=body, headers=YAML)
        assert r.status_code == 422, bad
    r = c.post("/api/plan", params={"source": "mine.yaml"}, content=body, headers=YAML)
    assert r.json()["source"] == "mine.yaml"


def test_book_status_and_journal_are_the_cli_documents(tmp_path: Path, make_client: Callable[..., Any]) -> None:
    book = init_paper_book(tmp_path)
    r = cli("book", "rebalance", str(book), "--execute", "--yes", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    c = make_client(books=(book,))
    got = c.get("/api/book/paper")
    assert got.status_code == 200, got.text
    want = json.loads(cli("book", "status", str(book), "--format", "json", cwd=tmp_path).stdout)
    doc = got.json()
    for volatile in ("as_of",):
        doc.pop(volatile), want.pop(volatile)
    doc["feed"].pop("age_s"), want["feed"].pop("age_s")
    doc["feed"].pop("last_price_ms"), want["feed"].pop("last_price_ms")
    assert doc == want
    journal = c.get("/api/book/paper/journal", params={"limit": "1000"}).json()
    assert journal == json.loads(cli("book", "journal", str(book), "--format", "json", cwd=tmp_path).stdout)
    assert c.get("/api/book/nope").status_code == 404
    assert c.get("/api/book/paper/journal", params={"limit": "x"}).status_code == 422
    assert c.get("/api/book/paper/journal", params={"limit": "0"}).status_code == 422
    for digits in ("\u00b2", "\u0661\u0662", "\uff15"):  # str.isdigit() but not ASCII: was a 500 (int('²'))
        r = c.get("/api/book/paper/journal", params={"limit": digits})
        assert r.status_code == 422 and "--limit" in r.json()["error"], r.text
    v1 = c.get("/api/book/paper/version").json()["version"]
    assert c.get("/api/book/paper/version").json()["version"] == v1  # reading changes nothing
    assert cli("book", "halt", str(book), cwd=tmp_path).returncode == 0
    assert c.get("/api/book/paper/version").json()["version"] != v1


@pytest.mark.sample_data
def test_backtest_runs_the_cli_use_case_and_lists_it(
    served: Path, make_client: Callable[..., Any], sample_store_path: Path, tmp_path: Path
) -> None:
    run = "runs/altcoins-inverse-buy.yaml"
    c = make_client(store=str(sample_store_path))
    r = c.post("/api/backtest", json={"run": run})
    assert r.status_code == 403  # state-changing: needs the page's CSRF token
    csrf = c.app.state.guard.csrf_token(None)  # type: ignore[attr-defined]
    r = c.post("/api/backtest", json={"run": run}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    got = r.json()
    want = cli(
        "backtest", str(served / run), "--store", str(sample_store_path), "--out", str(tmp_path / "cli"),
        "--format", "json", cwd=served,
    )  # fmt: skip
    assert want.returncode == 0, want.stderr
    expected = json.loads(want.stdout)
    assert {k: v for k, v in got.items() if k != "files"} == {k: v for k, v in expected.items() if k != "files"}
    listed = c.get("/api/backtest/results").json()["results"]
    assert [x["name"] for x in listed] == ["altcoins-inverse-buy"]
    assert listed[0]["config_hash"] == expected["config_hash"]
    assert c.get("/api/backtest/results/altcoins-inverse-buy").json()["config_hash"] == expected["config_hash"]
    rep = c.get("/api/backtest/results/altcoins-inverse-buy/report.html")
    assert rep.status_code == 200 and rep.headers["content-type"].startswith("text/html")
    for bad in ("../x", "..", "nope", "%2e%2e"):
        assert c.get(f"/api/backtest/results/{bad}").status_code in (404, 405, 422)
    r = c.post("/api/backtest", json={"run": "runs/nope.yaml"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 422 and r.json()["error"] == "invalid `run`: no file 'runs/nope.yaml' in the served folders"


@pytest.mark.sample_data
def test_stress_is_the_cli_document(served: Path, make_client: Callable[..., Any], sample_store_path: Path) -> None:
    rel = "examples/altcoins.yaml"
    flags = {"paths": "500", "horizon": "30d", "leverage": "1,2,3", "seed": "7"}
    args = [x for k, v in flags.items() for x in (f"--{k}", v)]
    want = cli("stress", rel, *args, "--store", str(sample_store_path), "--format", "json", cwd=served)
    assert want.returncode == 0, want.stderr
    c = make_client(store=str(sample_store_path))
    r = c.get("/api/stress", params={"file": rel, **flags})
    assert r.status_code == 200, r.text
    got, expected = r.json(), json.loads(want.stdout)
    assert got["source"] == str(served / rel) and expected["source"] == rel
    got.pop("source"), expected.pop("source")
    assert got == expected
    h = c.get("/api/stress", params={"file": rel, **flags, "histogram": "1"}).json()["histogram"]
    assert sum(h["hedged"]) == sum(h["unhedged"]) == 500 and len(h["edges_usd"]) == 61
    bad = c.get("/api/stress", params={"file": rel, "leverage": "1,,2"})
    assert bad.status_code == 422 and "empty item" in bad.json()["error"]
    assert c.get("/api/stress", params={"file": rel, "paths": "1e3"}).status_code == 422


@pytest.mark.sample_data
def test_data_status_check_and_import_are_the_cli_documents(
    make_client: Callable[..., Any], sample_store_path: Path, tmp_path: Path
) -> None:
    c = make_client(store=str(sample_store_path))
    for what in ("status", "check"):
        r = cli("data", what, "--store", str(sample_store_path), "--format", "json", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        got = c.get(f"/api/data/{what}")
        assert got.status_code == 200, got.text
        assert got.json() == json.loads(r.stdout), (what, got.text[:2000], r.stdout[:2000])
    empty = make_client(store=str(tmp_path / "new.duckdb"))
    r = empty.get("/api/data/status")
    assert r.status_code == 400 and "no market store" in r.json()["error"]
    csrf = empty.app.state.guard.csrf_token(None)  # type: ignore[attr-defined]
    assert empty.post("/api/data/import-sample").status_code == 403
    r = empty.post("/api/data/import-sample", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert r.json()["schema"] == "perphedge.data-import/1"
    assert empty.get("/api/data/status").json()["series"]


def test_openapi_page_lists_every_route_and_loads_nothing_from_outside(make_client: Callable[..., Any]) -> None:
    c = make_client()
    spec = c.get("/openapi.json").json()
    for path in ("/api/plan", "/api/calc", "/api/book/{name}", "/api/backtest", "/api/stress", "/api/data/status"):
        assert path in spec["paths"]
    page = c.get("/docs").text
    assert "/api/plan" in page and "http://" not in page.replace("http://127.0.0.1:8765", "")
    assert "https://" not in page


@pytest.mark.parametrize(
    ("method", "url", "body", "status"),
    [
        ("POST", "/api/calc", "{bad json", 422),
        ("POST", "/api/calc", "[1, 2]", 422),
        ("POST", "/api/calc", "\xff", 422),
        ("GET", "/api/nope", None, 404),
        ("DELETE", "/api/plan", None, 405),
        ("GET", "/api/book/..%2f..%2fetc", None, 404),
        ("GET", "/api/plan?file=examples/altcoins.yaml&ratio=1&ratio=2", None, 422),
        ("GET", "/api/plan?file=examples/altcoins.yaml&compare=maybe", None, 422),
        ("GET", "/api/plan?file=examples/altcoins.yaml&as_of=2099-01-01", None, 422),
        ("GET", "/api/plan", None, 422),
        ("GET", "/api/plan?file=runs/grid.yaml", None, 422),
        ("GET", "/api/stress?file=examples/altcoins.yaml&paths=0", None, 422),
        ("GET", "/api/stress?file=examples/altcoins.yaml&seed=-1&paths=100", None, 422),
        ("GET", "/api/stress?file=examples/altcoins.yaml&sigma=nan", None, 422),
    ],
)
def test_every_refusal_is_one_json_line(
    make_client: Callable[..., Any], method: str, url: str, body: str | None, status: int
) -> None:
    c = make_client()
    r = c.request(method, url, content=body, headers={"Content-Type": "application/json"} if body else {})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err and "\n" not in err and "Traceback" not in r.text


def test_a_bad_content_length_is_refused(make_client: Callable[..., Any]) -> None:
    r = make_client().get("/api/files", headers={"Content-Length": "abc"})
    assert r.status_code == 400 and r.json()["error"] == "invalid Content-Length 'abc'"


@pytest.mark.sample_data
def test_a_sweeps_ranking_is_listed(
    served: Path, make_client: Callable[..., Any], sample_store_path: Path, tmp_path: Path
) -> None:
    grid = served / "runs" / "small-grid.yaml"
    grid.write_text("base: altcoins-50pct.yaml\ngrid:\n  policy.ratio: [0.5, 1.0]\nrank_by: hedged.sharpe\n")
    out = tmp_path / "results"
    r = cli(
        "sweep", str(grid), "--workers", "1", "--store", str(sample_store_path), "--out", str(out / "sweep.json"),
        "--format", "json", cwd=served,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    written = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    listed = make_client(out=out).get("/api/backtest/results").json()["sweeps"]
    assert [s["file"] for s in listed] == ["sweep.json"]
    assert listed[0]["top"] == written["top"] and len(written["top"]) == 2


def test_a_yaml_bomb_is_refused_fast(make_client: Callable[..., Any]) -> None:
    """Billion laughs: 600 bytes whose aliases expand to 387 million values held the server for ~3 minutes."""
    import time

    from perphedge.errors import ConfigError
    from perphedge.files import load_yaml_text

    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb = "\n".join(lines) + "\n"
    t0 = time.monotonic()
    r = make_client().post("/api/plan", content=bomb.encode(), headers=YAML)
    assert r.status_code == 422 and "YAML bomb" in r.json()["error"], r.text
    assert time.monotonic() - t0 < 10
    with pytest.raises(ConfigError, match="expand it to more than"):
        load_yaml_text(bomb, "bomb.yaml")
    # a file that uses aliases modestly still loads (and one alias of a small list is not a bomb)
    doc = load_yaml_text("base: &b [1, 2, 3]\ncopy: *b\n", "ok.yaml")
    assert doc["copy"] == [1, 2, 3]
