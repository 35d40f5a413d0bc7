"""Coverage (``data status``) and quality checks (``data check``) of the market store."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from perphedge.data.timeframes import TIMEFRAME_SECONDS

if TYPE_CHECKING:
    from perphedge.data.store import MarketStore

__all__ = ["TIMEFRAME_SECONDS", "Finding", "SeriesStatus", "check", "status"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesStatus:
    """Coverage of one stored series."""

    table: str
    source: str
    symbol: str
    timeframe: str
    first: str
    last: str
    rows: int
    missing: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One quality problem: ``kind`` is incomplete (an import or fetch that did not finish), gap, duplicate,
    ohlc, outlier, stale or flat."""

    kind: str
    table: str
    source: str
    symbol: str
    count: int
    detail: str
    examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seconds_case(col: str = "timeframe") -> str:
    whens = " ".join(f"WHEN '{k}' THEN {v}" for k, v in TIMEFRAME_SECONDS.items())
    return f"CASE {col} {whens} END"


def status(store: MarketStore) -> list[SeriesStatus]:
    """Every stored series with first/last timestamp, rows and missing slots."""
    sql = f"""
    WITH c AS (
      SELECT 'candles' AS tbl, source, symbol, timeframe, ts, {_seconds_case()} AS step,
             epoch(ts) - epoch(lag(ts) OVER (PARTITION BY source, symbol, timeframe ORDER BY ts)) AS gap
      FROM candles),
    f AS (
      SELECT 'funding' AS tbl, source, symbol, 'settlement' AS timeframe, ts, interval_hours * 3600 AS step,
             epoch(ts) - epoch(lag(ts) OVER (PARTITION BY source, symbol ORDER BY ts)) AS gap
      FROM funding),
    b AS (
      SELECT 'basis' AS tbl, source, asset AS symbol, timeframe, ts, {_seconds_case()} AS step,
             epoch(ts) - epoch(lag(ts) OVER (PARTITION BY source, asset, timeframe ORDER BY ts)) AS gap
      FROM basis),
    s AS (
      SELECT 'sentiment' AS tbl, source, name AS symbol, '1d' AS timeframe, ts, 86400 AS step,
             epoch(ts) - epoch(lag(ts) OVER (PARTITION BY source, name ORDER BY ts)) AS gap
      FROM sentiment),
    u AS (SELECT * FROM c UNION ALL SELECT * FROM f UNION ALL SELECT * FROM b UNION ALL SELECT * FROM s)
    SELECT tbl, source, symbol, timeframe, min(ts) AS first, max(ts) AS last, count(*) AS rows,
           coalesce(sum(CASE WHEN gap > 1.5 * step THEN round(gap / step) - 1 ELSE 0 END), 0)::BIGINT AS missing
    FROM u GROUP BY ALL ORDER BY tbl, source, symbol, timeframe
    """
    frame = store.query(sql)
    return [
        SeriesStatus(
            table=r.tbl,
            source=r.source,
            symbol=r.symbol,
            timeframe=r.timeframe,
            first=str(r.first),
            last=str(r.last),
            rows=int(r.rows),
            missing=int(r.missing),
        )
        for r in frame.itertuples(index=False)
    ]


def check(
    store: MarketStore, *, outlier_z: float = 10.0, stale_days: int = 7, flat_run: int = 5, max_examples: int = 5
) -> list[Finding]:
    """Unfinished imports, gaps, duplicates, OHLC violations, outliers (robust z of log returns), stale and
    flat series."""
    findings: list[Finding] = []
    for run in store.unfinished_runs():
        findings.append(
            Finding(
                kind="incomplete",
                table="imports",
                source=run["kind"],
                symbol=run["source"],
                count=1,
                detail=(
                    f"{run['kind']} #{run['id']} started {run['started'][:19]} is {run['state']}"
                    + (f" ({run['detail']})" if run["detail"] else "")
                    + "; the store may lack its data: run it again"
                ),
            )
        )
    gaps = store.query(f"""
      WITH c AS (
        SELECT source, symbol, timeframe, ts, {_seconds_case()} AS step,
               lag(ts) OVER (PARTITION BY source, symbol, timeframe ORDER BY ts) AS prev FROM candles)
      SELECT 'candles' AS tbl, source, symbol, prev, ts, round((epoch(ts) - epoch(prev)) / step) - 1 AS n
      FROM c WHERE epoch(ts) - epoch(prev) > 1.5 * step
      UNION ALL
      SELECT 'funding', source, symbol, prev, ts, round((epoch(ts) - epoch(prev)) / (ih * 3600)) - 1 FROM (
        SELECT source, symbol, ts, interval_hours AS ih,
               lag(ts) OVER (PARTITION BY source, symbol ORDER BY ts) AS prev FROM funding)
      WHERE epoch(ts) - epoch(prev) > 1.5 * ih * 3600
      ORDER BY 1, 2, 3, 4""")
    for (tbl, src, sym), g in gaps.groupby(["tbl", "source", "symbol"], sort=True):
        findings.append(
            Finding(
                kind="gap",
                table=str(tbl),
                source=str(src),
                symbol=str(sym),
                count=int(g["n"].sum()),
                detail=f"{int(g['n'].sum())} missing slots in {len(g)} gaps",
                examples=[f"{p} → {t}" for p, t in zip(g["prev"], g["ts"], strict=True)][:max_examples],
            )
        )
    dups = store.query("""
      SELECT 'candles' AS tbl, source, symbol, count(*) - count(DISTINCT (timeframe, ts)) AS n FROM candles GROUP BY ALL
      UNION ALL SELECT 'funding', source, symbol, count(*) - count(DISTINCT ts) FROM funding GROUP BY ALL
      ORDER BY 1, 2, 3""")
    for r in dups[dups["n"] > 0].itertuples(index=False):
        findings.append(
            Finding(
                kind="duplicate",
                table=r.tbl,
                source=r.source,
                symbol=r.symbol,
                count=int(r.n),
                detail=f"{int(r.n)} duplicate timestamps",
            )
        )
    bad = store.query("""
      SELECT source, symbol, ts FROM candles
      WHERE low > least(open, close) OR high < greatest(open, close) OR low > high OR low <= 0 ORDER BY 1, 2, 3""")
    for (src, sym), g in bad.groupby(["source", "symbol"], sort=True):
        findings.append(
            Finding(
                kind="ohlc",
                table="candles",
                source=str(src),
                symbol=str(sym),
                count=len(g),
                detail=f"{len(g)} candles violate low <= open, close <= high",
                examples=[str(t) for t in g["ts"]][:max_examples],
            )
        )
    rets = store.query("""
      SELECT source, symbol, timeframe, ts, ln(close / lag(close) OVER w) AS r FROM candles
      WINDOW w AS (PARTITION BY source, symbol, timeframe ORDER BY ts)
      ORDER BY source, symbol, timeframe, ts""").dropna()  # ordered: the examples are the first hits in time
    for (src, sym, tf), g in rets.groupby(["source", "symbol", "timeframe"], sort=True):
        med = g["r"].median()
        mad = (g["r"] - med).abs().median() * 1.4826
        if mad <= 0:
            continue
        z = (g["r"] - med) / mad
        hits = g.loc[z.abs() > outlier_z]
        if len(hits):
            zs = z.loc[hits.index]
            findings.append(
                Finding(
                    kind="outlier",
                    table="candles",
                    source=str(src),
                    symbol=f"{sym} {tf}",
                    count=len(hits),
                    detail=f"{len(hits)} returns beyond {outlier_z:g} robust σ (review: real events or bad prints)",
                    examples=[
                        f"{t.date()} {r:+.1%} (z {zz:+.0f})"
                        for t, r, zz in zip(
                            hits["ts"], hits["r"].map(lambda x: float(__import__("math").exp(x) - 1)), zs, strict=True
                        )
                    ][:max_examples],
                )
            )
    stale = store.query(
        """
      WITH last AS (SELECT source, symbol, timeframe, max(ts) AS last FROM candles GROUP BY ALL),
           newest AS (SELECT max(last) AS m FROM last)
      SELECT source, symbol, timeframe, last, date_diff('day', last, m) AS behind FROM last, newest
      WHERE date_diff('day', last, m) > ? ORDER BY 1, 2""",
        [stale_days],
    )
    for r in stale.itertuples(index=False):
        findings.append(
            Finding(
                kind="stale",
                table="candles",
                source=r.source,
                symbol=f"{r.symbol} {r.timeframe}",
                count=int(r.behind),
                detail=f"ends {r.last.date()}, {int(r.behind)} days before the newest series",
            )
        )
    flat = store.query(
        """
      WITH x AS (
        SELECT source, symbol, timeframe, ts, close,
               CASE WHEN close = lag(close) OVER w AND high = low THEN 0 ELSE 1 END AS brk
        FROM candles WINDOW w AS (PARTITION BY source, symbol, timeframe ORDER BY ts)),
      g AS (SELECT *, sum(brk) OVER (PARTITION BY source, symbol, timeframe ORDER BY ts) AS grp FROM x)
      SELECT source, symbol, timeframe, min(ts) AS first, count(*) AS n FROM g GROUP BY source, symbol, timeframe, grp
      HAVING count(*) >= ? ORDER BY 1, 2, 4""",
        [flat_run],
    )
    for (src, sym, tf), g in flat.groupby(["source", "symbol", "timeframe"], sort=True):
        findings.append(
            Finding(
                kind="flat",
                table="candles",
                source=str(src),
                symbol=f"{sym} {tf}",
                count=int(g["n"].sum()),
                detail=f"{len(g)} runs of >= {flat_run} identical bars",
                examples=[f"{t.date()} ×{n}" for t, n in zip(g["first"], g["n"], strict=True)][:max_examples],
            )
        )
    return findings
