"""The Plan and Calculator pages in real headless Chromium: the numbers the page shows are the CLI's JSON, and a bad
input shows the CLI's one-line message next to its field (issue 12, item 4)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, run_cli
from tests.web.browser import chromium, free_port, serve, shot, wait_changed


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from perphedge.web import Folders, WebConfig

    root = tmp_path_factory.mktemp("served")
    shutil.copytree(REPO / "examples", root / "examples")
    cfg = WebConfig(port=free_port(), runs=Folders.of((root,), "--runs"), out=root / "out")
    with chromium() as browser, serve(cfg) as url:
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        yield {"url": url, "page": page, "root": root, "errors": errors}
        ctx.close()


def cli_json(*args: str, cwd: Path) -> dict[str, Any]:
    r = run_cli(*args, "--format", "json", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def cli_error(*args: str, cwd: Path) -> str:
    r = run_cli(*args, "--format", "json", cwd=cwd)
    assert r.returncode == 2, r.stdout
    return r.stderr.strip().splitlines()[-1].removeprefix("perphedge: error: ")


def submit_plan(page: Any) -> None:
    before = page.evaluate("document.body.dataset.planDone || ''")
    page.click("#plan-run")
    wait_changed(page, "planDone", before)


def money(x: float) -> str:
    return f"{x:,.2f}"


def test_the_plan_form_shows_the_cli_numbers(site: dict[str, Any], tmp_path: Path) -> None:
    page = site["page"]
    page.goto(site["url"] + "/plan?file=examples/altcoins.yaml")
    page.wait_for_selector("#h-notional")  # the page plans the file once on load
    page.fill("#f-ratio", "0.5")
    page.fill("#f-leverage", "3")
    page.check("#f-compare")
    submit_plan(page)
    yaml_text = page.input_value("#plan-yaml")
    (tmp_path / "portfolio.yaml").write_text(yaml_text, encoding="utf-8")
    want = cli_json("plan", "portfolio.yaml", "--ratio", "0.5", "--leverage", "3", "--compare", cwd=tmp_path)
    h = want["hedge"]
    assert page.inner_text("#h-ratio") == f"{h['ratio']:,.3f}"
    assert page.inner_text("#h-target") == money(h["target_usd"]) + " USD"
    assert page.inner_text("#h-notional") == money(h["notional_usd"]) + " USD"
    assert page.inner_text("#h-collateral") == money(h["collateral_usd"]) + " USD"
    assert page.inner_text("#h-net-delta") == money(h["net_delta_usd"]) + " USD"
    assert page.inner_text("#h-funding-day") == f"{h['funding_usd_per_day']:,.4f} USD"
    assert page.inner_text("#p-value") == money(want["portfolio"]["value_usd"]) + " USD"
    legs = page.locator("#legs-table tbody tr")
    assert legs.count() == len(h["legs"])
    for i, leg in enumerate(h["legs"]):
        row = legs.nth(i)
        assert float(row.locator(".leg-contracts").inner_text()) == leg["contracts"]
        assert row.locator(".leg-notional").inner_text() == money(leg["notional_usd"])
        liq = leg["liquidation_price"]
        assert row.locator(".leg-liq").inner_text() == ("none" if liq is None else money(liq))
    nets = page.locator("#scenario-table .sc-net").all_inner_texts()
    assert nets == [money(s["net_pnl_usd"]) for s in want["scenarios"]]
    assert page.locator("#compare-table tbody tr").count() == len(want["compare"])
    assert page.locator("#plan-chart .main-svg").count() >= 1  # plotly drew the chart (served locally)
    assert not site["errors"], site["errors"]
    shot(page, "plan")


@pytest.mark.parametrize(
    ("field", "value"), [("ratio", "abc"), ("ratio", "5"), ("leverage", "0.5"), ("funding_rate_8h", "nan"),
                         ("drift", "BTC=20"), ("collateral", None)]
)  # fmt: skip
def test_a_bad_flag_shows_the_cli_message_next_to_its_field(
    site: dict[str, Any], tmp_path: Path, field: str, value: str | None
) -> None:
    page = site["page"]
    page.goto(site["url"] + "/plan?file=examples/altcoins.yaml")
    page.wait_for_selector("#h-notional")
    (tmp_path / "portfolio.yaml").write_text(page.input_value("#plan-yaml"), encoding="utf-8")
    if value is None:  # a choice the file cannot satisfy: holdings collateral without BTC in the portfolio
        page.select_option("#f-collateral", "holdings")
        want = cli_error("plan", "portfolio.yaml", "--collateral", "holdings", cwd=tmp_path)
        target = "#err-yaml"  # a message about the file goes beside the YAML
    else:
        page.fill(f"#f-{field}", value)
        want = cli_error("plan", "portfolio.yaml", "--" + field.replace("_", "-"), value, cwd=tmp_path)
        target = f'.field-error[data-for="{field}"]'
    submit_plan(page)
    assert page.is_visible(target)
    assert page.inner_text(target) == want
    assert page.is_hidden("#plan-result")


@pytest.mark.parametrize(
    "yaml_text",
    [
        "prices: {SOL: 150, SOL: 1}\nholdings: [{asset: SOL, value_usd: 5000}]\n",
        "holdings: [{asset: SOL, value_usd: -5}]\nprices: {SOL: 150}\n",
        "holdings: [\n",
        "holdings: [{asset: SOL, value_usd: 5000}]\nprices: {SOL: 150}\nhedge: {leverage: 0}\n",
    ],
)
def test_a_bad_yaml_shows_the_cli_message_beside_the_editor(
    site: dict[str, Any], tmp_path: Path, yaml_text: str
) -> None:
    page = site["page"]
    page.goto(site["url"] + "/plan?file=examples/altcoins.yaml")
    page.wait_for_selector("#h-notional")
    page.fill("#plan-yaml", yaml_text)
    submit_plan(page)
    (tmp_path / "portfolio.yaml").write_text(yaml_text, encoding="utf-8")
    assert page.inner_text("#err-yaml") == cli_error("plan", "portfolio.yaml", cwd=tmp_path)
    if "SOL: 1}" in yaml_text:
        shot(page, "plan_error")


def test_the_calculator_form_is_the_cli(site: dict[str, Any], tmp_path: Path) -> None:
    page = site["page"]
    page.goto(site["url"] + "/calc")
    page.wait_for_selector("#c-liq")
    page.select_option("#c-instrument", "bybit:BTCUSD")
    page.fill("#c-contracts", "60000")
    page.fill("#c-entry", "50000")
    page.fill("#c-leverage", "10")
    page.fill("#c-mmr", "0.005")
    page.fill("#c-exit", "45000")
    before = page.evaluate("document.body.dataset.calcDone")
    page.click("#calc-run")
    wait_changed(page, "calcDone", before)
    want = cli_json(
        "calc", "--instrument", "bybit:BTCUSD", "--side", "short", "--contracts", "60000", "--entry", "50000",
        "--leverage", "10", "--mmr", "0.005", "--exit", "45000", cwd=tmp_path,
    )  # fmt: skip
    liq = want["liquidation_price"]
    assert page.inner_text("#c-liq") == f"{liq['value']:,.8f} {liq['unit']}"
    margin = want["margin"]
    assert page.inner_text("#c-margin") == f"{margin['value']:,.8f} {margin['unit']}"
    shot(page, "calc")
    page.fill("#c-contracts", "-5")
    before = page.evaluate("document.body.dataset.calcDone")
    page.click("#calc-run")
    wait_changed(page, "calcDone", before)
    bad = cli_error(
        "calc", "--instrument", "bybit:BTCUSD", "--side", "short", "--contracts", "-5", "--entry", "50000",
        "--leverage", "10", "--mmr", "0.005", "--exit", "45000", cwd=tmp_path,
    )  # fmt: skip
    shown = page.locator(".field-error:visible, #calc-error:visible").all_inner_texts()
    assert shown == [bad]
