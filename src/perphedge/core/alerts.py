"""Alerts, once per episode with hysteresis (design ``docs/design/book.md`` §5.4).

Pure: no I/O. :func:`evaluate` takes the persisted state (a JSON-serialisable mapping, kept in the book
store's ``book_state`` under ``alerts``), this tick's :class:`Observation` s and the :class:`AlertSpec`, and
returns the new state and the :class:`AlertEvent` s to journal, print and POST.

Each ``(alert, subject)`` is *quiet* or *firing*:

============================ ============================================= =============================================
alert                        opens when (value vs threshold)               closes when
============================ ============================================= =============================================
``liquidation_distance``     distance < ``liquidation_distance_below``     distance > threshold / ``rearm``
``ratio_off``                ``|achieved − target|`` > ``ratio_off_by``    value < threshold · ``rearm``
``funding_cost``             rate the short pays per 8 h (``−rate``)        value < threshold · ``rearm``
                             > ``funding_cost_8h_above``
``feed_stale``               price age (s) > ``stale_after_s``             age < ``stale_after_s`` · ``rearm``
``order_rejected``           value 1 (one per client id)                   never (the episode is the rejection)
``liquidation_mismatch``     ticks between perphedge's and the venue's      value < threshold · ``rearm``
                             liquidation price > ``liquidation_mismatch_
                             ticks`` (live accounts)
``manual_change``            value 1 (one per change: the position at the  never (the episode is the change)
                             venue differs from the journal's)
``manual_transfer``          value 1 (one per transfer id: a live account  never
                             needs margin moved by hand)
============================ ============================================= =============================================

Values between the two thresholds change nothing, so noise around a threshold fires once. Subjects:
the instrument id for ``liquidation_distance`` and ``funding_cost`` (``account:instrument`` if the caller
prefers; any text), ``book`` (or a scope) for ``ratio_off``, the feed name for ``feed_stale``, the client
order id for ``order_rejected`` and ``manual_transfer``'s transfer id, ``account:instrument@ms`` for
``manual_change``.

**Absent subjects keep their state.** A firing episode is not closed because its subject is missing from a
tick's observations (a position that vanished from an answer, a failed fetch). The caller closes it by
observing the recovered value; for a leg that is now **flat** it observes ``liquidation_distance`` = ``inf``
(a flat leg cannot be liquidated), which closes the episode. An alert that is switched off in the book file
(threshold ``None`` / ``false``) closes its firing episodes at the next evaluation (message: "no longer
watched"). Observations are applied in order, so one call may carry several values of one subject.

NaN values are refused (ValueError): "unknown" is never read as "fine" or as "crossed". Non-finite values
are stored as ``null`` in the state so it stays strict JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ALERTS", "STATE_VERSION", "AlertEvent", "AlertSpec", "Observation", "evaluate", "firing"]

ALERTS = (
    "liquidation_distance",
    "ratio_off",
    "funding_cost",
    "feed_stale",
    "order_rejected",
    "liquidation_mismatch",
    "manual_change",
    "manual_transfer",
)
#: Alerts whose episode is one event (opens on value 1, never closes; the subject makes each one distinct).
ONE_SHOT = ("order_rejected", "manual_change", "manual_transfer")
#: Version of the state mapping :func:`evaluate` reads and writes.
STATE_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertSpec:
    """The book file's ``alerts:`` thresholds (None / False = that alert is off); ``rearm`` in (0, 1)."""

    liquidation_distance_below: float | None
    ratio_off_by: float | None
    funding_cost_8h_above: float | None
    feed_stale: bool
    order_rejected: bool
    rearm: float
    liquidation_mismatch_ticks: float | None = None

    def __post_init__(self) -> None:
        for name in (
            "liquidation_distance_below",
            "ratio_off_by",
            "funding_cost_8h_above",
            "liquidation_mismatch_ticks",
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"alert `{name}` must be a finite number or None, was {value!r}")
            if value < 0 or (value == 0 and name != "funding_cost_8h_above"):
                raise ValueError(f"alert `{name}` must be > 0, was {value!r}")
        for name in ("feed_stale", "order_rejected"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"alert `{name}` must be true or false, was {getattr(self, name)!r}")
        r = self.rearm
        if isinstance(r, bool) or not isinstance(r, int | float) or not 0 < r < 1:
            raise ValueError(f"alert `rearm` must be in (0, 1), was {r!r}")

    @classmethod
    def from_model(cls, m: Any) -> AlertSpec:
        """From ``config.AlertsModel`` (read by attribute: core does not import config). The staleness
        threshold itself (``feed_stale_after``) is passed to :func:`evaluate` as ``stale_after_s``; the
        alert is on unless the model has ``feed_stale: false``."""
        return cls(
            liquidation_distance_below=m.liquidation_distance_below,
            ratio_off_by=m.ratio_off_by,
            funding_cost_8h_above=m.funding_cost_8h_above,
            feed_stale=bool(getattr(m, "feed_stale", True)),
            order_rejected=bool(m.order_rejected),
            rearm=float(m.rearm),
            liquidation_mismatch_ticks=getattr(m, "liquidation_mismatch_ticks", None),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """This tick's ``value`` of ``alert`` for ``subject`` (units: see the module table)."""

    alert: str
    subject: str
    value: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertEvent:
    """An episode opened or closed at ``ts_ms`` (journal ``alert_open`` / ``alert_close``)."""

    kind: Literal["open", "close"]
    alert: str
    subject: str
    value: float
    threshold: float
    ts_ms: int
    message: str


def _threshold(alert: str, spec: AlertSpec, stale_after_s: float) -> float | None:
    if alert == "liquidation_distance":
        return spec.liquidation_distance_below
    if alert == "ratio_off":
        return spec.ratio_off_by
    if alert == "funding_cost":
        return spec.funding_cost_8h_above
    if alert == "feed_stale":
        return float(stale_after_s) if spec.feed_stale else None
    if alert == "liquidation_mismatch":
        return spec.liquidation_mismatch_ticks
    if alert in ("manual_change", "manual_transfer"):
        return 1.0  # always on: a venue that moved without us, or margin only a person can move
    return 1.0 if spec.order_rejected else None


def _opens(alert: str, value: float, threshold: float) -> bool:
    if alert == "liquidation_distance":
        return value < threshold
    if alert in ONE_SHOT:
        return True
    return value > threshold


def _closes(alert: str, value: float, threshold: float, rearm: float) -> bool:
    if alert == "liquidation_distance":
        return value > threshold / rearm
    if alert in ONE_SHOT:
        return False
    return value < threshold * rearm


def _show(alert: str, x: float) -> str:
    if alert in ("liquidation_distance", "ratio_off"):
        return "inf" if math.isinf(x) else f"{x:.1%}"
    if alert == "funding_cost":
        return f"{x:.4%} per 8h"
    if alert == "feed_stale":
        return "never priced" if math.isinf(x) else f"{x:,.0f} s old"
    if alert == "liquidation_mismatch":
        return f"{x:,.1f} ticks"
    return f"{x:g}"


def _open_message(alert: str, subject: str, value: float, threshold: float) -> str:
    if alert == "liquidation_distance":
        return (
            f"liquidation distance of {subject} is {_show(alert, value)}, below {_show(alert, threshold)}: "
            "add margin or cut the short"
        )
    if alert == "ratio_off":
        return f"hedge ratio of {subject} is off target by {_show(alert, value)}, more than {_show(alert, threshold)}"
    if alert == "funding_cost":
        return f"the short on {subject} pays {_show(alert, value)}, above {_show(alert, threshold)}"
    if alert == "feed_stale":
        return f"price feed {subject} is stale: {_show(alert, value)}, limit {threshold:,.0f} s; trading is blocked"
    if alert == "liquidation_mismatch":
        return (
            f"the venue's liquidation price of {subject} differs from perphedge's by {_show(alert, value)}, more "
            f"than {_show(alert, threshold)}: see `liquidation_formula_note` in `book status`"
        )
    if alert == "manual_change":
        return f"position {subject} changed at the venue outside the book: target recomputed from the venue"
    if alert == "manual_transfer":
        return f"margin move {subject} needs doing by hand on the venue (live accounts never move margin)"
    return f"order {subject} was rejected"


def _close_message(alert: str, subject: str, value: float, threshold: float, rearm: float) -> str:
    if alert == "liquidation_distance":
        rearmed = threshold / rearm
        return f"liquidation distance of {subject} back to {_show(alert, value)} (re-armed above {rearmed:.1%})"
    if alert == "feed_stale":
        return f"price feed {subject} is fresh again: {_show(alert, value)}"
    label = {
        "ratio_off": "hedge ratio off target",
        "funding_cost": "funding cost",
        "liquidation_mismatch": "liquidation price gap to the venue's",
    }[alert]
    return f"{label} of {subject} back to {_show(alert, value)} (re-armed below {_show(alert, threshold * rearm)})"


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _unnum(x: Any, what: str) -> float:
    if x is None:
        return math.inf
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise ValueError(f"alert state: `{what}` must be a number or null, was {x!r}")
    return float(x)


def _load(state: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """The firing episodes of ``state`` by alert and subject (a deep copy); ValueError if malformed."""
    if not state:
        return {}
    if not isinstance(state, Mapping):
        raise ValueError(f"alert state must be a mapping, was {type(state).__name__}")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"alert state: unknown version {state.get('version')!r}, expected {STATE_VERSION}")
    raw = state.get("firing")
    if not isinstance(raw, Mapping):
        raise ValueError("alert state: `firing` must be a mapping")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for alert, subjects in raw.items():
        if alert not in ALERTS or not isinstance(subjects, Mapping):
            raise ValueError(f"alert state: unknown alert {alert!r}")
        for subject, ep in subjects.items():
            if not isinstance(ep, Mapping) or not isinstance(ep.get("since_ms"), int):
                raise ValueError(f"alert state: malformed episode {alert}/{subject}")
            _unnum(ep.get("value"), "value")
            _unnum(ep.get("threshold"), "threshold")
            out.setdefault(alert, {})[str(subject)] = dict(ep)
    return out


def _dump(episodes: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    return {"version": STATE_VERSION, "firing": {a: dict(sorted(s.items())) for a, s in episodes.items() if s}}


def evaluate(
    state: Mapping[str, Any],
    observations: Sequence[Observation],
    spec: AlertSpec,
    *,
    now_ms: int,
    stale_after_s: int,
) -> tuple[dict[str, Any], list[AlertEvent]]:
    """The state after ``observations`` and the episodes they opened or closed (see the module docstring)."""
    if isinstance(now_ms, bool) or not isinstance(now_ms, int):
        raise ValueError(f"`now_ms` must be whole milliseconds, was {now_ms!r}")
    if isinstance(stale_after_s, bool) or not isinstance(stale_after_s, int | float) or not stale_after_s > 0:
        raise ValueError(f"`stale_after_s` must be > 0, was {stale_after_s!r}")
    episodes = _load(state)
    events: list[AlertEvent] = []
    # an alert switched off closes what it had open
    for alert in ALERTS:
        if _threshold(alert, spec, stale_after_s) is None and episodes.get(alert):
            for subject, ep in sorted(episodes.pop(alert).items()):
                value = _unnum(ep.get("value"), "value")
                events.append(
                    AlertEvent(
                        kind="close",
                        alert=alert,
                        subject=subject,
                        value=value,
                        threshold=_unnum(ep.get("threshold"), "threshold"),
                        ts_ms=now_ms,
                        message=f"{alert} alert of {subject} is no longer watched (switched off in the book file)",
                    )
                )
    for obs in observations:
        if not isinstance(obs, Observation) or obs.alert not in ALERTS:
            raise ValueError(f"unknown alert {getattr(obs, 'alert', obs)!r} (alerts: {', '.join(ALERTS)})")
        if not isinstance(obs.subject, str) or not obs.subject:
            raise ValueError(f"alert {obs.alert}: `subject` must be non-empty text, was {obs.subject!r}")
        value = obs.value
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ValueError(f"alert {obs.alert} of {obs.subject}: value must be a number, was {value!r}")
        value = float(value)
        threshold = _threshold(obs.alert, spec, stale_after_s)
        if threshold is None:
            continue
        current = episodes.get(obs.alert, {}).get(obs.subject)
        if current is None:
            if _opens(obs.alert, value, threshold):
                message = _open_message(obs.alert, obs.subject, value, threshold)
                episodes.setdefault(obs.alert, {})[obs.subject] = {
                    "since_ms": now_ms,
                    "value": _num(value),
                    "threshold": threshold,
                    "message": message,
                }
                events.append(
                    AlertEvent(
                        kind="open",
                        alert=obs.alert,
                        subject=obs.subject,
                        value=value,
                        threshold=threshold,
                        ts_ms=now_ms,
                        message=message,
                    )
                )
        elif _closes(obs.alert, value, threshold, spec.rearm):
            del episodes[obs.alert][obs.subject]
            events.append(
                AlertEvent(
                    kind="close",
                    alert=obs.alert,
                    subject=obs.subject,
                    value=value,
                    threshold=threshold,
                    ts_ms=now_ms,
                    message=_close_message(obs.alert, obs.subject, value, threshold, spec.rearm),
                )
            )
        else:
            current["value"] = _num(value)  # the latest value, for status; the episode goes on
    return _dump(episodes), events


def firing(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The episodes firing in ``state``: ``{alert, subject, since_ms, value, threshold, message}`` (``value``
    is the latest observed, None when not finite), ordered by alert (as :data:`ALERTS`) then subject."""
    episodes = _load(state)
    out = []
    for alert in ALERTS:
        for subject, ep in sorted(episodes.get(alert, {}).items()):
            out.append(
                {
                    "alert": alert,
                    "subject": subject,
                    "since_ms": ep["since_ms"],
                    "value": ep.get("value"),
                    "threshold": ep.get("threshold"),
                    "message": ep.get("message", ""),
                }
            )
    return out
