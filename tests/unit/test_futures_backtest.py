"""The dated-futures backtest kernel, worked by hand on tiny series."""

from __future__ import annotations

import pytest

from perphedge.core.futures import DAY_MS
from perphedge.core.futures_backtest import ContractSeries, simulate_dated, simulate_perpetual
from perphedge.core.instruments import ContractKind
from perphedge.errors import ConfigError, DataError

H8 = 8 * 3_600_000


def _mm(rate: float = 0.005):  # type: ignore[no-untyped-def]
    return lambda value: value * rate


def _contracts() -> list[ContractSeries]:
    a = [102.0, 101.0, 100.5, None]
    b = [105.0, 104.0, 103.0, 103.0]
    return [
        ContractSeries(symbol="X_A", expiry_ms=3 * DAY_MS + H8, close=a, high=a),
        ContractSeries(symbol="X_B", expiry_ms=100 * DAY_MS, close=b, high=b),
    ]


def test_linear_dated_leg_with_one_roll_by_hand() -> None:
    res = simulate_dated(
        kind=ContractKind.LINEAR,
        day_ms=[0, DAY_MS, 2 * DAY_MS, 3 * DAY_MS],
        spot=[100.0] * 4,
        contracts=_contracts(),
        target_usd=[1000.0] * 4,
        roll_days=1,
        leverage=2,
        fee_rate=0.001,
        slippage_bps=0,
        maintenance_margin=_mm(),
    )
    q = 1000 / 102  # sold at 102: 9.80392 coin; fee 0.001·q·102 = 1.0; collateral 500 paid from cash
    assert res.book_usd[0] == pytest.approx(-1.0)
    assert res.book_usd[1] == pytest.approx(-1.0 + q * (102 - 101))
    # roll on bar 2 (its close 2d is after 3d8h − 1d): buy X_A back at 100.5, sell X_B at 103
    realised = -1.0 + q * (102 - 100.5) - 0.001 * q * 100.5 - 0.001 * (1000 / 103) * 103
    assert res.book_usd[2] == pytest.approx(realised) == pytest.approx(11.7205882, abs=1e-6)
    assert res.book_usd[3] == pytest.approx(realised)  # X_B unchanged at 103
    assert [(r.day, r.from_contract, r.to_contract) for r in res.rolls] == [(0, "", "X_A"), (2, "X_A", "X_B")]
    assert res.fees_usd == pytest.approx(1.0 + 0.001 * q * 100.5 + 1.0)
    assert res.rolls[1].near_basis == pytest.approx(0.005) and res.rolls[1].far_basis == pytest.approx(0.03)
    assert res.liquidated_day is None and res.funding_usd == [0.0] * 4


def test_inverse_perpetual_leg_with_funding_by_hand() -> None:
    fund_ms = [DAY_MS + H8, DAY_MS + 2 * H8, 2 * DAY_MS, 2 * DAY_MS + H8, 2 * DAY_MS + 2 * H8, 3 * DAY_MS]
    res = simulate_perpetual(
        kind=ContractKind.INVERSE,
        day_ms=[0, DAY_MS, 2 * DAY_MS],
        spot=[50_000.0, 50_000.0, 40_000.0],
        close=[50_000.0, 50_000.0, 40_000.0],
        high=[50_000.0, 50_000.0, 40_000.0],
        funding_ms=fund_ms,
        funding_rate=[0.0001] * 6,
        resize_days=[],
        target_usd=[10_000.0] * 3,
        leverage=2,
        fee_rate=0.0005,
        slippage_bps=0,
        maintenance_margin=_mm(),
    )
    # opened at 50,000: fee 0.0005·10,000/50,000 = 0.0001 BTC, settled from cash with the 0.1 BTC collateral
    # bought (5,000 + 5 USD): the account holds exactly 0.1 BTC
    assert res.book_usd[0] == pytest.approx(-5.0)
    # day 1: three settlements of (10,000/50,000)·0.0001 = 0.00002 BTC each
    assert res.funding_usd[1] == pytest.approx(3.0)
    assert res.book_usd[1] == pytest.approx((0.1 + 0.00006) * 50_000 - 5_005)
    # day 2 at 40,000: funding 3·(10,000/40,000)·0.0001 = 0.000075 BTC; short PnL 10,000·(1/40,000 − 1/50,000) = 0.05
    coin = 0.1 + 0.00006 + 0.000075 + 0.05
    assert res.book_usd[2] == pytest.approx(coin * 40_000 - 5_005) == pytest.approx(1_000.4)
    assert res.funding_usd[2] == pytest.approx(6.0)


def test_a_linear_short_is_liquidated_at_its_maintenance_margin() -> None:
    a = [100.0, 100.0, 180.0, 100.0]
    series = [ContractSeries(symbol="X_A", expiry_ms=100 * DAY_MS, close=a, high=a)]
    res = simulate_dated(
        kind=ContractKind.LINEAR,
        day_ms=[0, DAY_MS, 2 * DAY_MS, 3 * DAY_MS],
        spot=[100.0, 100.0, 180.0, 100.0],
        contracts=series,
        target_usd=[1000.0] * 4,
        roll_days=1,
        leverage=2,
        fee_rate=0.0,
        slippage_bps=0,
        maintenance_margin=_mm(),
    )
    # a 2x short from 100 has 500 of margin for 10 coin: at 150 its equity is 0
    assert res.liquidated_day == 2
    assert res.liquidation_loss_usd == pytest.approx(500.0)
    assert res.book_usd[2] == res.book_usd[3] == pytest.approx(-500.0)


@pytest.mark.parametrize(
    "change,error,message",
    [
        ({"roll_days": 0}, ConfigError, "must be a whole number >= 1"),
        ({"roll_days": True}, ConfigError, "must be a whole number >= 1"),
        ({"roll_days": 200}, DataError, "nothing to open or roll into"),
        ({"leverage": 0.5}, ConfigError, "`leverage`"),
        ({"fee_rate": -0.1}, ConfigError, "fee rate"),
        ({"spot": [100.0, 0.0, 100.0, 100.0]}, DataError, "spot close of bar 1"),
        ({"target_usd": [1.0, float("nan"), 1.0, 1.0]}, ConfigError, "hedge target of bar 1"),
        ({"day_ms": [0]}, DataError, "at least two daily bars"),
        ({"spot": [100.0]}, ConfigError, "same length"),
    ],
)
def test_kernel_refuses_wrong_inputs(change: dict[str, object], error: type[Exception], message: str) -> None:
    args: dict[str, object] = {
        "kind": ContractKind.LINEAR,
        "day_ms": [0, DAY_MS, 2 * DAY_MS, 3 * DAY_MS],
        "spot": [100.0] * 4,
        "contracts": _contracts(),
        "target_usd": [1000.0] * 4,
        "roll_days": 1,
        "leverage": 2,
        "fee_rate": 0.001,
        "slippage_bps": 0,
        "maintenance_margin": _mm(),
    }
    args.update(change)
    with pytest.raises(error) as info:
        simulate_dated(**args)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_a_roll_with_no_next_contract_is_refused() -> None:
    only = [_contracts()[0]]
    with pytest.raises(DataError, match="nothing to open or roll into"):
        simulate_dated(
            kind=ContractKind.LINEAR,
            day_ms=[0, DAY_MS, 2 * DAY_MS, 3 * DAY_MS],
            spot=[100.0] * 4,
            contracts=only,
            target_usd=[1000.0] * 4,
            roll_days=1,
            leverage=2,
            fee_rate=0.001,
            slippage_bps=0,
            maintenance_margin=_mm(),
        )
