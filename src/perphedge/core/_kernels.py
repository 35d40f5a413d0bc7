"""Path-dependent backtest kernel of one short hedge leg: ``leg_path_python`` and its numba twin ``leg_path``.

The kernel is a loop over the bars that calls the per-bar step functions of :mod:`perphedge.core.legstep`
(the single definition of the leg's money arithmetic, shared with the paper account and the book); this
module is its stable import path for the backtest use case.

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

from perphedge.core.legstep import (
    AT_LP_FAMILY,
    BUY,
    ENTRY_FAMILY,
    HOLDINGS,
    INVERSE,
    LINEAR,
    OUT_COLUMNS,
    PARAMS,
    STABLE,
    leg_path,
    leg_path_python,
    short_liquidation_price,
)

__all__ = [
    "AT_LP_FAMILY",
    "BUY",
    "ENTRY_FAMILY",
    "HOLDINGS",
    "INVERSE",
    "LINEAR",
    "OUT_COLUMNS",
    "PARAMS",
    "STABLE",
    "leg_path",
    "leg_path_python",
    "short_liquidation_price",
]
