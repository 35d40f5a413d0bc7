"""``perphedge data fetch --futures BTC``: the venue's dated contracts of a coin and their daily candles
through ccxt into ``futures_candles`` (each contract with its expiry), one transaction per page, journalled
in ``imports`` (kind ``fetch``). Only bars that close before delivery are kept, as in the sample import;
a second run rewrites the same rows (idempotent upserts)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perphedge.errors import ConfigError, DataError

if TYPE_CHECKING:
    from perphedge.data.store import MarketStore
    from perphedge.exchange.ccxt_source import RetryPolicy

__all__ = ["FETCH_FUTURES_SCHEMA", "fetch_futures", "fetch_futures_into"]

FETCH_FUTURES_SCHEMA = "perphedge.data-fetch-futures/1"


def fetch_futures_into(
    store: MarketStore,
    *,
    exchange: str,
    underlying: str,
    since: str,
    until: str | None,
    client: Any = None,
    policy: RetryPolicy | None = None,
    retries: int = 8,
) -> dict[str, Any]:
    """Fetch every listed dated contract of ``underlying`` overlapping ``[since, until]`` into ``store``."""
    from perphedge.exchange.ccxt_futures import contract_candles, listed_contracts
    from perphedge.exchange.ccxt_source import CcxtSource
    from perphedge.exchange.ccxt_source import RetryPolicy as _Policy
    from perphedge.usecases.data import _one_line, _record_failure, _utc_ms

    since_ms = _utc_ms(since, "--since")
    until_ms = _utc_ms(until, "--until") if until else int(time.time() * 1000)
    if until_ms < since_ms:
        raise ConfigError(f"invalid `--until`: {until or 'now'} is before `--since` {since}")
    src = CcxtSource(exchange, client=client, policy=policy or _Policy(max_retries=retries))
    contracts = listed_contracts(src, underlying)
    run_id = store.begin_run("fetch", f"{src.id} dated futures {underlying.upper()} {since}..{until or 'now'}")
    series: list[dict[str, Any]] = []
    try:
        for c in contracts:
            rows = 0
            first = last = None
            for frame in contract_candles(src, c, since_ms, until_ms):
                with store.transaction():
                    rows += store.upsert("futures_candles", frame)
                first = first or str(frame["ts"].min())
                last = str(frame["ts"].max())
            series.append(
                {
                    "contract": c.native,
                    "ccxt_symbol": c.symbol,
                    "expiry": str(_ts(c.expiry_ms)),
                    "kind": c.kind,
                    "contract_size": c.contract_size,
                    "listed": c.active,
                    "rows": rows,
                    "first": first,
                    "last": last,
                }
            )
    except BaseException as exc:
        detail = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else _one_line(exc)
        _record_failure(store, run_id, files=len(series), rows=sum(s["rows"] for s in series), detail=detail)
        raise
    total = sum(s["rows"] for s in series)
    store.finish_run(run_id, state="complete", files=len(series), rows=total)
    return {
        "schema": FETCH_FUTURES_SCHEMA,
        "exchange": src.id,
        "underlying": underlying.upper(),
        "fetch_id": run_id,
        "contracts": series,
        "rows": total,
    }


def _ts(ms: int) -> Any:
    import pandas as pd

    return pd.Timestamp(ms, unit="ms")


def fetch_futures(
    *,
    exchange: str,
    underlying: str,
    since: str,
    until: str | None,
    store_path: str | Path | None,
    retries: int = 8,
    client: Any = None,
) -> dict[str, Any]:
    """Open the store (writable) and fetch; the ``perphedge.data-fetch-futures/1`` document."""
    from perphedge.data.store import MarketStore

    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 100:
        raise ConfigError(f"invalid `--retries`: a whole number 0..100, was {retries!r}")
    with MarketStore(store_path) as store:
        doc = fetch_futures_into(
            store, exchange=exchange, underlying=underlying, since=since, until=until, client=client, retries=retries
        )
        doc["store"] = str(store.path)
    if doc["rows"] == 0:
        raise DataError(
            f"{exchange}: no daily candles of a listed {underlying.upper()} dated future between {since} and "
            f"{until or 'now'} (listed: {', '.join(c['contract'] for c in doc['contracts'])})"
        )
    return doc
