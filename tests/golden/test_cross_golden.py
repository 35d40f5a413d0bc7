"""Published cross-margin examples (``tests/golden/data/cross_margin_vectors.json``) reproduced by
:mod:`perphedge.core.cross`, each with its source (URL and the date it was read) in the file.

* XM1 Binance USDⓈ-M cross, ETHUSDT + BTCUSDT, wallet 1,535,443.01 USDT: 1,153.26 and 26,316.89
  (https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93, read 2026-11-23).
* XM2 Binance COIN-M cross, wallet 101 BTC, long 100,000 BTCUSD_PERP at 45,000: 33,599.40
  (dev.binance.vision thread 6292 and the COIN-M FAQ ceccfcfb4e3a45e3b48b0b1bb1a8ae46, read 2026-11-23).
* XM3 Bybit classic inverse cross, balance 0.5 BTC, long 10,000 at 8,000: BP 5,718.57, LP 5,739.50
  (https://help.bybit.com/hc/en-us/articles/360039261334, read 2026-11-23).

The numbers are read from the file, never copied by hand; a vector whose venue the test does not
know fails.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from typing import Any

import pytest

from perphedge.core.contracts import Side
from perphedge.core.cross import (
    CrossAccount,
    CrossPosition,
    CrossVenue,
    account_state,
    cross_liquidation,
    round_liquidation_price,
)
from perphedge.core.instruments import MarginSchedule
from perphedge.specs import default_registry
from tests.conftest import GOLDEN_DATA

FILE = GOLDEN_DATA / "cross_margin_vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(FILE.read_text(encoding="utf-8"))["vectors"]


def _account(v: dict[str, Any]) -> CrossAccount:
    reg = default_registry(None)
    positions = []
    for p in v["positions"]:
        inst = reg.get(p["instrument"])
        if "taker_fee" in v:
            inst = replace(inst, taker_fee=v["taker_fee"])
        schedule = None
        if "mmr" in p:
            schedule = MarginSchedule.single(p["mmr"], p.get("maintenance_amount", 0.0))
        elif p["instrument"] in v.get("tiers", {}):
            schedule = MarginSchedule.marginal([tuple(r) for r in v["tiers"][p["instrument"]]])
        positions.append(
            CrossPosition(
                instrument=inst,
                side=Side(p["side"]),
                contracts=p["contracts"],
                entry=p["entry"],
                mark=p["mark"],
                schedule=schedule,
            )
        )
    return CrossAccount(venue=CrossVenue(v["venue"]), wallet_balance=v["wallet_balance"], positions=tuple(positions))


def test_every_vector_has_a_source_with_url_and_date() -> None:
    assert len(VECTORS) >= 3
    assert len({v["id"] for v in VECTORS}) == len(VECTORS)
    for v in VECTORS:
        assert "https://" in v["source"] and "read 2026-11-23" in v["source"], v["id"]
        assert v["kind"] in ("published", "computed")
        assert set(v["expected"]) == set(v["abs_tol"]), v["id"]


def test_file_matches_its_recorded_hash() -> None:
    sums = dict(
        reversed(line.split(None, 1)) for line in (GOLDEN_DATA / "SHA256SUMS").read_text().splitlines() if line.strip()
    )
    assert hashlib.sha256(FILE.read_bytes()).hexdigest() == sums[FILE.name]


@pytest.mark.parametrize("v", VECTORS, ids=[v["id"] for v in VECTORS])
def test_cross_vector(v: dict[str, Any]) -> None:
    account = _account(v)
    result = cross_liquidation(account)
    for key, expected in v["expected"].items():
        tol = v["abs_tol"][key]
        for i, want in enumerate(expected):
            pos, liq = account.positions[i], result.positions[i]
            if key == "liquidation_price_on_tick":
                assert liq.liquidation_price is not None
                if account.venue in (CrossVenue.BINANCE_COINM, CrossVenue.BINANCE_USDM):
                    # Binance truncates its displayed price to the tick
                    tick = pos.instrument.tick_size
                    got = round(math.floor(liq.liquidation_price / tick + 1e-9) * tick, 10)
                else:
                    got = round_liquidation_price(liq.liquidation_price, pos.mark, pos.instrument.tick_size)
            else:
                got = getattr(liq, key)
            assert got is not None, (v["id"], key, i)
            assert abs(got - want) <= tol, (v["id"], key, i, got, want)


def test_binance_usdm_example_gives_the_account_state() -> None:
    """Equity = WB + Σ UPNL and total MM = Σ (q·mark·MMR − cum) of the published example."""
    v = next(v for v in VECTORS if v["id"] == "XM1")
    st = account_state(_account(v))
    assert st.equity == pytest.approx(1535443.01 - 448192.88514 - 56354.56848, abs=1e-4)
    assert st.total_maintenance == pytest.approx(356512.508122 + 71200.811444, abs=1e-4)
    assert st.margin_ratio == pytest.approx(st.total_maintenance / st.equity)
    assert not st.liquidated


def test_bybit_example_without_the_fee_is_further_away() -> None:
    """The fee to close moves Bybit's liquidation price towards the mark: without it 5,731.3, not 5,739.08."""
    v = next(v for v in VECTORS if v["id"] == "XM3")
    acc = _account(v)
    free = replace(
        acc,
        positions=(
            replace(acc.positions[0], instrument=replace(acc.positions[0].instrument, closing_fee_in_margin=False)),
        ),
    )
    with_fee = cross_liquidation(acc).positions[0]
    no_fee = cross_liquidation(free).positions[0]
    assert no_fee.liquidation_price is not None and with_fee.liquidation_price is not None
    assert no_fee.liquidation_price < with_fee.liquidation_price
    # without the fee the BP is E/(1 + B·E/Q) = 8,000/1.4 and the LP Q/(Q/E + B − MM)
    assert no_fee.bankruptcy_price == pytest.approx(8000 / 1.4, rel=1e-12)
    assert no_fee.liquidation_price == pytest.approx(10000 / (1.25 + 0.5 - 0.00625), rel=1e-12)
