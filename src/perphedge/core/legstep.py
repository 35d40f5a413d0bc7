"""One bar of one short hedge leg: the single definition of the leg's money arithmetic (design book.md §1.2).

Two layers, one arithmetic:

* **Scalar cores** (``_step_settle``, ``_step_liquidated``, ``_step_fill``, ``_step_transfer``,
  ``_step_reset_margin``, ``_equity``, ``_hedge_delta``, ``_want_target``, ``_contracts_for``,
  ``_margin_for``, ``_top_up``, ``_collateral_flows``, ``_marks``, ``_liq``): pure functions of the
  state as a tuple of 8 floats (indices ``S_*``) and the leg's ``params`` as a tuple of 14 floats
  (:data:`PARAMS`, indices ``P_*``); they return a new state tuple and the bar's booked amounts.
  Value types only, so numba keeps them in registers when they are inlined into the kernel
  (``inline="always"``); array arguments would cost a reference-count round trip per call
  (measured: 158 µs against 32 µs for 2,922 bars).
* **Array API** for the paper account and the book (design §1.2 names): ``settle_bar``, ``fill``,
  ``transfer``, ``reset_margin``, ``liq_of``, ``hedge_delta_usd``, ``rebalance_target``,
  ``target_contracts``, ``margin_move``, ``top_up_amount``, ``on_liquidation``, ``mark`` (plus
  ``init_state``, ``observe_high``, ``equity``, ``book_collateral``) over a
  ``float64[8]`` state vector ``st``, the ``params`` vector and one row ``out`` of the output matrix
  (:data:`OUT_COLUMNS`). Each is a thin wrapper that calls the core.

The backtest kernel :func:`leg_path_python` / :func:`leg_path` is a loop over the bars that **calls** the
cores, so a replay through the array API takes the backtest's decisions because the same code runs, not
because two copies were kept in step.

Every function is written as plain Python ``f_python`` (or ``_f_python``) and compiled with numba as
``f`` (nopython, cached; ``PERPHEDGE_DISABLE_NUMBA=1`` leaves them plain). The kernel loop lives in this
module on purpose: numba's on-disk cache is keyed on the source file of the compiled function only, so a
kernel in another file would keep a stale inlined copy of a step after the step changed.

State vector (owner: the exchange side is what a paper account persists, the book side the rest):

====  ==============  ==========================================================================  ========
idx   name            unit                                                                        owner
====  ==============  ==========================================================================  ========
0     ``contracts``   contracts held short, >= 0                                                   exchange
1     ``entry``       USD per coin, settled entry (price of the last fill)                         exchange
2     ``margin``      settle asset: coin (inverse) / quote (linear), isolated                      exchange
3     ``liq_price``   USD per coin; ``inf`` = cannot be liquidated                                 exchange
4     ``mmr``         maintenance rate of the tier in force                                        exchange
5     ``cum``         maintenance deduction of that tier, settle units                             exchange
6     ``reopen_bar``  first bar the leg may (re)open; ``-inf`` open, ``+inf`` never                book
7     ``high_since``  highest mark seen since the last :func:`settle_bar`, USD per coin; ``-inf``  exchange
====  ==============  ==========================================================================  ========

Accounting of one bar (the backtest's order; decisions at the close):

1. :func:`settle_bar` (not on the first bar): a short whose liquidation price was reached by the bar's
   high closes at that price and loses its whole margin (then :func:`on_liquidation` sets the reopen
   bar); otherwise the bar's funding (sum of its settlement rates, positive = shorts receive) is
   credited on the position value at the close. The liquidation price is not recomputed after funding.
2. :func:`rebalance_target`: ``NaN`` = hold, else the target hedge ``d`` (USD of delta).
3. If rebalancing: :func:`fill` to :func:`target_contracts` (realises the unrealised PnL into the margin,
   charges fee and slippage on the traded notional, entry = close), then :func:`reset_margin` moves
   collateral so the margin is ``value / leverage``. Otherwise :func:`top_up_amount` and
   :func:`transfer` (when top-ups are on).
4. :func:`mark`: account equity, notional, delta, liquidation price and contracts of the bar.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

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
    "STATE",
    "book_collateral",
    "equity",
    "fill",
    "hedge_delta_usd",
    "init_state",
    "leg_path",
    "leg_path_python",
    "liq_of",
    "margin_move",
    "mark",
    "observe_high",
    "on_liquidation",
    "own_coins_usd",
    "rebalance_target",
    "reset_margin",
    "settle_bar",
    "short_liquidation_price",
    "target_contracts",
    "top_up_amount",
    "transfer",
]

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
P_KIND, P_COLL, P_LEV, P_CS, P_LOT, P_MMR, P_CUM, P_FAMILY = 0, 1, 2, 3, 4, 5, 6, 7
P_TAKER, P_SLIP, P_BAND, P_REOPEN, P_TOP_UP, P_TOP_UP_LEVEL = 8, 9, 10, 11, 12, 13

#: Columns of the output matrix (one row per bar).
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
O_ACCOUNT, O_CASH, O_COIN, O_FUNDING, O_FEE, O_SLIP, O_NOTIONAL = 0, 1, 2, 3, 4, 5, 6
O_DELTA, O_LIQ, O_LIQUIDATED, O_LIQ_LOSS, O_REBALANCED, O_TOP_UP, O_CONTRACTS = 7, 8, 9, 10, 11, 12, 13

#: Order of the entries of the state vector.
STATE = ("contracts", "entry", "margin", "liq_price", "mmr", "cum", "reopen_bar", "high_since")
S_N, S_ENTRY, S_MARGIN, S_LIQ, S_MMR, S_CUM, S_REOPEN, S_HIGH = 0, 1, 2, 3, 4, 5, 6, 7
N_STATE = 8

INVERSE, LINEAR = 0.0, 1.0
BUY, HOLDINGS, STABLE = 0.0, 1.0, 2.0
ENTRY_FAMILY, AT_LP_FAMILY = 0.0, 1.0


def _jit(fn: Callable[..., Any], *, inline: bool = False) -> Callable[..., Any]:
    """``fn`` compiled by numba (cached); ``inline`` = inlined into jitted callers at numba IR level.

    ``PERPHEDGE_DISABLE_NUMBA=1`` returns ``fn`` itself.
    """
    if os.environ.get("PERPHEDGE_DISABLE_NUMBA") == "1":
        return fn
    import numba

    return numba.njit(cache=True, inline="always" if inline else "never")(fn)


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


#: Liquidation price of a short (jitted unless PERPHEDGE_DISABLE_NUMBA=1).
short_liquidation_price = _jit(_short_liquidation_price)


# ------------------------------------------------------------------------------------------- scalar cores
# State and params as tuples of floats (value types): ``s`` = 8 entries (``S_*``), ``p`` = 14 (``P_*``).

Vec = tuple[float, ...]


def _initial_state_python(p: Vec) -> Vec:
    """A flat leg: no contracts, no margin, may open at once, the tier of ``p`` in force."""
    return (0.0, 0.0, 0.0, math.inf, p[P_MMR], p[P_CUM], -math.inf, -math.inf)


def _liq_python(s: Vec, p: Vec) -> float:
    """Liquidation price of the position in ``s`` (``inf`` when flat or when it cannot be liquidated)."""
    size = s[S_N] * p[P_CS]
    return float(short_liquidation_price(p[P_KIND], size, s[S_ENTRY], s[S_MARGIN], s[S_MMR], s[S_CUM], p[P_FAMILY]))


def _step_settle_python(
    s: Vec, p: Vec, high: float, price: float, funding_sum: float
) -> tuple[Vec, float, float, float, float]:
    """End of a bar: ``(state, liquidated 0/1, liquidation price, liq loss USD, funding USD)``.

    An open short whose liquidation price ``s[S_LIQ]`` was reached by ``max(high, high_since)`` is
    closed at that price and loses its whole margin (the loss is ``margin·liq`` USD inverse, ``margin``
    linear). Otherwise ``margin += funding_sum · value(price)``; the liquidation price is not recomputed.
    ``high_since`` is reset either way.
    """
    hi = high if high >= s[S_HIGH] else s[S_HIGH]
    size = s[S_N] * p[P_CS]
    if size <= 0.0:
        return (s[0], s[1], s[2], s[3], s[4], s[5], s[6], -math.inf), 0.0, 0.0, 0.0, 0.0
    inverse = p[P_KIND] == INVERSE
    liq = s[S_LIQ]
    margin = s[S_MARGIN]
    if hi >= liq:
        loss = margin * liq if inverse else margin
        return (0.0, s[1], 0.0, math.inf, s[4], s[5], s[6], -math.inf), 1.0, liq, loss, 0.0
    value = size / price if inverse else size * price  # settle units
    f = funding_sum * value
    margin += f
    return (s[0], s[1], margin, s[3], s[4], s[5], s[6], -math.inf), 0.0, 0.0, 0.0, f * price if inverse else f


def _step_liquidated_python(s: Vec, p: Vec, bar: float) -> Vec:
    """After a liquidation at ``bar``: the leg may reopen at ``bar + reopen_after`` (never when it is < 0)."""
    reopen = p[P_REOPEN]
    until = math.inf if reopen < 0.0 else bar + math.floor(reopen)
    return (s[0], s[1], s[2], s[3], s[4], s[5], until, s[7])


def _step_fill_python(s: Vec, p: Vec, price: float, n_new: float) -> tuple[Vec, float, float]:
    """Trade to ``n_new`` contracts at ``price``: ``(state, fee USD, slippage USD)``.

    Settle on trade: the unrealised PnL is realised into the margin, fee (taker) and slippage on the
    traded notional are taken from it, the entry becomes ``price``, the liquidation price is recomputed.
    As in the backtest until now, ``n_new == contracts`` still realises the PnL and resets the entry
    (design §1.2 proposes a no-op there; not adopted).
    """
    inverse = p[P_KIND] == INVERSE
    cs = p[P_CS]
    n = s[S_N]
    size = n * cs
    margin = s[S_MARGIN]
    upnl = 0.0
    if size > 0.0:
        entry = s[S_ENTRY]
        upnl = size * (1.0 / price - 1.0 / entry) if inverse else size * (entry - price)
    margin += upnl
    traded = abs(n_new - n) * cs  # USD (inverse) or coin (linear)
    if inverse:
        fee = traded / price * p[P_TAKER]
        slp = traded / price * p[P_SLIP]
    else:
        fee = traded * price * p[P_TAKER]
        slp = traded * price * p[P_SLIP]
    margin -= fee + slp
    new = (n_new, price, margin, math.inf, s[4], s[5], s[6], s[7])
    new = (n_new, price, margin, _liq(new, p), s[4], s[5], s[6], s[7])
    if inverse:
        return new, fee * price, slp * price
    return new, fee, slp


def _step_transfer_python(s: Vec, p: Vec, amount: float) -> Vec:
    """``amount`` (settle units; > 0 in) moved into the isolated margin; no settlement; liquidation price recomputed."""
    margin = s[S_MARGIN]
    margin += amount
    new = (s[0], s[1], margin, s[3], s[4], s[5], s[6], s[7])
    return (s[0], s[1], margin, _liq(new, p), s[4], s[5], s[6], s[7])


def _step_reset_margin_python(s: Vec, p: Vec, price: float) -> tuple[Vec, float]:
    """The margin set to :func:`margin_for` ``(state, move)`` (move in settle units; > 0 brought in).

    Equivalent to a transfer of :func:`margin_move` right after a fill at ``price``, except that the
    margin lands exactly on the target (no rounding residue of ``m + (t − m)``).
    """
    need = _margin_for(s, p, price)
    move = need - s[S_MARGIN]
    new = (s[0], s[1], need, s[3], s[4], s[5], s[6], s[7])
    return (s[0], s[1], need, _liq(new, p), s[4], s[5], s[6], s[7]), move


def _equity_python(s: Vec, p: Vec, price: float) -> float:
    """Margin plus unrealised PnL at ``price`` (settle units)."""
    size = s[S_N] * p[P_CS]
    upnl = 0.0
    if size > 0.0:
        entry = s[S_ENTRY]
        upnl = size * (1.0 / price - 1.0 / entry) if p[P_KIND] == INVERSE else size * (entry - price)
    return s[S_MARGIN] + upnl


def _hedge_delta_python(s: Vec, p: Vec, price: float) -> float:
    """USD delta of the leg's account: ``(equity − Q/P)·P`` inverse+buy, ``−Q`` other inverse, ``−q·P`` linear."""
    size = s[S_N] * p[P_CS]
    if p[P_KIND] == INVERSE:
        if p[P_COLL] == BUY:
            return (float(_equity(s, p, price)) - size / price) * price
        return -size
    return -size * price


def _own_coins_usd_python(s: Vec, p: Vec, price: float, coins_in: float) -> float:
    """Inverse margin taken from the holdings: the account's coins beyond the ``coins_in`` moved in from the holdings
    (its PnL, funding and fees in coin, or a liquidation's loss), in USD at ``price``; 0 for every other leg.

    Those coins are the book's own coins too, so the exposure the leg hedges includes them (the portfolio's
    ``exposure`` counts only the holdings' quantities), and the leg's delta includes them."""
    if p[P_KIND] == INVERSE and p[P_COLL] == HOLDINGS:
        return (float(_equity(s, p, price)) - coins_in) * price
    return 0.0


def _want_target_python(
    s: Vec, p: Vec, bar: float, price: float, exposure: float, target: float, allowed: float
) -> float:
    """The band check at a close: ``NaN`` = hold, else the target hedge ``d = target · exposure`` (USD).

    Trading is wanted when the leg may open (``bar >= reopen_bar``), the policy allows it and the target
    is finite; then a flat leg trades when ``d > 0``, an open one when ``d <= 0`` or ``|delta + d| > band·d``.
    """
    if not (bar >= s[S_REOPEN] and allowed > 0.0 and not math.isnan(target)):
        return math.nan
    d = target * exposure
    if s[S_N] * p[P_CS] == 0.0:
        return d if d > 0.0 else math.nan
    if d <= 0.0 or abs(_hedge_delta(s, p, price) + d) > p[P_BAND] * d:
        return d
    return math.nan


def _contracts_for_python(p: Vec, price: float, d_target: float) -> float:
    """Contracts (lot-rounded, >= 0) for a hedge of ``d_target`` USD at ``price``.

    Inverse+buy sizes ``d·L/(L−1)`` USD (the bought collateral is a long), other inverse ``d`` USD,
    linear ``d/P`` coin.
    """
    cs = p[P_CS]
    lot = p[P_LOT]
    if p[P_KIND] == INVERSE:
        if p[P_COLL] == BUY:
            lev = p[P_LEV]
            q_new = 0.0 if lev <= 1.0 else d_target * lev / (lev - 1.0)
        else:
            q_new = d_target
        n_new = math.floor(q_new / cs / lot + 0.5) * lot
    else:
        n_new = math.floor(d_target / price / cs / lot + 0.5) * lot
    return max(n_new, 0.0)


def _margin_for_python(s: Vec, p: Vec, price: float) -> float:
    """``value / leverage`` at ``price`` (settle units), 0 when flat."""
    size = s[S_N] * p[P_CS]
    if size <= 0.0:
        return 0.0
    value = size / price if p[P_KIND] == INVERSE else size * price
    return value / p[P_LEV]


def _top_up_python(s: Vec, p: Vec, price: float) -> float:
    """``NaN`` = no top-up (off, flat, or equity at or above ``top_up_level · value/L``), else ``value/L − equity``."""
    size = s[S_N] * p[P_CS]
    if not (p[P_TOP_UP] > 0.0 and size > 0.0):
        return math.nan
    value = size / price if p[P_KIND] == INVERSE else size * price
    eq = float(_equity(s, p, price))
    lev = p[P_LEV]
    if eq < p[P_TOP_UP_LEVEL] * value / lev:
        return value / lev - eq
    return math.nan


def _collateral_flows_python(p: Vec, price: float, amount: float) -> tuple[float, float]:
    """A collateral move of ``amount`` settle units booked as ``(cash USD, spot coins)``: coins for inverse+holdings."""
    if p[P_KIND] == INVERSE:
        if p[P_COLL] == HOLDINGS:
            return 0.0, amount
        return amount * price, 0.0
    return amount, 0.0


def _marks_python(s: Vec, p: Vec, price: float) -> tuple[float, float, float, float]:
    """Close of a bar: ``(account USD, notional, delta USD, liq price or NaN when flat)``."""
    inverse = p[P_KIND] == INVERSE
    size = s[S_N] * p[P_CS]
    eq = _equity(s, p, price)
    return (
        eq * price if inverse else eq,
        size if inverse else size * price,
        _hedge_delta(s, p, price),
        s[S_LIQ] if size > 0.0 else math.nan,
    )


_initial_state = _jit(_initial_state_python, inline=True)
_liq = _jit(_liq_python, inline=True)
_step_settle = _jit(_step_settle_python, inline=True)
_step_liquidated = _jit(_step_liquidated_python, inline=True)
_step_fill = _jit(_step_fill_python, inline=True)
_step_transfer = _jit(_step_transfer_python, inline=True)
_step_reset_margin = _jit(_step_reset_margin_python, inline=True)
_equity = _jit(_equity_python, inline=True)
_hedge_delta = _jit(_hedge_delta_python, inline=True)
_own_coins_usd = _jit(_own_coins_usd_python, inline=True)
_want_target = _jit(_want_target_python, inline=True)
_contracts_for = _jit(_contracts_for_python, inline=True)
_margin_for = _jit(_margin_for_python, inline=True)
_top_up = _jit(_top_up_python, inline=True)
_collateral_flows = _jit(_collateral_flows_python, inline=True)
_marks = _jit(_marks_python, inline=True)


def _params_tuple_python(prm: Array) -> Vec:
    """The ``params`` vector as a tuple (:data:`PARAMS` order)."""
    return (
        prm[0], prm[1], prm[2], prm[3], prm[4], prm[5], prm[6],
        prm[7], prm[8], prm[9], prm[10], prm[11], prm[12], prm[13],
    )  # fmt: skip


def _load_python(st: Array) -> Vec:
    return (st[0], st[1], st[2], st[3], st[4], st[5], st[6], st[7])


def _store_python(st: Array, s: Vec) -> None:
    for i in range(N_STATE):
        st[i] = s[i]


_params_tuple = _jit(_params_tuple_python, inline=True)
_load = _jit(_load_python, inline=True)
_store = _jit(_store_python, inline=True)


# ------------------------------------------------------------------------------------ array API (exchange side)
# For the paper account and the book: the state as a float64[8] array ``st`` (updated in place), the
# ``params`` vector ``prm`` and one row ``out`` of the output matrix. Each wraps one scalar core.


def init_state_python(st: Array, prm: Array) -> None:
    """A flat leg: no contracts, no margin, may open at once, the tier of ``prm`` in force."""
    _store(st, _initial_state(_params_tuple(prm)))


def liq_of_python(st: Array, prm: Array) -> float:
    """Liquidation price of the position in ``st`` (``inf`` when flat or when it cannot be liquidated)."""
    return float(_liq(_load(st), _params_tuple(prm)))


def observe_high_python(st: Array, price: float) -> None:
    """Record a mark between two settlements (live feeds); :func:`settle_bar` checks the highest one."""
    if price > st[S_HIGH]:  # noqa: PLR1730 (a NaN mark must never replace the high)
        st[S_HIGH] = price


def settle_bar_python(st: Array, prm: Array, high: float, price: float, funding_sum: float, out: Array) -> None:
    """End of a bar (:func:`_step_settle`): liquidation by ``max(high, high_since)``, else funding at ``price``.

    Liquidated: ``out`` gets ``liquidated = 1``, the liquidation price and the lost margin (USD) and
    the leg is flat (then call :func:`on_liquidation`); else ``out[funding_usd]``.
    """
    s, liquidated, liq_at, loss, fund = _step_settle(_load(st), _params_tuple(prm), high, price, funding_sum)
    _store(st, s)
    if liquidated > 0.0:
        out[O_LIQUIDATED] = 1.0
        out[O_LIQ] = liq_at
        out[O_LIQ_LOSS] = loss
    else:
        out[O_FUNDING] = fund


def fill_python(st: Array, prm: Array, price: float, n_new: float, out: Array) -> None:
    """Trade to ``n_new`` contracts at ``price`` (:func:`_step_fill`); fee and slippage (USD) into ``out``."""
    s, fee, slp = _step_fill(_load(st), _params_tuple(prm), price, n_new)
    _store(st, s)
    out[O_FEE] = fee
    out[O_SLIP] = slp


def transfer_python(st: Array, prm: Array, amount: float) -> None:
    """Move ``amount`` (settle units; > 0 in) into the isolated margin; liquidation price recomputed."""
    _store(st, _step_transfer(_load(st), _params_tuple(prm), amount))


def reset_margin_python(st: Array, prm: Array, price: float) -> float:
    """Set the margin to ``value / leverage`` and return the move (settle units; > 0 brought in)."""
    s, move = _step_reset_margin(_load(st), _params_tuple(prm), price)
    _store(st, s)
    return float(move)


def on_liquidation_python(st: Array, prm: Array, bar: float) -> None:
    """After a liquidation at ``bar``: the leg may reopen at ``bar + reopen_after`` (never when it is < 0)."""
    _store(st, _step_liquidated(_load(st), _params_tuple(prm), bar))


# ---------------------------------------------------------------------------------------- array API (book side)


def equity_python(st: Array, prm: Array, price: float) -> float:
    """Margin plus unrealised PnL at ``price`` (settle units)."""
    return float(_equity(_load(st), _params_tuple(prm), price))


def hedge_delta_usd_python(st: Array, prm: Array, price: float) -> float:
    """USD delta of the leg's account at ``price``."""
    return float(_hedge_delta(_load(st), _params_tuple(prm), price))


def own_coins_usd_python(st: Array, prm: Array, price: float, coins_in: float) -> float:
    """Inverse+holdings: the account's coins beyond the ``coins_in`` moved in from the holdings, in USD; else 0.

    Add it to the exposure given to :func:`rebalance_target` and to :func:`hedge_delta_usd` (the kernel does)."""
    return float(_own_coins_usd(_load(st), _params_tuple(prm), price, coins_in))


def rebalance_target_python(
    st: Array, prm: Array, bar: float, price: float, exposure: float, target: float, allowed: float
) -> float:
    """The band check at a close: ``NaN`` = hold, else the target hedge ``d`` (USD)."""
    return float(_want_target(_load(st), _params_tuple(prm), bar, price, exposure, target, allowed))


def target_contracts_python(prm: Array, price: float, d_target: float) -> float:
    """Contracts (lot-rounded, >= 0) for a hedge of ``d_target`` USD at ``price``."""
    return float(_contracts_for(_params_tuple(prm), price, d_target))


def margin_move_python(st: Array, prm: Array, price: float) -> float:
    """``value/L − equity`` at ``price`` (settle units; > 0 brings collateral in)."""
    s = _load(st)
    p = _params_tuple(prm)
    return float(_margin_for(s, p, price) - _equity(s, p, price))


def top_up_amount_python(st: Array, prm: Array, price: float) -> float:
    """``NaN`` = no top-up, else ``value/L − equity`` (settle units)."""
    return float(_top_up(_load(st), _params_tuple(prm), price))


def book_collateral_python(prm: Array, price: float, amount: float, out: Array) -> None:
    """Book a collateral move of ``amount`` settle units into ``out``: spot coins (inverse+holdings) or cash (USD)."""
    cash, coin = _collateral_flows(_params_tuple(prm), price, amount)
    out[O_CASH] = cash
    out[O_COIN] = coin


def mark_python(st: Array, prm: Array, price: float, out: Array) -> None:
    """Close of a bar: account equity (USD), notional, delta, liquidation price (unless liquidated), contracts."""
    s = _load(st)
    account, notional, delta, liq = _marks(s, _params_tuple(prm), price)
    out[O_ACCOUNT] = account
    out[O_NOTIONAL] = notional
    out[O_DELTA] = delta
    if out[O_LIQUIDATED] == 0.0:
        out[O_LIQ] = liq
    out[O_CONTRACTS] = s[S_N]


init_state = _jit(init_state_python)
liq_of = _jit(liq_of_python)
observe_high = _jit(observe_high_python)
settle_bar = _jit(settle_bar_python)
fill = _jit(fill_python)
transfer = _jit(transfer_python)
reset_margin = _jit(reset_margin_python)
on_liquidation = _jit(on_liquidation_python)
equity = _jit(equity_python)
hedge_delta_usd = _jit(hedge_delta_usd_python)
own_coins_usd = _jit(own_coins_usd_python)
rebalance_target = _jit(rebalance_target_python)
target_contracts = _jit(target_contracts_python)
margin_move = _jit(margin_move_python)
top_up_amount = _jit(top_up_amount_python)
book_collateral = _jit(book_collateral_python)
mark = _jit(mark_python)


# ------------------------------------------------------------------------------------------------ kernel


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
    """Run one short leg through the bars of ``c``; fills ``out`` (``len(c)`` × ``len(OUT_COLUMNS)``)."""
    prm = _params_tuple(params)
    s = _initial_state(prm)
    inverse = prm[P_KIND] == INVERSE
    # Inverse margin taken from the holdings: the account's coins beyond those moved in from the holdings (its PnL,
    # funding and fees in coin, or the loss of a liquidation) are the book's coins too, so they count in the
    # exposure the leg hedges (``exposure`` holds only the holdings' own quantities).
    coins_in = 0.0
    for t in range(c.shape[0]):
        for k in range(out.shape[1]):
            out[t, k] = 0.0
        px = c[t]
        if t > 0:
            s, liquidated, liq_at, loss, fund = _step_settle(s, prm, h[t], px, funding[t])
            if liquidated > 0.0:
                out[t, O_LIQUIDATED] = 1.0
                out[t, O_LIQ] = liq_at
                out[t, O_LIQ_LOSS] = loss
                s = _step_liquidated(s, prm, float(t))
            else:
                out[t, O_FUNDING] = fund
        extra_usd = _own_coins_usd(s, prm, px, coins_in)
        d = _want_target(s, prm, float(t), px, exposure[t] + extra_usd, target[t], allowed[t])
        if not math.isnan(d):
            s, fee, slp = _step_fill(s, prm, px, _contracts_for(prm, px, d))
            out[t, O_FEE] = fee
            out[t, O_SLIP] = slp
            s, move = _step_reset_margin(s, prm, px)
            cash, coin = _collateral_flows(prm, px, move)
            coins_in += coin
            out[t, O_CASH] = cash
            out[t, O_COIN] = coin
            out[t, O_REBALANCED] = 1.0
        else:
            add = _top_up(s, prm, px)
            if not math.isnan(add):
                s = _step_transfer(s, prm, add)
                cash, coin = _collateral_flows(prm, px, add)
                coins_in += coin
                out[t, O_CASH] = cash
                out[t, O_COIN] = coin
                out[t, O_TOP_UP] = add * px if inverse else add
        account, notional, delta, liq = _marks(s, prm, px)
        delta += _own_coins_usd(s, prm, px, coins_in)
        out[t, O_ACCOUNT] = account
        out[t, O_NOTIONAL] = notional
        out[t, O_DELTA] = delta
        if out[t, O_LIQUIDATED] == 0.0:
            out[t, O_LIQ] = liq
        out[t, O_CONTRACTS] = s[S_N]


#: The jitted kernel (numba), same signature as :func:`leg_path_python`.
leg_path = _jit(leg_path_python)
