"""Strict input files and impossible positions, in process: each wrong input is one ConfigError line."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from perphedge.config import load_portfolio_file, parse_portfolio, parse_run, read_yaml
from perphedge.core.contracts import Side, check_opening_margin
from perphedge.core.instruments import MarginSchedule
from perphedge.errors import ConfigError, PerphedgeError
from perphedge.files import line_of, load_json_text, load_yaml_text, read_text
from perphedge.specs import InstrumentRegistry, bundled_instruments, load_user_specs
from perphedge.usecases.plan import CalcInput, build_portfolio, calc, calc_instrument, plan_portfolio

REG = InstrumentRegistry(bundled_instruments())

PF = """name: t
prices: {BTC: 60000, SOL: 150, AVAX: 30}
holdings:
  - {asset: SOL, value_usd: 5000}
  - {asset: AVAX, quantity: 100}
hedge:
  ratio: 1.0
  instrument: binance:BTCUSD_PERP
  leverage: 2
  collateral: buy
"""

RUN = """portfolio: {{prices: {{BTC: 60000, SOL: 150}}, holdings: [{{asset: SOL, value_usd: 5000}}]}}
start: 2021-01-01
end: 2021-06-30
hedge: {{instrument: binance:BTCUSDT, leverage: 2, collateral: stable}}
policy: {{kind: static, ratio: 0.5, band: 0.10}}
costs: {{fills: taker, taker_fee: 0.0005, slippage_bps: 2}}
margin: {{top_up: false, reopen_after_days: null}}
{extra}"""


def portfolio(text: str) -> Any:
    return parse_portfolio(load_yaml_text(text, "p.yaml"), "p.yaml")


def refused(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# ------------------------------------------------------------------------------------------- the reader


@pytest.mark.parametrize(
    "text,line,key",
    [
        ("prices: {SOL: 150, SOL: 1}\n", 1, "SOL"),
        ("name: a\nholdings: []\nname: b\n", 3, "name"),
        ("hedge:\n  ratio: 1\n  leverage: 2\n  ratio: 0.5\n", 4, "ratio"),
        ("holdings:\n  - asset: SOL\n    quantity: 1\n    quantity: 2\n", 4, "quantity"),
        ("a: [{x: 1, y: 2, x: 3}]\n", 1, "x"),
        ("grid:\n  policy.ratio: [1]\n  policy.ratio: [2]\n", 3, "policy.ratio"),
    ],
)
def test_duplicate_keys_are_refused_with_key_and_line(text: str, line: int, key: str) -> None:
    msg = refused(load_yaml_text, text, "f.yaml")
    assert msg.startswith(f"f.yaml: line {line}: duplicate key `{key}`")


def test_yaml_merge_keys_are_not_duplicates() -> None:
    doc = load_yaml_text("base: &b {ratio: 1, band: 0.1}\npolicy:\n  <<: *b\n  ratio: 0.5\n", "f.yaml")
    assert doc["policy"] == {"ratio": 0.5, "band": 0.1}


def test_duplicate_in_prices_example_from_the_issue(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(PF.replace("SOL: 150,", "SOL: 150, SOL: 1,"))
    assert refused(load_portfolio_file, f) == f"{f}: line 2: duplicate key `SOL`"


@pytest.mark.parametrize(
    "content,expected",
    [
        (None, "is a directory, expected a portfolio file"),
        (b"", "is empty"),
        (b"   \n\n", "is empty"),
        (b"# only a comment\n", "is empty"),
        (b"name: caf\xe9\n", "is not a text file (not UTF-8"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", "is not a text file"),
        (b"a: [1,\n", "malformed YAML"),
        (b"- 1\n- 2\n", "must be a YAML mapping"),
        (b"just text\n", "must be a YAML mapping"),
        (b"a: 1\n---\nb: 2\n", "malformed YAML"),
    ],
)
def test_files_that_are_not_portfolios(tmp_path: Path, content: bytes | None, expected: str) -> None:
    target = tmp_path / "dir" if content is None else tmp_path / "p.yaml"
    if content is None:
        target.mkdir()
    else:
        target.write_bytes(content)
    msg = refused(load_portfolio_file, target)
    assert msg.startswith(str(target)) and expected in msg


def test_unreadable_paths(tmp_path: Path) -> None:
    assert "cannot read" in refused(load_portfolio_file, tmp_path / ("a" * 300))
    assert "is not a regular file" in refused(load_portfolio_file, Path("/dev/zero"))
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:
        fh.truncate(17 * 1024 * 1024)
    assert "more than any portfolio file can be" in refused(load_portfolio_file, big)
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nested too deeply" in refused(load_portfolio_file, deep)
    tag = tmp_path / "tag.yaml"
    tag.write_text("name: !!python/object:os.system x\n")
    assert "malformed YAML" in refused(load_portfolio_file, tag)


def test_missing_file_and_binary_specs(tmp_path: Path) -> None:
    assert "no such file" in refused(load_portfolio_file, tmp_path / "nope.yaml")
    assert "is not a text file" in refused(load_user_specs, Path("/bin/ls"))
    assert "is a directory" in refused(load_user_specs, tmp_path)
    assert "no such file" in refused(read_text, tmp_path / "x.json", "a JSON file")


def test_read_yaml_returns_raw_bytes_for_hashing(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("a: 1\n")
    doc, raw = read_yaml(f)
    assert doc == {"a": 1} and raw == b"a: 1\n"


def test_lines_are_tracked_for_errors() -> None:
    doc = load_yaml_text("name: x\nholdings:\n  - {asset: SOL, quantity: 1}\n  - asset: AVAX\n    quantity: -1\n", "f")
    assert line_of(doc, ("holdings", 1, "quantity")) == 5
    assert line_of(doc, ("holdings", 0)) == 3
    assert line_of(doc, ("nothing", 3)) == 1


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"a": 1, "a": 2}', "duplicate key `a` in the object starting on line 1"),
        (
            '{\n "x": [\n  {"b": 1},\n  {"b": 1,\n   "b": 2}\n ]\n}',
            "duplicate key `b` in the object starting on line 4",
        ),
        ('{"a": NaN}', "`NaN` is not a number JSON allows"),
        ('{"a": -Infinity}', "`-Infinity` is not a number JSON allows"),
        ('{"a": ', "malformed JSON"),
    ],
)
def test_json_is_strict(text: str, expected: str) -> None:
    assert expected in refused(load_json_text, text, "s.json")


# --------------------------------------------------------------------------------------- types and bounds


@pytest.mark.parametrize(
    "old,new,field,rule",
    [
        ("quantity: 100", "quantity: true", "holdings[1].quantity", "must be a number, was true"),
        ("quantity: 100", "quantity: yes", "holdings[1].quantity", "must be a number, was true"),
        ("value_usd: 5000", "value_usd: '5000'", "holdings[0].value_usd", "write it without quotes"),
        ("SOL: 150", "SOL: '150'", "prices.SOL", "must be a number, was '150'"),
        ("SOL: 150", "SOL: false", "prices.SOL", "must be a number, was false"),
        ("leverage: 2", "leverage: true", "hedge.leverage", "must be a number"),
        ("ratio: 1.0", "ratio: '1'", "hedge.ratio", "must be a number"),
        ("quantity: 100", "quantity: .nan", "holdings[1].quantity", "must be a finite number, was nan"),
        ("quantity: 100", "quantity: .inf", "holdings[1].quantity", "must be a finite number, was inf"),
        ("quantity: 100", "quantity: -.inf", "holdings[1].quantity", "finite"),
        ("quantity: 100", "quantity: 1.0e+307", "holdings[1].quantity", "must be <= 1e+18"),
        ("value_usd: 5000", "value_usd: 1.0e+308", "holdings[0].value_usd", "must be <= 1e+15"),
        ("AVAX: 30", "AVAX: 1.0e+300", "prices.AVAX", "must be in [1e-12, 1e+09] USD"),
        ("AVAX: 30", "AVAX: 1.0e-300", "prices.AVAX", "must be in [1e-12, 1e+09] USD"),
        ("quantity: 100", "quantity: [100]", "holdings[1].quantity", "must be a number, was a list"),
        ("asset: SOL", "asset: 5", "holdings[0].asset", "must be text, was 5"),
        ("name: t", "name: {a: 1}", "name", "must be text, was a mapping"),
        ("collateral: buy", "collateral: true", "hedge.collateral", "input should be"),
    ],
)
def test_portfolio_values_are_taken_literally(old: str, new: str, field: str, rule: str) -> None:
    assert old in PF
    msg = refused(portfolio, PF.replace(old, new, 1))
    assert f"field `{field}`" in msg and rule in msg, msg
    assert msg.startswith("p.yaml: line ")


def test_integers_still_count_as_numbers() -> None:
    pf = portfolio(PF.replace("ratio: 1.0", "ratio: 1"))
    assert pf.hedge.ratio == 1.0 and isinstance(pf.hedge.ratio, float)


def test_huge_values_are_refused_by_the_plan_too() -> None:
    # each bound alone is fine, their product is not: 1e18 units at 1e9 USD
    msg = refused(portfolio, PF.replace("AVAX: 30", "AVAX: 1000000000").replace("quantity: 100", "quantity: 1.0e+18"))
    assert "field `holdings[1].quantity`" in msg and "above the 1e+15 USD" in msg
    # a price that only the plan knows (e.g. from the store): the plan refuses the holding
    pf = portfolio(PF.replace("quantity: 100", "quantity: 1.0e+17").replace("AVAX: 30", "ETH: 3000"))
    pf = pf.model_copy(update={"prices": {**pf.prices, "AVAX": 30.0}})
    msg = refused(build_portfolio, pf, "p.yaml")
    assert "field `holdings[1]`" in msg and "above the 1e+15 USD" in msg


# ------------------------------------------------------------------------------------ portfolio semantics


@pytest.mark.parametrize("group", ["all", "ALL", "ungrouped"])
def test_reserved_group_names(group: str) -> None:
    msg = refused(
        portfolio, PF.replace("{asset: AVAX, quantity: 100}", f"{{asset: AVAX, quantity: 100, group: {group}}}")
    )
    assert "field `holdings[1].group`" in msg and "reserved" in msg


def test_betas_for_assets_not_held() -> None:
    msg = refused(portfolio, PF + "betas: {SOL: 1.2, DOGE: 1.5}\n")
    assert "field `betas.DOGE`" in msg and "does not hold" in msg and "line 11" in msg
    assert portfolio(PF + "betas: {SOL: 1.2}\n").betas == {"SOL": 1.2}
    assert "within ±10" in refused(portfolio, PF + "betas: {SOL: 1.0e+308}\n")


def test_a_leg_instrument_given_twice() -> None:
    legs = "legs: [{instrument: binance:BTCUSDT, weight: 0.7}, {instrument: BINANCE:BTCUSDT, weight: 0.3}]"
    msg = refused(portfolio, PF.replace("instrument: binance:BTCUSD_PERP", legs))
    assert "field `hedge.legs[1].instrument`" in msg and "already `legs[0]`" in msg


def test_prices_for_assets_not_held_are_fine() -> None:
    assert portfolio(PF.replace("AVAX: 30", "AVAX: 30, ETH: 3000")).prices["ETH"] == 3000


def test_same_asset_spelled_twice_in_prices() -> None:
    msg = refused(portfolio, PF.replace("AVAX: 30", "AVAX: 30, sol: 1"))
    assert "same asset" in msg and "SOL" in msg


def test_duplicate_holdings_refused_unless_groups_differ() -> None:
    dup = PF.replace(
        "  - {asset: AVAX, quantity: 100}\n", "  - {asset: AVAX, quantity: 100}\n  - {asset: avax, quantity: 5}\n"
    )
    msg = refused(portfolio, dup)
    assert msg.startswith("p.yaml: line 6: field `holdings[2]`") and "also `holdings[1]`" in msg
    same_group = PF.replace(
        "  - {asset: AVAX, quantity: 100}\n",
        "  - {asset: AVAX, quantity: 100, group: core}\n  - {asset: AVAX, quantity: 5, group: core}\n",
    )
    assert "group `core`" in refused(portfolio, same_group)
    split = PF.replace(
        "  - {asset: AVAX, quantity: 100}\n",
        "  - {asset: AVAX, quantity: 100, group: core}\n  - {asset: AVAX, quantity: 5, group: satellite}\n",
    )
    pf = portfolio(split)
    outcome = plan_portfolio(pf, source="p.yaml", registry=REG)
    assert outcome.plan.portfolio.quantity_of("AVAX") == pytest.approx(105)


# ------------------------------------------------------------------------------------------------ run files


def run(extra: str = "", **replace: str) -> Any:
    text = RUN.format(extra=extra)
    for old, new in replace.items():
        assert old.replace("_", " ") in text or old in text
        text = text.replace(old, new, 1)
    return parse_run(load_yaml_text(text, "r.yaml"), "r.yaml")


@pytest.mark.parametrize(
    "bad",
    [
        "01/02/2021",
        "'01/02/2021'",
        "'2021/01/02'",
        "20210101",
        "1609459200",
        "'2021-1-2'",
        "2021-01-01T10:00:00",
        "true",
    ],
)
def test_run_dates_are_iso_only(bad: str) -> None:
    text = RUN.format(extra="").replace("start: 2021-01-01", f"start: {bad}")
    msg = refused(parse_run, load_yaml_text(text, "r.yaml"), "r.yaml")
    assert "field `start`" in msg and "YYYY-MM-DD" in msg and "line 2" in msg


@pytest.mark.parametrize("bad", ["2021-13-01", "2021-02-30"])
def test_impossible_unquoted_dates_are_refused_by_the_reader(bad: str) -> None:
    text = RUN.format(extra="").replace("start: 2021-01-01", f"start: {bad}")
    msg = refused(load_yaml_text, text, "r.yaml")
    assert msg.startswith("r.yaml: line 2: invalid date") and bad in msg


def test_run_dates_as_yaml_dates_or_iso_strings() -> None:
    assert run().start == date(2021, 1, 1)
    quoted = RUN.format(extra="").replace("start: 2021-01-01", "start: '2021-01-01'")
    assert parse_run(load_yaml_text(quoted, "r.yaml"), "r.yaml").start == date(2021, 1, 1)
    assert parse_run({"portfolio": "x.yaml", "start": "2021-01-01", "end": "2021-02-01"}, "mem").end == date(2021, 2, 1)


@pytest.mark.parametrize(
    "old,new,field",
    [
        ("ratio: 0.5", "ratio: true", "policy.ratio"),
        ("taker_fee: 0.0005", "taker_fee: '0.0005'", "costs.taker_fee"),
        ("taker_fee: 0.0005", "taker_fee: -0.0001", "costs.taker_fee"),
        ("top_up: false", "top_up: 'no'", "margin.top_up"),
        ("top_up: false", "top_up: 0", "margin.top_up"),
        ("reopen_after_days: null", "reopen_after_days: true", "margin.reopen_after_days"),
        ("reopen_after_days: null", "reopen_after_days: 2.5", "margin.reopen_after_days"),
        ("leverage: 2", "leverage: true", "hedge.leverage"),
        ("leverage: 2", "leverag: 2", "hedge.leverag"),
        ("slippage_bps: 2", "slippage_bps: .nan", "costs.slippage_bps"),
        ("end: 2021-06-30", "end: 2020-06-30", "end"),
    ],
)
def test_run_fields_are_strict(old: str, new: str, field: str) -> None:
    text = RUN.format(extra="")
    assert old in text
    msg = refused(parse_run, load_yaml_text(text.replace(old, new, 1), "r.yaml"), "r.yaml")
    assert f"field `{field}`" in msg, msg
    assert msg.startswith("r.yaml: line ")


# ------------------------------------------------------------------------------------------------- spec files

SPEC: dict[str, Any] = {
    "exchange": "x",
    "symbol": "BTCUSD",
    "kind": "inverse",
    "base": "BTC",
    "quote": "USD",
    "settle": "BTC",
    "contract_size": 100,
    "lot_size": 1,
    "tick_size": 0.1,
    "max_leverage": 100,
    "tiers": [[0, 0.005, 100], [50, 0.01, 50]],
    "liquidation_method": "mm_at_liquidation_price",
}


def spec_file(tmp_path: Path, *items: dict[str, Any], suffix: str = ".json") -> Path:
    f = tmp_path / f"specs{suffix}"
    f.write_text(json.dumps({"instruments": list(items)}))
    return f


@pytest.mark.parametrize(
    "change,field",
    [
        ({"taker_fee": 0.02}, "taker_fee"),
        ({"taker_fee": -0.0001}, "taker_fee"),
        ({"maker_fee": -0.005}, "maker_fee"),
        ({"maker_fee": 0.5}, "maker_fee"),
        ({"lot_size": 0}, "lot_size"),
        ({"tick_size": -1}, "tick_size"),
        ({"contract_size": True}, "contract_size"),
        ({"max_leverage": 0.5}, "max_leverage"),
        ({"tiers": [[0, 0.005, 100], [50, 0.01, 50], [20, 0.02, 20]]}, "tiers[2]"),
        ({"tiers": [[10, 0.005, 100]]}, "tiers[0]"),
        ({"tiers": [[0, 0.02, 100]]}, "tiers[0]"),  # 1% initial margin under a 2% maintenance rate
        ({"exchange": True}, "exchange"),
        ({"symbol": ""}, "symbol"),
        ({"notes": "one note"}, "notes"),
        ({"funding_interval_hours": 0}, "funding_interval_hours"),
    ],
)
def test_spec_values_out_of_range(tmp_path: Path, change: dict[str, Any], field: str) -> None:
    f = spec_file(tmp_path, SPEC | change)
    msg = refused(load_user_specs, f)
    assert msg.startswith(f"{f}: instruments[0]") and f"`{field}`" in msg, msg
    if field not in ("exchange", "symbol"):
        assert "x:BTCUSD" in msg


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_duplicate_instrument_ids(tmp_path: Path, suffix: str) -> None:
    f = spec_file(tmp_path, SPEC, SPEC | {"symbol": "btcusd"}, suffix=suffix)
    msg = refused(load_user_specs, f)
    assert msg == (
        f"{f}: instruments[1] x:BTCUSD: duplicate instrument id (also instruments[0]): give each exchange:symbol once"
    )


def test_bundled_specs_are_sane() -> None:
    ids = [i.id for i in bundled_instruments()]
    assert len(ids) == len(set(ids))
    for inst in bundled_instruments():
        assert -0.001 <= inst.maker_fee <= 0.01 and 0 <= inst.taker_fee <= 0.01
        for tier in inst.margin.tiers:
            assert 1 / tier.max_leverage > tier.mmr


# ----------------------------------------------------------------------------------------------- positions


def calc_input(ident: str = "binance:BTCUSDT", **kw: Any) -> CalcInput:
    base: dict[str, Any] = {"instrument": REG.get(ident), "side": Side.SHORT, "contracts": 1.0, "entry": 60_000.0}
    return CalcInput(**(base | kw))


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"contracts": 1000.0, "leverage": 125.0}, "tier 5"),
        ({"contracts": 300.0, "leverage": 100.0}, "tier 5, MMR 2.0000%"),
        ({"margin_mode": "cross", "wallet_balance": 1.0}, "cross wallet balance 1 USDT"),
        ({"margin_mode": "cross", "wallet_balance": 240.0}, "maintenance margin 250 USDT"),
    ],
)
def test_born_liquidated_positions(kw: dict[str, Any], needle: str) -> None:
    msg = refused(calc, calc_input(**kw))
    assert "liquidated on opening" in msg and "maintenance margin" in msg and needle in msg, msg


def test_born_liquidated_names_im_mm_and_tier() -> None:
    msg = refused(calc, calc_input(contracts=1000.0, leverage=125.0))
    assert "initial margin at 125x 480,000 USDT" in msg
    assert "maintenance margin 1,068,550 USDT (tier 5, MMR 2.0000%" in msg
    assert "this tier allows at most 25x" in msg


def test_mmr_override_above_one_over_leverage() -> None:
    inst = calc_instrument(REG, "binance:BTCUSDT", mmr=0.2)
    msg = refused(calc, CalcInput(instrument=inst, side=Side.SHORT, contracts=1.0, entry=60_000.0, leverage=10.0))
    assert "MMR 20.0000%" in msg and "initial margin at 10x 6,000 USDT" in msg


def test_inverse_born_liquidated_in_coin() -> None:
    msg = refused(calc, calc_input("binance:BTCUSD_PERP", contracts=100_000.0, leverage=125.0))
    assert "BTC" in msg and "liquidated on opening" in msg


def test_margin_that_covers_maintenance_passes() -> None:
    res = calc(calc_input(contracts=1.0, leverage=100.0))
    assert res.initial_margin > res.maintenance_margin
    res = calc(calc_input(margin_mode="cross", wallet_balance=251.0))
    assert res.liquidation.price is not None and res.liquidation.price > 60_000


@pytest.mark.parametrize(
    "kw,flag",
    [
        ({"fee_rate": 0.5}, "--fee-rate"),
        ({"fee_rate": -0.01}, "--fee-rate"),
        ({"fee_rate": math.nan}, "--fee-rate"),
        ({"contracts": 0.1234}, "--contracts"),
        ({"contracts": 0.0}, "--contracts"),
        ({"contracts": -1.0}, "--contracts"),
        ({"contracts": math.nan}, "--contracts"),
        ({"contracts": 1e300}, "--contracts"),
        ({"entry": 0.0}, "--entry"),
        ({"entry": math.inf}, "--entry"),
        ({"entry": 1e300}, "--entry"),
        ({"entry": 1e-300}, "--entry"),
        ({"exit": -1.0}, "--exit"),
        ({"mark": 0.0}, "--mark"),
        ({"mark": 200_000.0, "leverage": 2.0}, "--mark"),
        ({"leverage": 0.5}, "--leverage"),
        ({"leverage": math.nan}, "--leverage"),
        ({"leverage": 60.0, "contracts": 100.0}, "--leverage"),  # covers maintenance, above tier 4's 50x
        ({"margin_mode": "cross", "wallet_balance": 0.0}, "--wallet-balance"),
        ({"margin_mode": "cross", "wallet_balance": -5.0}, "--wallet-balance"),
        ({"margin_mode": "cross", "wallet_balance": math.nan}, "--wallet-balance"),
    ],
)
def test_calc_refuses_impossible_values(kw: dict[str, Any], flag: str) -> None:
    assert f"`{flag}`" in refused(calc, calc_input(**kw))


@pytest.mark.parametrize(
    "ident,contracts,nearest",
    [
        ("binance:BTCUSDT", 0.1234, "nearest 0.123 or 0.124"),
        ("binance:BTCUSDT", 0.0006, "nearest 0.001"),
        ("binance:BTCUSD_PERP", 1.5, "nearest 1 or 2"),
        ("bitmex:XBTUSD", 150.0, "nearest 100 or 200"),
        ("bybit:SOLUSDT", 2.25, "nearest 2.2 or 2.3"),
    ],
)
def test_contracts_off_the_lot_grid(ident: str, contracts: float, nearest: str) -> None:
    msg = refused(calc, calc_input(ident, contracts=contracts, entry=100.0))
    assert "not a multiple of the lot" in msg and nearest in msg, msg


def test_override_that_puts_liquidation_past_bankruptcy_is_refused() -> None:
    """MMR 1% and maintenance amount 9.5 USDT on a 1,000 USDT long at 10x: MM at entry 0.5 > 0, but at the formula's
    liquidation price 899.49 it is -0.5, past the bankruptcy price 900: refused. The same override on a short is
    consistent (MM grows with the price) and answered."""
    from perphedge.usecases.plan import calc_instrument

    inst = calc_instrument(REG, "binance:ETHUSDT", mmr=0.01, maintenance_amount=9.5, method=None, face_value=None)
    base = {"instrument": inst, "contracts": 1.0, "entry": 1000.0, "leverage": 10.0}
    msg = refused(calc, CalcInput(side=Side.LONG, **base))
    assert "past the bankruptcy price 900" in msg and "899.49" in msg, msg
    res = calc(CalcInput(side=Side.SHORT, **base))
    assert res.liquidation.price == pytest.approx(1098.5148514851485)


@pytest.mark.parametrize("contracts", [0.0004, 1e-300, 5e-324])
def test_contracts_below_one_lot(contracts: float) -> None:
    """A size that rounds to zero lots is refused (it was taken as a whole number of lots: zero)."""
    msg = refused(calc, calc_input("binance:BTCUSDT", contracts=contracts, entry=100.0))
    assert "less than one lot (0.001) of binance:BTCUSDT" in msg, msg


def test_lot_multiples_with_float_dust_pass() -> None:
    assert calc(calc_input(contracts=0.1 + 0.2)).size == pytest.approx(0.3)  # 0.30000000000000004 BTC


def test_face_value_and_mmr_overrides_are_checked() -> None:
    assert "--face-value" in refused(calc_instrument, REG, "binance:BTCUSDT", face_value=0.0)
    assert "--mmr" in refused(calc_instrument, REG, "binance:BTCUSDT", mmr=1.5)
    inst = calc_instrument(REG, "binance:BTCUSDT", mmr=0.01, maintenance_amount=10_000.0)
    msg = refused(calc, CalcInput(instrument=inst, side=Side.SHORT, contracts=1.0, entry=60_000.0, leverage=2.0))
    assert "--maintenance-amount" in msg


def test_check_opening_margin_is_pure_and_exact() -> None:
    schedule = MarginSchedule.single(0.01)
    check_opening_margin(kind="linear", size=1.0, entry=100.0, margin=1.01, schedule=schedule, unit="USDT")
    with pytest.raises(ConfigError, match="does not cover"):
        check_opening_margin(kind="linear", size=1.0, entry=100.0, margin=1.0, schedule=schedule, unit="USDT")


def test_plan_still_rounds_to_lots_with_the_residual() -> None:
    pf = portfolio(PF.replace("value_usd: 5000", "value_usd: 5033"))
    outcome = plan_portfolio(pf, source="p.yaml", registry=REG)
    leg = outcome.plan.legs[0]
    assert leg.contracts == round(leg.contracts) and leg.contracts_exact != leg.contracts
    assert 0 < abs(outcome.plan.net_delta_usd) < 100  # the rounding residual, shown as net delta


def test_plan_refuses_leverage_the_tier_does_not_allow() -> None:
    big = PF.replace("quantity: 100", "quantity: 100000000").replace("binance:BTCUSD_PERP", "binance:BTCUSDT")
    pf = portfolio(big.replace("collateral: buy", "collateral: stable"))
    with pytest.raises(PerphedgeError, match="leverage"):
        plan_portfolio(pf, source="p.yaml", registry=REG)


# ------------------------------------------------------------------------------------------------- sweep grids


def grid_files(tmp_path: Path, grid: str) -> Path:
    (tmp_path / "base.yaml").write_text(RUN.format(extra=""))
    f = tmp_path / "grid.yaml"
    f.write_text(f"base: base.yaml\ngrid:\n{grid}")
    return f


@pytest.mark.parametrize(
    "grid,expected",
    [
        ("  policy.ratio: [0.5, true]\n", "line 3: field `grid.policy.ratio[1]`: must be a finite number"),
        ("  policy.ratio: [.nan]\n", "field `grid.policy.ratio[0]`: must be a finite number"),
        ("  hedge.leverage: ['2']\n", "field `grid.hedge.leverage[0]`"),
        ("  margin.top_up: [1]\n", "field `grid.margin.top_up[0]`: must be true or false"),
        ("  policy.kind: [5]\n", "field `grid.policy.kind[0]`: must be text"),
        ("  policy.ratio: [0.5]\n  policy.ratio: [0.6]\n", "line 4: duplicate key `policy.ratio`"),
    ],
)
def test_grid_values_of_the_wrong_kind(tmp_path: Path, grid: str, expected: str) -> None:
    from perphedge.usecases.sweep import load_grid

    assert expected in refused(load_grid, grid_files(tmp_path, grid))


def test_grid_values_of_the_right_kind_and_combinations(tmp_path: Path) -> None:
    from perphedge.usecases.sweep import expand, load_grid

    grid, base, _ = load_grid(grid_files(tmp_path, "  policy.ratio: [0.5, 3]\n  costs.maker_fee: [null, 0.0001]\n"))
    configs = expand(grid["grid"], base)
    assert len(configs) == 4
    assert parse_run(configs[0][1], "grid #0").policy.ratio == 0.5
    msg = refused(parse_run, configs[2][1], "grid #2")
    assert msg == "grid #2: field `policy.ratio`: must be <= 2, was 3"  # no line: the combination is no file


def test_grid_with_an_invalid_base_run(tmp_path: Path) -> None:
    from perphedge.usecases.sweep import load_grid

    f = grid_files(tmp_path, "  policy.ratio: [0.5]\n")
    (tmp_path / "base.yaml").write_text(RUN.format(extra="").replace("start: 2021-01-01", "start: 01/02/2021"))
    msg = refused(load_grid, f)
    assert msg.startswith(str(tmp_path / "base.yaml")) and "field `start`" in msg
