"""The baseline: the same static-policy backtest (one linear leg, stablecoin margin) written the
straightforward way — a pandas DataFrame walked row by row. Kept as the reference the engine is
measured against (`bench_backtest.py`) and tested to agree with it (`tests/integration/test_backtest.py`).
"""

from __future__ import annotations

import math

import pandas as pd


def baseline_static_linear(
    frame: pd.DataFrame,
    *,
    ratio: float,
    band: float,
    leverage: float,
    lot: float,
    mmr: float,
    taker: float,
    slippage: float,
) -> pd.Series:
    """``frame`` columns: spot (USD value of the holdings), exposure, close, high, funding (per day).

    Returns the hedged book's USD value per day.
    """
    q = 0.0
    entry = 0.0
    margin = 0.0
    cash = 0.0
    liq = math.inf
    dead = False
    values = []
    for i, (_, row) in enumerate(frame.iterrows()):
        p = row["close"]
        if i > 0 and q > 0:
            if row["high"] >= liq:
                q, margin, liq, dead = 0.0, 0.0, math.inf, True
            else:
                margin += row["funding"] * q * p
        upnl = q * (entry - p) if q > 0 else 0.0
        target = ratio * row["exposure"]
        if not dead:
            if q == 0:
                act = target > 0
            else:
                act = target <= 0 or abs(-q * p + target) > band * target
            if act:
                margin += upnl
                q_new = max(0.0, math.floor(target / p / lot + 0.5) * lot)
                traded = abs(q_new - q)
                margin -= traded * p * (taker + slippage)
                q, entry = q_new, p
                need = q * p / leverage if q > 0 else 0.0
                cash -= need - margin
                margin = need
                liq = (margin + q * entry) / (q * mmr + q) if q > 0 else math.inf
                upnl = 0.0
        values.append(row["spot"] + cash + margin + upnl)
    return pd.Series(values, index=frame.index)
