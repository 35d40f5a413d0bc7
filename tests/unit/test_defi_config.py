"""The `positions:` section of a portfolio file: each kind's fields, strict types, bounds, one-line errors
naming the field; and the positions built from it at the file's prices (amounts consistent with the range)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from perphedge.config import parse_portfolio
from perphedge.core.defi import LendingPosition, LpV2Position, LpV3Position, StakedPosition
from perphedge.errors import ConfigError
from perphedge.usecases.plan import build_portfolio

HEAD = "prices: {ETH: 2000}\n"


def doc(positions: str, head: str = HEAD) -> Any:
    return yaml.safe_load(head + "positions:\n" + positions)


def parse(positions: str, head: str = HEAD) -> Any:
    return parse_portfolio(doc(positions, head), "x.yaml")


@pytest.mark.parametrize(
    ("positions", "field", "rule"),
    [
        ("  - {kind: lp_v4, pair: [ETH, USDC]}", "positions[0].kind", "'lp_v2', 'lp_v3', 'staked' or 'lending'"),
        ("  - {kind: lp_v3, pair: [ETH, USDC], range: [2500, 1500], liquidity: 1}", "positions[0].range", "lower"),
        ("  - {kind: lp_v3, pair: [ETH, USDC], range: [1500, .nan], liquidity: 1}", "positions[0].range[1]", "finite"),
        ("  - {kind: lp_v3, pair: [ETH, USDC], range: [0, 2500], liquidity: 1}", "positions[0].range[0]", "must be in"),
        ("  - {kind: lp_v3, pair: [ETH, USDC], range: [1500], liquidity: 1}", "positions[0].range", "[p_a, p_b]"),
        ("  - {kind: lp_v3, pair: [ETH, eth], range: [1, 2], liquidity: 1}", "positions[0].pair", "two different"),
        ("  - {kind: lp_v3, pair: [ETH], range: [1, 2], liquidity: 1}", "positions[0].pair", "two assets"),
        ("  - {kind: lp_v3, pair: [ETH, USDC], range: [1, 2]}", "positions[0].liquidity", "exactly one of"),
        (
            "  - {kind: lp_v3, pair: [ETH, USDC], range: [1, 2], liquidity: 1, amounts: {ETH: 1}}",
            "positions[0].liquidity",
            "exactly one of",
        ),
        ("  - {kind: lp_v3, pair: [ETH, USDC], range: [1, 2], liquidity: -4}", "positions[0].liquidity", "> 0"),
        ("  - {kind: lp_v3, pair: [ETH, USDC], range: [1, 2], liquidity: true}", "positions[0].liquidity", "number"),
        ("  - {kind: lp_v3, pair: [ETH, USDC], range: [1, 2], liquidity: '5'}", "positions[0].liquidity", "number"),
        (
            "  - {kind: lp_v3, pair: [ETH, USDC], range: [1, 2], amounts: {BTC: 1}}",
            "positions[0].amounts.BTC",
            "not an asset of the pair",
        ),
        (
            "  - {kind: lp_v3, pair: [ETH, USDC], range: [1, 2], amounts: {ETH: 0, USDC: 0}}",
            "positions[0].amounts",
            "all 0",
        ),
        ("  - {kind: lp_v3, pair: [ETH, USDC], range: [1, 2], liquidity: 1, rate: 2}", "positions[0].rate", "apply"),
        (
            "  - {kind: lp_v3, pair: [ETH, USDC], range: [1, 2], liquidity: 1, colour: red}",
            "positions[0].colour",
            "unknown key",
        ),
        ("  - {kind: lp_v2, pair: [ETH, USDC]}", "positions[0].amounts", "either `amounts`"),
        ("  - {kind: lp_v2, pair: [ETH, USDC], amounts: {ETH: 1}}", "positions[0].amounts", "both assets"),
        ("  - {kind: lp_v2, pair: [ETH, USDC], amounts: {ETH: 1, USDC: 0}}", "positions[0].amounts.USDC", "> 0"),
        ("  - {kind: lp_v2, pair: [ETH, USDC], share: 0.1}", "positions[0].reserves", "is required"),
        (
            "  - {kind: lp_v2, pair: [ETH, USDC], share: 1.5, reserves: {ETH: 1, USDC: 2000}}",
            "positions[0].share",
            "<= 1",
        ),
        ("  - {kind: lp_v2, pair: [ETH, USDC], amounts: {ETH: 1, eth: 2}}", "positions[0].amounts.eth", "same asset"),
        ("  - {kind: staked, asset: STETH, quantity: 1}", "positions[0].underlying", "is required"),
        ("  - {kind: staked, asset: STETH, underlying: steth, quantity: 1}", "positions[0].underlying", "must differ"),
        ("  - {kind: staked, asset: STETH, underlying: ETH, quantity: 0}", "positions[0].quantity", "> 0"),
        ("  - {kind: staked, asset: STETH, underlying: ETH, quantity: 1, depeg: 1}", "positions[0].depeg", "< 1"),
        ("  - {kind: staked, asset: STETH, underlying: ETH, quantity: 1, rate: 1000}", "positions[0].rate", "<= 100"),
        ("  - {kind: staked, asset: STETH, underlying: ETH, quantity: .inf}", "positions[0].quantity", "finite"),
        ("  - {kind: lending, supplied: {ETH: 1}}", "positions[0].liquidation_threshold", "is required"),
        ("  - {kind: lending, supplied: {}, liquidation_threshold: 0.8}", "positions[0].supplied", "at least one"),
        (
            "  - {kind: lending, supplied: {ETH: 1}, liquidation_threshold: 1.2}",
            "positions[0].liquidation_threshold",
            "< 1",
        ),
        (
            "  - {kind: lending, supplied: {ETH: 1}, borrowed: {eth: 1}, liquidation_threshold: 0.8}",
            "positions[0].borrowed.eth",
            "also supplied",
        ),
        (
            "  - {kind: lending, supplied: {ETH: -1}, liquidation_threshold: 0.8}",
            "positions[0].supplied.ETH",
            "> 0",
        ),
        (
            "  - {kind: lending, supplied: {ETH: 1}, liquidation_threshold: 0.8, liquidation_bonus: 0.6}",
            "positions[0].liquidation_bonus",
            "< 0.5",
        ),
        (
            "  - {kind: lending, supplied: {ETH: 1}, liquidation_threshold: 0.8, group: all}",
            "positions[0].group",
            "reserved",
        ),
        (
            "  - {kind: lending, supplied: {ETH: 1}, liquidation_threshold: 0.8, range: [1, 2]}",
            "positions[0].range",
            "apply",
        ),
    ],
)
def test_bad_positions_are_refused_naming_the_field(positions: str, field: str, rule: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(positions)
    msg = str(err.value)
    assert "\n" not in msg
    assert f"field `{field}`" in msg, msg
    assert rule in msg, msg


def test_a_portfolio_needs_holdings_or_positions() -> None:
    with pytest.raises(ConfigError, match="field `holdings`: must list at least one holding"):
        parse_portfolio({"prices": {"ETH": 1}, "holdings": []}, "x.yaml")
    pf = parse("  - {kind: staked, asset: STETH, underlying: ETH, quantity: 100}", HEAD + "holdings: []\n")
    assert pf.holdings == [] and len(pf.positions) == 1


def test_betas_may_name_assets_of_positions_only() -> None:
    pf = parse(
        "  - {kind: lp_v3, pair: [SOL, USDC], range: [100, 200], liquidity: 10}",
        "prices: {SOL: 150}\nbetas: {SOL: 1.4}\n",
    )
    assert pf.betas == {"SOL": 1.4}


def test_every_kind_builds_at_the_files_prices() -> None:
    pf = parse(
        "  - {kind: lp_v3, pair: [eth, USDC], range: [1500, 2500], liquidity: 4000, name: main}\n"
        "  - {kind: lp_v3, pair: [ETH, USDC], range: [1500, 2500], amounts: {ETH: 9.4427191, USDC: 23966.104}}\n"
        "  - {kind: lp_v3, pair: [ETH, USDC], range: [2500, 3000], amounts: {ETH: 2}}\n"
        "  - {kind: lp_v2, pair: [ETH, USDC], amounts: {ETH: 1, USDC: 2000}, group: lp}\n"
        "  - {kind: lp_v2, pair: [ETH, USDC], share: 0.01, reserves: {ETH: 500, USDC: 1000000}}\n"
        "  - {kind: staked, asset: stETH, underlying: ETH, quantity: 100, rate: 1.0, depeg: 0.05}\n"
        "  - {kind: lending, supplied: {ETH: 10}, borrowed: {USDC: 12000}, liquidation_threshold: 0.83}\n"
    )
    port = build_portfolio(pf, "x.yaml")
    kinds = [type(p) for p in port.positions]
    assert kinds == [
        LpV3Position,
        LpV3Position,
        LpV3Position,
        LpV2Position,
        LpV2Position,
        StakedPosition,
        LendingPosition,
    ]
    a, b, c, d, e, _, lend = port.positions
    assert isinstance(a, LpV3Position) and a.label == "main" and a.base == "ETH"
    assert isinstance(b, LpV3Position) and b.liquidity == pytest.approx(4000, rel=1e-6)
    assert isinstance(c, LpV3Position) and c.range_status(port.prices) == "below"
    assert isinstance(d, LpV2Position) and d.liquidity == pytest.approx(2000**0.5) and d.group == "lp"
    assert isinstance(e, LpV2Position) and e.liquidity == pytest.approx((5 * 10000) ** 0.5)
    assert isinstance(lend, LendingPosition) and lend.bonus_assumed


@pytest.mark.parametrize(
    ("positions", "field", "rule"),
    [
        (
            "  - {kind: lp_v3, pair: [ETH, USDC], range: [1500, 2500], amounts: {ETH: 1, USDC: 500}}\n",
            "positions[0].amounts",
            "imply a pool price",
        ),
        (
            "  - {kind: lp_v3, pair: [ETH, USDC], range: [2500, 3000], amounts: {ETH: 1, USDC: 500}}\n",
            "positions[0].amounts",
            "below its range",
        ),
        (
            "  - {kind: lp_v3, pair: [ETH, USDC], range: [1000, 1500], amounts: {ETH: 1}}\n",
            "positions[0].amounts",
            "above its range",
        ),
        (
            "  - {kind: lp_v3, pair: [ETH, USDC], range: [1500, 2500], amounts: {USDC: 1}}\n",
            "positions[0].amounts",
            "inside its range",
        ),
        ("  - {kind: lp_v2, pair: [ETH, USDC], amounts: {ETH: 1, USDC: 500}}\n", "positions[0].amounts", "imply"),
        (
            "  - {kind: lp_v2, pair: [ETH, USDC], share: 0.5, reserves: {ETH: 1, USDC: 500}}\n",
            "positions[0].reserves",
            "imply",
        ),
        ("  - {kind: lp_v2, pair: [SOL, USDC], amounts: {SOL: 1, USDC: 500}}\n", "positions[0]", "no price for SOL"),
    ],
)
def test_amounts_must_fit_the_price(positions: str, field: str, rule: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_portfolio(parse(positions), "x.yaml")
    msg = str(err.value)
    assert msg.startswith(f"x.yaml: field `{field}`"), msg
    assert rule in msg and "\n" not in msg


def test_a_loan_is_bounded_by_its_gross_size_not_its_net_value() -> None:
    pf = parse("  - {kind: lending, supplied: {ETH: 1.0e+14}, borrowed: {USDC: 1.0e+14}, liquidation_threshold: 0.8}\n")
    with pytest.raises(ConfigError, match=r"field `positions\[0\]`: .* holds 2e\+17 USD, above the 1e\+15 USD"):
        build_portfolio(pf, "x.yaml")
