"""Book, Backtests, Stress, Data pages in real headless Chromium (issue 12, item 4): the book page updates itself
after a paper rebalance made by the CLI, a backtest runs from the page, the stress charts draw, the sample is
imported with one click."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, run_cli
from tests.web.browser import chromium, free_port, serve, shot, wait_changed, wait_until
from tests.web.conftest import home, init_paper_book


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def new_page(browser: Any) -> Any:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return page


def test_the_book_page_updates_itself_after_a_paper_rebalance(browser: Any, tmp_path: Path) -> None:
    from perphedge.web import WebConfig

    book = init_paper_book(tmp_path)
    cfg = WebConfig(port=free_port(), books=(book,), out=tmp_path / "out")
    with serve(cfg) as url:
        page = new_page(browser)
        page.goto(url + "/book")  # one book: redirected to it
        assert page.url.endswith("/book/paper")
        page.wait_for_selector("#achieved-ratio")
        assert page.inner_text("#achieved-ratio") == "0.000"
        first = page.locator("#legs-table tbody tr").first
        assert first.locator(".contracts").inner_text() == "0"  # the flat leg: no liquidation price yet
        assert "no liquidation price" in first.inner_text()
        seq = page.evaluate("document.body.dataset.bookSeq")
        r = run_cli("book", "rebalance", str(book), "--execute", "--yes", "--format", "json", home=home())
        assert r.returncode == 0, r.stderr
        done = time.monotonic()
        wait_changed(page, "bookSeq", seq, timeout_s=10)
        journal = json.loads(run_cli("book", "journal", str(book), "--format", "json", home=home()).stdout)
        last = journal[-1]["seq"]  # the page may have shown a row written midway: wait for the last one
        wait_until(page, f"document.body.dataset.bookSeq === '{last}'", timeout_s=10)
        latency = time.monotonic() - done
        want = json.loads(run_cli("book", "status", str(book), "--format", "json", home=home()).stdout)
        ratio = f"{want['hedge']['achieved_ratio']:.3f}"  # the status part may be drawn just after the journal
        wait_until(page, f"document.getElementById('achieved-ratio').textContent === '{ratio}'", timeout_s=10)
        (pos,) = want["accounts"][0]["positions"]
        row = page.locator("#legs-table tbody tr").first
        assert row.locator(".contracts").inner_text() == f"{pos['contracts']:,.0f}"
        level = row.locator(".bar").get_attribute("data-level")
        # the book's thresholds: amber below 30% (alert), red below 10% (limit); this leg is ~99% away
        assert pos["distance_to_liquidation"] > 0.3 and level == "green"
        kinds = page.locator("#journal-table tbody tr td:nth-child(3)").all_inner_texts()
        assert "fill" in kinds and "order_intent" in kinds
        assert latency < 5, latency  # generous here; benchmarks/bench_web.py measures it
        assert not page.errors, page.errors
        shot(page, "book")


def test_the_book_page_shows_amber_and_red_at_the_books_thresholds(browser: Any, tmp_path: Path) -> None:
    """The same leg (~99% from liquidation) with the alert threshold raised above it turns amber, and with the limit
    raised too, red: the bar follows the book file's own thresholds."""
    from perphedge.web import WebConfig

    book = init_paper_book(tmp_path)
    assert run_cli("book", "rebalance", str(book), "--execute", "--yes", home=home()).returncode == 0
    text = book.read_text(encoding="utf-8")
    for alert, limit, level in (("1.5", "0.1", "amber"), ("2.0", "1.5", "red")):
        book.write_text(
            text.replace("liquidation_distance_below: 0.3", f"liquidation_distance_below: {alert}").replace(
                "min_liquidation_distance: 0.1", f"min_liquidation_distance: {limit}"
            ),
            encoding="utf-8",
        )
        cfg = WebConfig(port=free_port(), books=(book,), out=tmp_path / "out")
        with serve(cfg) as url:
            page = new_page(browser)
            page.goto(url + "/book/paper")
            page.wait_for_selector("#legs-table .bar")
            assert page.locator("#legs-table .bar").first.get_attribute("data-level") == level


@pytest.mark.sample_data
def test_a_backtest_runs_from_the_page(browser: Any, tmp_path: Path, sample_store_path: Path) -> None:
    from perphedge.web import Folders, WebConfig

    root = tmp_path / "served"
    shutil.copytree(REPO / "examples", root / "examples")
    shutil.copytree(REPO / "runs", root / "runs")
    cfg = WebConfig(
        port=free_port(), runs=Folders.of((root,), "--runs"), out=tmp_path / "out", store=str(sample_store_path)
    )
    with serve(cfg) as url:
        page = new_page(browser)
        page.goto(url + "/backtests")
        assert "runs/altcoins-inverse-buy.yaml" in page.locator("#bt-run option").all_inner_texts()
        page.select_option("#bt-run", "runs/altcoins-inverse-buy.yaml")
        before = page.evaluate("document.body.dataset.backtestDone || ''")
        page.click("#bt-start")
        wait_changed(page, "backtestDone", before, timeout_s=180)
        want = json.loads((tmp_path / "out" / "altcoins-inverse-buy" / "result.json").read_text(encoding="utf-8"))
        cli = run_cli(
            "backtest", str(root / "runs" / "altcoins-inverse-buy.yaml"), "--store", str(sample_store_path),
            "--out", str(tmp_path / "cli"), "--format", "json", home=home(),
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["hedge_effectiveness"] == want["hedge_effectiveness"]
        assert page.inner_text("#bt-he") == f"{want['hedge_effectiveness']:.3f}"
        assert page.inner_text("#bt-rebalances") == str(want["rebalances"])
        assert page.locator("#results-table tbody tr").count() == 1
        frame = page.frame_locator("#bt-report")
        frame.locator(".main-svg").first.wait_for(timeout=60_000)  # the report's plotly charts drew inline
        assert not page.errors, page.errors
        shot(page, "backtests")
        # a refusal shows the use case's line beside the run picker
        page.evaluate(
            "() => { const o = document.createElement('option'); o.text = '../etc/passwd.yaml';"
            " document.getElementById('bt-run').add(o); }"
        )
        page.select_option("#bt-run", "../etc/passwd.yaml")
        before = page.evaluate("document.body.dataset.backtestDone || ''")
        page.click("#bt-start")
        wait_changed(page, "backtestDone", before)
        assert page.inner_text("#bt-error") == (
            "invalid `run`: '../etc/passwd.yaml': `.`, `..` and empty parts are not allowed"
        )


@pytest.mark.sample_data
def test_the_stress_page_draws_its_charts(browser: Any, tmp_path: Path, sample_store_path: Path) -> None:
    from perphedge.web import Folders, WebConfig

    root = tmp_path / "served"
    shutil.copytree(REPO / "examples", root / "examples")
    cfg = WebConfig(port=free_port(), runs=Folders.of((root,), "--runs"), store=str(sample_store_path))
    with serve(cfg) as url:
        page = new_page(browser)
        page.goto(url + "/stress")
        page.select_option("#s-file", "examples/altcoins.yaml")
        page.fill("#s-paths", "1000")
        before = page.evaluate("document.body.dataset.stressDone || ''")
        page.click("#stress-run")
        wait_changed(page, "stressDone", before, timeout_s=180)
        want = json.loads(
            run_cli(
                "stress", str(root / "examples" / "altcoins.yaml"), "--paths", "1000", "--horizon", "90d",
                "--leverage", "1,2,3,5", "--seed", "0", "--store", str(sample_store_path), "--format", "json",
                home=home(),
            ).stdout
        )  # fmt: skip
        rec = want["monte_carlo"]["recommended"]["without_top_up"]
        if rec is not None:
            assert page.inner_text("#rec-lev") == f"{rec:g}x"
        assert page.locator("#liq-table tbody tr").count() == len(want["monte_carlo"]["liquidation"])
        assert page.locator("#replays-table tbody tr").count() == len(want["replays"])
        assert page.locator("#stress-grid .main-svg").count() >= 1
        assert page.locator("#stress-mc .main-svg").count() >= 1
        assert not page.errors, page.errors
        shot(page, "stress")
        page.fill("#s-paths", "abc")
        before = page.evaluate("document.body.dataset.stressDone || ''")
        page.click("#stress-run")
        wait_changed(page, "stressDone", before)
        assert page.inner_text("#stress-error") == "invalid value for --paths: 'abc' is not a whole number"


def test_the_data_page_imports_the_sample_with_one_click(browser: Any, tmp_path: Path) -> None:
    from perphedge.web import WebConfig

    store = tmp_path / "market.duckdb"
    cfg = WebConfig(port=free_port(), store=str(store))
    with serve(cfg) as url:
        page = new_page(browser)
        page.goto(url + "/data")
        wait_until(page, "document.body.dataset.dataDone")
        assert "no market store" in page.inner_text("#data-error")
        before = page.evaluate("document.body.dataset.dataDone")
        page.click("#data-import")
        wait_changed(page, "dataDone", before, timeout_s=300)
        want = json.loads(run_cli("data", "status", "--store", str(store), "--format", "json", home=home()).stdout)
        rows = page.locator("#coverage-table tbody tr")
        assert rows.count() == len(want["series"]) > 0
        assert page.locator("#coverage-table tbody tr td:nth-child(3)").all_inner_texts() == [
            s["symbol"] for s in want["series"]
        ]
        assert not page.errors, page.errors
        shot(page, "data")
