"""perphedge: protect a crypto portfolio against drawdowns with short perpetual futures.

The curated public API: units, instruments, contract maths, portfolios and hedge sizing.
Everything here is pure (no files, network or clock); the CLI and adapters live elsewhere.
"""

from __future__ import annotations

__version__ = "0.1.0"

from perphedge.core.contracts import (
    Side,
    bankruptcy_price,
    fee,
    funding_received,
    initial_margin,
    inverse_avg_entry,
    liquidation_price,
    pnl,
)
from perphedge.core.hedge import CollateralSource, HedgePlan, HedgeRequest, LegRequest, SizingMethod, plan_hedge
from perphedge.core.instruments import ContractKind, Instrument, LiquidationMethod, MarginSchedule
from perphedge.core.portfolio import Holding, Portfolio
from perphedge.core.scenarios import Scenario, evaluate
from perphedge.core.units import Asset, Money, Price
from perphedge.errors import (
    ConfigError,
    DataError,
    ExchangeError,
    InfeasibleHedgeError,
    PerphedgeError,
    UnitMismatchError,
)

__all__ = [
    "Asset",
    "CollateralSource",
    "ConfigError",
    "ContractKind",
    "DataError",
    "ExchangeError",
    "HedgePlan",
    "HedgeRequest",
    "Holding",
    "InfeasibleHedgeError",
    "Instrument",
    "LegRequest",
    "LiquidationMethod",
    "MarginSchedule",
    "Money",
    "PerphedgeError",
    "Portfolio",
    "Price",
    "Scenario",
    "Side",
    "SizingMethod",
    "UnitMismatchError",
    "__version__",
    "bankruptcy_price",
    "evaluate",
    "fee",
    "funding_received",
    "initial_margin",
    "inverse_avg_entry",
    "liquidation_price",
    "plan_hedge",
    "pnl",
]
