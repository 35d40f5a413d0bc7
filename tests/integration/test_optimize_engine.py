"""optimize's own run of a design through the kernel equals ``perphedge backtest`` of the same design."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO


@pytest.mark.parametrize(
    ("hedge", "kind", "collateral", "leverage", "policy", "ratio"),
    [
        ("btc", "linear", "stable", 2.0, "band", 0.25),
        ("btc", "inverse", "buy", 3.0, "calendar", 0.5),
        ("eth", "linear", "stable", 1.0, "band", 0.75),
    ],
)
def test_design_path_equals_backtest(
    sample_store_path: Path, hedge: str, kind: str, collateral: str, leverage: float, policy: str, ratio: float
) -> None:
    from perphedge.config import parse_portfolio, parse_run, read_yaml
    from perphedge.data.store import MarketStore
    from perphedge.specs import default_registry
    from perphedge.usecases.backtest import prepare, run
    from perphedge.usecases.optimize import OptimizeRequest, evaluate, prepare_market

    file = str(REPO / "examples/altcoins.yaml")
    pdoc, _ = read_yaml(file)
    pfile = parse_portfolio(pdoc, file)
    reg = default_registry()
    req = OptimizeRequest(
        file=file,
        hedges=(hedge,),
        kinds=(kind,),
        methods=("notional",),
        collaterals=(collateral,),
        policies=(policy,),
        ratios=(ratio,),
        leverages=(leverage,),
        start="2022-01-01",
        end="2023-12-31",
    )
    with MarketStore(sample_store_path, read_only=True) as store:
        market = prepare_market(pfile, pdoc, store, reg, req)
        designs, paths, _ = evaluate(market, req)
        assert len(designs) == 1
        inst = market.choices[0].legs[0][0]
        pol = {"kind": "drift_band", "ratio": ratio} if policy == "band" else {"kind": "calendar", "ratio": ratio}
        rc = parse_run(
            {
                "portfolio": pdoc,
                "start": "2022-01-01",
                "end": "2023-12-31",
                "hedge": {"instrument": inst, "leverage": leverage, "collateral": collateral},
                "policy": pol,
                "margin": {"reopen_after_days": 1},
            },
            "check",
        )
        doc = run(prepare(rc, pfile, store, reg), rc, config_hash="x", full=True)
    hedged = np.array([row["hedged_usd"] for row in doc["equity"]])
    np.testing.assert_allclose(paths[0].book, hedged, rtol=1e-9)
    carry = float(paths[0].carry.sum())
    assert carry == pytest.approx(doc["funding_received_usd"] - doc["fees_usd"] - doc["slippage_usd"], rel=1e-9)
