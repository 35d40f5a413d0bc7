"""Performance metrics of equity curves (daily steps, 365 periods a year)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from perphedge.errors import DataError

__all__ = ["capture", "equity_metrics", "max_drawdown"]

Array = NDArray[np.float64]


def max_drawdown(equity: Array) -> tuple[float, int, int]:
    """Largest peak-to-trough fall (a negative fraction), with the peak and trough indices."""
    eq = np.asarray(equity, dtype=np.float64)
    peaks = np.maximum.accumulate(eq)
    dd = eq / peaks - 1.0
    trough = int(np.argmin(dd))
    peak = int(np.argmax(eq[: trough + 1])) if trough > 0 else 0
    return float(dd[trough]), peak, trough


def equity_metrics(equity: Array, periods_per_year: float = 365.0) -> dict[str, Any]:
    """Total and annual return, volatility, max drawdown, Sharpe and Sortino (rf = 0), CVaR 95% of daily returns."""
    eq = np.asarray(equity, dtype=np.float64)
    if len(eq) < 3 or not np.isfinite(eq).all():
        raise DataError("an equity curve needs at least 3 finite values")
    if (eq <= 0).any():
        # a wiped-out book: returns after zero are undefined
        raise DataError("the equity curve reaches zero or below")
    r = eq[1:] / eq[:-1] - 1.0
    years = (len(eq) - 1) / periods_per_year
    total = eq[-1] / eq[0] - 1.0
    sd = float(np.std(r, ddof=1))
    down = r[r < 0]
    dsd = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))) if len(r) else 0.0
    tail = np.sort(r)[: max(1, math.ceil(0.05 * len(r)))]
    mdd, peak, trough = max_drawdown(eq)
    return {
        "start_value": float(eq[0]),
        "end_value": float(eq[-1]),
        "pnl": float(eq[-1] - eq[0]),
        "total_return": float(total),
        "annual_return": float((1 + total) ** (1 / years) - 1) if years > 0 else None,
        "volatility": sd * math.sqrt(periods_per_year),
        "max_drawdown": mdd,
        "max_drawdown_peak": peak,
        "max_drawdown_trough": trough,
        "sharpe": float(np.mean(r) / sd * math.sqrt(periods_per_year)) if sd > 0 else None,
        "sortino": float(np.mean(r) / dsd * math.sqrt(periods_per_year)) if dsd > 0 else None,
        "cvar_95": float(np.mean(tail)),
        "worst_day": float(r.min()),
        "down_days": len(down),
    }


def capture(hedged: Array, unhedged: Array) -> tuple[float | None, float | None]:
    """Downside and upside capture: mean hedged daily return over mean unhedged one, on the unhedged down / up days."""
    h = np.asarray(hedged, dtype=np.float64)
    u = np.asarray(unhedged, dtype=np.float64)
    rh, ru = h[1:] / h[:-1] - 1.0, u[1:] / u[:-1] - 1.0
    down, up = ru < 0, ru > 0
    dc = float(rh[down].mean() / ru[down].mean()) if down.any() else None
    uc = float(rh[up].mean() / ru[up].mean()) if up.any() else None
    return dc, uc
