"""Every vector of ``contract_vectors.json`` (``tests/golden/data``, a checked copy of
``../shared/reference``) is a test.

The numbers are read from the file, never copied by hand. An op this file does not know fails,
so a new vector cannot be skipped silently.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from perphedge.core import contracts as C
from perphedge.core.instruments import MarginSchedule, MarginTier, TierStyle
from tests.conftest import GOLDEN_DATA, load_vectors

VECTORS = load_vectors()


def test_reference_file_present() -> None:
    assert (GOLDEN_DATA / "contract_vectors.json").is_file()
    assert len(VECTORS) >= 30
    assert len({v["id"] for v in VECTORS}) == len(VECTORS)  # one test per vector: ids are unique


def _schedule_from(inputs: dict[str, Any]) -> MarginSchedule:
    return MarginSchedule.single(
        inputs["mmr"], inputs.get("maintenance_amount_coin", inputs.get("maintenance_amount", 0.0))
    )


def _run(op: str, i: dict[str, Any]) -> dict[str, Any]:
    if op == "inverse_pnl":
        return {"pnl_coin": C.inverse_pnl_coin(i["side"], i["notional_usd"], i["entry"], i["exit"])}
    if op == "inverse_value":
        return {"value_coin": C.inverse_value_coin(i["notional_usd"], i["price"])}
    if op == "inverse_avg_entry":
        return {"avg_entry": C.inverse_avg_entry([tuple(f) for f in i["fills"]])}
    if op == "inverse_initial_margin":
        return {"im_coin": C.initial_margin("inverse", i["notional_usd"], i["entry"], i["leverage"])}
    if op == "funding_payment":
        if i["kind"] == "inverse":
            if "position_value_coin" in i:
                # value given in coin: Q = value·mark for any mark; use mark 1
                size, mark = i["position_value_coin"], 1.0
            else:
                size, mark = i["contracts"] * i["face_value_usd"], i["mark"]
            return {"received_coin": C.funding_received("inverse", i["side"], size, mark, i["funding_rate"])}
        return {"received_quote": C.funding_received("linear", i["side"], i["quantity"], i["mark"], i["funding_rate"])}
    if op == "tiered_maintenance_margin":
        sched = MarginSchedule.marginal([(f, m, 100.0) for f, m in i["tiers"]])
        v = i["position_value"]
        return {"mm": sched.maintenance_margin(v), "deduction": sched.maintenance_amount(v)}
    if op == "maintenance_amount_chain":
        return {"maintenance_amount": C.maintenance_amount_chain([tuple(t) for t in i["tiers"]], i["tier_index"])}
    if op == "maintenance_margin_coin":
        venue = i.get("venue")
        if venue == "deribit":
            assert i["mm_rate_formula"] == "0.01 + size_btc*0.00005"
            sched = MarginSchedule(
                style=TierStyle.SIZE_LINEAR, tiers=(MarginTier(floor=0, mmr=0.01, max_leverage=50),), slope=0.00005
            )
            return {"mm_coin": sched.maintenance_margin(i["position_size_coin"])}
        if venue == "bitmex":
            base, step = i["risk_limit_base"], i["step"]
            rows = [(0.0, i["base_mmr"], 100.0)]
            rows += [(base + k * step, i["base_mmr"] + (k + 1) * i["step_mmr"], 100.0) for k in range(10)]
            sched = MarginSchedule(
                style=TierStyle.STEPPED, tiers=tuple(MarginTier(floor=f, mmr=m, max_leverage=lv) for f, m, lv in rows)
            )
            return {"mm_coin": sched.maintenance_margin(i["position_value_coin"])}
        notional_coin = C.position_value("inverse", i["contracts"] * i["face_value_usd"], i["mark"])
        sched = MarginSchedule.single(i["mmr"], i["maintenance_amount_coin"])
        return {"notional_coin": notional_coin, "mm_coin": sched.maintenance_margin(notional_coin)}
    if op == "liquidation_isolated":
        kind = i["kind"]
        if kind == "inverse":
            size = i["notional_usd"]
            margin = C.initial_margin("inverse", size, i["entry"], i["leverage"])
        else:
            size = i.get("quantity", 1.0)
            margin = (
                i["wallet_balance"]
                if "wallet_balance" in i
                else C.initial_margin("linear", size, i["entry"], i["leverage"])
            )
        res = C.liquidation_price(
            kind=kind,
            method=i["method"],
            side=i["side"],
            size=size,
            entry=i["entry"],
            margin=margin,
            schedule=_schedule_from(i),
        )
        return {"liquidation_price": res.price}
    if op == "bankruptcy_price":
        size = 1.0
        margin = C.initial_margin(i["kind"], size, i["entry"], i["leverage"])
        return {"bankruptcy_price": C.bankruptcy_price(i["kind"], i["side"], size, i["entry"], margin)}
    if op == "synthetic_usd":
        coin, q, e = i["hold_coin"], i["short_notional_usd"], i["entry"]
        return {"equity_usd": [(coin + C.inverse_pnl_coin("short", q, e, p)) * p for p in i["prices"]]}
    if op == "fee":
        return {"fee_coin": C.fee(i["kind"], i["notional_usd"], i["price"], i["fee_rate"])}
    raise AssertionError(f"unknown reference op {op!r}: add it to this test")


def _close(got: Any, want: Any, tol: float) -> bool:
    if want is None:
        return got is None
    if isinstance(want, list):
        return len(got) == len(want) and all(_close(g, w, tol) for g, w in zip(got, want, strict=True))
    return got is not None and math.isclose(got, want, rel_tol=0, abs_tol=max(tol, 1e-12))


@pytest.mark.parametrize("vector", VECTORS, ids=[v["id"] for v in VECTORS])
def test_reference_vector(vector: dict[str, Any]) -> None:
    got = _run(vector["op"], vector["inputs"])
    for key, want in vector["expected"].items():
        assert key in got, f"{vector['id']}: no result {key}"
        assert _close(got[key], want, vector["abs_tol"]), (
            f"{vector['id']} ({vector['source']}): {key} = {got[key]!r}, expected {want!r} ± {vector['abs_tol']}"
        )
