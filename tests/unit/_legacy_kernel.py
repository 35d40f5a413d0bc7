"""FROZEN copy of ``perphedge.core._kernels`` as of main 8d1163c (before the step refactor, design book.md §1.2).

Do not edit: tests/unit/test_legstep.py asserts that the kernel built from ``core/legstep.py`` equals this one
on random paths. The original module docstring follows.

 Path-dependent backtest kernel of one short hedge leg: ``leg_path_python`` and its numba twin ``leg_path``.

Float64 arrays in, a float64 output matrix out; no Python objects, so numba compiles it in
nopython mode. ``PERPHEDGE_DISABLE_NUMBA=1`` uses the plain twin. A test asserts they agree.

Accounting (per leg, daily steps, decisions at the close of each day):

* The leg's isolated account holds ``margin`` in the settle asset (coin for inverse, quote for
  linear) plus the unrealised PnL of ``n`` contracts entered at ``entry``.
* Day ``t`` (after the first): the bar's **high** is checked against the liquidation price (a
  short is liquidated when the price rises to it); a liquidated leg closes at the bankruptcy
  price: its whole margin is lost. Otherwise the day's funding (``funding[t]`` = sum of that day's
  settlement rates; positive = shorts receive) is credited on the position value at the close.
* At the close, if rebalancing is allowed and the hedge is off target by more than ``band``, the
  unrealised PnL is realised into the margin (closing and reopening at the close price changes
  nothing but fees), the position is resized to the target, and the margin is reset to
  ``value / leverage`` by moving collateral in or out (bought with / sold for cash, taken from /
  returned to the spot holdings, or stablecoins). Fees (taker) and slippage are charged on the
  traded notional, in the settle asset.

Hedge delta (USD for a +100% linearised move of the underlying) by collateral:
``buy``: ``(M − Q/E)·P`` (the bought coins are a long); ``holdings``: ``−Q·P/E``; linear: ``−q·P``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["OUT_COLUMNS", "PARAMS", "leg_path", "leg_path_python", "short_liquidation_price"]

Array = NDArray[np.float64]

#: Order of the entries of the ``params`` vector.
PARAMS = (
    "kind",
    "collateral",
    "leverage",
    "contract_size",
    "lot",
    "mmr",
    "cum",
    "family",
    "taker",
    "slippage",
    "band",
    "reopen_after",
    "top_up",
    "top_up_level",
)
#: Columns of the output matrix.
OUT_COLUMNS = (
    "account_usd",
    "cash_flow_usd",
    "spot_coin_flow",
    "funding_usd",
    "fee_usd",
    "slippage_usd",
    "notional_usd",
    "delta_usd",
    "liq_price",
    "liquidated",
    "liq_loss_usd",
    "rebalanced",
    "top_up_usd",
    "contracts",
)
INVERSE, LINEAR = 0.0, 1.0
BUY, HOLDINGS, STABLE = 0.0, 1.0, 2.0
ENTRY_FAMILY, AT_LP_FAMILY = 0.0, 1.0


def _short_liquidation_price(
    kind: float, size: float, entry: float, margin: float, mmr: float, cum: float, family: float
) -> float:
    """Liquidation price of a short (``inf`` when it cannot be liquidated); one margin tier."""
    if size <= 0.0:
        return math.inf
    if kind == INVERSE:
        if family == ENTRY_FAMILY:
            mm = size / entry * mmr - cum
            denom = size / entry - margin + mm
        else:
            denom = margin + cum - size / entry
            if denom >= 0.0:
                return math.inf
            return (size * mmr - size) / denom
        if denom <= 0.0:
            return math.inf
        return size / denom
    if family == ENTRY_FAMILY:
        mm = size * entry * mmr - cum
        return entry + (margin - mm) / size
    return (margin + cum + size * entry) / (size * mmr + size)


def leg_path_python(
    o: Array,
    h: Array,
    lo: Array,
    c: Array,
    exposure: Array,
    target: Array,
    allowed: Array,
    funding: Array,
    params: Array,
    out: Array,
) -> None:
    """Run one short leg through the days of ``c``; fills ``out`` (``len(c)`` × ``len(OUT_COLUMNS)``)."""
    kind = params[0]
    coll = params[1]
    lev = params[2]
    cs = params[3]
    lot = params[4]
    mmr = params[5]
    cum = params[6]
    family = params[7]
    taker = params[8]
    slip = params[9]
    band = params[10]
    reopen_after = params[11]
    top_up = params[12]
    top_up_level = params[13]
    n_days = c.shape[0]
    n = 0.0  # contracts
    entry = 0.0
    margin = 0.0  # settle asset
    liq = math.inf
    closed_until = 0
    for t in range(n_days):
        for k in range(out.shape[1]):
            out[t, k] = 0.0
        p = c[t]
        size = n * cs
        # ---- liquidation on the bar's high, then funding on the position held through the day
        if t > 0 and size > 0.0:
            if h[t] >= liq:
                out[t, 9] = 1.0
                out[t, 8] = liq
                out[t, 10] = margin * liq if kind == INVERSE else margin
                n = 0.0
                size = 0.0
                margin = 0.0
                liq = math.inf
                if reopen_after < 0.0:
                    closed_until = n_days + 1
                else:
                    closed_until = t + int(reopen_after)
            else:
                value = size / p if kind == INVERSE else size * p  # settle units
                f = funding[t] * value
                margin += f
                out[t, 3] = f * p if kind == INVERSE else f
        # ---- rebalance at the close
        upnl = 0.0
        if size > 0.0:
            upnl = size * (1.0 / p - 1.0 / entry) if kind == INVERSE else size * (entry - p)
        if kind == INVERSE:
            if coll == BUY:
                delta_now = (margin + upnl - size / p) * p if size > 0.0 else margin * p
            else:
                delta_now = -size
        else:
            delta_now = -size * p
        tr = target[t]
        want = t >= closed_until and allowed[t] > 0.0 and not math.isnan(tr)
        d_target = 0.0
        if want:
            d_target = tr * exposure[t]
            if size == 0.0:
                want = d_target > 0.0
            else:
                want = d_target <= 0.0 or abs(delta_now + d_target) > band * d_target
        if want:
            # realise into the margin at the close, then resize
            margin += upnl
            upnl = 0.0
            if kind == INVERSE:
                if coll == BUY:
                    if lev <= 1.0:
                        q_new = 0.0
                    else:
                        q_new = d_target * lev / (lev - 1.0)
                else:
                    q_new = d_target
                n_new = math.floor(q_new / cs / lot + 0.5) * lot
            else:
                n_new = math.floor(d_target / p / cs / lot + 0.5) * lot
            n_new = max(n_new, 0.0)
            traded = abs(n_new - n) * cs  # USD (inverse) or coin (linear)
            if kind == INVERSE:
                fee = traded / p * taker
                slp = traded / p * slip
            else:
                fee = traded * p * taker
                slp = traded * p * slip
            n = n_new
            size = n * cs
            entry = p
            margin -= fee + slp
            out[t, 4] = fee * p if kind == INVERSE else fee
            out[t, 5] = slp * p if kind == INVERSE else slp
            # reset the margin to value / leverage (collateral in or out)
            value = size / p if kind == INVERSE else size * p
            need = value / lev if size > 0.0 else 0.0
            move = need - margin  # settle units: > 0 brings collateral in
            margin = need
            if kind == INVERSE and coll == HOLDINGS:
                out[t, 2] = move
            else:
                out[t, 1] = move * p if kind == INVERSE else move
            out[t, 11] = 1.0
            liq = short_liquidation_price(kind, size, entry, margin, mmr, cum, family) if size > 0.0 else math.inf
        elif top_up > 0.0 and size > 0.0:
            value = size / p if kind == INVERSE else size * p
            equity = margin + upnl
            if equity < top_up_level * value / lev:
                add = value / lev - equity
                margin += add
                if kind == INVERSE and coll == HOLDINGS:
                    out[t, 2] = add
                else:
                    out[t, 1] = add * p if kind == INVERSE else add
                out[t, 12] = add * p if kind == INVERSE else add
                liq = short_liquidation_price(kind, size, entry, margin, mmr, cum, family)
        # ---- close of the day
        if size > 0.0:
            upnl = size * (1.0 / p - 1.0 / entry) if kind == INVERSE else size * (entry - p)
        else:
            upnl = 0.0
        eq = margin + upnl
        out[t, 0] = eq * p if kind == INVERSE else eq
        out[t, 6] = size if kind == INVERSE else size * p
        if kind == INVERSE:
            out[t, 7] = (eq - size / p) * p if coll == BUY else -size
        else:
            out[t, 7] = -size * p
        if out[t, 9] == 0.0:
            out[t, 8] = liq if size > 0.0 else math.nan
        out[t, 13] = n


def _jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    if os.environ.get("PERPHEDGE_DISABLE_NUMBA") == "1":
        return fn
    import numba

    return numba.njit(cache=False)(fn)  # frozen copy: compiled per session, never cached (was cache=True)


#: Liquidation price of a short (jitted unless PERPHEDGE_DISABLE_NUMBA=1).
short_liquidation_price = _jit(_short_liquidation_price)
#: The jitted kernel (numba), same signature as :func:`leg_path_python`.
leg_path = _jit(leg_path_python)
