"""Pure pieces of ``perphedge optimize``: the design space, the objective, constraints, the Pareto front and
walk-forward windows.

A *design* is one complete hedge: the contract(s) (BTC proxy, ETH proxy, BTC+ETH legs, each asset's own
perpetual), inverse or linear, the venue, the sizing method (notional, beta, minimum variance, EWMA), the
ratio, the leverage, the collateral source and the rebalancing policy (drift band or calendar).

Objective of a design over a window (all terms are fractions of the book's value over the horizon ``h`` days)::

    objective = risk + λ · P(liquidation within h days) − carry

* ``risk`` — ``variance``: the variance of the hedged book's daily returns × h (the variance of its h-day return);
  ``cvar95``: the mean of the worst 5% of daily returns, negated, × √h.
* ``P(liquidation)`` — probability that any leg is liquidated within h days (bootstrap Monte Carlo with intraday
  highs, computed by the use case).
* ``carry`` — funding received minus fees and slippage per day in the window, × h, over the book's mean value
  (positive: the hedge earns).

Hard constraints (a violating design is never chosen): P(liquidation) ≤ the target, leverage ≤ the instrument's
maximum, margin available (collateral taken from holdings must be held).

Nothing here reads files, the clock or a global random generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from perphedge.errors import ConfigError

__all__ = [
    "COLLATERALS",
    "DEFAULT_LEVERAGES",
    "DEFAULT_RATIOS",
    "HEDGES",
    "METHODS",
    "POLICIES",
    "RISKS",
    "Design",
    "HedgeChoice",
    "Window",
    "choose",
    "enumerate_designs",
    "objective",
    "pareto_front",
    "parse_choices",
    "parse_grid",
    "rolling_ols_beta",
    "stability",
    "walk_forward_windows",
    "window_carry",
    "window_risk",
]

Array = NDArray[np.float64]

DEFAULT_RATIOS = (0.25, 0.5, 0.75, 1.0)
DEFAULT_LEVERAGES = (1.0, 2.0, 3.0, 5.0)
HEDGES = ("btc", "eth", "btc_eth", "own")
METHODS = ("notional", "beta", "min_variance", "ewma")
COLLATERALS = ("stable", "buy", "holdings")
POLICIES = ("band", "calendar")
RISKS = ("variance", "cvar95")
KINDS = ("inverse", "linear")


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgeChoice:
    """One way to carry the hedge: its legs (instrument id, weight) or, for ``own``, each asset's own perpetual.

    ``legs`` are the proxy legs (weights sum to 1); ``direct`` maps an asset to its own perpetual's id (the
    other assets go on the proxy legs). ``max_leverage`` is the smallest maximum among the instruments used.
    """

    name: str
    kind: str
    venue: str
    legs: tuple[tuple[str, float], ...]
    direct: tuple[tuple[str, str], ...] = ()
    max_leverage: float = math.inf
    bases: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """Short text, e.g. ``btc inverse binance``."""
        return f"{self.name} {self.kind} {self.venue}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Design:
    """One complete hedge design."""

    hedge: HedgeChoice
    ratio: float
    leverage: float
    method: str
    collateral: str
    policy: str

    @property
    def key(self) -> str:
        """A unique, readable identifier."""
        return (
            f"{self.hedge.label} | {self.method} {self.ratio:g} | {self.leverage:g}x {self.collateral} | {self.policy}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """A walk-forward step: train on bars ``[train_start, train_end)``, test on ``[train_end, test_end)``."""

    train_start: int
    train_end: int
    test_end: int


def _finite(x: float) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def parse_grid(text: str, flag: str, *, low: float, high: float, low_open: bool = False) -> tuple[float, ...]:
    """``"0.25,0.5,1"`` → ``(0.25, 0.5, 1.0)``; each value finite, in range, not repeated; sorted.

    The range is ``[low, high]`` (``(low, high]`` with ``low_open``).
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"invalid `{flag}`: give comma-separated numbers such as 0.5,1, was {text!r}")
    out: list[float] = []
    for item in text.split(","):
        s = item.strip()
        if not s:
            raise ConfigError(f"invalid `{flag}`: {text!r} has an empty item between commas")
        try:
            v = float(s)
        except ValueError:
            raise ConfigError(f"invalid `{flag}`: {s!r} is not a number (in {text!r})") from None
        if not math.isfinite(v):
            raise ConfigError(f"invalid `{flag}`: {s!r} is not a finite number")
        if v < low or v > high or (low_open and v == low):
            bound = f"({low:g}, {high:g}]" if low_open else f"[{low:g}, {high:g}]"
            raise ConfigError(f"invalid `{flag}`: every value must be in {bound}, was {s}")
        if v in out:
            raise ConfigError(f"invalid `{flag}`: {s} is given twice")
        out.append(v)
    return tuple(sorted(out))


def parse_choices(text: str, flag: str, allowed: Sequence[str]) -> tuple[str, ...]:
    """``"notional,ewma"`` → names, each one of ``allowed``, not repeated (``all``: every one)."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"invalid `{flag}`: give one or more of {','.join(allowed)}, was {text!r}")
    if text.strip().lower() == "all":
        return tuple(allowed)
    out: list[str] = []
    for item in text.split(","):
        s = item.strip().lower()
        if not s:
            raise ConfigError(f"invalid `{flag}`: {text!r} has an empty item between commas")
        if s not in allowed:
            raise ConfigError(f"invalid `{flag}`: {item.strip()!r} is not one of {', '.join(allowed)}")
        if s in out:
            raise ConfigError(f"invalid `{flag}`: {s} is given twice")
        out.append(s)
    return tuple(out)


def enumerate_designs(
    hedges: Sequence[HedgeChoice],
    *,
    ratios: Sequence[float],
    leverages: Sequence[float],
    methods: Sequence[str],
    collaterals: Sequence[str],
    policies: Sequence[str],
    held: Sequence[str] = (),
    has_betas: bool = True,
) -> tuple[list[Design], list[tuple[Design | None, str]]]:
    """Every combination that can be built, and the combinations dropped with the reason.

    Rules: linear contracts take stable collateral, inverse ones buy or holdings; a 1x inverse short on bought
    coins offsets nothing (dropped); ``holdings`` needs the portfolio to hold every leg's coin; a leverage above
    an instrument's maximum violates a hard constraint (dropped, reported); ``beta`` needs the file's betas.
    """
    for name, seq in (("ratios", ratios), ("leverages", leverages), ("methods", methods)):
        if not seq:
            raise ConfigError(f"invalid `--{name}`: the list is empty")
    if not hedges:
        raise ConfigError("no hedge instrument to try: check --hedges, --kinds and --venues against the specs")
    designs: list[Design] = []
    dropped: list[tuple[Design | None, str]] = []
    held_set = {a.upper() for a in held}
    methods_used = [m for m in methods if m != "beta" or has_betas]
    if len(methods_used) < len(methods):
        dropped.append((None, "method beta needs `betas:` in the portfolio file (not tried)"))
    for h in hedges:
        colls = [c for c in collaterals if (c == "stable") == (h.kind == "linear")]
        for coll in colls:
            if coll == "holdings" and not set(h.bases) <= held_set:
                dropped.append((None, f"{h.label}: collateral holdings needs {', '.join(h.bases)} held (not tried)"))
                continue
            for lev in leverages:
                if h.kind == "inverse" and coll == "buy" and lev <= 1.0:
                    continue  # a synthetic dollar: offsets nothing (the 1x baseline shows it)
                for method in methods_used:
                    for ratio in ratios:
                        for pol in policies:
                            d = Design(hedge=h, ratio=ratio, leverage=lev, method=method, collateral=coll, policy=pol)
                            if lev > h.max_leverage:
                                dropped.append(
                                    (d, f"leverage {lev:g}x is above the {h.max_leverage:g}x maximum of {h.label}")
                                )
                                continue
                            designs.append(d)
    return designs, dropped


def walk_forward_windows(n_bars: int, train: int, test: int) -> list[Window]:
    """Consecutive walk-forward steps over ``n_bars`` bars: train ``train`` bars, test the next ``test``, roll by
    ``test``; the last test window may be shorter (at least half of ``test``)."""
    if train < 30 or test < 7:
        raise ConfigError(f"invalid walk-forward windows: train must be >= 30 days and test >= 7, were {train}, {test}")
    if n_bars < train + test:
        raise ConfigError(
            f"the history has {n_bars} days, fewer than --train {train}d + --test {test}d: shorten the windows or "
            "extend the period"
        )
    out: list[Window] = []
    start = 1  # bar 0 has no return
    while start + train + max(test // 2, 1) <= n_bars:
        end = start + train
        out.append(Window(train_start=start, train_end=end, test_end=min(end + test, n_bars)))
        start += test
    return out


def window_risk(returns: Array, risk: str, horizon: int) -> float:
    """Risk of daily ``returns`` over ``horizon`` days: ``variance`` (var × h) or ``cvar95`` (−mean of the worst
    5% × √h); NaN when fewer than 5 returns."""
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) < 5:
        return math.nan
    if risk == "variance":
        return float(np.var(r)) * horizon
    if risk == "cvar95":
        k = max(1, math.ceil(0.05 * len(r)))
        worst = np.sort(r)[:k]
        return -float(worst.mean()) * math.sqrt(horizon)
    raise ConfigError(f"invalid `--risk`: must be one of {', '.join(RISKS)}, was {risk!r}")


def window_carry(carry_usd: Array, book_usd: Array, horizon: int) -> float:
    """Carry over ``horizon`` days as a fraction of the mean book value: mean daily carry (USD) × h / mean book."""
    c = np.asarray(carry_usd, dtype=np.float64)
    b = np.asarray(book_usd, dtype=np.float64)
    if len(c) == 0 or not np.isfinite(b).all() or b.mean() <= 0:
        return math.nan
    return float(c.mean()) * horizon / float(b.mean())


def objective(risk: float, p_liq: float, carry: float, lam: float) -> float:
    """``risk + λ·P(liq) − carry``."""
    return risk + lam * p_liq - carry


def choose(objectives: Array, feasible: NDArray[np.bool_]) -> int | None:
    """Index of the feasible design with the lowest finite objective (ties: the lowest index), or None."""
    obj = np.asarray(objectives, dtype=np.float64)
    ok = np.asarray(feasible, dtype=bool) & np.isfinite(obj)
    if not ok.any():
        return None
    masked = np.where(ok, obj, np.inf)
    return int(np.argmin(masked))


def pareto_front(points: Array) -> list[int]:
    """Indices of the non-dominated rows of ``points`` (n × k, every column minimised; rows with NaN skipped).

    A row is dominated when another is <= in every column and < in at least one.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"points must be a 2-D array, was {p.ndim}-D")
    idx = [i for i in range(len(p)) if np.isfinite(p[i]).all()]
    front: list[int] = []
    for i in idx:
        dominated = False
        for j in idx:
            if j != i and (p[j] <= p[i]).all() and (p[j] < p[i]).any():
                dominated = True
                break
        if not dominated:
            front.append(i)
    return front


def stability(choices: Sequence[str | None]) -> dict[str, float | int | str | None]:
    """How stable the chosen design is across windows: the most frequent choice and its share, distinct choices."""
    made = [c for c in choices if c is not None]
    if not made:
        return {"windows": len(choices), "distinct": 0, "most_frequent": None, "share": None}
    counts: dict[str, int] = {}
    for c in made:
        counts[c] = counts.get(c, 0) + 1
    best = max(counts, key=lambda k: (counts[k], -made.index(k)))
    return {"windows": len(choices), "distinct": len(counts), "most_frequent": best, "share": counts[best] / len(made)}


def rolling_ols_beta(asset: Array, factor: Array, window: int) -> Array:
    """β of ``asset`` returns on ``factor`` returns known at the end of each bar (OLS over the last ``window``
    returns ending at that bar); NaN before ``window`` returns or without factor variance.

    Both arrays are simple returns per bar, element 0 ignored (no return on the first bar).
    """
    s = np.asarray(asset, dtype=np.float64)
    f = np.asarray(factor, dtype=np.float64)
    n = len(s)
    out = np.full(n, np.nan)
    if window < 3 or n <= window:
        return out
    s = np.where(np.isfinite(s), s, 0.0)
    f = np.where(np.isfinite(f), f, 0.0)
    s[0] = f[0] = 0.0
    cs, cf = np.concatenate([[0.0], np.cumsum(s)]), np.concatenate([[0.0], np.cumsum(f)])
    csf, cff = np.concatenate([[0.0], np.cumsum(s * f)]), np.concatenate([[0.0], np.cumsum(f * f)])
    t = np.arange(window, n)  # bar t uses returns (t − window, t]
    lo, hi = t - window + 1, t + 1
    ss, sf = cs[hi] - cs[lo], cf[hi] - cf[lo]
    ssf, sff = csf[hi] - csf[lo], cff[hi] - cff[lo]
    cov = ssf - ss * sf / window
    var = sff - sf * sf / window
    with np.errstate(invalid="ignore", divide="ignore"):
        out[window:] = np.where(var > 1e-18, cov / var, np.nan)
    return out
